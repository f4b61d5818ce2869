// Goal: every Visa message on real PostgreSQL — approvals, each decline, resends, conflicts, incrementals, advices, partial, multi-, over- and forced captures, reversals, refunds, unknown ids — leaves the exact cash balance and the exact events in the outbox.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock, startTestKoban, type TestKoban } from '../../../../test/support/koban.ts';
import { errorOf, event, type Json, MERCHANT, PaymentHarness, type Response } from '../testing/harness.ts';

const START = '2026-03-02T01:00:00.000Z';
const clock = new ManualClock(START);
let koban: TestKoban;
let h: PaymentHarness;

before(async () => {
  // Sweepers off: nothing changes a payment but the messages a test sends.
  koban = await startTestKoban({ label: 'visa', clock, env: { VISA_EXPIRY_SWEEP_INTERVAL_MS: '0', QUICPAY_EXPIRY_SWEEP_INTERVAL_MS: '0', KOBAN_SWEEP_INTERVAL_MS: '0' } });
  h = new PaymentHarness(koban);
});
after(async () => {
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

const authorize = (authorization_id: string, user_id: string, amount: number, extra: Json = {}) =>
  h.visa('authorizations', { authorization_id, user_id, amount, currency: 'JPY', merchant: MERCHANT, ...extra });
const advise = (authorization_id: string, user_id: string, amount: number, extra: Json = {}) =>
  h.visa('advices', { authorization_id, user_id, amount, currency: 'JPY', merchant: MERCHANT, ...extra });
const capture = (sales_draft_id: string, authorization_id: string, user_id: string, amount: number, final: boolean) =>
  h.visa('sales-drafts', { sales_draft_id, authorization_id, user_id, amount, currency: 'JPY', merchant: MERCHANT, final });
const reverse = (reversal_id: string, authorization_id: string, user_id: string, amount?: number) =>
  h.visa('reversals', { reversal_id, authorization_id, user_id, ...(amount === undefined ? {} : { amount }) });
const refund = (refund_id: string, sales_draft_id: string, user_id: string, amount: number) => h.visa('refunds', { refund_id, sales_draft_id, user_id, amount });

/** A first answer: 200, not a replay, exactly this body. */
function answered(response: Response, body: Json): void {
  assert.equal(response.statusCode, 200, response.body);
  assert.equal(response.headers['idempotent-replayed'], 'false');
  assert.deepEqual(response.json(), body);
}

function refused(response: Response, status: number, code: string, details: Json): void {
  assert.equal(response.statusCode, status, response.body);
  assert.deepEqual(errorOf(response), { code, details });
}

const authorized = (id: string, amount: number, authorized_total = amount, extra: Json = {}) =>
  event('visa', 'authorization', id, 'payment.authorized', { amount, authorized_total, advice: false, ...extra });
const captured = (id: string, figures: { amount: number; authorized_total: number; captured_total: number; final: boolean; forced: boolean; refunded_total?: number }) =>
  event('visa', 'sales_draft', id, 'payment.captured', figures);

describe('authorization', () => {
  test('approved: the cash is held, the answer says what is left, one payment.authorized with every field', async () => {
    await h.fund('v-ok', 1000);
    answered(await authorize('va-1', 'v-ok', 300), { authorization_id: 'va-1', approved: true, available_after: 700 });
    assert.deepEqual(await h.cash('v-ok'), { available: 700, posted: 1000, pending_debit: 300 });
    assert.deepEqual(await h.rawEvents('visa:va-1'), [
      {
        specversion: '1.0',
        id: 'visa.authorization.va-1',
        source: '/koban/payments/visa',
        type: 'payment.authorized',
        subject: 'visa:va-1',
        time: START,
        datacontenttype: 'application/json',
        route: 'visa',
        mcc: '5411',
        data: {
          payment_id: 'visa:va-1',
          route: 'visa',
          user_id: 'v-ok',
          amount: 300,
          authorized_total: 300,
          captured_total: 0,
          refunded_total: 0,
          currency: 'JPY',
          merchant: MERCHANT,
          occurred_at: START,
          network_message_id: 'va-1',
          advice: false,
        },
      },
    ]);
  });

  test('declined insufficient_balance: nothing held, one payment.declined; a resend after funding is still the stored decline', async () => {
    await h.fund('v-poor', 100);
    const first = await authorize('vd-1', 'v-poor', 300);
    answered(first, { authorization_id: 'vd-1', approved: false, decline_reason: 'insufficient_balance' });
    assert.deepEqual(await h.cash('v-poor'), { available: 100, posted: 100, pending_debit: 0 });
    const declined = event('visa', 'authorization', 'vd-1', 'payment.declined', { amount: 300, authorized_total: 0, decline_reason: 'insufficient_balance' });
    assert.deepEqual(await h.events('visa:vd-1'), [declined]);

    await h.fund('v-poor', 1000);
    const again = await authorize('vd-1', 'v-poor', 300);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body, first.body, 'the network resent its message: it gets the answer it missed, not a new decision');
    assert.deepEqual(await h.cash('v-poor'), { available: 1100, posted: 1100, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:vd-1'), [declined]);
  });

  test('declined unsupported_currency: nothing held, one payment.declined', async () => {
    await h.fund('v-usd', 1000);
    answered(await authorize('vd-2', 'v-usd', 300, { currency: 'USD' }), { authorization_id: 'vd-2', approved: false, decline_reason: 'unsupported_currency' });
    assert.deepEqual(await h.cash('v-usd'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:vd-2'), [event('visa', 'authorization', 'vd-2', 'payment.declined', { amount: 300, authorized_total: 0, decline_reason: 'unsupported_currency' })]);
  });

  test('declined amount_limit_exceeded above 1,000,000 yen even with the cash; 1,000,000 itself is approved', async () => {
    await h.fund('v-rich', 3_000_000);
    answered(await authorize('vd-3', 'v-rich', 1_000_001), { authorization_id: 'vd-3', approved: false, decline_reason: 'amount_limit_exceeded' });
    assert.deepEqual(await h.cash('v-rich'), { available: 3_000_000, posted: 3_000_000, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:vd-3'), [event('visa', 'authorization', 'vd-3', 'payment.declined', { amount: 1_000_001, authorized_total: 0, decline_reason: 'amount_limit_exceeded' })]);
    answered(await authorize('vd-4', 'v-rich', 1_000_000), { authorization_id: 'vd-4', approved: true, available_after: 2_000_000 });
    assert.deepEqual(await h.cash('v-rich'), { available: 2_000_000, posted: 3_000_000, pending_debit: 1_000_000 });
  });

  test('a resend gets the same bytes marked replayed; the same id with other content is 409 naming the fields; nothing doubles', async () => {
    await h.fund('v-re', 1000);
    const first = await authorize('vk-1', 'v-re', 300);
    answered(first, { authorization_id: 'vk-1', approved: true, available_after: 700 });
    const again = await authorize('vk-1', 'v-re', 300);
    assert.equal(again.statusCode, 200);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body, first.body);
    refused(await authorize('vk-1', 'v-re', 301, { merchant: { ...MERCHANT, name: 'Other Name' } }), 409, 'idempotency_conflict', { fields: ['amount', 'merchant.name'] });
    refused(await authorize('vk-1', 'v-re', 300, { incremental_of: 'va-1' }), 409, 'idempotency_conflict', { fields: ['incremental_of'] });
    assert.deepEqual(await h.cash('v-re'), { available: 700, posted: 1000, pending_debit: 300 });
    assert.deepEqual(await h.events('visa:vk-1'), [authorized('vk-1', 300)]);

    // A sales draft and a refund replay the same way.
    const sale = await capture('vk-1-s', 'vk-1', 'v-re', 300, true);
    const saleAgain = await capture('vk-1-s', 'vk-1', 'v-re', 300, true);
    assert.equal(saleAgain.headers['idempotent-replayed'], 'true');
    assert.equal(saleAgain.body, sale.body);
    refused(await capture('vk-1-s', 'vk-1', 'v-re', 300, false), 409, 'idempotency_conflict', { fields: ['final'] });
    const back = await refund('vk-1-f', 'vk-1-s', 'v-re', 100);
    const backAgain = await refund('vk-1-f', 'vk-1-s', 'v-re', 100);
    assert.equal(backAgain.headers['idempotent-replayed'], 'true');
    assert.equal(backAgain.body, back.body);
    refused(await refund('vk-1-f', 'vk-1-s', 'v-re', 90), 409, 'idempotency_conflict', { fields: ['amount'] });
    assert.deepEqual(await h.cash('v-re'), { available: 800, posted: 800, pending_debit: 0 });
    assert.deepEqual((await h.events('visa:vk-1')).map((e) => e.type), ['payment.authorized', 'payment.captured', 'payment.refunded']);
  });
});

describe('incremental authorization', () => {
  test('raises the hold with a second one; a final capture posts from both and releases the rest; the closed payment refuses more', async () => {
    await h.fund('v-inc', 1000);
    answered(await authorize('vi-1', 'v-inc', 300), { authorization_id: 'vi-1', approved: true, available_after: 700 });
    answered(await authorize('vi-1-up', 'v-inc', 200, { incremental_of: 'vi-1' }), { authorization_id: 'vi-1-up', approved: true, available_after: 500 });
    assert.deepEqual(await h.cash('v-inc'), { available: 500, posted: 1000, pending_debit: 500 });

    answered(await capture('vi-1-s', 'vi-1', 'v-inc', 450, true), {
      sales_draft_id: 'vi-1-s',
      authorization_id: 'vi-1',
      payment_id: 'visa:vi-1',
      captured_amount: 450,
      captured_total: 450,
      held_amount: 0,
      forced: false,
    });
    assert.deepEqual(await h.cash('v-inc'), { available: 550, posted: 550, pending_debit: 0 });
    refused(await authorize('vi-1-up2', 'v-inc', 100, { incremental_of: 'vi-1' }), 409, 'authorization_closed', { payment_id: 'visa:vi-1', status: 'captured' });
    assert.deepEqual(await h.cash('v-inc'), { available: 550, posted: 550, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:vi-1'), [
      authorized('vi-1', 300),
      event('visa', 'authorization', 'vi-1-up', 'payment.authorization_increased', { amount: 200, authorized_total: 500, advice: false }),
      captured('vi-1-s', { amount: 450, authorized_total: 500, captured_total: 450, final: true, forced: false }),
    ]);
  });

  test('an incremental the cash does not cover is declined (payment.declined) and the first hold stays', async () => {
    await h.fund('v-inc2', 1000);
    await authorize('vi-2', 'v-inc2', 300);
    answered(await authorize('vi-2-up', 'v-inc2', 800, { incremental_of: 'vi-2' }), { authorization_id: 'vi-2-up', approved: false, decline_reason: 'insufficient_balance' });
    assert.deepEqual(await h.cash('v-inc2'), { available: 700, posted: 1000, pending_debit: 300 });
    assert.deepEqual(await h.events('visa:vi-2'), [
      authorized('vi-2', 300),
      event('visa', 'authorization', 'vi-2-up', 'payment.declined', { amount: 800, authorized_total: 300, decline_reason: 'insufficient_balance' }),
    ]);
  });
});

describe('advice (stand-in approval)', () => {
  test('holds the cash even below zero, never declines', async () => {
    await h.fund('v-adv', 100);
    answered(await advise('vad-1', 'v-adv', 300), { authorization_id: 'vad-1', approved: true, available_after: -200 });
    assert.deepEqual(await h.cash('v-adv'), { available: -200, posted: 100, pending_debit: 300 });
    assert.deepEqual(await h.events('visa:vad-1'), [authorized('vad-1', 300, 300, { advice: true, id: 'visa.advice.vad-1' })]);
  });

  test('after our decline the network approved in stand-in: the advice forces the hold', async () => {
    await h.fund('v-adv2', 100);
    answered(await authorize('vad-2', 'v-adv2', 300), { authorization_id: 'vad-2', approved: false, decline_reason: 'insufficient_balance' });
    answered(await advise('vad-2', 'v-adv2', 300), { authorization_id: 'vad-2', approved: true, available_after: -200 });
    assert.deepEqual(await h.cash('v-adv2'), { available: -200, posted: 100, pending_debit: 300 });
    assert.deepEqual(await h.events('visa:vad-2'), [
      event('visa', 'authorization', 'vad-2', 'payment.declined', { amount: 300, authorized_total: 0, decline_reason: 'insufficient_balance' }),
      authorized('vad-2', 300, 300, { advice: true, id: 'visa.advice.vad-2' }),
    ]);
  });
});

describe('captures', () => {
  test('partial and multi-capture: final:false keeps the rest held, the final one releases what is left', async () => {
    await h.fund('v-multi', 1000);
    await authorize('vm-1', 'v-multi', 500);
    answered(await capture('vm-1-s1', 'vm-1', 'v-multi', 200, false), {
      sales_draft_id: 'vm-1-s1',
      authorization_id: 'vm-1',
      payment_id: 'visa:vm-1',
      captured_amount: 200,
      captured_total: 200,
      held_amount: 300,
      forced: false,
    });
    assert.deepEqual(await h.cash('v-multi'), { available: 500, posted: 800, pending_debit: 300 });
    answered(await capture('vm-1-s2', 'vm-1', 'v-multi', 150, false), {
      sales_draft_id: 'vm-1-s2',
      authorization_id: 'vm-1',
      payment_id: 'visa:vm-1',
      captured_amount: 150,
      captured_total: 350,
      held_amount: 150,
      forced: false,
    });
    assert.deepEqual(await h.cash('v-multi'), { available: 500, posted: 650, pending_debit: 150 });
    answered(await capture('vm-1-s3', 'vm-1', 'v-multi', 100, true), {
      sales_draft_id: 'vm-1-s3',
      authorization_id: 'vm-1',
      payment_id: 'visa:vm-1',
      captured_amount: 100,
      captured_total: 450,
      held_amount: 0,
      forced: false,
    });
    assert.deepEqual(await h.cash('v-multi'), { available: 550, posted: 550, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:vm-1'), [
      authorized('vm-1', 500),
      captured('vm-1-s1', { amount: 200, authorized_total: 500, captured_total: 200, final: false, forced: false }),
      captured('vm-1-s2', { amount: 150, authorized_total: 500, captured_total: 350, final: false, forced: false }),
      captured('vm-1-s3', { amount: 100, authorized_total: 500, captured_total: 450, final: true, forced: false }),
    ]);
  });

  test('over-capture: more than held is taken anyway (forced)', async () => {
    await h.fund('v-over', 1000);
    await authorize('vo-1', 'v-over', 300);
    answered(await capture('vo-1-s', 'vo-1', 'v-over', 350, true), {
      sales_draft_id: 'vo-1-s',
      authorization_id: 'vo-1',
      payment_id: 'visa:vo-1',
      captured_amount: 350,
      captured_total: 350,
      held_amount: 0,
      forced: true,
    });
    assert.deepEqual(await h.cash('v-over'), { available: 650, posted: 650, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:vo-1'), [authorized('vo-1', 300), captured('vo-1-s', { amount: 350, authorized_total: 300, captured_total: 350, final: true, forced: true })]);
  });

  test('over-capture beyond the balance: forced, the balance goes below zero', async () => {
    await h.fund('v-over2', 300);
    await authorize('vo-2', 'v-over2', 300);
    answered(await capture('vo-2-s', 'vo-2', 'v-over2', 400, true), {
      sales_draft_id: 'vo-2-s',
      authorization_id: 'vo-2',
      payment_id: 'visa:vo-2',
      captured_amount: 400,
      captured_total: 400,
      held_amount: 0,
      forced: true,
    });
    assert.deepEqual(await h.cash('v-over2'), { available: -100, posted: -100, pending_debit: 0 });
  });

  test('forced capture: a sales draft whose authorization was never seen takes the cash and makes the payment; the late authorization changes nothing', async () => {
    await h.fund('v-forced', 1000);
    answered(await capture('vf-1-s', 'vf-1', 'v-forced', 250, true), {
      sales_draft_id: 'vf-1-s',
      authorization_id: 'vf-1',
      payment_id: 'visa:vf-1',
      captured_amount: 250,
      captured_total: 250,
      held_amount: 0,
      forced: true,
    });
    assert.deepEqual(await h.cash('v-forced'), { available: 750, posted: 750, pending_debit: 0 });
    const late = await authorize('vf-1', 'v-forced', 250);
    answered(late, { authorization_id: 'vf-1', approved: true });
    assert.deepEqual(await h.cash('v-forced'), { available: 750, posted: 750, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:vf-1'), [captured('vf-1-s', { amount: 250, authorized_total: 0, captured_total: 250, final: true, forced: true })]);
  });
});

describe('reversals', () => {
  test('partial reversal releases part and keeps the rest held; a full one releases the rest; then the payment is closed', async () => {
    await h.fund('v-rev', 1000);
    await authorize('vr-1', 'v-rev', 500);
    answered(await reverse('vr-1-r1', 'vr-1', 'v-rev', 200), { reversal_id: 'vr-1-r1', authorization_id: 'vr-1', payment_id: 'visa:vr-1', reversed_amount: 200, held_amount: 300 });
    assert.deepEqual(await h.cash('v-rev'), { available: 700, posted: 1000, pending_debit: 300 });
    answered(await reverse('vr-1-r2', 'vr-1', 'v-rev'), { reversal_id: 'vr-1-r2', authorization_id: 'vr-1', payment_id: 'visa:vr-1', reversed_amount: 300, held_amount: 0 });
    assert.deepEqual(await h.cash('v-rev'), { available: 1000, posted: 1000, pending_debit: 0 });
    refused(await reverse('vr-1-r3', 'vr-1', 'v-rev'), 409, 'authorization_closed', { payment_id: 'visa:vr-1', status: 'reversed' });
    assert.deepEqual(await h.events('visa:vr-1'), [
      authorized('vr-1', 500),
      event('visa', 'reversal', 'vr-1-r1', 'payment.reversed', { amount: 200, authorized_total: 500 }),
      event('visa', 'reversal', 'vr-1-r2', 'payment.reversed', { amount: 300, authorized_total: 500 }),
    ]);
  });

  test('full reversal without an amount releases everything; more than held is 422 exceeds_held_amount', async () => {
    await h.fund('v-rev2', 1000);
    await authorize('vr-2', 'v-rev2', 400);
    refused(await reverse('vr-2-big', 'vr-2', 'v-rev2', 401), 422, 'exceeds_held_amount', { field: 'amount', held_amount: 400 });
    assert.deepEqual(await h.cash('v-rev2'), { available: 600, posted: 1000, pending_debit: 400 });
    answered(await reverse('vr-2-r', 'vr-2', 'v-rev2'), { reversal_id: 'vr-2-r', authorization_id: 'vr-2', payment_id: 'visa:vr-2', reversed_amount: 400, held_amount: 0 });
    assert.deepEqual(await h.cash('v-rev2'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:vr-2'), [authorized('vr-2', 400), event('visa', 'reversal', 'vr-2-r', 'payment.reversed', { amount: 400, authorized_total: 400 })]);
  });
});

describe('refunds', () => {
  test('several partial refunds up to the captured total; beyond it 422 exceeds_captured_amount and nothing moves', async () => {
    await h.fund('v-ref', 1000);
    await authorize('vf-2', 'v-ref', 500);
    await capture('vf-2-s', 'vf-2', 'v-ref', 500, true);
    assert.deepEqual(await h.cash('v-ref'), { available: 500, posted: 500, pending_debit: 0 });
    answered(await refund('vf-2-f1', 'vf-2-s', 'v-ref', 100), { refund_id: 'vf-2-f1', payment_id: 'visa:vf-2', sales_draft_id: 'vf-2-s', refunded_amount: 100, refunded_total: 100 });
    assert.deepEqual(await h.cash('v-ref'), { available: 600, posted: 600, pending_debit: 0 });
    answered(await refund('vf-2-f2', 'vf-2-s', 'v-ref', 150), { refund_id: 'vf-2-f2', payment_id: 'visa:vf-2', sales_draft_id: 'vf-2-s', refunded_amount: 150, refunded_total: 250 });
    assert.deepEqual(await h.cash('v-ref'), { available: 750, posted: 750, pending_debit: 0 });
    const before = await h.footprint();
    refused(await refund('vf-2-f3', 'vf-2-s', 'v-ref', 251), 422, 'exceeds_captured_amount', { field: 'amount', refundable: 250 });
    assert.deepEqual(await h.footprint(), before);
    assert.deepEqual(await h.cash('v-ref'), { available: 750, posted: 750, pending_debit: 0 });
    answered(await refund('vf-2-f4', 'vf-2-s', 'v-ref', 250), { refund_id: 'vf-2-f4', payment_id: 'visa:vf-2', sales_draft_id: 'vf-2-s', refunded_amount: 250, refunded_total: 500 });
    assert.deepEqual(await h.cash('v-ref'), { available: 1000, posted: 1000, pending_debit: 0 });
    refused(await refund('vf-2-f5', 'vf-2-s', 'v-ref', 1), 422, 'exceeds_captured_amount', { field: 'amount', refundable: 0 });
    const capturedFigures = { authorized_total: 500, captured_total: 500 };
    assert.deepEqual(await h.events('visa:vf-2'), [
      authorized('vf-2', 500),
      captured('vf-2-s', { amount: 500, ...capturedFigures, final: true, forced: false }),
      event('visa', 'refund', 'vf-2-f1', 'payment.refunded', { amount: 100, ...capturedFigures, refunded_total: 100 }),
      event('visa', 'refund', 'vf-2-f2', 'payment.refunded', { amount: 150, ...capturedFigures, refunded_total: 250 }),
      event('visa', 'refund', 'vf-2-f4', 'payment.refunded', { amount: 250, ...capturedFigures, refunded_total: 500 }),
    ]);
  });

  test('a refund names one sales draft: it refunds only what that draft captured', async () => {
    await h.fund('v-ref2', 1000);
    await authorize('vf-3', 'v-ref2', 500);
    await capture('vf-3-s1', 'vf-3', 'v-ref2', 200, false);
    await capture('vf-3-s2', 'vf-3', 'v-ref2', 300, true);
    refused(await refund('vf-3-f1', 'vf-3-s1', 'v-ref2', 201), 422, 'exceeds_captured_amount', { field: 'amount', refundable: 200 });
    answered(await refund('vf-3-f2', 'vf-3-s2', 'v-ref2', 300), { refund_id: 'vf-3-f2', payment_id: 'visa:vf-3', sales_draft_id: 'vf-3-s2', refunded_amount: 300, refunded_total: 300 });
    assert.deepEqual(await h.cash('v-ref2'), { available: 800, posted: 800, pending_debit: 0 });
  });
});

describe('unknown ids and closed payments', () => {
  test('each is refused with its code, naming the field; nothing is stored and no event written', async () => {
    await h.fund('v-unk', 1000);
    await authorize('vu-1', 'v-unk', 2_000_000); // declined: amount_limit_exceeded
    const before = await h.footprint();
    refused(await authorize('vu-up', 'v-unk', 100, { incremental_of: 'vu-none' }), 404, 'not_found', { field: 'incremental_of', payment_id: 'visa:vu-none' });
    refused(await reverse('vu-r', 'vu-none', 'v-unk'), 404, 'not_found', { field: 'authorization_id', payment_id: 'visa:vu-none' });
    refused(await refund('vu-f', 'vu-none-s', 'v-unk', 100), 404, 'not_found', { field: 'sales_draft_id' });
    refused(await authorize('vu-up2', 'v-unk', 100, { incremental_of: 'vu-1' }), 409, 'authorization_closed', { payment_id: 'visa:vu-1', status: 'declined' });
    refused(await reverse('vu-r2', 'vu-1', 'v-unk'), 409, 'authorization_closed', { payment_id: 'visa:vu-1', status: 'declined' });
    refused(await capture('vu-s', 'va-1', 'v-unk', 100, true), 400, 'invalid_request', { field: 'user_id', payment_id: 'visa:va-1' });
    const dollars = { sales_draft_id: 'vu-s2', authorization_id: 'vi-2', user_id: 'v-inc2', amount: 100, currency: 'USD', merchant: MERCHANT, final: true };
    refused(await h.visa('sales-drafts', dollars), 422, 'unsupported_currency', { field: 'currency', supported: ['JPY'] });
    refused(await advise('vu-adv', 'v-unk', 100, { currency: 'USD' }), 422, 'unsupported_currency', { field: 'currency', supported: ['JPY'] });
    const missing = await h.getPayment('visa:vu-none');
    refused(missing, 404, 'not_found', { field: 'payment_id', payment_id: 'visa:vu-none' });
    assert.deepEqual(await h.footprint(), before);
    assert.deepEqual(await h.cash('v-unk'), { available: 1000, posted: 1000, pending_debit: 0 });
  });
});

describe('GET /v1/payments/{id}', () => {
  test('one complete payment: status, totals, ledger transactions and its events, published once the relay ran', async () => {
    await h.fund('v-view', 1000);
    await authorize('vv-1', 'v-view', 400);
    await authorize('vv-1-up', 'v-view', 100, { incremental_of: 'vv-1' });
    await capture('vv-1-s', 'vv-1', 'v-view', 450, true);
    await refund('vv-1-f', 'vv-1-s', 'v-view', 450);
    await h.untilPublished('visa:vv-1');
    const response = await h.getPayment('visa:vv-1');
    assert.equal(response.statusCode, 200, response.body);
    const view = response.json() as Json & { events: Json[] };
    const published = view.events.map((e) => e.published_at);
    // Times as everywhere else in the API (and in the events): RFC 3339 in UTC with milliseconds.
    assert.ok(published.every((at) => typeof at === 'string' && new Date(at).toISOString() === at), `every event published: ${JSON.stringify(published)}`);
    assert.deepEqual(
      { ...view, events: view.events.map(({ id, type, occurred_at }) => ({ id, type, occurred_at })) },
      {
        payment_id: 'visa:vv-1',
        route: 'visa',
        user_id: 'v-view',
        status: 'refunded',
        authorized_amount: 500,
        captured_total: 450,
        refunded_total: 450,
        held_amount: 0,
        ledger_transaction_ids: ['visa:vv-1:hold', 'visa:vv-1:hold:vv-1-up', 'visa:vv-1:refund:vv-1-f:1', 'visa:vv-1:refund:vv-1-f:2'],
        events: [
          { id: 'visa.authorization.vv-1', type: 'payment.authorized', occurred_at: START },
          { id: 'visa.authorization.vv-1-up', type: 'payment.authorization_increased', occurred_at: START },
          { id: 'visa.sales_draft.vv-1-s', type: 'payment.captured', occurred_at: START },
          { id: 'visa.refund.vv-1-f', type: 'payment.refunded', occurred_at: START },
        ],
      },
    );
    assert.deepEqual(await h.cash('v-view'), { available: 1000, posted: 1000, pending_debit: 0 });
  });
});

