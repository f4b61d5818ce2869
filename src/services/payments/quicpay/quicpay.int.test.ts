// Goal: every QUICPay+ message on real PostgreSQL — authorization (approved, each decline), sales (partial, forced), cancel before and after sales and past the sales day, refunds, resends, reused transaction numbers, unknown ids — leaves the exact cash balance and the exact events in the outbox.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock, startTestKoban, type TestKoban } from '../../../../test/support/koban.ts';
import { errorOf, event, type Json, MERCHANT, PaymentHarness, type Response } from '../testing/harness.ts';

// 10:00 in Japan, where QUICPay+'s sales day is counted.
const START = '2026-03-02T01:00:00.000Z';
const clock = new ManualClock(START);
let koban: TestKoban;
let h: PaymentHarness;

before(async () => {
  koban = await startTestKoban({ label: 'quicpay', clock, env: { VISA_EXPIRY_SWEEP_INTERVAL_MS: '0', QUICPAY_EXPIRY_SWEEP_INTERVAL_MS: '0', KOBAN_SWEEP_INTERVAL_MS: '0' } });
  h = new PaymentHarness(koban);
});
after(async () => {
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

const message = (message_type: string, transaction_number: string, member_id: string, amount: number, original?: string, extra: Json = {}) =>
  h.quicpay({ message_type, transaction_number, member_id, amount, merchant: MERCHANT, ...(original === undefined ? {} : { original_transaction_number: original }), ...extra });
const authorize = (number: string, member: string, amount: number) => message('authorization', number, member, amount);
const sales = (number: string, original: string, member: string, amount: number) => message('sales', number, member, amount, original);
const cancel = (number: string, original: string, member: string, amount: number) => message('cancel', number, member, amount, original);
const refund = (number: string, original: string, member: string, amount: number) => message('refund', number, member, amount, original);

function answered(response: Response, body: Json): void {
  assert.equal(response.statusCode, 200, response.body);
  assert.equal(response.headers['idempotent-replayed'], 'false');
  assert.deepEqual(response.json(), body);
}
const approved = (transaction_number: string) => ({ transaction_number, result: 'approved' });

function refused(response: Response, status: number, code: string, details: Json): void {
  assert.equal(response.statusCode, status, response.body);
  assert.deepEqual(errorOf(response), { code, details });
}

const authorized = (id: string, amount: number) => event('quicpay', 'authorization', id, 'payment.authorized', { amount, authorized_total: amount, advice: false });
const captured = (id: string, figures: { amount: number; authorized_total: number; captured_total: number; forced?: boolean }) =>
  event('quicpay', 'sales_draft', id, 'payment.captured', { final: true, forced: false, ...figures });

describe('authorization', () => {
  test('approved: the cash is held; one payment.authorized on route quicpay', async () => {
    await h.fund('q-ok', 1000);
    answered(await authorize('q-a1', 'q-ok', 300), approved('q-a1'));
    assert.deepEqual(await h.cash('q-ok'), { available: 700, posted: 1000, pending_debit: 300 });
    assert.deepEqual(await h.events('quicpay:q-a1'), [authorized('q-a1', 300)]);
  });

  test('declined insufficient_balance: nothing held, one payment.declined', async () => {
    await h.fund('q-poor', 100);
    answered(await authorize('q-d1', 'q-poor', 300), { transaction_number: 'q-d1', result: 'declined', reason: 'insufficient_balance' });
    assert.deepEqual(await h.cash('q-poor'), { available: 100, posted: 100, pending_debit: 0 });
    assert.deepEqual(await h.events('quicpay:q-d1'), [event('quicpay', 'authorization', 'q-d1', 'payment.declined', { amount: 300, authorized_total: 0, decline_reason: 'insufficient_balance' })]);
  });

  test('declined amount_limit_exceeded above 1,000,000 yen even with the cash', async () => {
    await h.fund('q-rich', 2_000_000);
    answered(await authorize('q-d2', 'q-rich', 1_000_001), { transaction_number: 'q-d2', result: 'declined', reason: 'amount_limit_exceeded' });
    assert.deepEqual(await h.cash('q-rich'), { available: 2_000_000, posted: 2_000_000, pending_debit: 0 });
    assert.deepEqual(await h.events('quicpay:q-d2'), [event('quicpay', 'authorization', 'q-d2', 'payment.declined', { amount: 1_000_001, authorized_total: 0, decline_reason: 'amount_limit_exceeded' })]);
  });

  test('a resend gets the same bytes marked replayed; the number reused with other content, or by another message type, is 409 naming the fields', async () => {
    await h.fund('q-re', 1000);
    const first = await authorize('q-k1', 'q-re', 300);
    answered(first, approved('q-k1'));
    const again = await authorize('q-k1', 'q-re', 300);
    assert.equal(again.statusCode, 200);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body, first.body);
    refused(await message('authorization', 'q-k1', 'q-re', 300, undefined, { terminal_id: 'T-9' }), 409, 'idempotency_conflict', { fields: ['terminal_id'] });
    refused(await authorize('q-k1', 'q-re', 350), 409, 'idempotency_conflict', { fields: ['amount'] });
    // Transaction numbers are unique across message types: a sales reusing the authorization's number is a conflict, not a capture.
    refused(await sales('q-k1', 'q-k1', 'q-re', 300), 409, 'idempotency_conflict', { fields: ['message_type', 'original_transaction_number'] });
    assert.deepEqual(await h.cash('q-re'), { available: 700, posted: 1000, pending_debit: 300 });
    assert.deepEqual(await h.events('quicpay:q-k1'), [authorized('q-k1', 300)]);
  });
});

describe('sales', () => {
  test('settles against the authorization and releases what it did not take; the payment reads back', async () => {
    await h.fund('q-sale', 1000);
    await authorize('q-s', 'q-sale', 500);
    answered(await sales('q-s-1', 'q-s', 'q-sale', 400), approved('q-s-1'));
    assert.deepEqual(await h.cash('q-sale'), { available: 600, posted: 600, pending_debit: 0 });
    const resend = await sales('q-s-1', 'q-s', 'q-sale', 400);
    assert.equal(resend.headers['idempotent-replayed'], 'true');
    assert.equal(resend.body, JSON.stringify(approved('q-s-1')));
    assert.deepEqual(await h.events('quicpay:q-s'), [authorized('q-s', 500), captured('q-s-1', { amount: 400, authorized_total: 500, captured_total: 400 })]);
    const view = await h.getPayment('quicpay:q-s');
    assert.equal(view.statusCode, 200, view.body);
    assert.deepEqual(
      { ...view.json(), events: undefined },
      {
        payment_id: 'quicpay:q-s',
        route: 'quicpay',
        user_id: 'q-sale',
        status: 'captured',
        authorized_amount: 500,
        captured_total: 400,
        refunded_total: 0,
        held_amount: 0,
        ledger_transaction_ids: ['quicpay:q-s:hold'],
        events: undefined,
      },
    );
  });

  test('a sales whose authorization was never seen is a forced capture', async () => {
    await h.fund('q-forced', 1000);
    answered(await sales('q-fs-1', 'q-fs', 'q-forced', 250), approved('q-fs-1'));
    assert.deepEqual(await h.cash('q-forced'), { available: 750, posted: 750, pending_debit: 0 });
    assert.deepEqual(await h.events('quicpay:q-fs'), [captured('q-fs-1', { amount: 250, authorized_total: 0, captured_total: 250, forced: true })]);
  });

  test('a forced sales that would take the member past the largest debt the wallet keeps is 422 balance_limit_exceeded; nothing moves, no event', async () => {
    // 10^15 is the most one message carries, and the most a balance may owe: the first is taken, the second would owe more.
    answered(await sales('q-deep-1', 'q-deep-a', 'q-deep', 1_000_000_000_000_000), approved('q-deep-1'));
    const response = await sales('q-deep-2', 'q-deep-b', 'q-deep', 1_000_000_000_000_000);
    assert.equal(response.statusCode, 422, response.body);
    assert.equal(errorOf(response).code, 'balance_limit_exceeded');
    assert.deepEqual(await h.cash('q-deep'), { available: -1_000_000_000_000_000, posted: -1_000_000_000_000_000, pending_debit: 0 });
    assert.deepEqual(await h.events('quicpay:q-deep-b'), []);
  });

  test('a sales above the authorization takes it all (forced)', async () => {
    await h.fund('q-over', 1000);
    await authorize('q-o', 'q-over', 300);
    answered(await sales('q-o-1', 'q-o', 'q-over', 320), approved('q-o-1'));
    assert.deepEqual(await h.cash('q-over'), { available: 680, posted: 680, pending_debit: 0 });
    assert.deepEqual(await h.events('quicpay:q-o'), [authorized('q-o', 300), captured('q-o-1', { amount: 320, authorized_total: 300, captured_total: 320, forced: true })]);
  });
});

describe('cancel', () => {
  test('before sales it releases the hold; a resend gets the stored answer; a second cancel finds the payment closed', async () => {
    await h.fund('q-can', 1000);
    await authorize('q-c', 'q-can', 300);
    const first = await cancel('q-c-x', 'q-c', 'q-can', 300);
    answered(first, approved('q-c-x'));
    assert.deepEqual(await h.cash('q-can'), { available: 1000, posted: 1000, pending_debit: 0 });
    const again = await cancel('q-c-x', 'q-c', 'q-can', 300);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body, first.body);
    refused(await cancel('q-c-y', 'q-c', 'q-can', 300), 409, 'authorization_closed', { payment_id: 'quicpay:q-c', status: 'reversed' });
    assert.deepEqual(await h.events('quicpay:q-c'), [authorized('q-c', 300), event('quicpay', 'reversal', 'q-c-x', 'payment.reversed', { amount: 300, authorized_total: 300 })]);
  });

  test('before sales, part of the hold: the rest stays held for the sales', async () => {
    await h.fund('q-canp', 1000);
    await authorize('q-cp', 'q-canp', 500);
    refused(await cancel('q-cp-big', 'q-cp', 'q-canp', 501), 422, 'exceeds_held_amount', { field: 'amount', held_amount: 500 });
    answered(await cancel('q-cp-x', 'q-cp', 'q-canp', 200), approved('q-cp-x'));
    assert.deepEqual(await h.cash('q-canp'), { available: 700, posted: 1000, pending_debit: 300 });
    answered(await sales('q-cp-s', 'q-cp', 'q-canp', 300), approved('q-cp-s'));
    assert.deepEqual(await h.cash('q-canp'), { available: 700, posted: 700, pending_debit: 0 });
    assert.deepEqual(await h.events('quicpay:q-cp'), [
      authorized('q-cp', 500),
      event('quicpay', 'reversal', 'q-cp-x', 'payment.reversed', { amount: 200, authorized_total: 500 }),
      captured('q-cp-s', { amount: 300, authorized_total: 500, captured_total: 300 }),
    ]);
  });

  test('after sales, on the sales day (JST), it refunds the sale', async () => {
    await h.fund('q-cana', 1000);
    await authorize('q-ca', 'q-cana', 300);
    await sales('q-ca-s', 'q-ca', 'q-cana', 300);
    assert.deepEqual(await h.cash('q-cana'), { available: 700, posted: 700, pending_debit: 0 });
    answered(await cancel('q-ca-x', 'q-ca', 'q-cana', 300), approved('q-ca-x'));
    assert.deepEqual(await h.cash('q-cana'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.deepEqual(await h.events('quicpay:q-ca'), [
      authorized('q-ca', 300),
      captured('q-ca-s', { amount: 300, authorized_total: 300, captured_total: 300 }),
      event('quicpay', 'refund', 'q-ca-x', 'payment.refunded', { amount: 300, authorized_total: 300, captured_total: 300, refunded_total: 300 }),
    ]);
  });
});

describe('refunds', () => {
  test('several partial refunds up to the captured total; beyond it 422 exceeds_captured_amount and nothing changes', async () => {
    await h.fund('q-ref', 1000);
    await authorize('q-r', 'q-ref', 500);
    await sales('q-r-s', 'q-r', 'q-ref', 500);
    answered(await refund('q-r-f1', 'q-r', 'q-ref', 100), approved('q-r-f1'));
    assert.deepEqual(await h.cash('q-ref'), { available: 600, posted: 600, pending_debit: 0 });
    answered(await refund('q-r-f2', 'q-r', 'q-ref', 150), approved('q-r-f2'));
    assert.deepEqual(await h.cash('q-ref'), { available: 750, posted: 750, pending_debit: 0 });
    const before = await h.footprint();
    refused(await refund('q-r-f3', 'q-r', 'q-ref', 251), 422, 'exceeds_captured_amount', { field: 'amount', refundable: 250 });
    assert.deepEqual(await h.footprint(), before);
    assert.deepEqual(await h.cash('q-ref'), { available: 750, posted: 750, pending_debit: 0 });
    const figures = { authorized_total: 500, captured_total: 500 };
    assert.deepEqual(await h.events('quicpay:q-r'), [
      authorized('q-r', 500),
      captured('q-r-s', { amount: 500, ...figures }),
      event('quicpay', 'refund', 'q-r-f1', 'payment.refunded', { amount: 100, ...figures, refunded_total: 100 }),
      event('quicpay', 'refund', 'q-r-f2', 'payment.refunded', { amount: 150, ...figures, refunded_total: 250 }),
    ]);
  });
});

describe('unknown ids', () => {
  test('cancel, refund and sales naming what is not there, or another member\'s payment, are refused; nothing stored, no event', async () => {
    await h.fund('q-unk', 1000);
    await authorize('q-u', 'q-unk', 2_000_000); // declined
    const before = await h.footprint();
    refused(await cancel('q-u-c', 'q-none', 'q-unk', 100), 404, 'not_found', { field: 'authorization_id', payment_id: 'quicpay:q-none' });
    refused(await refund('q-u-f', 'q-none', 'q-unk', 100), 404, 'not_found', { field: 'authorization_id', payment_id: 'quicpay:q-none' });
    refused(await cancel('q-u-c2', 'q-u', 'q-unk', 100), 409, 'authorization_closed', { payment_id: 'quicpay:q-u', status: 'declined' });
    refused(await refund('q-u-f2', 'q-u', 'q-unk', 100), 422, 'exceeds_captured_amount', { field: 'amount', refundable: 0 });
    refused(await sales('q-u-s', 'q-a1', 'q-unk', 100), 400, 'invalid_request', { field: 'user_id', payment_id: 'quicpay:q-a1' });
    refused(await h.getPayment('quicpay:q-none'), 404, 'not_found', { field: 'payment_id', payment_id: 'quicpay:q-none' });
    assert.deepEqual(await h.footprint(), before);
    assert.deepEqual(await h.cash('q-unk'), { available: 1000, posted: 1000, pending_debit: 0 });
  });
});

describe('the sales day', () => {
  test('a cancel after the sales day (JST) is 409 cancel_window_closed; a refund still works', async () => {
    await h.fund('q-late', 1000);
    await authorize('q-w', 'q-late', 300);
    await sales('q-w-s', 'q-w', 'q-late', 300);
    try {
      clock.set('2026-03-02T15:00:00.000Z'); // 00:00 on 3 March in Japan
      const before = await h.footprint();
      refused(await cancel('q-w-x', 'q-w', 'q-late', 300), 409, 'cancel_window_closed', { captured_on: '2026-03-02' });
      assert.deepEqual(await h.footprint(), before);
      answered(await refund('q-w-f', 'q-w', 'q-late', 300), approved('q-w-f'));
      assert.deepEqual(await h.cash('q-late'), { available: 1000, posted: 1000, pending_debit: 0 });
    } finally {
      clock.set(START);
    }
  });
});
