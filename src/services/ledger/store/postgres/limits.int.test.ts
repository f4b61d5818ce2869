// Goal: the limits the SQL enforces are the named constants of domain/limits.ts — the same values, and used where they apply.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { createPool, type Pool } from '../../../../platform/postgres/pool.ts';
import { createTestDatabase, type TestDatabase } from '../../../../../test/support/database.ts';
import type { TransactionRequest } from '../../../../contracts/ledger/types.ts';
import type { LedgerOperation } from '../ledger-store.ts';
import { BALANCE_MAX, DEBT_MAX, EXPIRING_LISTED_MAX, SYSTEM_TRANSACTION_ID_PREFIX } from '../../domain/limits.ts';
import { PostgresLedgerStore, migrateLedger } from './postgres-ledger-store.ts';

const AT = '2030-01-01T00:00:00.000Z';
const DAY_MS = 86_400_000;

const logger = pino({ level: 'silent' });
let database: TestDatabase;
let pool: Pool;
let store: PostgresLedgerStore;

before(async () => {
  database = await createTestDatabase('limits');
  pool = createPool({ url: database.url, size: 2, applicationName: 'koban-test-limits', logger });
  await migrateLedger(pool, logger);
  store = new PostgresLedgerStore(pool);
  await store.ensureSystemAccounts(['points'], new Date(AT));
});
after(async () => {
  await pool.end();
  await database.drop();
});

const create = (fields: Omit<TransactionRequest, 'balance_type'>, at = AT): LedgerOperation => ({ kind: 'create', at: new Date(at), hold_timeout_ms: DAY_MS, balance_type: 'points', ...fields });

test('the SQL constants are the TypeScript ones', async () => {
  const result = await pool.query<{ balance_max: number; debt_max: number; expiring_listed_max: number; prefix: string }>(
    'SELECT ledger_balance_max() AS balance_max, ledger_debt_max() AS debt_max, ledger_expiring_listed_max() AS expiring_listed_max, ledger_system_transaction_id_prefix() AS prefix',
  );
  assert.deepEqual(result.rows[0], { balance_max: BALANCE_MAX, debt_max: DEBT_MAX, expiring_listed_max: EXPIRING_LISTED_MAX, prefix: SYSTEM_TRANSACTION_ID_PREFIX });
});

test('a stored available balance may reach −DEBT_MAX and not pass it', async () => {
  await pool.query(
    `INSERT INTO accounts (owner_kind, owner_id, balance_type, posted, pending_debit, pending_credit, created_at, updated_at)
     VALUES ('user', 'limits-debt', 'points', 0, 0, 0, $1, $1)`,
    [AT],
  );
  const setBalances = (posted: bigint, pendingDebit: bigint) =>
    pool.query(`UPDATE accounts SET posted = $1, pending_debit = $2 WHERE owner_id = 'limits-debt'`, [String(posted), String(pendingDebit)]);
  await setBalances(-BigInt(DEBT_MAX), 0n);
  await setBalances(-BigInt(DEBT_MAX) + 5n, 5n);
  await setBalances(5n, BigInt(DEBT_MAX) + 5n);
  await assert.rejects(setBalances(-BigInt(DEBT_MAX) - 1n, 0n), { code: '23514' });
  await assert.rejects(setBalances(5n, BigInt(DEBT_MAX) + 6n), { code: '23514' });
});

test('a stored balance may reach BALANCE_MAX and not pass it', async () => {
  await pool.query(
    `INSERT INTO accounts (owner_kind, owner_id, balance_type, posted, pending_debit, pending_credit, created_at, updated_at)
     VALUES ('user', 'limits-cap', 'points', 0, 0, 0, $1, $1)`,
    [AT],
  );
  const setBalances = (posted: bigint, pendingCredit: bigint) =>
    pool.query(`UPDATE accounts SET posted = $1, pending_credit = $2 WHERE owner_id = 'limits-cap'`, [String(posted), String(pendingCredit)]);
  await setBalances(BigInt(BALANCE_MAX), 0n);
  await setBalances(BigInt(BALANCE_MAX) - 5n, 5n);
  await assert.rejects(setBalances(BigInt(BALANCE_MAX) + 1n, 0n), { code: '23514' });
  await assert.rejects(setBalances(BigInt(BALANCE_MAX) - 5n, 6n), { code: '23514' });
});

test('a balance lists EXPIRING_LISTED_MAX upcoming expirations; expiries are named with SYSTEM_TRANSACTION_ID_PREFIX', async () => {
  const lots = Array.from({ length: EXPIRING_LISTED_MAX + 3 }, (_, index) =>
    create({ transaction_id: `limits-lot-${index}`, type: 'add', user_id: 'limits-expiring', amount: 1, expires_at: new Date(Date.parse(AT) + (index + 1) * DAY_MS).toISOString() }),
  );
  const outcomes = await store.applyBatch(lots);
  assert.deepEqual(new Set(outcomes.map((outcome) => outcome.outcome)), new Set(['created']));
  const [balance] = await store.findBalances('limits-expiring', ['points'], new Date(AT));
  assert.equal(balance!.expiring.length, EXPIRING_LISTED_MAX);

  const later = new Date(Date.parse(AT) + 1.5 * DAY_MS);
  await store.applyBatch([create({ transaction_id: 'limits-after-expiry', type: 'consume', user_id: 'limits-expiring', amount: 1 }, later.toISOString())]);
  const expiries = await pool.query<{ transaction_id: string }>(`SELECT transaction_id FROM transactions WHERE type = 'expire' AND user_id = 'limits-expiring'`);
  assert.equal(expiries.rows.length, 1);
  assert.ok(expiries.rows[0]!.transaction_id.startsWith(SYSTEM_TRANSACTION_ID_PREFIX), expiries.rows[0]!.transaction_id);
});
