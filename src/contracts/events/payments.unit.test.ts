// Goal: the payment events' one validator holds producers to the exact schema and lets consumers read a newer producer's additive fields without choking, and the CloudEvent carries the route and MCC for filter policies.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isErrorCode } from '../../platform/errors.ts';
import { systemClock } from '../../platform/clock.ts';
import { validateEvent } from './envelope.ts';
import { checkPaymentEventData, parsePaymentEvent, paymentEvent, type PaymentEventData } from './payments.ts';

const data: PaymentEventData = {
  payment_id: 'visa:A1',
  route: 'visa',
  user_id: 'u',
  amount: 1_000,
  authorized_total: 1_000,
  captured_total: 0,
  refunded_total: 0,
  currency: 'JPY',
  merchant: { id: 'm', name: 'Shop', category_code: '5411' },
  occurred_at: '2026-03-01T00:00:00.000Z',
  network_message_id: 'A1',
  advice: false,
};

describe('payment events (unit)', () => {
  test('producers: an exact shape passes; a missing, mistyped or unknown field is refused naming it', () => {
    assert.deepEqual(checkPaymentEventData(data), data);
    const refused = (value: unknown, field: string) =>
      assert.throws(() => checkPaymentEventData(value), (error) => isErrorCode(error, 'invalid_request') && (error.details as { field: string }).field === field);
    const { amount: _amount, ...withoutAmount } = data;
    refused(withoutAmount, 'data.amount');
    refused({ ...data, amount: 1.5 }, 'data.amount');
    refused({ ...data, extra: 1 }, 'data.extra');
    refused({ ...data, merchant: { ...data.merchant, category_code: '54' } }, 'data.merchant.category_code');
    refused({ ...data, route: 'amex' }, 'data.route');
  });

  test('the CloudEvent: subject is the payment, route and mcc are extension attributes, and the envelope validates', () => {
    const event = paymentEvent({ id: 'visa.authorization.A1', type: 'payment.authorized', data, time: data.occurred_at });
    assert.deepEqual([event.subject, event.route, event.mcc, event.source], ['visa:A1', 'visa', '5411', '/koban/payments/visa']);
    assert.equal(validateEvent(event, systemClock).id, 'visa.authorization.A1');
  });

  test('consumers: an additive field from a newer producer is dropped, not refused; a wrong type or shape is a poison message', () => {
    const event = validateEvent(paymentEvent({ id: 'e1', type: 'payment.captured', data, time: data.occurred_at }), systemClock);
    const newer = { ...event, data: { ...data, installments: 3 } };
    assert.deepEqual(parsePaymentEvent(newer).data, data);
    assert.throws(() => parsePaymentEvent({ ...event, type: 'payment.exploded' }), (error) => isErrorCode(error, 'invalid_request'));
    assert.throws(() => parsePaymentEvent({ ...event, data: { ...data, amount: -1 } }), (error) => isErrorCode(error, 'invalid_request'));
    assert.throws(() => parsePaymentEvent({ ...event, data: 'nope' }), (error) => isErrorCode(error, 'invalid_request'));
  });
});
