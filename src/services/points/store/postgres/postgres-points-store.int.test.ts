// Goal: a key's lock never outlives a failed open — the connection that took it is destroyed, not pooled — and a key's lock is released when its work is done or has failed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../../../../../test/support/database.ts';
import { systemClock } from '../../../../platform/clock.ts';
import { createPool } from '../../../../platform/postgres/pool.ts';
import { migratePoints, PostgresPointsStore } from './postgres-points-store.ts';

const logger = pino({ level: 'silent' });
let database: TestDatabase;
let store: PostgresPointsStore;
let probe: pg.Client;

before(async () => {
  database = await createTestDatabase('points_store');
  const pool = createPool({ url: database.url, size: 2, applicationName: 'points-store-test', logger });
  await migratePoints(pool, logger);
  store = new PostgresPointsStore(pool, systemClock);
  probe = new pg.Client({ connectionString: database.url });
  await probe.connect();
});

after(async () => {
  await probe?.end();
  await store?.close();
  await database?.drop();
});

/** Whether another session can take the key's lock now (and gives it back at once). */
async function lockIsFree(key: string): Promise<boolean> {
  const taken = await probe.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [key]);
  if (taken.rows[0]!.ok) await probe.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [key]);
  return taken.rows[0]!.ok;
}

test('the lock is released after the work, and after work that throws', async () => {
  assert.equal(await store.withKey('payment:visa:S1', async () => lockIsFree('payment:visa:S1')), false, 'held while the work runs');
  assert.equal(await lockIsFree('payment:visa:S1'), true);
  await assert.rejects(store.withKey('payment:visa:S1', async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await lockIsFree('payment:visa:S1'), true);
});

test('an open that fails after taking the lock leaves no pooled connection holding it', async () => {
  // The journal's table gone: points_open takes the lock, then fails reading it.
  await probe.query('ALTER TABLE point_commands RENAME TO point_commands_away');
  try {
    await assert.rejects(store.withKey('payment:visa:S2', async () => 'never'), /point_commands/);
  } finally {
    await probe.query('ALTER TABLE point_commands_away RENAME TO point_commands');
  }
  assert.equal(await lockIsFree('payment:visa:S2'), true, 'the session that took the lock is gone');
  assert.equal(await store.withKey('payment:visa:S2', async () => 'done'), 'done');
});
