// Goal: the set-based batch path (ledger_apply) and the one-by-one path (ledger_apply_one_by_one) give identical outcomes, rows and balances for the same random batches, applied in the serial order ledger_apply reports.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import pino from 'pino';
import { createPool, type Pool } from '../../../../platform/postgres/pool.ts';
import { createTestDatabase, type TestDatabase } from '../../../../../test/support/database.ts';
import { PostgresLedgerStore, migrateLedger } from './postgres-ledger-store.ts';

const RUNS = 60;
const BATCHES_MIN = 1;
const BATCHES_MAX = 10;
const BATCH_SIZE_MAX = 24;
const USERS = 3;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Holds without a deadline of their own time out after this (the service passes its default). */
const HOLD_TIMEOUT_MS = DAY_MS;
/** Adds this large reach the balance cap after nine of them (AMOUNT_MAX, the largest one transaction may move). */
const BIG_AMOUNT = 1_000_000_000_000_000;
const BALANCE_TYPE = 'points';
const START = Date.parse('2029-01-01T00:00:00.000Z');

/** Each user's lots at the start of a run: FEFO order differs from creation order, one lot expires in the first hour. */
const FUNDING_LOTS: Array<{ amount: number; expiresInMs?: number }> = [
  { amount: 150, expiresInMs: 2 * DAY_MS },
  { amount: 120, expiresInMs: HOUR_MS },
  { amount: 200 },
  { amount: 80, expiresInMs: 3 * DAY_MS },
];

type Operation = Record<string, unknown> & { kind: string };
type Outcome = Record<string, unknown> & { outcome: string };
type Side = { database: TestDatabase; pool: Pool; system: string };

const logger = pino({ level: 'silent' });
let setBased: Side;
let oneByOne: Side;

async function openSide(label: string): Promise<Side> {
  const database = await createTestDatabase(label);
  const pool = createPool({ url: database.url, size: 2, applicationName: `koban-test-${label}`, logger });
  await migrateLedger(pool, logger);
  await new PostgresLedgerStore(pool).ensureSystemAccounts([BALANCE_TYPE], new Date(START));
  const system = await pool.query<{ system: unknown }>(
    `SELECT jsonb_object_agg(balance_type, ids) AS system FROM (
       SELECT balance_type, jsonb_object_agg(owner_id, account_id) AS ids FROM accounts WHERE owner_kind = 'system' GROUP BY balance_type) per_type`,
  );
  return { database, pool, system: JSON.stringify(system.rows[0]!.system) };
}

before(async () => {
  [setBased, oneByOne] = await Promise.all([openSide('set_based'), openSide('one_by_one')]);
});
after(async () => {
  for (const side of [setBased, oneByOne]) {
    await side.pool.end();
    await side.database.drop();
  }
});

/** Everything stored for one run's users, with account ids named by their owner (keys are compared too). */
async function snapshot(side: Side, userPrefix: string, at: string): Promise<unknown> {
  const result = await side.pool.query<{ snapshot: unknown }>(
    `WITH owners AS (SELECT account_id, owner_kind || ':' || owner_id AS owner FROM accounts)
     SELECT jsonb_build_object(
       'accounts', (SELECT jsonb_agg(to_jsonb(a) - 'account_id' || jsonb_build_object('balance', ledger_balance(a, $2)) ORDER BY a.owner_id)
                      FROM accounts a WHERE a.owner_id LIKE $1),
       'transactions', (SELECT jsonb_agg(to_jsonb(t) - 'debit_account_id' - 'credit_account_id'
                                         || jsonb_build_object('debit', d.owner, 'credit', c.owner) ORDER BY t.transaction_pk)
                          FROM transactions t JOIN owners d ON d.account_id = t.debit_account_id JOIN owners c ON c.account_id = t.credit_account_id
                         WHERE t.user_id LIKE $1),
       'lots', (SELECT jsonb_agg(to_jsonb(l) - 'account_id' || jsonb_build_object('owner', o.owner) ORDER BY l.lot_id)
                  FROM lots l JOIN owners o USING (account_id) WHERE o.owner LIKE 'user:' || $1),
       'draws', (SELECT jsonb_agg(to_jsonb(d) ORDER BY d.draw_id)
                   FROM lot_draws d JOIN transactions t USING (transaction_pk) WHERE t.user_id LIKE $1),
       'returns', (SELECT jsonb_agg(to_jsonb(r) ORDER BY r.return_id)
                     FROM lot_returns r JOIN lot_draws d USING (draw_id) JOIN transactions t USING (transaction_pk) WHERE t.user_id LIKE $1)
     ) AS snapshot`,
    [`${userPrefix}%`, at],
  );
  return result.rows[0]!.snapshot;
}

