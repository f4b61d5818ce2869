// Goal: forced debits (`force: true` on a consume, a hold, or a post above its hold) may take a balance below zero, drawing the lots they can; the next credits pay the debt first, so expiry never takes back what repaid it; refunds and released holds keep the books exact; without force nothing changes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Balance, Transaction } from '../../contracts/ledger/types.ts';
import { AMOUNT_MAX, DEBT_MAX } from './domain/limits.ts';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

const START = '2026-03-01T00:00:00.000Z';
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const clock = new ManualClock(START);
let koban: TestKoban;

before(async () => {
  koban = await startTestKoban({ label: 'forced', clock, env: { KOBAN_SWEEP_INTERVAL_MS: '0' } });
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

type Json = Record<string, unknown>;
const create = (payload: Json) => koban.app.inject({ method: 'POST', url: '/v1/transactions', payload });
const post = (id: string, payload: Json) => koban.app.inject({ method: 'POST', url: `/v1/transactions/${id}/post`, payload });
const voidHold = (id: string, payload: Json) => koban.app.inject({ method: 'POST', url: `/v1/transactions/${id}/void`, payload });
const errorOf = (response: { json(): Json }) => response.json().error as { code: string; details: Json };
const inHours = (hours: number) => new Date(clock.now().getTime() + hours * HOUR_MS).toISOString();

async function created(payload: Json): Promise<Transaction> {
  const response = await create(payload);
  assert.equal(response.statusCode, 201, `${JSON.stringify(payload)} → ${response.body}`);
  return response.json() as Transaction;
}
async function balance(user: string, type = 'cash'): Promise<Omit<Balance, 'user_id' | 'balance_type'>> {
  const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${user}/balances/${type}` });
  assert.equal(response.statusCode, 200, response.body);
  const { user_id: _user, balance_type: _type, ...figures } = response.json() as Balance;
  return figures;
}
const add = (id: string, user: string, amount: number, extra: Json = {}) => created({ transaction_id: id, type: 'add', user_id: user, balance_type: 'cash', amount, ...extra });
const consume = (id: string, user: string, amount: number, extra: Json = {}) =>
  create({ transaction_id: id, type: 'consume', user_id: user, balance_type: 'cash', amount, ...extra });
async function auditOk() {
  const audit = await koban.ledger.audit();
  assert.equal(audit.ok, true, JSON.stringify(audit));
  for (const type of audit.balance_types) assert.equal(type.sum, 0, type.balance_type);
}

describe('a forced consume', () => {
  test('takes the balance below zero, drawing every lot it can (soonest-expiring first) and no more', async () => {
    await add('f1-lot-late', 'f1', 100, { expires_at: inHours(48) });
    await add('f1-lot-soon', 'f1', 50, { expires_at: inHours(24) });
    const forced = await consume('f1-advice', 'f1', 400, { force: true });
    assert.equal(forced.statusCode, 201, forced.body);
    const body = forced.json() as Transaction;
    assert.equal(body.force, true);
    assert.equal(body.status, 'posted');
    assert.equal(body.posted_amount, 400);
    assert.equal(body.balance_after, -250);
    assert.deepEqual(body.lots, [
      { source_transaction_id: 'f1-lot-soon', amount: 50, expires_at: inHours(24) },
      { source_transaction_id: 'f1-lot-late', amount: 100, expires_at: inHours(48) },
    ]);
    assert.deepEqual(await balance('f1'), { available: -250, posted: -250, pending_debit: 0, pending_credit: 0, expiring: [] });
    await auditOk();
  });

  test('within the balance is an ordinary consume that records its force', async () => {
    await add('f7-lot', 'f7', 100);
    const forced = await consume('f7-claw', 'f7', 40, { force: true });
    assert.equal(forced.statusCode, 201, forced.body);
    assert.equal((forced.json() as Transaction).force, true);
    assert.deepEqual((forced.json() as Transaction).lots, [{ source_transaction_id: 'f7-lot', amount: 40, expires_at: null }]);
    const [stored] = (await koban.app.inject({ method: 'GET', url: '/v1/transactions/f7-claw' })).json().data as Transaction[];
    assert.equal(stored!.force, true);
    assert.equal(errorOf(await consume('f7-claw', 'f7', 40)).code, 'idempotency_conflict');
    assert.deepEqual(await balance('f7'), { available: 60, posted: 60, pending_debit: 0, pending_credit: 0, expiring: [] });
  });

  test('without force, the same consume is still 422 insufficient_balance and changes nothing', async () => {
    await add('f2-lot', 'f2', 100);
    const refused = await consume('f2-spend', 'f2', 101);
    assert.equal(refused.statusCode, 422, refused.body);
    assert.deepEqual(errorOf(refused).details, { available: 100, requested: 101 });
    const explicit = await consume('f2-spend', 'f2', 101, { force: false });
    assert.equal(explicit.statusCode, 422, 'force: false is the same as absent');
    assert.equal((await koban.app.inject({ method: 'GET', url: '/v1/transactions/f2-spend' })).statusCode, 404);
    assert.deepEqual(await balance('f2'), { available: 100, posted: 100, pending_debit: 0, pending_credit: 0, expiring: [] });
    // In debt, an unforced consume or hold of any amount is refused.
    assert.equal((await consume('f2-forced', 'f2', 150, { force: true })).statusCode, 201);
    assert.equal(errorOf(await consume('f2-more', 'f2', 1)).code, 'insufficient_balance');
    assert.equal(errorOf(await consume('f2-hold', 'f2', 1, { pending: true })).code, 'insufficient_balance');
  });

  test('of a user never seen creates the account, in debt', async () => {
    const forced = await consume('f3-capture', 'f3', 70, { force: true });
    assert.equal(forced.statusCode, 201, forced.body);
    assert.deepEqual((forced.json() as Transaction).lots, []);
    assert.deepEqual(await balance('f3'), { available: -70, posted: -70, pending_debit: 0, pending_credit: 0, expiring: [] });
  });

  test('replays when repeated, and a repeat with another force is 409 naming force', async () => {
    const first = await consume('f4-claw', 'f4', 30, { force: true });
    assert.equal(first.statusCode, 201, first.body);
    const again = await consume('f4-claw', 'f4', 30, { force: true });
    assert.equal(again.statusCode, 200);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body, first.body);
    const unforced = await consume('f4-claw', 'f4', 30);
    assert.equal(unforced.statusCode, 409, unforced.body);
    assert.deepEqual(errorOf(unforced).details.fields, ['force']);
    const both = await consume('f4-claw', 'f4', 31, { force: false });
    assert.deepEqual(errorOf(both).details.fields, ['amount', 'force']);
    // An unforced consume repeated with force is a conflict too.
    await add('f4-lot', 'f4', 500);
    assert.equal((await consume('f4-plain', 'f4', 10)).statusCode, 201);
    assert.deepEqual(errorOf(await consume('f4-plain', 'f4', 10, { force: true })).details.fields, ['force']);
    assert.deepEqual(await balance('f4'), { available: 460, posted: 460, pending_debit: 0, pending_credit: 0, expiring: [] });
  });

  test('may take a balance down to −DEBT_MAX and not below: 422 balance_limit_exceeded', async () => {
    assert.equal(DEBT_MAX, AMOUNT_MAX, 'one transaction may reach the largest debt');
    assert.equal((await consume('f5-huge', 'f5', AMOUNT_MAX, { force: true })).statusCode, 201);
    const beyond = await consume('f5-one-more', 'f5', 1, { force: true });
    assert.equal(beyond.statusCode, 422, beyond.body);
    assert.equal(errorOf(beyond).code, 'balance_limit_exceeded');
    assert.deepEqual(errorOf(beyond).details, { available: -DEBT_MAX, requested: 1 });
    const hold = await consume('f5-hold', 'f5', 1, { force: true, pending: true });
    assert.equal(errorOf(hold).code, 'balance_limit_exceeded');
    assert.deepEqual(await balance('f5'), { available: -DEBT_MAX, posted: -DEBT_MAX, pending_debit: 0, pending_credit: 0, expiring: [] });
  });

  test('force applies to consumes only, and must be a boolean: 400 naming force', async () => {
    const onAdd = await create({ transaction_id: 'f6-add', type: 'add', user_id: 'f6', balance_type: 'cash', amount: 5, force: true });
    assert.equal(onAdd.statusCode, 400, onAdd.body);
    assert.equal(errorOf(onAdd).details.field, 'force');
    await add('f6-lot', 'f6', 50);
    assert.equal((await consume('f6-spend', 'f6', 20)).statusCode, 201);
    const onRefund = await create({ transaction_id: 'f6-refund', type: 'refund', refund_of: 'f6-spend', user_id: 'f6', balance_type: 'cash', amount: 5, force: true });
    assert.equal(onRefund.statusCode, 400, onRefund.body);
    assert.equal(errorOf(onRefund).details.field, 'force');
    const notBoolean = await consume('f6-str', 'f6', 1, { force: 'true' });
    assert.equal(notBoolean.statusCode, 400, notBoolean.body);
    assert.equal(errorOf(notBoolean).details.field, 'force');
    const onVoid = await voidHold('f6-spend', { balance_type: 'cash', force: true });
    assert.equal(onVoid.statusCode, 400, onVoid.body);
    assert.equal(errorOf(onVoid).details.field, 'force');
    // A forced add through the in-process API is refused the same way.
    await assert.rejects(koban.ledger.submit({ transaction_id: 'f6-add2', type: 'add', user_id: 'f6', balance_type: 'cash', amount: 5, force: true }), {
      code: 'invalid_request',
      details: { field: 'force' },
    });
    assert.deepEqual(await balance('f6'), { available: 30, posted: 30, pending_debit: 0, pending_credit: 0, expiring: [] });
  });
});

describe('forced holds and posts', () => {
  test('a forced hold reserves beyond the available balance, drawing the lots it can', async () => {
    await add('h1-lot', 'h1', 100);
    const hold = await consume('h1-auth', 'h1', 250, { force: true, pending: true });
    assert.equal(hold.statusCode, 201, hold.body);
    const body = hold.json() as Transaction;
    assert.equal(body.status, 'pending');
    assert.equal(body.force, true);
    assert.equal(body.balance_after, -150);
    assert.deepEqual(body.lots, [{ source_transaction_id: 'h1-lot', amount: 100, expires_at: null }]);
    assert.deepEqual(await balance('h1'), { available: -150, posted: 100, pending_debit: 250, pending_credit: 0, expiring: [] });
    // Posting part of it cancels its own debt first: nothing goes back to the lot, which stays empty.
    const posted = await post('h1-auth', { balance_type: 'cash', amount: 200 });
    assert.equal(posted.statusCode, 201, posted.body);
    assert.deepEqual((posted.json() as Transaction).lots, [{ source_transaction_id: 'h1-lot', amount: 100, expires_at: null }]);
    assert.deepEqual(await balance('h1'), { available: -100, posted: -100, pending_debit: 0, pending_credit: 0, expiring: [] });
    await auditOk();
  });

  test('voiding a forced hold cancels its debt and gives back what it drew', async () => {
    await add('h2-lot', 'h2', 60, { expires_at: inHours(10) });
    assert.equal((await consume('h2-auth', 'h2', 100, { force: true, pending: true })).statusCode, 201);
    const voided = await voidHold('h2-auth', { balance_type: 'cash' });
    assert.equal(voided.statusCode, 201, voided.body);
    assert.deepEqual(await balance('h2'), { available: 60, posted: 60, pending_debit: 0, pending_credit: 0, expiring: [{ amount: 60, expires_at: inHours(10) }] });
    await auditOk();
  });

  test('a post above the hold is 422 without force; with force it posts the hold and debits the difference, drawing lots at the post', async () => {
    await add('h3-lot', 'h3', 100);
    assert.equal((await consume('h3-auth', 'h3', 80, { pending: true })).statusCode, 201);
    const refused = await post('h3-auth', { balance_type: 'cash', amount: 150 });
    assert.equal(refused.statusCode, 422, refused.body);
    assert.deepEqual(errorOf(refused).details, { pending_amount: 80, requested: 150 });
    await add('h3-lot-2', 'h3', 30, { expires_at: inHours(5) });
    const forced = await post('h3-auth', { balance_type: 'cash', amount: 150, force: true });
    assert.equal(forced.statusCode, 201, forced.body);
    const body = forced.json() as Transaction;
    assert.equal(body.status, 'posted');
    assert.equal(body.amount, 80);
    assert.equal(body.posted_amount, 150);
    assert.equal(body.force, false, 'the hold itself was not forced');
    assert.equal(body.balance_after, -20);
    // 80 drawn by the hold, then 70 at the post: the 20 left and the 30 expiring first; 20 is a debt.
    assert.deepEqual(body.lots, [
      { source_transaction_id: 'h3-lot', amount: 80, expires_at: null },
      { source_transaction_id: 'h3-lot-2', amount: 30, expires_at: inHours(5) },
      { source_transaction_id: 'h3-lot', amount: 20, expires_at: null },
    ]);
    assert.deepEqual(await balance('h3'), { available: -20, posted: -20, pending_debit: 0, pending_credit: 0, expiring: [] });
    // The repeat replays; the same amount without force is a conflict naming force.
    const again = await post('h3-auth', { balance_type: 'cash', amount: 150, force: true });
    assert.equal(again.statusCode, 200);
    assert.equal(again.body, forced.body);
    const unforced = await post('h3-auth', { balance_type: 'cash', amount: 150 });
    assert.equal(unforced.statusCode, 409, unforced.body);
    assert.deepEqual(errorOf(unforced).details.fields, ['force']);
    // The hold, replayed as created, still shows only what it drew then.
    const replayed = await consume('h3-auth', 'h3', 80, { pending: true });
    assert.equal(replayed.statusCode, 200);
    assert.deepEqual((replayed.json() as Transaction).lots, [{ source_transaction_id: 'h3-lot', amount: 80, expires_at: null }]);
    await auditOk();
  });

  test('a forced post within the hold is an ordinary post, and its repeat without force is 409 naming force', async () => {
    await add('h6-lot', 'h6', 100);
    assert.equal((await consume('h6-auth', 'h6', 50, { pending: true })).statusCode, 201);
    const posted = await post('h6-auth', { balance_type: 'cash', amount: 30, force: true });
    assert.equal(posted.statusCode, 201, posted.body);
    assert.equal((await post('h6-auth', { balance_type: 'cash', amount: 30, force: true })).statusCode, 200);
    const unforced = await post('h6-auth', { balance_type: 'cash', amount: 30 });
    assert.equal(unforced.statusCode, 409, unforced.body);
    assert.deepEqual(errorOf(unforced).details.fields, ['force']);
    assert.deepEqual(await balance('h6'), { available: 70, posted: 70, pending_debit: 0, pending_credit: 0, expiring: [] });
  });

  test('a forced post of a hold on an add is 400 naming force', async () => {
    assert.equal((await create({ transaction_id: 'h4-earn', type: 'add', user_id: 'h4', balance_type: 'cash', amount: 10, pending: true })).statusCode, 201);
    const forced = await post('h4-earn', { balance_type: 'cash', amount: 20, force: true });
    assert.equal(forced.statusCode, 400, forced.body);
    assert.equal(errorOf(forced).details.field, 'force');
  });

  test('a forced post may not take the balance below −DEBT_MAX', async () => {
    assert.equal((await consume('h5-claw', 'h5', 5, { force: true })).statusCode, 201);
    assert.equal((await consume('h5-auth', 'h5', 10, { pending: true, force: true })).statusCode, 201);
    const beyond = await post('h5-auth', { balance_type: 'cash', amount: AMOUNT_MAX, force: true });
    assert.equal(beyond.statusCode, 422, beyond.body);
    assert.equal(errorOf(beyond).code, 'balance_limit_exceeded');
    assert.deepEqual(errorOf(beyond).details, { available: -15, requested: AMOUNT_MAX });
    const within = await post('h5-auth', { balance_type: 'cash', amount: AMOUNT_MAX - 5, force: true });
    assert.equal(within.statusCode, 201, within.body);
    assert.deepEqual(await balance('h5'), { available: -DEBT_MAX, posted: -DEBT_MAX, pending_debit: 0, pending_credit: 0, expiring: [] });
  });
});

describe('paying the debt', () => {
  test('an add pays the debt first: its lot keeps only the rest; an add smaller than the debt keeps nothing', async () => {
    assert.equal((await consume('d1-claw', 'd1', 300, { force: true })).statusCode, 201);
    await add('d1-small', 'd1', 100, { expires_at: inHours(24) });
    assert.deepEqual(await balance('d1'), { available: -200, posted: -200, pending_debit: 0, pending_credit: 0, expiring: [] });
    const paying = await add('d1-grant', 'd1', 1000, { expires_at: inHours(48) });
    assert.equal(paying.balance_after, 800);
    assert.deepEqual(await balance('d1'), { available: 800, posted: 800, pending_debit: 0, pending_credit: 0, expiring: [{ amount: 800, expires_at: inHours(48) }] });
    // The consume's own answer is unchanged by what repaid it.
    const replay = await consume('d1-claw', 'd1', 300, { force: true });
    assert.equal(replay.statusCode, 200);
    assert.deepEqual((replay.json() as Transaction).lots, []);
    await auditOk();
  });

  test('the expiry of a lot that repaid a debt expires only what was left of it', async () => {
    assert.equal((await consume('d2-claw', 'd2', 300, { force: true })).statusCode, 201);
    await add('d2-grant', 'd2', 1000, { expires_at: inHours(24) });
    clock.advance(25 * HOUR_MS);
    assert.deepEqual(await balance('d2'), { available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] });
    await koban.ledger.sweep();
    const expiries = ((await koban.app.inject({ method: 'GET', url: '/v1/users/d2/transactions' })).json().data as Transaction[]).filter((t) => t.type === 'expire');
    assert.deepEqual(
      expiries.map((t) => [t.amount, t.balance_after]),
      [[700, 0]],
    );
    assert.deepEqual(await balance('d2'), { available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] });
    await auditOk();
  });

  test('debts are paid oldest first; posting an add hold pays them too', async () => {
    assert.equal((await consume('d3-old', 'd3', 40, { force: true })).statusCode, 201);
    assert.equal((await consume('d3-new', 'd3', 60, { force: true })).statusCode, 201);
    assert.equal((await create({ transaction_id: 'd3-earn', type: 'add', user_id: 'd3', balance_type: 'cash', amount: 50, pending: true })).statusCode, 201);
    assert.deepEqual(await balance('d3'), { available: -100, posted: -100, pending_debit: 0, pending_credit: 50, expiring: [] });
    assert.equal((await post('d3-earn', { balance_type: 'cash' })).statusCode, 201);
    assert.deepEqual(await balance('d3'), { available: -50, posted: -50, pending_debit: 0, pending_credit: 0, expiring: [] });
    // A refund of the older consume: its debt is paid, so the refund goes back to the lot that paid it.
    const refund = await created({ transaction_id: 'd3-refund-old', type: 'refund', refund_of: 'd3-old', user_id: 'd3', balance_type: 'cash', amount: 40 });
    assert.deepEqual(refund.lots, [{ source_transaction_id: 'd3-earn', amount: 40, expires_at: null }]);
    // …and from that lot the newer debt is paid: still nothing to spend.
    assert.deepEqual(await balance('d3'), { available: -10, posted: -10, pending_debit: 0, pending_credit: 0, expiring: [] });
    // A refund of the newer one, still in debt by 10: cancels that debt, the rest goes back to the lot
    // it was paid from, in two draws (latest first).
    const second = await created({ transaction_id: 'd3-refund-new', type: 'refund', refund_of: 'd3-new', user_id: 'd3', balance_type: 'cash', amount: 60 });
    assert.deepEqual(second.lots, [
      { source_transaction_id: 'd3-earn', amount: 40, expires_at: null },
      { source_transaction_id: 'd3-earn', amount: 10, expires_at: null },
    ]);
    assert.deepEqual(await balance('d3'), { available: 50, posted: 50, pending_debit: 0, pending_credit: 0, expiring: [] });
    assert.equal((await consume('d3-spend', 'd3', 50)).statusCode, 201);
    await auditOk();
  });

  test('a refund of a consume still in debt only reduces the debt', async () => {
    await add('d4-lot', 'd4', 30, { expires_at: inHours(30) });
    assert.equal((await consume('d4-claw', 'd4', 100, { force: true })).statusCode, 201);
    const refund = await created({ transaction_id: 'd4-refund', type: 'refund', refund_of: 'd4-claw', user_id: 'd4', balance_type: 'cash', amount: 50 });
    assert.deepEqual(refund.lots, [], 'no lot gets value while its consume is in debt');
    assert.equal(refund.balance_after, -20);
    const rest = await created({ transaction_id: 'd4-refund-2', type: 'refund', refund_of: 'd4-claw', user_id: 'd4', balance_type: 'cash', amount: 50 });
    assert.deepEqual(rest.lots, [{ source_transaction_id: 'd4-lot', amount: 30, expires_at: inHours(30) }]);
    assert.deepEqual(await balance('d4'), { available: 30, posted: 30, pending_debit: 0, pending_credit: 0, expiring: [{ amount: 30, expires_at: inHours(30) }] });
    await auditOk();
  });

  test('a hold that times out on an account in debt gives back at its deadline, exactly, whenever it is recorded', async () => {
    // A hold drew an expiring lot; a forced consume then owes 30. The hold lapses
    // (its lot comes back and pays the debt), then the lot expires: only the rest expires.
    await add('d5-lot', 'd5', 50, { expires_at: inHours(10) });
    assert.equal((await consume('d5-auth', 'd5', 50, { pending: true, pending_expires_at: inHours(5) })).statusCode, 201);
    assert.equal((await consume('d5-claw', 'd5', 30, { force: true })).statusCode, 201);
    assert.deepEqual(await balance('d5'), { available: -30, posted: 20, pending_debit: 50, pending_credit: 0, expiring: [] });
    clock.advance(6 * HOUR_MS);
    const atLapse = { available: 20, posted: 20, pending_debit: 0, pending_credit: 0, expiring: [{ amount: 20, expires_at: inHours(4) }] };
    assert.deepEqual(await balance('d5'), atLapse, 'read before the sweep');
    clock.advance(5 * HOUR_MS);
    const afterExpiry = { available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] };
    assert.deepEqual(await balance('d5'), afterExpiry, 'the lot expired after paying the debt: only its rest expires');
    await koban.ledger.sweep();
    assert.deepEqual(await balance('d5'), afterExpiry, 'the sweep records the same');
    await auditOk();
  });

  test('the audit reports a debt left beside a lot that should have paid it, and a repayment naming no transaction', async () => {
    assert.equal((await consume('d7-claw', 'd7', 50, { force: true })).statusCode, 201);
    await add('d7-grant', 'd7', 20);
    await auditOk();
    const sql = new pg.Client({ connectionString: koban.database.url });
    await sql.connect();
    // Triggers off for this session only: history is otherwise impossible to rewrite.
    const rewrite = async (statements: string[]) => {
      await sql.query('SET session_replication_role = replica');
      try {
        for (const statement of statements) await sql.query(statement);
      } finally {
        await sql.query('SET session_replication_role = DEFAULT');
      }
    };
    const repayment = `SELECT d.draw_id FROM lot_draws d JOIN transactions t ON t.transaction_pk = d.transaction_pk WHERE t.transaction_id = 'd7-claw'`;
    const lot = `SELECT lot_id FROM lots WHERE source_transaction_id = 'd7-grant'`;
    try {
      const [{ draw_id: drawId, cause_pk: causePk }] = (await sql.query(`SELECT draw_id, cause_pk FROM lot_draws WHERE draw_id = (${repayment})`)).rows;
      // As if the add had paid only 5 of the debt: its lot keeps 15 (the lots still add up), the debt stays 45.
      await rewrite([`UPDATE lot_draws SET amount = 5 WHERE draw_id = ${drawId}`, `UPDATE lots SET remaining = 15 WHERE lot_id = (${lot})`]);
      let report = await koban.ledger.audit();
      assert.equal(report.ok, false);
      const cash = report.balance_types.find((entry) => entry.balance_type === 'cash')!;
      assert.deepEqual(
        cash.mismatches.map(({ owner, field, stored, derived }) => ({ owner, field, stored, derived })),
        [{ owner: 'user:d7', field: 'debt', stored: 45, derived: 30 }],
      );
      await rewrite([`UPDATE lot_draws SET amount = 20 WHERE draw_id = ${drawId}`, `UPDATE lots SET remaining = 0 WHERE lot_id = (${lot})`]);
      await auditOk();
      await rewrite([`UPDATE lot_draws SET cause_pk = -1 WHERE draw_id = ${drawId}`]);
      report = await koban.ledger.audit();
      assert.equal(report.dangling_references, 1);
      await rewrite([`UPDATE lot_draws SET cause_pk = ${causePk} WHERE draw_id = ${drawId}`]);
    } finally {
      await sql.end();
    }
    await auditOk();
  });

  test('concurrent forced consumes and adds on one account: every one applied once, the books exact', async () => {
    await add('d6-lot', 'd6', 100);
    const forced = Array.from({ length: 30 }, (_, i) => consume(`d6-claw-${i}`, 'd6', 10, { force: true }));
    const plain = Array.from({ length: 10 }, (_, i) => consume(`d6-spend-${i}`, 'd6', 5));
    const adds = Array.from({ length: 10 }, (_, i) => create({ transaction_id: `d6-add-${i}`, type: 'add', user_id: 'd6', balance_type: 'cash', amount: 7 }));
    const answers = await Promise.all([...forced, ...plain, ...adds]);
    const spent = answers.slice(30, 40).filter((r) => r.statusCode === 201).length;
    for (const answer of [...answers.slice(0, 30), ...answers.slice(40)]) assert.equal(answer.statusCode, 201, answer.body);
    const figures = await balance('d6');
    assert.equal(figures.available, 100 - 300 - 5 * spent + 70);
    await auditOk();
  });
});
