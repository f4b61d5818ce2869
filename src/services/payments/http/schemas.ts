// JSON schemas every card route shares: amounts, ids, merchants, and the
// payment read. Each route's own message schemas live in its folder.
import { BODY_ERRORS, COMMON_ERRORS, errorResponses, jsonResponse } from '../../../platform/http/openapi.ts';
import type { ErrorCode } from '../../../platform/errors.ts';
import { STORABLE_TEXT_PATTERN } from '../../../platform/storable-text.ts';
import { MERCHANT_ID_LENGTH_MAX, MERCHANT_NAME_LENGTH_MAX, MESSAGE_AMOUNT_MAX, NETWORK_ID_PATTERN, USER_ID_PATTERN } from '../domain/limits.ts';

export const networkId = (what: string) => ({ type: 'string', pattern: NETWORK_ID_PATTERN, description: `${what}: 1–48 characters of [A-Za-z0-9_-]` }) as const;
export const userId = { type: 'string', pattern: USER_ID_PATTERN, description: 'The wallet user: 1–128 characters of [A-Za-z0-9._:-]' } as const;
export const amount = { type: 'integer', minimum: 1, maximum: MESSAGE_AMOUNT_MAX, description: 'In minor units of the currency (yen): an integer, 1–10^15' } as const;
export const currency = { type: 'string', pattern: '^[A-Z]{3}$', description: 'ISO 4217 code; the wallet holds JPY (another is declined)' } as const;
export const merchant = {
  title: 'Merchant',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'category_code'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: MERCHANT_ID_LENGTH_MAX, pattern: STORABLE_TEXT_PATTERN },
    name: { type: 'string', minLength: 1, maxLength: MERCHANT_NAME_LENGTH_MAX, pattern: STORABLE_TEXT_PATTERN },
    category_code: { type: 'string', pattern: '^[0-9]{4}$', description: 'ISO 18245 merchant category code (MCC), four digits' },
  },
} as const;

/** The errors of a network message: its own, plus malformed bodies and the shared ones. */
export const messageErrors = (...codes: ErrorCode[]) => errorResponses([...BODY_ERRORS, 'idempotency_conflict', ...codes]);

const paymentView = {
  title: 'Payment',
  type: 'object',
  additionalProperties: false,
  required: ['payment_id', 'route', 'user_id', 'status', 'authorized_amount', 'captured_total', 'refunded_total', 'held_amount', 'ledger_transaction_ids', 'events'],
  properties: {
    payment_id: { type: 'string', description: '`<route>:<the network\'s authorization id>`' },
    route: { type: 'string', enum: ['visa', 'quicpay'] },
    user_id: { type: 'string' },
    status: { type: 'string', enum: ['authorized', 'declined', 'captured', 'reversed', 'expired', 'refunded'] },
    authorized_amount: { type: 'integer' },
    captured_total: { type: 'integer' },
    refunded_total: { type: 'integer' },
    held_amount: { type: 'integer', description: 'Still reserved for captures to come' },
    ledger_transaction_ids: { type: 'array', items: { type: 'string' }, description: 'Every ledger transaction of the payment, in order' },
    events: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'type', 'occurred_at', 'published_at'],
        properties: { id: { type: 'string' }, type: { type: 'string' }, occurred_at: { type: 'string' }, published_at: { type: ['string', 'null'], description: 'null while it waits in the outbox' } },
      },
    },
  },
} as const;

export const getPaymentSchema = {
  operationId: 'getPayment',
  summary: 'Read a payment: its status, totals, ledger transactions and events',
  tags: ['payments'],
  params: {
    type: 'object',
    additionalProperties: false,
    required: ['payment_id'],
    properties: { payment_id: { type: 'string', pattern: '^(visa|quicpay):[A-Za-z0-9_-]{1,48}$', description: '`<route>:<authorization id>`, e.g. `visa:A1B2C3`' } },
  },
  response: { 200: jsonResponse('The payment', paymentView), ...errorResponses([...COMMON_ERRORS, 'not_found']) },
} as const;
