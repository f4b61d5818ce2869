// Goal: operations that commit together in one batch (group commit, applied set-wise where they can be) get the answers of one serial order of them — replaying the stored history in its own order through the reference model reproduces every answer, balance_after, lots drawn and balance — and a batch that read an account another process then changed is run again, not applied on stale figures.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { LedgerModel } from '../../../test/support/ledger-model.ts';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

const RUNS = 30;
const WAVES_MIN = 1;
const WAVES_MAX = 5;
const WAVE_SIZE_MAX = 24;
const USERS = 2;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const LOCK_WAIT_POLL_MS = 10;
const LOCK_WAIT_TIMEOUT_MS = 10_000;

/** Each user's lots at the start of a run: different expiries, so FEFO order differs from creation order. */
const FUNDING_LOTS: Array<{ amount: number; expiresInMs?: number }> = [
  { amount: 150, expiresInMs: 2 * DAY_MS },
  { amount: 120, expiresInMs: 2 * HOUR_MS },
  { amount: 200 },
  { amount: 80, expiresInMs: 3 * DAY_MS },
];

type Request = Record<string, unknown> & { transaction_id: string; type: 'add' | 'consume' | 'refund'; user_id: string; amount: number };
type Answer = { status: number; body: Record<string, unknown> & { balance_after?: number; lots?: unknown; error?: { code: string } } };

const clock = new ManualClock('2028-01-01T00:00:00.000Z');
let koban: TestKoban;
let sql: pg.Client;
before(async () => {
  koban = await startTestKoban({ label: 'batches', clock, env: { KOBAN_SWEEP_INTERVAL_MS: '0' } });
  sql = new pg.Client({ connectionString: koban.database.url });
  await sql.connect();
});
after(async () => {
  await sql.end();
  await koban.stop();
  await koban.database.drop();
});

const post = async (request: Request): Promise<Answer> => {
  const response = await koban.app.inject({ method: 'POST', url: '/v1/transactions', payload: request });
  return { status: response.statusCode, body: response.json() };
};

