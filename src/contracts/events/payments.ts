// The payment events: the published language of the card routes on topic
// `payments`. Producers (visa, quicpay) validate `data` before writing it to
// their outbox; consumers validate it on receipt, with the same validator.
//
// Versioning rule: changes to a type are additive only — a new optional
// field, a new enum value a consumer may ignore. Removing or renaming a field,
// or changing its meaning or type, is a new event type (`payment.captured.v2`),
// published beside the old one until no consumer reads it. Consumers ignore
// fields they do not know (the schemas below allow none that are unknown to
// this version, so a producer cannot drift unnoticed; a consumer built on an
// older copy validates with `additionalProperties` relaxed — see
// `parsePaymentEvent`).
import type { CloudEvent, CloudEventInput } from './envelope.ts';
import { checkEventType, eventDataValidator } from './event-data.ts';

export const PAYMENTS_TOPIC = 'payments';

export const PAYMENT_ROUTES = ['visa', 'quicpay'] as const;
export type PaymentRoute = (typeof PAYMENT_ROUTES)[number];

/** One event per state change of a payment. */
export const PAYMENT_EVENT_TYPES = [
  'payment.authorized',
  'payment.authorization_increased',
  'payment.captured',
  'payment.reversed',
  'payment.authorization_expired',
  'payment.refunded',
  'payment.declined',
] as const;
export type PaymentEventType = (typeof PAYMENT_EVENT_TYPES)[number];

export const DECLINE_REASONS = ['insufficient_balance', 'unsupported_currency', 'amount_limit_exceeded'] as const;
export type DeclineReason = (typeof DECLINE_REASONS)[number];

export type Merchant = { id: string; name: string; category_code: string };

/** What every payment event carries. Amounts are integers in minor units of `currency`. */
export type PaymentEventData = {
  /** `<route>:<the network's authorization id>`: the event's `subject` too. */
  payment_id: string;
  route: PaymentRoute;
  user_id: string;
  /** This state change's amount: authorized, added, captured, released, refunded or declined. */
  amount: number;
  /** All authorized so far (holds and incrementals). */
  authorized_total: number;
  captured_total: number;
  refunded_total: number;
  currency: string;
  merchant: Merchant;
  /** When the network's message arrived (or the deadline passed, for expiry), RFC 3339. */
  occurred_at: string;
  /** The network's id of the message that caused it (authorization, sales draft, reversal, refund id). */
  network_message_id: string;
  /** payment.authorized: a stand-in approval the network made for us. */
  advice?: boolean;
  /** payment.captured: whether this capture closed the authorization. */
  final?: boolean;
  /** payment.captured: more than was held was taken (over-capture or no authorization seen). */
  forced?: boolean;
  /** payment.declined: why. */
  decline_reason?: DeclineReason;
};

const AMOUNT = { type: 'integer', minimum: 0, maximum: 1_000_000_000_000_000 } as const;
const TEXT = (max: number) => ({ type: 'string', minLength: 1, maxLength: max }) as const;

export const paymentEventDataSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['payment_id', 'route', 'user_id', 'amount', 'authorized_total', 'captured_total', 'refunded_total', 'currency', 'merchant', 'occurred_at', 'network_message_id'],
  properties: {
    payment_id: TEXT(128),
    route: { enum: PAYMENT_ROUTES },
    user_id: TEXT(128),
    amount: AMOUNT,
    authorized_total: AMOUNT,
    captured_total: AMOUNT,
    refunded_total: AMOUNT,
    currency: { type: 'string', pattern: '^[A-Z]{3}$' },
    merchant: {
      type: 'object',
      additionalProperties: false,
      required: ['id', 'name', 'category_code'],
      properties: { id: TEXT(64), name: TEXT(256), category_code: { type: 'string', pattern: '^[0-9]{4}$' } },
    },
    occurred_at: { type: 'string', minLength: 20, maxLength: 64 },
    network_message_id: TEXT(64),
    advice: { type: 'boolean' },
    final: { type: 'boolean' },
    forced: { type: 'boolean' },
    decline_reason: { enum: DECLINE_REASONS },
  },
} as const;

const validator = eventDataValidator<PaymentEventData>(paymentEventDataSchema, 'payment event');

/** Producers: throws `invalid_request` naming the field unless `data` is exactly this version's shape. */
export function checkPaymentEventData(data: unknown): PaymentEventData {
  return validator.check(data);
}

/** A payment event as a consumer sees it: the type checked, `data` validated; fields this version does not know are dropped, not refused. */
export type PaymentEvent = { id: string; type: PaymentEventType; subject: string; data: PaymentEventData };

/** Consumers: validates an event from topic `payments` on receipt; throws `invalid_request` (a poison message) if it is not one. */
export function parsePaymentEvent(event: CloudEvent): PaymentEvent {
  const type = checkEventType(event.type, PAYMENT_EVENT_TYPES, 'payment event');
  const data = validator.parse(event.data);
  return { id: event.id, type, subject: String(event.subject ?? data.payment_id), data };
}

/** The CloudEvent a producer writes to its outbox: `route` and `mcc` as extension attributes, for filter policies. */
export function paymentEvent(input: { id: string; type: PaymentEventType; data: PaymentEventData; time: string }): CloudEventInput {
  const data = checkPaymentEventData(input.data);
  return {
    specversion: '1.0',
    id: input.id,
    source: `/koban/payments/${data.route}`,
    type: input.type,
    subject: data.payment_id,
    time: input.time,
    datacontenttype: 'application/json',
    route: data.route,
    mcc: data.merchant.category_code,
    data,
  };
}
