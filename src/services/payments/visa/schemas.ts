// The Visa route's messages, as the network sends them (the field names are
// the contract), and its answers.
import { jsonResponse } from '../../../platform/http/openapi.ts';
import { networkReplayHeaders } from '../http/answer.ts';
import { DECLINE_REASONS } from '../../../contracts/events/payments.ts';
import { amount, currency, merchant, messageErrors, networkId, userId } from '../http/schemas.ts';

const body = (title: string, required: readonly string[], properties: Record<string, object>) =>
  ({ title, type: 'object', additionalProperties: false, required, properties }) as const;

const authorization = body('VisaAuthorization', ['authorization_id', 'user_id', 'amount', 'currency', 'merchant'], {
  authorization_id: networkId('The network\'s id of this authorization (an incremental one has its own)'),
  user_id: userId,
  amount,
  currency,
  merchant,
  incremental_of: networkId('Raises the hold of this earlier approved authorization instead of starting a payment'),
});

const authorizationAnswer = {
  title: 'VisaAuthorizationAnswer',
  type: 'object',
  additionalProperties: false,
  required: ['authorization_id', 'approved'],
  properties: {
    authorization_id: { type: 'string' },
    approved: { type: 'boolean' },
    decline_reason: { type: 'string', enum: DECLINE_REASONS, description: 'Why it was declined: a decline is an answer, not an error' },
    available_after: { type: 'integer', description: 'Cash the user can still spend after this hold' },
  },
} as const;

const replayed = 'An identical resend of the same id gets the same bytes with `Idempotent-Replayed: true`.';

export const visaSchemas = {
  authorization: {
    operationId: 'authorizeVisa',
    summary: 'Authorize a card payment: hold the cash, or decline',
    description: `Approves with a hold on the user's cash, or declines (\`insufficient_balance\`, \`unsupported_currency\`, \`amount_limit_exceeded\`). With \`incremental_of\`, raises an approved authorization's hold. ${replayed}`,
    tags: ['visa'],
    body: authorization,
    response: { 200: jsonResponse('The answer to the network', authorizationAnswer, networkReplayHeaders), ...messageErrors('not_found', 'authorization_closed') },
  },
  advice: {
    operationId: 'recordVisaAdvice',
    summary: 'Record a stand-in approval the network made while Koban was unreachable',
    description: `Same body as an authorization. Holds the cash even if that takes the balance below zero (a forced hold; past the largest debt the wallet keeps, 422 \`balance_limit_exceeded\`); never declines. ${replayed}`,
    tags: ['visa'],
    body: { ...authorization, title: 'VisaAdvice' },
    response: { 200: jsonResponse('The acknowledgement', authorizationAnswer, networkReplayHeaders), ...messageErrors('not_found', 'authorization_closed', 'unsupported_currency', 'balance_limit_exceeded') },
  },
  salesDraft: {
    operationId: 'captureVisaSalesDraft',
    summary: 'Capture (clear) an authorization, all or part of it',
    description: `Posts \`amount\` from the hold. \`final\` (default true) releases what remains; \`final: false\` keeps it held for later sales drafts. More than held is taken anyway (a forced debit), and so is a sales draft whose authorization was never seen. ${replayed}`,
    tags: ['visa'],
    body: body('VisaSalesDraft', ['sales_draft_id', 'authorization_id', 'user_id', 'amount', 'currency', 'merchant'], {
      sales_draft_id: networkId('The network\'s id of this sales draft'),
      authorization_id: networkId('The authorization it captures'),
      user_id: userId,
      amount,
      currency,
      merchant,
      final: { type: 'boolean', default: true, description: 'Whether this is the last capture of the authorization' },
    }),
    response: {
      200: jsonResponse(
        'The capture',
        {
          title: 'VisaCapture',
          type: 'object',
          additionalProperties: false,
          required: ['sales_draft_id', 'authorization_id', 'payment_id', 'captured_amount', 'captured_total', 'held_amount', 'forced'],
          properties: {
            sales_draft_id: { type: 'string' },
            authorization_id: { type: 'string' },
            payment_id: { type: 'string' },
            captured_amount: { type: 'integer' },
            captured_total: { type: 'integer' },
            held_amount: { type: 'integer', description: 'Still held for later sales drafts' },
            forced: { type: 'boolean', description: 'More was taken than was held (over-capture, or no authorization seen)' },
          },
        },
        networkReplayHeaders,
      ),
      ...messageErrors('unsupported_currency', 'balance_limit_exceeded'),
    },
  },
  reversal: {
    operationId: 'reverseVisaAuthorization',
    summary: 'Release all or part of an uncaptured hold',
    tags: ['visa'],
    body: body('VisaReversal', ['reversal_id', 'authorization_id', 'user_id'], {
      reversal_id: networkId('The network\'s id of this reversal'),
      authorization_id: networkId('The authorization whose hold it releases'),
      user_id: userId,
      amount: { ...amount, description: 'How much to release; all that is held if absent' },
    }),
    response: {
      200: jsonResponse(
        'The release',
        {
          title: 'VisaReversalAnswer',
          type: 'object',
          additionalProperties: false,
          required: ['reversal_id', 'authorization_id', 'payment_id', 'reversed_amount', 'held_amount'],
          properties: { reversal_id: { type: 'string' }, authorization_id: { type: 'string' }, payment_id: { type: 'string' }, reversed_amount: { type: 'integer' }, held_amount: { type: 'integer' } },
        },
        networkReplayHeaders,
      ),
      ...messageErrors('not_found', 'authorization_closed', 'exceeds_held_amount'),
    },
  },
  refund: {
    operationId: 'refundVisaSalesDraft',
    summary: 'Refund all or part of a sales draft',
    description: `Cash returns to the lots it was drawn from. Several partial refunds may follow, up to what the sales draft captured. ${replayed}`,
    tags: ['visa'],
    body: body('VisaRefund', ['refund_id', 'sales_draft_id', 'user_id', 'amount'], {
      refund_id: networkId('The network\'s id of this refund'),
      sales_draft_id: networkId('The sales draft it refunds'),
      user_id: userId,
      amount,
    }),
    response: {
      200: jsonResponse(
        'The refund',
        {
          title: 'VisaRefundAnswer',
          type: 'object',
          additionalProperties: false,
          required: ['refund_id', 'payment_id', 'sales_draft_id', 'refunded_amount', 'refunded_total'],
          properties: { refund_id: { type: 'string' }, payment_id: { type: 'string' }, sales_draft_id: { type: 'string' }, refunded_amount: { type: 'integer' }, refunded_total: { type: 'integer' } },
        },
        networkReplayHeaders,
      ),
      ...messageErrors('not_found', 'exceeds_captured_amount', 'balance_limit_exceeded'),
    },
  },
} as const;
