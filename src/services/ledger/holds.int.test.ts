// Goal: holds (pending add/consume) resolve at most once — posted in full or in part, voided, or expired at their deadline exactly — with every error of the contract, and balances that show pending amounts without letting them be spent.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Balance } from '../../contracts/ledger/types.ts';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

const START = '2026-01-01T00:00:00.000Z';
const clock = new ManualClock(START);
let koban: TestKoban;

before(async () => {
  koban = await startTestKoban({ label: 'holds', clock, env: { KOBAN_SWEEP_INTERVAL_MS: '0' } });
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

type Json = Record<string, unknown>;
const create = (payload: Json) => koban.app.inject({ method: 'POST', url: '/v1/transactions', payload });
const post = (id: string, payload: Json) => koban.app.inject({ method: 'POST', url: `/v1/transactions/${id}/post`, payload });
const voidHold = (id: string, payload: Json) => koban.app.inject({ method: 'POST', url: `/v1/transactions/${id}/void`, payload });
async function balance(user: string, type = 'cash') {
  const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${user}/balances/${type}` });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Balance;
}
/** The whole balance as the API returns it: every field written out, none taken from a read. */
function expected(user: string, type: string, figures: { available: number; posted: number; pending_debit: number; pending_credit: number }): Balance {
  return { user_id: user, balance_type: type, ...figures, expiring: [] };
}
async function fund(user: string, amount: number, type = 'cash') {
  const response = await create({ transaction_id: `fund-${user}-${amount}-${type}`, type: 'add', user_id: user, balance_type: type, amount });
  assert.equal(response.statusCode, 201, response.body);
}
const errorCode = (response: { json(): Json }) => (response.json().error as Json).code;

describe('pending consume (a hold on cash)', () => {
  test('reserves the amount: available drops, posted does not', async () => {
    await fund('h1', 1000);
    const hold = await create({ transaction_id: 'auth-1', type: 'consume', user_id: 'h1', balance_type: 'cash', amount: 300, pending: true });
    assert.equal(hold.statusCode, 201, hold.body);
    const body = hold.json();
    assert.equal(body.status, 'pending');
    assert.equal(body.pending, true);
    assert.equal(body.posted_amount, null);
    assert.equal(body.balance_after, 700);
    assert.equal(body.pending_expires_at, new Date(Date.parse(START) + 7 * 86_400_000).toISOString(), 'default deadline is 7 days');
    assert.deepEqual(await balance('h1'), expected('h1', 'cash', { available: 700, posted: 1000, pending_debit: 300, pending_credit: 0 }));
  });

  test('a reserved amount cannot be spent twice', async () => {
    const spend = await create({ transaction_id: 'h1-spend', type: 'consume', user_id: 'h1', balance_type: 'cash', amount: 701 });
    assert.equal(spend.statusCode, 422);
    assert.equal(errorCode(spend), 'insufficient_balance');
  });

  test('posting part releases the rest; a repeat replays; another amount conflicts; void after post is refused', async () => {
    const posted = await post('auth-1', { balance_type: 'cash', amount: 250 });
    assert.equal(posted.statusCode, 201, posted.body);
    assert.equal(posted.json().status, 'posted');
    assert.equal(posted.json().posted_amount, 250);
    assert.equal(posted.json().balance_after, 750);
    assert.equal(posted.json().resolved_at, START);
    assert.deepEqual(await balance('h1'), expected('h1', 'cash', { available: 750, posted: 750, pending_debit: 0, pending_credit: 0 }));

    const again = await post('auth-1', { balance_type: 'cash', amount: 250 });
    assert.equal(again.statusCode, 200);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body, posted.body);

    const different = await post('auth-1', { balance_type: 'cash', amount: 260 });
    assert.equal(different.statusCode, 409);
    assert.equal(errorCode(different), 'idempotency_conflict');
    assert.deepEqual((different.json().error as Json).details, { transaction_id: 'auth-1', balance_type: 'cash', fields: ['amount'], posted_amount: 250 });

    const full = await post('auth-1', { balance_type: 'cash' });
    assert.equal(full.statusCode, 409, 'omitting amount means the whole hold, which differs from what was posted');

    const voided = await voidHold('auth-1', { balance_type: 'cash' });
    assert.equal(voided.statusCode, 409);
    assert.equal(errorCode(voided), 'pending_already_posted');
    assert.deepEqual(await balance('h1'), expected('h1', 'cash', { available: 750, posted: 750, pending_debit: 0, pending_credit: 0 }), 'the refused requests changed nothing');
  });

  test('replaying the creating request after the post returns the original pending response', async () => {
    const replay = await create({ transaction_id: 'auth-1', type: 'consume', user_id: 'h1', balance_type: 'cash', amount: 300, pending: true });
    assert.equal(replay.statusCode, 200);
    assert.equal(replay.json().status, 'pending');
    assert.equal(replay.json().balance_after, 700);
    const current = await koban.app.inject({ method: 'GET', url: '/v1/transactions/auth-1' });
    assert.equal(current.json().data[0].status, 'posted', 'a read shows where it stands now');
  });

  test('void releases everything; post after void is refused; void replays', async () => {
    assert.equal((await create({ transaction_id: 'auth-2', type: 'consume', user_id: 'h1', balance_type: 'cash', amount: 100, pending: true })).statusCode, 201);
    assert.deepEqual(await balance('h1'), expected('h1', 'cash', { available: 650, posted: 750, pending_debit: 100, pending_credit: 0 }));
    const voided = await voidHold('auth-2', { balance_type: 'cash' });
    assert.equal(voided.statusCode, 201);
    assert.equal(voided.json().status, 'voided');
    assert.equal(voided.json().posted_amount, 0);
    assert.equal(voided.json().balance_after, 750);
    assert.deepEqual(await balance('h1'), expected('h1', 'cash', { available: 750, posted: 750, pending_debit: 0, pending_credit: 0 }));
    const again = await voidHold('auth-2', { balance_type: 'cash' });
    assert.equal(again.statusCode, 200);
    assert.equal(again.body, voided.body);
    const posted = await post('auth-2', { balance_type: 'cash' });
    assert.equal(posted.statusCode, 409);
    assert.equal(errorCode(posted), 'pending_already_voided');
    assert.deepEqual(await balance('h1'), expected('h1', 'cash', { available: 750, posted: 750, pending_debit: 0, pending_credit: 0 }), 'the refused post changed nothing');
  });

  test('posting more than the hold is 422 exceeds_pending_amount and changes nothing', async () => {
    assert.equal((await create({ transaction_id: 'auth-3', type: 'consume', user_id: 'h1', balance_type: 'cash', amount: 50, pending: true })).statusCode, 201);
    const over = await post('auth-3', { balance_type: 'cash', amount: 51 });
    assert.equal(over.statusCode, 422);
    assert.equal(errorCode(over), 'exceeds_pending_amount');
    assert.equal(((over.json().error as Json).details as Json).pending_amount, 50);
    assert.deepEqual(await balance('h1'), expected('h1', 'cash', { available: 700, posted: 750, pending_debit: 50, pending_credit: 0 }), 'the refused post changed nothing');
    const posted = await post('auth-3', { balance_type: 'cash', amount: 50 });
    assert.equal(posted.statusCode, 201, 'the hold is still postable');
    assert.equal(posted.json().posted_amount, 50);
    assert.deepEqual(await balance('h1'), expected('h1', 'cash', { available: 700, posted: 700, pending_debit: 0, pending_credit: 0 }), 'posting all of it moves it from pending to posted');
  });

  test('post or void of a transaction that is not a hold is 409 not_pending; of an unknown one, 404', async () => {
    assert.equal(errorCode(await post('fund-h1-1000-cash', { balance_type: 'cash' })), 'not_pending');
    assert.equal(errorCode(await voidHold('fund-h1-1000-cash', { balance_type: 'cash' })), 'not_pending');
    const unknown = await post('no-such-hold', { balance_type: 'cash' });
    assert.equal(unknown.statusCode, 404);
    assert.equal(errorCode(unknown), 'not_found');
    assert.equal((await post('auth-1', { balance_type: 'points' })).statusCode, 404, 'the hold is under cash, not points');
  });

  test('concurrent post and void of one hold: exactly one wins', async () => {
    await fund('h2', 500);
    let postsWon = 0;
    for (let round = 0; round < 10; round++) {
      const id = `race-hold-${round}`;
      assert.equal((await create({ transaction_id: id, type: 'consume', user_id: 'h2', balance_type: 'cash', amount: 10, pending: true })).statusCode, 201);
      const [posted, voided] = await Promise.all([post(id, { balance_type: 'cash' }), voidHold(id, { balance_type: 'cash' })]);
      const statuses = [posted.statusCode, voided.statusCode].sort();
      assert.deepEqual(statuses, [201, 409], `${posted.body} / ${voided.body}`);
      const loser = posted.statusCode === 409 ? posted : voided;
      assert.equal(errorCode(loser), posted.statusCode === 409 ? 'pending_already_voided' : 'pending_already_posted', 'the loser names the winner');
      if (posted.statusCode === 201) postsWon++;
    }
    // Each won post spent its 10; each won void gave it back.
    const left = 500 - 10 * postsWon;
    assert.deepEqual(await balance('h2'), expected('h2', 'cash', { available: left, posted: left, pending_debit: 0, pending_credit: 0 }));
  });
});

describe('a hold created through another process', () => {
  test('is posted and voided by one that never saw it', async () => {
    // This process routes post and void by the hold's user, which it remembers
    // for holds it created; the other's it looks up.
    const other = await startTestKoban({ label: 'holds-other', clock, database: koban.database, env: { KOBAN_SWEEP_INTERVAL_MS: '0' } });
    try {
      await fund('h9', 300);
      for (const id of ['elsewhere-1', 'elsewhere-2']) {
        const created = await other.app.inject({ method: 'POST', url: '/v1/transactions', payload: { transaction_id: id, type: 'consume', user_id: 'h9', balance_type: 'cash', amount: 100, pending: true } });
        assert.equal(created.statusCode, 201, created.body);
      }
      const posted = await post('elsewhere-1', { balance_type: 'cash', amount: 40 });
      assert.equal(posted.statusCode, 201, posted.body);
      assert.equal(posted.json().posted_amount, 40);
      assert.equal((await voidHold('elsewhere-2', { balance_type: 'cash' })).statusCode, 201);
      assert.deepEqual(await balance('h9'), expected('h9', 'cash', { available: 260, posted: 260, pending_debit: 0, pending_credit: 0 }));
    } finally {
      await other.stop();
    }
  });
});

describe('pending add (points to be earned)', () => {
  test('is visible as pending_credit, not spendable, and becomes spendable when posted', async () => {
    const hold = await create({ transaction_id: 'earn-1', type: 'add', user_id: 'p1', balance_type: 'points', amount: 40, pending: true });
    assert.equal(hold.statusCode, 201);
    assert.deepEqual(await balance('p1', 'points'), expected('p1', 'points', { available: 0, posted: 0, pending_debit: 0, pending_credit: 40 }));
    const spend = await create({ transaction_id: 'p1-spend', type: 'consume', user_id: 'p1', balance_type: 'points', amount: 1 });
    assert.equal(errorCode(spend), 'insufficient_balance');
    const posted = await post('earn-1', { balance_type: 'points', amount: 35 });
    assert.equal(posted.statusCode, 201);
    assert.deepEqual(await balance('p1', 'points'), expected('p1', 'points', { available: 35, posted: 35, pending_debit: 0, pending_credit: 0 }), 'the 5 not posted are not earned');
  });
});

describe('hold deadlines', () => {
  test('an expired hold behaves as voided from its deadline on, before and after the sweeper runs', async () => {
    await fund('h3', 100);
    await fund('h4', 100);
    const deadline = new Date(Date.parse(clock.now().toISOString()) + 60_000).toISOString();
    const hold = await create({ transaction_id: 'auth-exp', type: 'consume', user_id: 'h3', balance_type: 'cash', amount: 80, pending: true, pending_expires_at: deadline });
    assert.equal(hold.statusCode, 201);
    assert.equal(hold.json().pending_expires_at, deadline);
    // A second hold with the same deadline that nothing touches: only the sweeper records its expiry.
    const idle = await create({ transaction_id: 'auth-exp-idle', type: 'consume', user_id: 'h4', balance_type: 'cash', amount: 30, pending: true, pending_expires_at: deadline });
    assert.equal(idle.statusCode, 201);

    clock.advance(59_999);
    assert.deepEqual(await balance('h3'), expected('h3', 'cash', { available: 20, posted: 100, pending_debit: 80, pending_credit: 0 }), 'still held one millisecond before');
    assert.equal(await koban.ledger.sweep(), 0, 'nothing is due one millisecond before');
    clock.advance(1);
    assert.deepEqual(await balance('h3'), expected('h3', 'cash', { available: 100, posted: 100, pending_debit: 0, pending_credit: 0 }), 'released at the deadline exactly');
    assert.deepEqual(await balance('h4'), expected('h4', 'cash', { available: 100, posted: 100, pending_debit: 0, pending_credit: 0 }), 'released before the sweeper runs');
    const view = await koban.app.inject({ method: 'GET', url: '/v1/transactions/auth-exp' });
    assert.equal(view.json().data[0].status, 'expired');

    // A post or void of the expired hold is refused; the write locks h3's account and records its expiry itself.
    const posted = await post('auth-exp', { balance_type: 'cash' });
    assert.equal(posted.statusCode, 409);
    assert.equal(errorCode(posted), 'pending_expired');
    assert.deepEqual((posted.json().error as Json).details, { transaction_id: 'auth-exp', balance_type: 'cash', pending_expires_at: deadline });
    assert.equal(errorCode(await voidHold('auth-exp', { balance_type: 'cash' })), 'pending_expired');

    assert.equal(await koban.ledger.sweep(), 1, "only h4's account was still due: h3's was swept by the refused post");
    assert.equal(await koban.ledger.sweep(), 0, 'a second sweep finds nothing');
    assert.deepEqual(await balance('h3'), expected('h3', 'cash', { available: 100, posted: 100, pending_debit: 0, pending_credit: 0 }));
    assert.deepEqual(await balance('h4'), expected('h4', 'cash', { available: 100, posted: 100, pending_debit: 0, pending_credit: 0 }));
    for (const id of ['auth-exp', 'auth-exp-idle']) {
      const stored = (await koban.app.inject({ method: 'GET', url: `/v1/transactions/${id}` })).json().data[0];
      assert.deepEqual({ status: stored.status, posted_amount: stored.posted_amount, resolved_at: stored.resolved_at }, { status: 'expired', posted_amount: 0, resolved_at: deadline }, id);
    }
    assert.equal(errorCode(await post('auth-exp', { balance_type: 'cash' })), 'pending_expired');
    assert.equal(errorCode(await voidHold('auth-exp-idle', { balance_type: 'cash' })), 'pending_expired');
    const audit = await koban.ledger.audit();
    assert.equal(audit.ok, true, JSON.stringify(audit));
  });

  test('bad hold requests are 400 naming the field', async () => {
    const cases: Array<[Json, string]> = [
      [{ transaction_id: 'bad-h1', type: 'consume', user_id: 'h3', balance_type: 'cash', amount: 1, pending: true, pending_expires_at: '2020-01-01T00:00:00Z' }, 'pending_expires_at'],
      [{ transaction_id: 'bad-h2', type: 'consume', user_id: 'h3', balance_type: 'cash', amount: 1, pending: true, pending_expires_at: 'tomorrow' }, 'pending_expires_at'],
      [{ transaction_id: 'bad-h3', type: 'consume', user_id: 'h3', balance_type: 'cash', amount: 1, pending_expires_at: '2030-01-01T00:00:00Z' }, 'pending_expires_at'],
      [{ transaction_id: 'bad-h4', type: 'consume', user_id: 'h3', balance_type: 'cash', amount: 1, pending: 'yes' }, 'pending'],
      [{ transaction_id: 'bad-h5', type: 'consume', user_id: 'h3', balance_type: 'cash', amount: 1, pending: true, pending_expires_at: '2999-01-01T00:00:00Z' }, 'pending_expires_at'],
      [{ transaction_id: 'sys:expire:1:1', type: 'add', user_id: 'h3', balance_type: 'cash', amount: 1 }, 'transaction_id'],
    ];
    for (const [payload, field] of cases) {
      const response = await create(payload);
      assert.equal(response.statusCode, 400, `${JSON.stringify(payload)} → ${response.body}`);
      assert.equal(((response.json().error as Json).details as Json).field, field);
    }
    const postCases: Array<[Json, string]> = [
      [{ balance_type: 'cash', amount: 0 }, 'amount'],
      [{ balance_type: 'cash', amount: 1.5 }, 'amount'],
      [{ amount: 1 }, 'balance_type'],
      [{ balance_type: 'cash', extra: true }, 'extra'],
    ];
    for (const [payload, field] of postCases) {
      const response = await post('auth-3', payload);
      assert.equal(response.statusCode, 400, response.body);
      assert.equal(((response.json().error as Json).details as Json).field, field);
    }
    assert.equal(((await voidHold('auth-3', { balance_type: 'cash', amount: 1 })).json().error as Json).code, 'invalid_request');
  });
});
