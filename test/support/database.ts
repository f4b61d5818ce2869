// Each test file gets a database of its own on the test server, so files run
// in parallel without seeing each other's rows.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { databaseUrl } from '../../src/platform/postgres/pool.ts';

export function testServerUrl(): string {
  const url = process.env.KOBAN_TEST_SERVER_URL ?? process.env.DATABASE_URL;
  if (!url) throw new Error('No test PostgreSQL: run tests with `npm test` (it starts one) or set DATABASE_URL');
  return url;
}

export type TestDatabase = { url: string; drop(): Promise<void> };

export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `koban_test_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomUUID().slice(0, 8)}`;
  const admin = new pg.Client({ connectionString: testServerUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  return {
    url: databaseUrl(testServerUrl(), name),
    async drop() {
      const client = new pg.Client({ connectionString: testServerUrl() });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
