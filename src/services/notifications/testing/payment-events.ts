// Payment events as the payment services publish them, for the notifications tests: each call a new payment.
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import { paymentEvent, type PaymentEventData, type PaymentEventType } from '../../../contracts/events/payments.ts';

let sequence = 0;

export function paymentData(user: string, overrides: Partial<PaymentEventData> = {}): PaymentEventData {
  sequence += 1;
  return {
    payment_id: `visa:P${sequence}`,
    route: 'visa',
    user_id: user,
    amount: 3_000,
    authorized_total: 3_000,
    captured_total: 0,
    refunded_total: 0,
    currency: 'JPY',
    merchant: { id: 'm-42', name: 'Koban Coffee', category_code: '5814' },
    occurred_at: '2026-01-02T03:04:05.000Z',
    network_message_id: `N${sequence}`,
    ...overrides,
  };
}

export function paymentEventFor(user: string, type: PaymentEventType = 'payment.authorized', overrides: Partial<PaymentEventData> = {}): CloudEvent {
  const data = paymentData(user, overrides);
  return paymentEvent({ id: `visa.test.${data.network_message_id}`, type, data, time: '2026-01-02T03:04:05.000Z' }) as CloudEvent;
}