// Most operations on one user, so that batches carry several on the same account.
const user = fc.integer({ min: 0, max: 3 }).map((n) => (n === 0 ? 1 : 0));
const waveOperation = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('add' as const), user, amount: fc.integer({ min: 1, max: 60 }), expiresIn: fc.option(fc.constantFrom(HOUR_MS, DAY_MS), { nil: undefined }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('consume' as const), user, amount: fc.integer({ min: 1, max: 45 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('hold' as const), type: fc.constantFrom('add' as const, 'consume' as const), user, amount: fc.integer({ min: 1, max: 30 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('refund' as const), target: fc.nat(), amount: fc.integer({ min: 1, max: 25 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('repeat' as const), target: fc.nat(), altered: fc.boolean() }) },
);
const wave = fc.record({
  operations: fc.array(waveOperation, { minLength: 1, maxLength: WAVE_SIZE_MAX }),
  // Time passes between waves, so that lots expire and batches meet accounts with something due.
  advanceMs: fc.constantFrom(0, 0, HOUR_MS, DAY_MS),
});

let run = 0;
/** Over every run: consumes that committed in one batch with another consume of the same account (what the set-based path is for). */
let consumesSharingABatchAndAccount = 0;

describe('batches', () => {
  test('concurrent operations get the answers of the serial order their stored history shows', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(wave, { minLength: WAVES_MIN, maxLength: WAVES_MAX }), async (waves) => {
        run++;
        clock.advance(30 * DAY_MS);
        const model = new LedgerModel();
        const users = Array.from({ length: USERS }, (_, index) => `batch-${run}-u${index}`);
        const consumesCreated: Request[] = [];
        let counter = 0;
        // Funded with several lots first, so that most batches fit the balance and their consumes cross lots.
        for (const userId of users) {
          for (const [index, lot] of FUNDING_LOTS.entries()) {
            const request: Request = {
              transaction_id: `batch-${run}-${userId}-fund${index}`, type: 'add', user_id: userId, balance_type: 'points', amount: lot.amount,
              ...(lot.expiresInMs === undefined ? {} : { expires_at: new Date(clock.now().getTime() + lot.expiresInMs).toISOString() }),
            };
            assert.equal((await post(request)).status, 201);
            assert.equal(model.create(modelRequest(request), clock.now().getTime()).status, 201);
          }
        }

        for (const [waveIndex, current] of waves.entries()) {
          const label = `run ${run} wave ${waveIndex}`;
          const now = clock.now().getTime();
          const requests: Request[] = [];
          for (const operation of current.operations) {
            const id = `batch-${run}-t${counter++}`;
            switch (operation.kind) {
              case 'add':
                requests.push({
                  transaction_id: id, type: 'add', user_id: users[operation.user]!, balance_type: 'points', amount: operation.amount,
                  ...(operation.expiresIn === undefined ? {} : { expires_at: new Date(now + operation.expiresIn).toISOString() }),
                });
                break;
              case 'consume':
                requests.push({ transaction_id: id, type: 'consume', user_id: users[operation.user]!, balance_type: 'points', amount: operation.amount });
                break;
              case 'hold':
                requests.push({ transaction_id: id, type: operation.type, user_id: users[operation.user]!, balance_type: 'points', amount: operation.amount, pending: true });
                break;
              case 'refund': {
                const consumed = consumesCreated[operation.target % Math.max(consumesCreated.length, 1)];
                if (consumed) requests.push({ transaction_id: id, type: 'refund', refund_of: consumed.transaction_id, user_id: consumed.user_id, balance_type: 'points', amount: operation.amount });
                break;
              }
              case 'repeat': {
                const original = requests[operation.target % Math.max(requests.length, 1)];
                if (original) requests.push(operation.altered ? { ...original, amount: original.amount + 1 } : { ...original });
                break;
              }
            }
          }

          const answers = await Promise.all(requests.map(post));

          // The serial order the ledger chose is its transaction keys' order.
          const ids = [...new Set(requests.map((request) => request.transaction_id))];
          const stored = await sql.query<{ transaction_id: string; user_id: string; type: string; batch: string }>(
            `SELECT transaction_id, user_id, type, xmin::text AS batch FROM transactions WHERE transaction_id = ANY($1) AND balance_type = 'points' ORDER BY transaction_pk`,
            [ids],
          );
          const createdIndex = new Map<string, number>();
          answers.forEach((answer, index) => {
            if (answer.status === 201) {
              assert.ok(!createdIndex.has(requests[index]!.transaction_id), `${label}: two 201s for ${requests[index]!.transaction_id}`);
              createdIndex.set(requests[index]!.transaction_id, index);
            }
          });
          assert.deepEqual(stored.rows.map((row) => row.transaction_id).sort(), [...createdIndex.keys()].sort(), `${label}: rows stored = 201 answers`);

          const perBatchAndAccount = new Map<string, number>();
          for (const row of stored.rows.filter((candidate) => candidate.type === 'consume')) {
            const key = `${row.batch}/${row.user_id}`;
            perBatchAndAccount.set(key, (perBatchAndAccount.get(key) ?? 0) + 1);
          }
          for (const count of perBatchAndAccount.values()) if (count > 1) consumesSharingABatchAndAccount += count;

          // Replay the created ones in that order: each is accepted, with the same balance_after and lots.
          const availableSeen = new Map(users.map((userId) => [userId, [model.balance(userId, now).available]]));
          for (const { transaction_id: id } of stored.rows) {
            const index = createdIndex.get(id)!;
            const request = requests[index]!;
            const answer = answers[index]!;
            const expected = model.create(modelRequest(request), now);
            assert.equal(expected.status, 201, `${label}: the model refuses ${JSON.stringify(request)} at its place in the stored order`);
            const available = model.balance(request.user_id, now).available;
            availableSeen.get(request.user_id)!.push(available);
            assert.equal(answer.body.balance_after, available, `${label}: balance_after of ${JSON.stringify(request)}`);
            if (request.type === 'consume') assert.deepEqual(answer.body.lots, model.lotsDrawn(id), `${label}: lots drawn by ${id}`);
            if (request.type === 'consume' && request.pending !== true) consumesCreated.push(request);
          }

          // Every refusal is right at some place in that order.
          answers.forEach((answer, index) => {
            if (answer.status === 201) return;
            const request = requests[index]!;
            const context = `${label}: ${JSON.stringify(request)} → ${answer.status} ${JSON.stringify(answer.body)}`;
            const code = answer.body.error?.code;
            if (answer.status === 200) {
              assert.deepEqual(model.create(modelRequest(request), now), { status: 200, replayed: true }, context);
              assert.deepEqual(answer.body, answers[createdIndex.get(request.transaction_id)!]?.body, `${context}: a replay answers as the original did`);
            } else if (code === 'idempotency_conflict') {
              assert.equal(model.create(modelRequest(request), now).status, 409, context);
            } else if (code === 'insufficient_balance') {
              assert.equal(request.type, 'consume', context);
              assert.ok(availableSeen.get(request.user_id)!.some((available) => available < request.amount), `${context}: never short of ${request.amount}`);
            } else if (code === 'exceeds_refundable_amount') {
              // Within a wave refunds only lower what is refundable: refused somewhere means refused at the end.
              assert.equal(model.create(modelRequest(request), now).status, 422, context);
            } else {
              assert.fail(`${context}: unexpected answer`);
            }
          });

          for (const userId of users) {
            const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/points` });
            const { user_id: _user, balance_type: _type, ...actual } = response.json();
            assert.deepEqual(actual, model.balance(userId, now), `${label}: balance of ${userId}`);
          }
          const audit = await koban.ledger.audit();
          assert.equal(audit.ok, true, `${label}: audit ${JSON.stringify(audit)}`);
          clock.advance(current.advanceMs);
        }
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
    // Otherwise this test would pass without ever exercising what it is about.
    assert.ok(consumesSharingABatchAndAccount > 0, 'no batch ever carried two consumes of one account');
  });

  test('holds resolved together: each answer right, balances right, balance_after in one serial order', async () => {
    const userId = 'batch-resolver';
    assert.equal((await post({ transaction_id: 'resolver-fund', type: 'add', user_id: userId, balance_type: 'points', amount: 1_000 })).status, 201);
    type Hold = { id: string; type: 'add' | 'consume'; amount: number; action: 'post' | 'void'; postAmount?: number };
    const holds: Hold[] = Array.from({ length: 12 }, (_, index) => ({
      id: `resolver-hold-${index}`,
      type: index % 3 === 0 ? 'add' : 'consume',
      amount: 10 + 5 * index,
      action: index % 4 === 3 ? 'void' : 'post',
      ...(index % 2 === 1 ? { postAmount: 1 + index } : {}),
    }));
    for (const hold of holds) {
      const created = await post({ transaction_id: hold.id, type: hold.type, user_id: userId, balance_type: 'points', amount: hold.amount, pending: true });
      assert.equal(created.status, 201, JSON.stringify(created.body));
    }
    // Add holds 0, 3, 6, 9 (10 + 25 + 40 + 55 pending credit); the other eight are consume holds (320 pending debit).
    const before = (await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/points` })).json();
    assert.deepEqual(before, { user_id: userId, balance_type: 'points', available: 680, posted: 1_000, pending_debit: 320, pending_credit: 130, expiring: [] });

    const answers = await Promise.all(
      holds.map((hold) =>
        koban.app.inject({
          method: 'POST',
          url: `/v1/transactions/${hold.id}/${hold.action}`,
          payload: { balance_type: 'points', ...(hold.action === 'post' && hold.postAmount !== undefined ? { amount: hold.postAmount } : {}) },
        }),
      ),
    );
    const resolved = holds.map((hold, index) => {
      const answer = answers[index]!;
      assert.equal(answer.statusCode, 201, answer.body);
      const posted = hold.action === 'void' ? 0 : (hold.postAmount ?? hold.amount);
      assert.equal(answer.json().status, hold.action === 'void' ? 'voided' : 'posted');
      assert.equal(answer.json().posted_amount, posted);
      // What each gives back to the available balance: a consume hold its unposted part, an add hold what is posted.
      return { balanceAfter: answer.json().balance_after as number, released: hold.type === 'consume' ? hold.amount - posted : posted };
    });

    // Resolutions only raise the balance: in the order they were applied, each balance_after is the one before plus its own release.
    resolved.sort((a, b) => a.balanceAfter - b.balanceAfter || b.released - a.released);
    let available = before.available as number;
    for (const { balanceAfter, released } of resolved) {
      available += released;
      assert.equal(balanceAfter, available, JSON.stringify(resolved));
    }
    // Posted moves by what each post settled: up for an add hold, down for a consume hold.
    const posted = holds.reduce((sum, hold) => {
      const settled = hold.action === 'void' ? 0 : (hold.postAmount ?? hold.amount);
      return hold.type === 'add' ? sum + settled : sum - settled;
    }, 1_000);
    assert.equal(available, posted, 'with nothing pending, available is what is posted');
    const after = (await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/points` })).json();
    assert.deepEqual(after, { user_id: userId, balance_type: 'points', available, posted, pending_debit: 0, pending_credit: 0, expiring: [] });
    const batches = await sql.query<{ batches: string }>(`SELECT count(DISTINCT xmin::text)::text AS batches FROM transactions WHERE transaction_id LIKE 'resolver-hold-%'`);
    assert.ok(Number(batches.rows[0]!.batches) < holds.length, 'some resolutions shared a batch');
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test('a batch that read an account another process then changed is run again on the new figures', async () => {
    const userId = 'batch-contended';
    assert.equal((await post({ transaction_id: 'contended-add', type: 'add', user_id: userId, balance_type: 'points', amount: 100 })).status, 201);

    // Another process consumes 50 in a transaction it has not committed yet; this one reads the
    // account as it was (100), then waits for the other's row lock.
    const answer = await raceAnotherProcess({ transaction_id: 'contended-other', type: 'consume', user_id: userId, amount: 50 }, () =>
      post({ transaction_id: 'contended-consume', type: 'consume', user_id: userId, balance_type: 'points', amount: 30 }),
    );
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    assert.equal(answer.body.balance_after, 20, 'figured on the balance after the other process committed, not on what it first read');
    const balance = (await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/points` })).json();
    assert.deepEqual(balance, { user_id: userId, balance_type: 'points', available: 20, posted: 20, pending_debit: 0, pending_credit: 0, expiring: [] });
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test('a post that read an account another process then changed is run again on the new figures', async () => {
    const userId = 'batch-resolve-race';
    assert.equal((await post({ transaction_id: 'resolve-race-fund', type: 'add', user_id: userId, balance_type: 'points', amount: 100 })).status, 201);
    for (const [id, amount] of [['resolve-race-1', 30], ['resolve-race-2', 20]] as const) {
      assert.equal((await post({ transaction_id: id, type: 'consume', user_id: userId, balance_type: 'points', amount, pending: true })).status, 201);
    }
    // Another process voids the first hold (available 50 → 80) while this one posts the second.
    const answer = await raceAnotherProcess({ kind: 'void', transaction_id: 'resolve-race-1' }, () =>
      koban.app.inject({ method: 'POST', url: '/v1/transactions/resolve-race-2/post', payload: { balance_type: 'points' } }),
    );
    assert.equal(answer.statusCode, 201, answer.body);
    assert.equal(answer.json().balance_after, 80, 'figured after the other void, not on what it first read');
    const balance = (await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/points` })).json();
    assert.deepEqual(balance, { user_id: userId, balance_type: 'points', available: 80, posted: 80, pending_debit: 0, pending_credit: 0, expiring: [] });
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test("a user's first add, racing another process's first add for the same user, is run again on the account it created", async () => {
    const userId = 'batch-newcomer';
    // This one finds no account either, and waits on the other's new row.
    const answer = await raceAnotherProcess({ transaction_id: 'newcomer-other', type: 'add', user_id: userId, amount: 40 }, () =>
      post({ transaction_id: 'newcomer-add', type: 'add', user_id: userId, balance_type: 'points', amount: 2 }),
    );
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    assert.equal(answer.body.balance_after, 42, 'added to the account the other process created');
    const accounts = await sql.query(`SELECT 1 FROM accounts WHERE owner_kind = 'user' AND owner_id = $1`, [userId]);
    assert.equal(accounts.rowCount, 1);
    const balance = (await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/points` })).json();
    assert.deepEqual(balance, { user_id: userId, balance_type: 'points', available: 42, posted: 42, pending_debit: 0, pending_credit: 0, expiring: [] });
    assert.equal((await koban.ledger.audit()).ok, true);
  });
});

