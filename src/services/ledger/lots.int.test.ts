// Goal: time-limited balances — consumption draws soonest-expiring lots first (ties by creation order, then lots without expiry), value stops counting at expires_at exactly, the sweeper records expiry once, and refunds return value to the lots it came from.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Balance } from '../../contracts/ledger/types.ts';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

const clock = new ManualClock('2026-03-01T00:00:00.000Z');
let koban: TestKoban;

before(async () => {
  koban = await startTestKoban({ label: 'lots', clock, env: { KOBAN_SWEEP_INTERVAL_MS: '0' } });
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

type Json = Record<string, unknown>;
const create = (payload: Json) => koban.app.inject({ method: 'POST', url: '/v1/transactions', payload });
const inDays = (days: number) => new Date(clock.now().getTime() + days * 86_400_000).toISOString();
async function balance(user: string) {
  const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${user}/balances/points` });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Balance;
}
/** The whole points balance as the API returns it: every field written out, none taken from a read. */
function expected(user: string, figures: Omit<Balance, 'user_id' | 'balance_type'>): Balance {
  return { user_id: user, balance_type: 'points', ...figures };
}
async function add(id: string, user: string, amount: number, expiresAt?: string) {
  const response = await create({ transaction_id: id, type: 'add', user_id: user, balance_type: 'points', amount, ...(expiresAt ? { expires_at: expiresAt } : {}) });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}
async function consume(id: string, user: string, amount: number) {
  const response = await create({ transaction_id: id, type: 'consume', user_id: user, balance_type: 'points', amount });
  assert.equal(response.statusCode, 201, response.body);
  return response.json() as { lots: Array<{ source_transaction_id: string; amount: number; expires_at: string | null }>; balance_after: number };
}

describe('FEFO', () => {
  test('a consume draws soonest-expiring first, ties by creation order, permanent lots last, and says which', async () => {
    const far = inDays(30);
    const near = inDays(10);
    await add('perm-1', 'f1', 100);
    await add('far-1', 'f1', 50, far);
    await add('near-1', 'f1', 20, near);
    await add('near-2', 'f1', 20, near);
    const spent = await consume('f1-buy', 'f1', 70);
    assert.deepEqual(spent.lots, [
      { source_transaction_id: 'near-1', amount: 20, expires_at: near },
      { source_transaction_id: 'near-2', amount: 20, expires_at: near },
      { source_transaction_id: 'far-1', amount: 30, expires_at: far },
    ]);
    const more = await consume('f1-buy-2', 'f1', 40);
    assert.deepEqual(more.lots, [
      { source_transaction_id: 'far-1', amount: 20, expires_at: far },
      { source_transaction_id: 'perm-1', amount: 20, expires_at: null },
    ]);
    assert.deepEqual(await balance('f1'), expected('f1', { available: 80, posted: 80, pending_debit: 0, pending_credit: 0, expiring: [] }), 'only the permanent lot is left');
  });

  test('the balance lists upcoming expirations, soonest first, grouped by instant', async () => {
    const a = inDays(5);
    const b = inDays(9);
    await add('e-1', 'f2', 10, b);
    await add('e-2', 'f2', 7, a);
    await add('e-3', 'f2', 3, a);
    await add('e-4', 'f2', 100);
    assert.deepEqual(
      await balance('f2'),
      expected('f2', {
        available: 120,
        posted: 120,
        pending_debit: 0,
        pending_credit: 0,
        expiring: [
          { amount: 10, expires_at: a },
          { amount: 10, expires_at: b },
        ],
      }),
    );
  });
});

describe('expiry', () => {
  test('a lot stops counting at expires_at exactly; the sweeper then records one expire transaction, once', async () => {
    const at = inDays(1);
    await add('x-perm', 'x1', 5);
    await add('x-lot', 'x1', 60, at);
    await consume('x-buy', 'x1', 15);
    clock.set(new Date(Date.parse(at) - 1));
    assert.deepEqual(
      await balance('x1'),
      expected('x1', { available: 50, posted: 50, pending_debit: 0, pending_credit: 0, expiring: [{ amount: 45, expires_at: at }] }),
      'one millisecond before: still there (the consume drew the expiring lot first)',
    );
    clock.set(at);
    assert.deepEqual(await balance('x1'), expected('x1', { available: 5, posted: 5, pending_debit: 0, pending_credit: 0, expiring: [] }), 'at the instant: gone');
    const spend = await create({ transaction_id: 'x-too-much', type: 'consume', user_id: 'x1', balance_type: 'points', amount: 6 });
    assert.equal(spend.statusCode, 422, 'expired value cannot be spent even before the sweeper runs');
    assert.deepEqual((spend.json().error as Json).details, { available: 5, requested: 6 });

    // The refused consume locked the account and recorded the due expiry itself, so the sweeper has nothing left.
    assert.equal(await koban.ledger.sweep(), 0, 'the write already recorded the expiry');
    assert.equal(await koban.ledger.sweep(), 0, 'a second sweep finds nothing');
    const history = await koban.app.inject({ method: 'GET', url: '/v1/users/x1/transactions' });
    const expiries = history.json().data.filter((t: Json) => t.type === 'expire');
    assert.equal(expiries.length, 1);
    assert.equal(expiries[0].amount, 45);
    assert.deepEqual(expiries[0].lots, [{ source_transaction_id: 'x-lot', amount: 45, expires_at: at }]);
    assert.match(expiries[0].transaction_id, /^sys:expire:/);
    assert.deepEqual(await balance('x1'), expected('x1', { available: 5, posted: 5, pending_debit: 0, pending_credit: 0, expiring: [] }));
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test('the sweeper records expiries of accounts nobody touches, and is idempotent', async () => {
    const at = inDays(1);
    await add('w-lot-1', 'w1', 12, at);
    await add('w-lot-2', 'w2', 13, at);
    await add('w-hold-src', 'w3', 50);
    assert.equal((await create({ transaction_id: 'w-hold', type: 'consume', user_id: 'w3', balance_type: 'points', amount: 20, pending: true, pending_expires_at: at })).statusCode, 201);
    clock.set(at);
    assert.equal(await koban.ledger.sweep(), 3, 'two lots and one hold were due');
    assert.equal(await koban.ledger.sweep(), 0);
    for (const [user, amount] of [['w1', 12], ['w2', 13]] as const) {
      const history = await koban.app.inject({ method: 'GET', url: `/v1/users/${user}/transactions` });
      assert.deepEqual(history.json().data.filter((t: Json) => t.type === 'expire').map((t: Json) => t.amount), [amount]);
    }
    const hold = await koban.app.inject({ method: 'GET', url: '/v1/transactions/w-hold' });
    assert.equal(hold.json().data[0].status, 'expired');
    assert.deepEqual(await balance('w1'), expected('w1', { available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] }));
    assert.deepEqual(await balance('w2'), expected('w2', { available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] }));
    assert.deepEqual(await balance('w3'), expected('w3', { available: 50, posted: 50, pending_debit: 0, pending_credit: 0, expiring: [] }), 'the expired hold released its 20');
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test('a write on the account records the expiry itself, and the sweeper then has nothing to do', async () => {
    const at = inDays(1);
    await add('y-lot', 'y1', 30, at);
    clock.set(at);
    await add('y-more', 'y1', 1);
    assert.equal(await koban.ledger.sweep(), 0);
    const history = await koban.app.inject({ method: 'GET', url: '/v1/users/y1/transactions' });
    assert.deepEqual(history.json().data.filter((t: Json) => t.type === 'expire').map((t: Json) => t.amount), [30]);
    assert.deepEqual(await balance('y1'), expected('y1', { available: 1, posted: 1, pending_debit: 0, pending_credit: 0, expiring: [] }));
  });

  test('an add whose expires_at is not in the future is 400; a replay of it later still replays', async () => {
    const past = await create({ transaction_id: 'z-past', type: 'add', user_id: 'z1', balance_type: 'points', amount: 1, expires_at: clock.now().toISOString() });
    assert.equal(past.statusCode, 400);
    assert.equal(((past.json().error as Json).details as Json).field, 'expires_at');
    const soon = inDays(1);
    const first = await add('z-lot', 'z1', 9, soon);
    clock.set(inDays(2));
    const replay = await create({ transaction_id: 'z-lot', type: 'add', user_id: 'z1', balance_type: 'points', amount: 9, expires_at: soon });
    assert.equal(replay.statusCode, 200);
    assert.deepEqual(replay.json(), first);
    const other = await create({ transaction_id: 'z-lot', type: 'add', user_id: 'z1', balance_type: 'points', amount: 9, expires_at: inDays(3) });
    assert.equal(other.statusCode, 409, other.body);
    assert.equal((other.json().error as Json).code, 'idempotency_conflict');
    assert.deepEqual(((other.json().error as Json).details as Json).fields, ['expires_at']);
    const onConsume = await create({ transaction_id: 'z-c', type: 'consume', user_id: 'z1', balance_type: 'points', amount: 1, expires_at: inDays(3) });
    assert.equal(onConsume.statusCode, 400, onConsume.body);
    assert.equal(((onConsume.json().error as Json).details as Json).field, 'expires_at');
  });
});

describe('refunds', () => {
  test('posting part of a hold gives the rest back to the lots it drew, latest-expiring first', async () => {
    const near = inDays(10);
    const far = inDays(20);
    await add('p-near', 'p1', 30, near);
    await add('p-far', 'p1', 30, far);
    await add('p-perm', 'p1', 100);
    const hold = await create({ transaction_id: 'p-hold', type: 'consume', user_id: 'p1', balance_type: 'points', amount: 50, pending: true });
    assert.equal(hold.statusCode, 201, hold.body);
    assert.deepEqual(hold.json().lots, [
      { source_transaction_id: 'p-near', amount: 30, expires_at: near },
      { source_transaction_id: 'p-far', amount: 20, expires_at: far },
    ]);
    const posted = await koban.app.inject({ method: 'POST', url: '/v1/transactions/p-hold/post', payload: { balance_type: 'points', amount: 20 } });
    assert.equal(posted.statusCode, 201, posted.body);
    // 30 go back: 20 to p-far (later), then 10 to p-near; what stays consumed is what expires soonest.
    assert.deepEqual(posted.json().lots, [{ source_transaction_id: 'p-near', amount: 20, expires_at: near }]);
    assert.equal(posted.json().balance_after, 140);
    assert.deepEqual(
      await balance('p1'),
      expected('p1', {
        available: 140,
        posted: 140,
        pending_debit: 0,
        pending_credit: 0,
        expiring: [
          { amount: 10, expires_at: near },
          { amount: 30, expires_at: far },
        ],
      }),
    );
  });

  test('a refund returns value to the lots it came from, latest-expiring first, and never more than was consumed', async () => {
    const near = inDays(10);
    const far = inDays(20);
    await add('r-near', 'r1', 30, near);
    await add('r-far', 'r1', 30, far);
    await consume('r-buy', 'r1', 50);
    const refund = await create({ transaction_id: 'r-back-1', type: 'refund', refund_of: 'r-buy', user_id: 'r1', balance_type: 'points', amount: 25 });
    assert.equal(refund.statusCode, 201, refund.body);
    assert.equal(refund.json().refund_of, 'r-buy');
    assert.deepEqual(refund.json().lots, [
      { source_transaction_id: 'r-far', amount: 20, expires_at: far },
      { source_transaction_id: 'r-near', amount: 5, expires_at: near },
    ]);
    assert.equal(refund.json().balance_after, 35);
    assert.deepEqual(
      await balance('r1'),
      expected('r1', {
        available: 35,
        posted: 35,
        pending_debit: 0,
        pending_credit: 0,
        expiring: [
          { amount: 5, expires_at: near },
          { amount: 30, expires_at: far },
        ],
      }),
    );
    const tooMuch = await create({ transaction_id: 'r-back-2', type: 'refund', refund_of: 'r-buy', user_id: 'r1', balance_type: 'points', amount: 26 });
    assert.equal(tooMuch.statusCode, 422);
    assert.equal((tooMuch.json().error as Json).code, 'exceeds_refundable_amount');
    assert.equal(((tooMuch.json().error as Json).details as Json).refundable, 25);
    const rest = await create({ transaction_id: 'r-back-2', type: 'refund', refund_of: 'r-buy', user_id: 'r1', balance_type: 'points', amount: 25 });
    assert.equal(rest.statusCode, 201);
    assert.deepEqual(
      await balance('r1'),
      expected('r1', {
        available: 60,
        posted: 60,
        pending_debit: 0,
        pending_credit: 0,
        expiring: [
          { amount: 30, expires_at: near },
          { amount: 30, expires_at: far },
        ],
      }),
      'everything consumed is back in the lots it came from',
    );
  });

  test('value refunded into a lot that has expired expires again at once', async () => {
    const soon = inDays(1);
    await add('s-lot', 's1', 40, soon);
    await add('s-perm', 's1', 10);
    await consume('s-buy', 's1', 40);
    clock.set(inDays(2));
    const refund = await create({ transaction_id: 's-back', type: 'refund', refund_of: 's-buy', user_id: 's1', balance_type: 'points', amount: 40 });
    assert.equal(refund.statusCode, 201, refund.body);
    assert.equal(refund.json().balance_after, 10, 'the returned value was expired, so it is not available');
    assert.deepEqual(await balance('s1'), expected('s1', { available: 10, posted: 10, pending_debit: 0, pending_credit: 0, expiring: [] }));
    const history = await koban.app.inject({ method: 'GET', url: '/v1/users/s1/transactions' });
    const expiries = history.json().data.filter((t: Json) => t.type === 'expire');
    assert.deepEqual(expiries.map((t: Json) => [t.amount, t.lots]), [[40, [{ source_transaction_id: 's-lot', amount: 40, expires_at: soon }]]]);
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test('refund errors: unknown consume, not a consume, another user, a hold still pending', async () => {
    await add('t-fund', 't1', 100);
    assert.equal((await create({ transaction_id: 't-hold', type: 'consume', user_id: 't1', balance_type: 'points', amount: 10, pending: true })).statusCode, 201);
    const cases: Array<[Json, number, string]> = [
      [{ refund_of: 'nothing-here' }, 404, 'not_found'],
      [{ refund_of: 't-fund' }, 422, 'not_refundable'],
      [{ refund_of: 'r-buy' }, 422, 'not_refundable'],
      [{ refund_of: 't-hold' }, 422, 'exceeds_refundable_amount'],
    ];
    for (const [extra, status, code] of cases) {
      const response = await create({ transaction_id: `t-refund-${code}-${status}`, type: 'refund', user_id: 't1', balance_type: 'points', amount: 1, ...extra });
      assert.equal(response.statusCode, status, response.body);
      assert.equal((response.json().error as Json).code, code);
    }
    const missing = await create({ transaction_id: 't-refund-x', type: 'refund', user_id: 't1', balance_type: 'points', amount: 1 });
    assert.equal(missing.statusCode, 400, missing.body);
    assert.equal(((missing.json().error as Json).details as Json).field, 'refund_of');
    const pending = await create({ transaction_id: 't-refund-y', type: 'refund', refund_of: 't-fund', user_id: 't1', balance_type: 'points', amount: 1, pending: true });
    assert.equal(pending.statusCode, 400, pending.body);
    assert.equal(((pending.json().error as Json).details as Json).field, 'pending');
    assert.deepEqual(await balance('t1'), expected('t1', { available: 90, posted: 100, pending_debit: 10, pending_credit: 0, expiring: [] }), 'no refused refund changed anything');
    assert.equal((await koban.ledger.audit()).ok, true);
  });
});
