// Goal: QUICPay+ maps onto the shared domain as its contract says — a cancel before sales releases, on the sales day (JST) refunds, later is refused — and answers in its own shape.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isErrorCode } from '../../../platform/errors.ts';
import { decideAuthorization, decideCapture } from '../domain/payment.ts';
import { cancelAction, quicpayDialect } from './mapping.ts';

const rules = { route: 'quicpay', currency: 'JPY', authorizationAmountMax: 100_000, holdTimeoutMs: 86_400_000 } as const;
const merchant = { id: 'm', name: 'Shop', category_code: '5411' };

describe('quicpay.mapping.unit', () => {
  const sold = (at: string) => {
    const now = new Date(at);
    const payment = decideAuthorization(rules, { authorization_id: 'Q1', user_id: 'u', amount: 100, currency: 'JPY', merchant }, { advice: false, now }).payment;
    return decideCapture(payment, { sales_draft_id: 'Q2', amount: 100, currency: 'JPY', final: true }, now).payment;
  };

  test('a cancel before any sale releases the hold (also for a payment not seen: the domain answers not_found)', () => {
    assert.equal(cancelAction(undefined, new Date()), 'reverse');
  });

  test('a cancel on the day of the sale refunds, by the JST calendar; the next JST day it is refused', () => {
    // 14:59 UTC is 23:59 JST; 15:00 UTC is the next JST day.
    const payment = sold('2026-03-01T10:00:00.000Z');
    assert.equal(cancelAction(payment, new Date('2026-03-01T14:59:59.999Z')), 'refund');
    assert.throws(() => cancelAction(payment, new Date('2026-03-01T15:00:00.000Z')), (error) => isErrorCode(error, 'cancel_window_closed') && (error.details as { captured_on: string }).captured_on === '2026-03-01');
    // A sale at 16:00 UTC is already the 2nd in JST; a cancel at 01:00 UTC on the 2nd is the same JST day.
    assert.equal(cancelAction(sold('2026-03-01T16:00:00.000Z'), new Date('2026-03-02T01:00:00.000Z')), 'refund');
  });

  test('answers carry the transaction number and approved/declined with the reason; every message shares one id namespace', () => {
    assert.deepEqual(quicpayDialect.render('authorization', { authorization_id: 'Q1', approved: true, available_after: 5 }), { transaction_number: 'Q1', result: 'approved' });
    assert.deepEqual(quicpayDialect.render('authorization', { authorization_id: 'Q1', approved: false, decline_reason: 'insufficient_balance' }), {
      transaction_number: 'Q1',
      result: 'declined',
      reason: 'insufficient_balance',
    });
    assert.deepEqual(quicpayDialect.render('sales_draft', { sales_draft_id: 'Q2', captured_total: 100 }), { transaction_number: 'Q2', result: 'approved' });
    assert.deepEqual(quicpayDialect.render('refund', { refund_id: 'Q3' }), { transaction_number: 'Q3', result: 'approved' });
    // The domain's sales and cancel answers name the authorization too: the answer carries the message's own number, not that one.
    assert.deepEqual(quicpayDialect.render('sales_draft', { sales_draft_id: 'Q2', authorization_id: 'Q1', payment_id: 'quicpay:Q1' }), { transaction_number: 'Q2', result: 'approved' });
    assert.deepEqual(quicpayDialect.render('reversal', { reversal_id: 'Q4', authorization_id: 'Q1', payment_id: 'quicpay:Q1' }), { transaction_number: 'Q4', result: 'approved' });
    assert.equal(quicpayDialect.namespace('refund'), quicpayDialect.namespace('authorization'));
  });
});
