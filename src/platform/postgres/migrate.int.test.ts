// Goal: migration folders of several components share one database without mixing their numbers, and bookkeeping from before components keeps working.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import { createLogger } from '../logger.ts';
import { migrate } from './migrate.ts';
import { createPool, type Pool } from './pool.ts';

const logger = createLogger('silent');

async function migrationFolder(files: Record<string, string>): Promise<string> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'koban-migrations-'));
  for (const [name, sql] of Object.entries(files)) await fs.writeFile(path.join(directory, name), sql);
  return directory;
}

async function tables(pool: Pool): Promise<string[]> {
  const result = await pool.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`);
  return result.rows.map((row) => row.name);
}

async function bookkeeping(pool: Pool): Promise<string[]> {
  const result = await pool.query<{ row: string }>(`SELECT component || ':' || version || ':' || name AS row FROM schema_migrations ORDER BY component, version`);
  return result.rows.map((row) => row.row);
}

describe('migrate', () => {
  let database: TestDatabase;
  let pool: Pool;
  const folders: string[] = [];
  const folder = async (files: Record<string, string>) => {
    const directory = await migrationFolder(files);
    folders.push(directory);
    return directory;
  };

  before(async () => {
    database = await createTestDatabase('migrate');
    pool = createPool({ url: database.url, size: 2, applicationName: 'migrate-test', logger });
  });
  after(async () => {
    await pool.end();
    await database.drop();
    for (const directory of folders) await fs.rm(directory, { recursive: true, force: true });
  });

  test('two components number their migrations on their own in one database; a second run applies nothing', async () => {
    await pool.query('DROP TABLE IF EXISTS schema_migrations, a_one, a_two, b_one');
    const a = await folder({ '0001_one.sql': 'CREATE TABLE a_one (id int);', '0002_two.sql': 'CREATE TABLE a_two (id int);' });
    const b = await folder({ '0001_one.sql': 'CREATE TABLE b_one (id int);' });
    await migrate(pool, a, logger, { component: 'a' });
    await migrate(pool, b, logger, { component: 'b' });
    // Without components, b's version 1 would count as applied (a's) and b_one would never exist.
    assert.deepEqual(await tables(pool), ['a_one', 'a_two', 'b_one', 'schema_migrations']);
    assert.deepEqual(await bookkeeping(pool), ['a:1:one', 'a:2:two', 'b:1:one']);
    // CREATE TABLE without IF NOT EXISTS: running either again would fail if it re-applied anything.
    await migrate(pool, a, logger, { component: 'a' });
    await migrate(pool, b, logger, { component: 'b' });
    assert.deepEqual(await bookkeeping(pool), ['a:1:one', 'a:2:two', 'b:1:one']);
  });

  test('a component whose applied migration changed stops start-up and names the component', async () => {
    await pool.query('DROP TABLE IF EXISTS schema_migrations, a_one, a_two, b_one');
    await migrate(pool, await folder({ '0001_one.sql': 'CREATE TABLE a_one (id int);' }), logger, { component: 'a' });
    const edited = await folder({ '0001_one.sql': 'CREATE TABLE a_one (id bigint);' });
    await assert.rejects(migrate(pool, edited, logger, { component: 'a' }), /Migration a 1 \(one\) changed after it was applied/);
    // The same file under another component is that component's own version 1.
    await pool.query('DROP TABLE a_one');
    await migrate(pool, edited, logger, { component: 'b' });
    assert.deepEqual(await bookkeeping(pool), ['a:1:one', 'b:1:one']);
  });

  test('bookkeeping from before components: its rows stay with callers naming none, a named component starts at 1', async () => {
    await pool.query('DROP TABLE IF EXISTS schema_migrations, a_one, a_two, b_one');
    const legacy = await folder({ '0001_one.sql': 'CREATE TABLE a_one (id int);', '0002_two.sql': 'CREATE TABLE a_two (id int);' });
    // The table as the migrator wrote it before components, with the rows it recorded.
    await pool.query(`CREATE TABLE schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    await pool.query('CREATE TABLE a_one (id int)');
    await pool.query('CREATE TABLE a_two (id int)');
    const sha = (sql: string) => createHash('sha256').update(sql).digest('hex');
    await pool.query(`INSERT INTO schema_migrations (version, name, checksum) VALUES (1, 'one', $1), (2, 'two', $2)`, [
      sha('CREATE TABLE a_one (id int);'),
      sha('CREATE TABLE a_two (id int);'),
    ]);
    await migrate(pool, legacy, logger);
    await migrate(pool, await folder({ '0001_one.sql': 'CREATE TABLE b_one (id int);' }), logger, { component: 'b' });
    assert.deepEqual(await bookkeeping(pool), [':1:one', ':2:two', 'b:1:one']);
    // The old rows still guard their files.
    const edited = await folder({ '0001_one.sql': 'CREATE TABLE a_one (id bigint);', '0002_two.sql': 'CREATE TABLE a_two (id int);' });
    await assert.rejects(migrate(pool, edited, logger), /Migration 1 \(one\) changed after it was applied/);
  });

  test('concurrent starts of two components apply each migration once', async () => {
    await pool.query('DROP TABLE IF EXISTS schema_migrations, a_one, a_two, b_one');
    const a = await folder({ '0001_one.sql': 'CREATE TABLE a_one (id int);' });
    const b = await folder({ '0001_one.sql': 'CREATE TABLE b_one (id int);' });
    await Promise.all([a, b, a, b].map((directory, index) => migrate(pool, directory, logger, { component: index % 2 === 0 ? 'a' : 'b' })));
    assert.deepEqual(await bookkeeping(pool), ['a:1:one', 'b:1:one']);
  });
});