async function accountIds(side: Side, userIds: string[]): Promise<Map<string, number>> {
  const result = await side.pool.query<{ owner_id: string; account_id: number }>(
    `SELECT owner_id, account_id FROM accounts WHERE owner_kind = 'user' AND owner_id = ANY($1) AND balance_type = $2`,
    [userIds, BALANCE_TYPE],
  );
  return new Map(result.rows.map((row) => [row.owner_id, row.account_id]));
}

/** Calls of the one-by-one functions counted in this session so far (track_functions = 'pl'; not yet flushed, so compare before and after). */
const ONE_BY_ONE_CALLS_SQL = `SELECT coalesce(pg_stat_get_xact_function_calls('ledger_create'::regproc), 0)::int AS creates,
                                     coalesce(pg_stat_get_xact_function_calls('ledger_resolve'::regproc), 0)::int AS resolutions`;
type Calls = { creates: number; resolutions: number };

/** Applies a batch set-wise; returns the outcomes by ordinal, the serial order reported, and how many went one by one. */
async function applySetBased(operations: Operation[]): Promise<{ outcomes: Outcome[]; order: number[]; oneByOne: Calls }> {
  const client = await setBased.pool.connect();
  try {
    await client.query(`SET track_functions = 'pl'`);
    await client.query('BEGIN');
    const callsBefore = await client.query<Calls>(ONE_BY_ONE_CALLS_SQL);
    const rows = await client.query<{ outcome: Outcome & { ordinal: number } }>('SELECT ledger_apply($1::jsonb, $2::jsonb) AS outcome', [
      JSON.stringify(operations),
      setBased.system,
    ]);
    const callsAfter = await client.query<Calls>(ONE_BY_ONE_CALLS_SQL);
    await client.query('COMMIT');
    const outcomes: Outcome[] = new Array(operations.length);
    const order = rows.rows.map(({ outcome: { ordinal, ...rest } }) => {
      outcomes[ordinal - 1] = rest;
      return ordinal;
    });
    return { outcomes, order, oneByOne: {
        creates: callsAfter.rows[0]!.creates - callsBefore.rows[0]!.creates,
        resolutions: callsAfter.rows[0]!.resolutions - callsBefore.rows[0]!.resolutions,
      },
    };
  } finally {
    client.release();
  }
}

/** Applies the batch's operations one by one, in the given serial order; returns the outcomes by the batch's ordinals. */
async function applyOneByOne(operations: Operation[], order: number[]): Promise<Outcome[]> {
  const rows = await oneByOne.pool.query<{ outcome: Outcome & { ordinal: number } }>('SELECT ledger_apply_one_by_one($1::jsonb, $2::jsonb) AS outcome', [
    JSON.stringify(order.map((ordinal) => operations[ordinal - 1])),
    oneByOne.system,
  ]);
  const outcomes: Outcome[] = new Array(operations.length);
  for (const { outcome: { ordinal, ...rest } } of rows.rows) outcomes[order[ordinal - 1]! - 1] = rest;
  return outcomes;
}