function modelRequest(request: Request) {
  return {
    transaction_id: request.transaction_id,
    type: request.type,
    user_id: request.user_id,
    amount: request.amount,
    ...(request.pending === true ? { pending: true } : {}),
    ...(typeof request.expires_at === 'string' ? { expires_at: Date.parse(request.expires_at) } : {}),
    ...(typeof request.refund_of === 'string' ? { refund_of: request.refund_of } : {}),
  };
}

/**
 * Another process applies `operation` (a points create unless it says otherwise) in a transaction
 * it keeps open while `contender` starts and comes to wait on it; then it commits.
 */
async function raceAnotherProcess<T>(operation: Record<string, unknown>, contender: () => Promise<T>): Promise<T> {
  const otherProcess = new pg.Client({ connectionString: koban.database.url });
  await otherProcess.connect();
  try {
    await otherProcess.query('BEGIN');
    await otherProcess.query(
      `SELECT ledger_apply($1::jsonb, (SELECT jsonb_object_agg(balance_type, ids) FROM (
         SELECT balance_type, jsonb_object_agg(owner_id, account_id) AS ids FROM accounts WHERE owner_kind = 'system' GROUP BY balance_type) per_type))`,
      [JSON.stringify([{ kind: 'create', at: clock.now().toISOString(), hold_timeout_ms: DAY_MS, balance_type: 'points', ...operation }])],
    );
    const contending = contender();
    await waitForLockWait();
    await otherProcess.query('COMMIT');
    return await contending;
  } finally {
    await otherProcess.end();
  }
}

async function waitForLockWait(): Promise<void> {
  const deadline = Date.now() + LOCK_WAIT_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const waiting = await sql.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    if (waiting.rowCount! > 0) return;
    await new Promise((resolve) => setTimeout(resolve, LOCK_WAIT_POLL_MS));
  }
  assert.fail('the ledger never waited for the account row');
}
