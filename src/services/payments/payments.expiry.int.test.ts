// Goal: an authorization past its hold deadline expires — by service.expireDue() or by the route's own sweeper — releasing exactly what is still held with one payment.authorization_expired, and what comes later (a capture, a reversal) sees the expired payment.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import type { PaymentService } from './service.ts';
import { errorOf, event, type Json, MERCHANT, PaymentHarness } from './testing/harness.ts';
import { visaModule } from './visa/module.ts';

const START = '2026-03-02T01:00:00.000Z';
const HOLD_TIMEOUT_MS = 7 * 24 * 60 * 60 * 1000;
const DEADLINE = new Date(Date.parse(START) + HOLD_TIMEOUT_MS).toISOString();
const clock = new ManualClock(START);
let koban: TestKoban;
let h: PaymentHarness;
let visa: PaymentService;

before(async () => {
  // Visa's sweeper is off (the test calls expireDue itself); QUICPay+'s runs every 20 ms on the test's clock.
  koban = await startTestKoban({ label: 'pay_expiry', clock, env: { VISA_EXPIRY_SWEEP_INTERVAL_MS: '0', QUICPAY_EXPIRY_SWEEP_INTERVAL_MS: '20', KOBAN_SWEEP_INTERVAL_MS: '0' } });
  h = new PaymentHarness(koban);
  visa = koban.host.api(visaModule);
});
after(async () => {
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

const authorize = (authorization_id: string, user_id: string, amount: number) => h.visa('authorizations', { authorization_id, user_id, amount, currency: 'JPY', merchant: MERCHANT });
const capture = (sales_draft_id: string, authorization_id: string, user_id: string, amount: number, final: boolean) =>
  h.visa('sales-drafts', { sales_draft_id, authorization_id, user_id, amount, currency: 'JPY', merchant: MERCHANT, final });
const status = async (paymentId: string) => ((await h.getPayment(paymentId)).json() as Json).status;

describe('Visa, expired by expireDue()', () => {
  test('nothing expires before the deadline; at it the hold is released, payment.authorization_expired; a late capture is forced; a late reversal finds it closed', async () => {
    await h.fund('e-v1', 1000);
    await h.fund('e-v2', 1000);
    await h.fund('e-v3', 1000);
    await authorize('ve-1', 'e-v1', 300);
    await authorize('ve-2', 'e-v2', 400);
    await authorize('ve-3', 'e-v3', 500);
    assert.equal((await capture('ve-3-s1', 've-3', 'e-v3', 200, false)).statusCode, 200);
    assert.deepEqual(await h.cash('e-v3'), { available: 500, posted: 800, pending_debit: 300 });

    clock.set(new Date(Date.parse(DEADLINE) - 1));
    assert.equal(await visa.expireDue(), 0);
    assert.deepEqual(await h.cash('e-v1'), { available: 700, posted: 1000, pending_debit: 300 });

    clock.set(DEADLINE);
    // ve-2 is left to the next message: a reversal expires it first (the sweeper here would, too).
    const reversal = await h.visa('reversals', { reversal_id: 've-2-r', authorization_id: 've-2', user_id: 'e-v2' });
    assert.equal(reversal.statusCode, 409, reversal.body);
    assert.deepEqual(errorOf(reversal), { code: 'authorization_closed', details: { payment_id: 'visa:ve-2', status: 'expired' } });
    assert.equal(await visa.expireDue(), 2);
    assert.equal(await visa.expireDue(), 0, 'each expires once');

    assert.deepEqual(await h.cash('e-v1'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.deepEqual(await h.cash('e-v2'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.deepEqual(await h.cash('e-v3'), { available: 800, posted: 800, pending_debit: 0 });
    assert.equal(await status('visa:ve-1'), 'expired');
    assert.equal(await status('visa:ve-3'), 'captured', 'what was captured stays captured');
    const expired = (id: string, amount: number, authorized_total: number, captured_total = 0) =>
      event('visa', 'expiry', id, 'payment.authorization_expired', { amount, authorized_total, captured_total });
    assert.deepEqual(await h.events('visa:ve-2'), [event('visa', 'authorization', 've-2', 'payment.authorized', { amount: 400, authorized_total: 400, advice: false }), expired('ve-2', 400, 400)]);
    assert.deepEqual((await h.rawEvents('visa:ve-2'))[1]!.time, DEADLINE, 'the expiry happened at the deadline, whenever it was noticed');
    assert.deepEqual(await h.events('visa:ve-3'), [
      event('visa', 'authorization', 've-3', 'payment.authorized', { amount: 500, authorized_total: 500, advice: false }),
      event('visa', 'sales_draft', 've-3-s1', 'payment.captured', { amount: 200, authorized_total: 500, captured_total: 200, final: false, forced: false }),
      expired('ve-3', 300, 500, 200),
    ]);

    const late = await capture('ve-1-s', 've-1', 'e-v1', 300, true);
    assert.equal(late.statusCode, 200, late.body);
    assert.deepEqual(late.json(), { sales_draft_id: 've-1-s', authorization_id: 've-1', payment_id: 'visa:ve-1', captured_amount: 300, captured_total: 300, held_amount: 0, forced: true });
    assert.deepEqual(await h.cash('e-v1'), { available: 700, posted: 700, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:ve-1'), [
      event('visa', 'authorization', 've-1', 'payment.authorized', { amount: 300, authorized_total: 300, advice: false }),
      expired('ve-1', 300, 300),
      event('visa', 'sales_draft', 've-1-s', 'payment.captured', { amount: 300, authorized_total: 300, captured_total: 300, final: true, forced: true }),
    ]);
    assert.equal(await status('visa:ve-1'), 'captured');
  });
});

describe('QUICPay+, expired by its sweeper', () => {
  test('the sweeper releases a lapsed hold on its own', async () => {
    clock.set(START);
    await h.fund('e-q1', 1000);
    const answer = await h.quicpay({ message_type: 'authorization', transaction_number: 'qe-1', member_id: 'e-q1', amount: 300, merchant: MERCHANT });
    assert.deepEqual(answer.json(), { transaction_number: 'qe-1', result: 'approved' });
    assert.deepEqual(await h.cash('e-q1'), { available: 700, posted: 1000, pending_debit: 300 });
    clock.set(DEADLINE);
    const deadline = Date.now() + 10_000;
    while ((await status('quicpay:qe-1')) !== 'expired') {
      assert.ok(Date.now() < deadline, 'the sweeper did not expire quicpay:qe-1 within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(await h.cash('e-q1'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.deepEqual(await h.events('quicpay:qe-1'), [
      event('quicpay', 'authorization', 'qe-1', 'payment.authorized', { amount: 300, authorized_total: 300, advice: false }),
      event('quicpay', 'expiry', 'qe-1', 'payment.authorization_expired', { amount: 300, authorized_total: 300 }),
    ]);
  });
});
