// Numbered, append-only SQL migrations (`0001_name.sql`), applied in order in
// one transaction under an advisory lock so concurrent starts are safe. An
// applied migration whose file changed stops start-up: migrations are never
// edited after release; add a new one instead.
// Hand-written rather than a library: it is one short function, and the
// migration tools on npm either lack the lock or bring their own file layout.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { type Pool, withTransaction } from './pool.ts';

const MIGRATION_FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;
/** Arbitrary constant shared by every Koban process migrating the same database. */
const MIGRATION_LOCK_KEY = 0x6b6f62616e;

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

export async function migrate(pool: Pool, directory: string, logger: Logger): Promise<void> {
  const migrations = await readMigrations(directory);
  await withTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const applied = await client.query<{ version: number; checksum: string }>('SELECT version, checksum FROM schema_migrations');
    const appliedByVersion = new Map(applied.rows.map((row) => [row.version, row.checksum]));
    for (const migration of migrations) {
      const checksum = appliedByVersion.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new Error(`Migration ${migration.version} (${migration.name}) changed after it was applied; add a new migration instead of editing it`);
        }
        continue;
      }
      logger.info({ version: migration.version, name: migration.name }, 'applying migration');
      await client.query(migration.sql);
      await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        migration.version,
        migration.name,
        migration.checksum,
      ]);
    }
  });
}
