// Goal: the append-only triggers let a hold be resolved once and a lot's remaining change, and refuse any other column changed alongside.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { createPool, type Pool } from '../../../../platform/postgres/pool.ts';
import { createTestDatabase, type TestDatabase } from '../../../../../test/support/database.ts';
import { PostgresLedgerStore, migrateLedger } from './postgres-ledger-store.ts';

const AT = new Date('2030-01-01T00:00:00.000Z');
const DAY_MS = 86_400_000;

const logger = pino({ level: 'silent' });
let database: TestDatabase;
let pool: Pool;

before(async () => {
  database = await createTestDatabase('append_only');
  pool = createPool({ url: database.url, size: 2, applicationName: 'koban-test-append-only', logger });
  await migrateLedger(pool, logger);
  const store = new PostgresLedgerStore(pool);
  await store.ensureSystemAccounts(['points'], AT);
  const outcomes = await store.applyBatch([
    { kind: 'create', at: AT, hold_timeout_ms: DAY_MS, transaction_id: 'ao-fund', type: 'add', user_id: 'ao', balance_type: 'points', amount: 10 },
    { kind: 'create', at: AT, hold_timeout_ms: DAY_MS, transaction_id: 'ao-hold', type: 'add', user_id: 'ao', balance_type: 'points', amount: 5, pending: true },
  ]);
  assert.deepEqual(outcomes.map((outcome) => outcome.outcome), ['created', 'created']);
});
after(async () => {
  await pool.end();
  await database.drop();
});

/** Runs a statement in a transaction rolled back afterwards, so each case starts from the same rows. */
async function attempt(statement: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(statement);
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

const resolve = `status = 'voided', posted_amount = 0, resolved_at = now(), resolved_balance_after = 10`;

test('a pending hold may be resolved, and nothing else of it changed at the same time', async () => {
  await attempt(`UPDATE transactions SET ${resolve} WHERE transaction_id = 'ao-hold'`);
  for (const change of ['amount = amount + 1', "description = 'changed'", `metadata = '{"a": 1}'`, 'balance_after = balance_after + 1', "created_at = created_at + interval '1 s'"]) {
    await assert.rejects(attempt(`UPDATE transactions SET ${resolve}, ${change} WHERE transaction_id = 'ao-hold'`), /append-only/, change);
  }
});

test("only a lot's remaining may change", async () => {
  await attempt(`UPDATE lots SET remaining = remaining - 1 WHERE source_transaction_id = 'ao-fund'`);
  for (const change of ['amount = amount + 1', "expires_at = now()", "source_transaction_id = 'other'"]) {
    await assert.rejects(attempt(`UPDATE lots SET remaining = remaining - 1, ${change} WHERE source_transaction_id = 'ao-fund'`), /append-only/, change);
  }
});