// Most operations on one user, so that batches carry several on the same account.
const user = fc.integer({ min: 0, max: USERS + 1 }).map((n) => (n < 3 ? 0 : n - 2));
const targets = fc.constantFrom('created' as const, 'created' as const, 'created' as const, 'batch' as const, 'any' as const);
const operation = fc.oneof(
  // expiresIn 0: expires_at equal to the batch's instant, refused as not in the future.
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('add' as const), user, amount: fc.integer({ min: 1, max: 60 }), expiresIn: fc.option(fc.constantFrom(0, HOUR_MS, DAY_MS), { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bigAdd' as const), user }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('consume' as const), user, amount: fc.integer({ min: 1, max: 45 }) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('hold' as const),
      type: fc.constantFrom('add' as const, 'consume' as const),
      user,
      amount: fc.integer({ min: 1, max: 40 }),
      deadlineIn: fc.option(fc.constantFrom(0, HOUR_MS, DAY_MS, 2 * DAY_MS), { nil: undefined }),
      expiresIn: fc.option(fc.constantFrom(HOUR_MS, DAY_MS), { nil: undefined }),
    }),
  },
  // Mostly holds created in earlier batches; sometimes one of this batch, or any transaction.
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('post' as const), target: fc.nat(), among: targets, amount: fc.option(fc.integer({ min: 1, max: 45 }), { nil: undefined }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('void' as const), target: fc.nat(), among: targets }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('refund' as const), target: fc.nat(), otherUser: fc.integer({ min: 0, max: 4 }).map((n) => n === 0), amount: fc.integer({ min: 1, max: 25 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('repeat' as const), target: fc.nat(), altered: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sweep' as const), user }) },
);
type Spec = typeof operation extends fc.Arbitrary<infer T> ? T : never;
const batch = fc.record({
  operations: fc.array(operation, { minLength: 1, maxLength: BATCH_SIZE_MAX }),
  // An hour exactly: lots and holds of an hour expire at the batch's instant itself.
  advanceMs: fc.constantFrom(0, 1, HOUR_MS, HOUR_MS, DAY_MS),
});

let run = 0;
/** Over every run: operations of each kind, how many of them took effect (created, resolved), and how many went one by one. */
const applied = { creates: 0, resolutions: 0 };
const tookEffect = { creates: 0, resolutions: 0 };
const appliedOneByOne = { creates: 0, resolutions: 0 };

test('random batches: set-based and one by one give the same outcomes, rows and balances', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(batch, { minLength: BATCHES_MIN, maxLength: BATCHES_MAX }), async (batches) => {
      run++;
      let now = START + run * 30 * DAY_MS;
      const prefix = `eq${run}-`;
      const users = Array.from({ length: USERS }, (_, index) => `${prefix}u${index}`);
      const creates: Operation[] = [];
      let counter = 0;
      const create = (fields: Record<string, unknown>): Operation => ({ kind: 'create', at: new Date(now).toISOString(), hold_timeout_ms: HOLD_TIMEOUT_MS, balance_type: BALANCE_TYPE, ...fields });

      const applyBoth = async (label: string, operations: Operation[], sweeps: Map<number, string>) => {
        // A sweep names an account id, which each database chose on its own.
        const [setIds, oneIds] = await Promise.all([accountIds(setBased, users), accountIds(oneByOne, users)]);
        const present = operations.filter((_, index) => !sweeps.has(index) || setIds.has(sweeps.get(index)!));
        const forSide = (ids: Map<string, number>): Operation[] =>
          present.map((op) => (op.kind === 'sweep' ? { kind: 'sweep', at: op.at, account_id: ids.get(op.user_id as string) } : op));
        const result = await applySetBased(forSide(setIds));
        const expected = await applyOneByOne(forSide(oneIds), result.order);
        assert.deepEqual([...result.order].sort((a, b) => a - b), present.map((_, index) => index + 1), `${label}: one outcome per operation`);
        applied.creates += present.filter((op) => op.kind === 'create').length;
        applied.resolutions += present.filter((op) => op.kind === 'post' || op.kind === 'void').length;
        appliedOneByOne.creates += result.oneByOne.creates;
        appliedOneByOne.resolutions += result.oneByOne.resolutions;
        tookEffect.creates += result.outcomes.filter((outcome) => outcome.outcome === 'created').length;
        tookEffect.resolutions += result.outcomes.filter((outcome) => outcome.outcome === 'resolved').length;
        for (const [index, op] of present.entries()) {
          assert.deepEqual(result.outcomes[index], expected[index], `${label}: outcome of ${JSON.stringify(op)} (serial order ${result.order.join(',')})`);
        }
        const at = new Date(now).toISOString();
        const [setState, oneState] = await Promise.all([snapshot(setBased, prefix, at), snapshot(oneByOne, prefix, at)]);
        assert.deepEqual(setState, oneState, `${label}: stored rows and balances after ${JSON.stringify(present)}`);
        for (const [index, outcome] of result.outcomes.entries()) {
          const op = present[index]!;
          if (op.kind === 'create' && outcome?.outcome === 'created') creates.push(op);
        }
      };

      await applyBoth(
        `run ${run} funding`,
        users.flatMap((userId, index) =>
          FUNDING_LOTS.map((lot, nth) =>
            create({
              transaction_id: `${prefix}fund${index}-${nth}`, type: 'add', user_id: userId, amount: lot.amount,
              ...(lot.expiresInMs === undefined ? {} : { expires_at: new Date(now + lot.expiresInMs).toISOString() }),
            }),
          ),
        ),
        new Map(),
      );

      for (const [batchIndex, current] of batches.entries()) {
        now += current.advanceMs;
        const operations: Operation[] = [];
        const sweeps = new Map<number, string>();
        const sent = () => [...creates, ...operations.filter((op) => op.kind === 'create')];
        const iso = (offsetMs: number) => new Date(now + offsetMs).toISOString();
        for (const spec of current.operations as Spec[]) {
          const id = `${prefix}t${counter++}`;
          switch (spec.kind) {
            case 'add':
              operations.push(create({ transaction_id: id, type: 'add', user_id: users[spec.user]!, amount: spec.amount, ...(spec.expiresIn === undefined ? {} : { expires_at: iso(spec.expiresIn) }) }));
              break;
            case 'bigAdd':
              operations.push(create({ transaction_id: id, type: 'add', user_id: users[spec.user]!, amount: BIG_AMOUNT }));
              break;
            case 'consume':
              operations.push(create({ transaction_id: id, type: 'consume', user_id: users[spec.user]!, amount: spec.amount }));
              break;
            case 'hold':
              operations.push(
                create({
                  transaction_id: id, type: spec.type, user_id: users[spec.user]!, amount: spec.amount, pending: true,
                  ...(spec.deadlineIn === undefined ? {} : { pending_expires_at: iso(spec.deadlineIn) }),
                  ...(spec.type === 'add' && spec.expiresIn !== undefined ? { expires_at: iso(spec.expiresIn) } : {}),
                }),
              );
              break;
            case 'post':
            case 'void': {
              const preferred = spec.among === 'any' ? sent() : (spec.among === 'created' ? creates : operations).filter((op) => op.pending === true);
              const candidates = preferred.length > 0 ? preferred : sent().filter((op) => op.pending === true);
              const target = candidates[spec.target % Math.max(candidates.length, 1)];
              operations.push({
                kind: spec.kind, at: iso(0), transaction_id: (target?.transaction_id as string | undefined) ?? `${prefix}none`, balance_type: BALANCE_TYPE,
                ...(spec.kind === 'post' && spec.amount !== undefined ? { amount: spec.amount } : {}),
              });
              break;
            }
            case 'refund': {
              const consumes = sent().filter((op) => op.type === 'consume');
              const consumed = consumes[spec.target % Math.max(consumes.length, 1)];
              const owner = (consumed?.user_id as string | undefined) ?? users[0]!;
              const userId = spec.otherUser ? users.find((candidate) => candidate !== owner)! : owner;
              operations.push(create({ transaction_id: id, type: 'refund', refund_of: (consumed?.transaction_id as string | undefined) ?? `${prefix}none`, user_id: userId, amount: spec.amount }));
              break;
            }
            case 'repeat': {
              const all = sent();
              const original = all[spec.target % Math.max(all.length, 1)];
              // A repeat is sent now: `at` is this batch's, the rest as first sent (or one field changed).
              if (original) operations.push({ ...original, at: iso(0), ...(spec.altered ? { amount: (original.amount as number) + 1 } : {}) });
              break;
            }
            case 'sweep':
              sweeps.set(operations.length, users[spec.user]!);
              operations.push({ kind: 'sweep', at: iso(0), user_id: users[spec.user]! });
              break;
          }
        }
        await applyBoth(`run ${run} batch ${batchIndex}`, operations, sweeps);
      }
    }),
    { numRuns: RUNS, endOnFailure: true },
  );
  // Otherwise this test would compare the one-by-one path with itself (or the set-based path with itself).
  for (const kind of ['creates', 'resolutions'] as const) {
    const setWise = applied[kind] - appliedOneByOne[kind];
    const context = `${kind}: ${applied[kind]} applied, ${tookEffect[kind]} took effect, ${setWise} set-wise`;
    assert.ok(setWise >= tookEffect[kind] / 4, context);
    assert.ok(appliedOneByOne[kind] >= tookEffect[kind] / 4, context);
  }
});
