// Numbered, append-only SQL migrations (`0001_name.sql`), applied in order in
// one transaction under an advisory lock so concurrent starts are safe. An
// applied migration whose file changed stops start-up: migrations are never
// edited after release; add a new one instead.
// Each migration folder is a component with numbers of its own: several
// components (a service's registry and one of its adapters, say) can share one
// database and one search path. The bookkeeping table keys rows by
// (component, version); rows written before components existed belong to the
// unnamed component '', which is also the default, so callers that name none
// (one folder per schema) read their history as before.
// Hand-written rather than a library: it is one short function, and the
// migration tools on npm either lack the lock or bring their own file layout.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { type PoolClient, type Pool, withTransaction } from './pool.ts';

const MIGRATION_FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;
const COMPONENT_PATTERN = /^[a-z0-9_]{0,63}$/;
/** Arbitrary constant shared by every Koban process migrating the same database. */
const MIGRATION_LOCK_KEY = 0x6b6f62616e;
/** The component of callers that name none, and of rows written before components existed. */
export const UNNAMED_COMPONENT = '';

type Migration = { version: number; name: string; sql: string; checksum: string };

export async function readMigrations(directory: string): Promise<Migration[]> {
  const files = (await fs.readdir(directory)).filter((file) => file.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = MIGRATION_FILE_PATTERN.exec(file);
    if (!match) throw new Error(`Migration file ${file} must be named NNNN_name.sql`);
    const sql = await fs.readFile(path.join(directory, file), 'utf8');
    const version = Number(match[1]);
    if (migrations.length > 0 && migrations.at(-1)!.version !== version - 1) {
      throw new Error(`Migration ${file} leaves a gap after version ${migrations.at(-1)!.version}`);
    }
    migrations.push({ version, name: match[2]!, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return migrations;
}

export async function migrate(pool: Pool, directory: string, logger: Logger, options: { component?: string } = {}): Promise<void> {
  const component = options.component ?? UNNAMED_COMPONENT;
  if (!COMPONENT_PATTERN.test(component)) throw new Error(`Migration component ${component} must match ${COMPONENT_PATTERN}`);
  const migrations = await readMigrations(directory);
  await withTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await ensureBookkeeping(client, logger);
    const applied = await client.query<{ version: number; checksum: string }>('SELECT version, checksum FROM schema_migrations WHERE component = $1', [
      component,
    ]);
    const appliedByVersion = new Map(applied.rows.map((row) => [row.version, row.checksum]));
    for (const migration of migrations) {
      const checksum = appliedByVersion.get(migration.version);
      const label = component === UNNAMED_COMPONENT ? '' : `${component} `;
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new Error(`Migration ${label}${migration.version} (${migration.name}) changed after it was applied; add a new migration instead of editing it`);
        }
        continue;
      }
      logger.info({ component, version: migration.version, name: migration.name }, 'applying migration');
      await client.query(migration.sql);
      await client.query('INSERT INTO schema_migrations (component, version, name, checksum) VALUES ($1, $2, $3, $4)', [
        component,
        migration.version,
        migration.name,
        migration.checksum,
      ]);
    }
  });
}

/** Creates the bookkeeping table, or gives one from before components its component column. Runs under the migration lock. */
async function ensureBookkeeping(client: PoolClient, logger: Logger): Promise<void> {
  const existing = await client.query<{ has_component: boolean | null }>(
    `SELECT (SELECT true FROM pg_attribute WHERE attrelid = t.oid AND attname = 'component' AND NOT attisdropped) AS has_component
       FROM (SELECT to_regclass('schema_migrations') AS oid) t WHERE t.oid IS NOT NULL`,
  );
  if (existing.rows.length === 0) {
    // component comes last, where the upgrade below adds it: both paths give one shape.
    await client.query(`CREATE TABLE schema_migrations (
      version integer NOT NULL,
      name text NOT NULL,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      component text NOT NULL DEFAULT '',
      PRIMARY KEY (component, version)
    )`);
    return;
  }
  if (existing.rows[0]!.has_component) return;
  logger.info('giving the migration bookkeeping a component column; existing rows keep the unnamed component');
  await client.query(`ALTER TABLE schema_migrations
    ADD COLUMN component text NOT NULL DEFAULT '',
    DROP CONSTRAINT schema_migrations_pkey,
    ADD PRIMARY KEY (component, version)`);
}
