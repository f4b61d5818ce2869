// The QUICPay+ message, as the network sends it (field names are the contract), and its answer.
import { jsonResponse } from '../../../platform/http/openapi.ts';
import { networkReplayHeaders } from '../http/answer.ts';
import { STORABLE_TEXT_PATTERN } from '../../../platform/storable-text.ts';
import { DECLINE_REASONS } from '../../../contracts/events/payments.ts';
import { amount, merchant, messageErrors, networkId, userId } from '../http/schemas.ts';
import { QUICPAY_MESSAGE_TYPES } from './mapping.ts';

export const quicpaySchemas = {
  message: {
    operationId: 'sendQuicpayMessage',
    summary: 'A QUICPay+ message: authorization, sales, cancel or refund',
    description:
      'Authorization holds the cash (or declines); sales settles against `original_transaction_number` (or is a forced capture when that authorization was never seen); cancel releases the hold before sales, or refunds the sale on its own day (JST); refund refunds. Every message is idempotent on `transaction_number`: an identical resend gets the same bytes with `Idempotent-Replayed: true`; the same number with other content is 409 `idempotency_conflict`.',
    tags: ['quicpay'],
    body: {
      title: 'QuicpayMessage',
      type: 'object',
      additionalProperties: false,
      required: ['message_type', 'transaction_number', 'member_id', 'amount', 'merchant'],
      properties: {
        message_type: { type: 'string', enum: QUICPAY_MESSAGE_TYPES },
        transaction_number: networkId('The network\'s number of this message, unique across message types'),
        original_transaction_number: networkId('The authorization\'s transaction number (required for sales, cancel and refund)'),
        member_id: userId,
        amount,
        merchant,
        terminal_id: { type: 'string', minLength: 1, maxLength: 64, pattern: STORABLE_TEXT_PATTERN },
      },
      // Only the types that name an authorization: an unknown type is then refused for its message_type, not for a missing original.
      if: { required: ['message_type'], properties: { message_type: { enum: QUICPAY_MESSAGE_TYPES.filter((type) => type !== 'authorization') } } },
      then: { required: ['original_transaction_number'], properties: { original_transaction_number: { type: 'string' } } },
    },
    response: {
      200: jsonResponse(
        'The answer to the network',
        {
          title: 'QuicpayAnswer',
          type: 'object',
          additionalProperties: false,
          required: ['transaction_number', 'result'],
          properties: {
            transaction_number: { type: 'string' },
            result: { type: 'string', enum: ['approved', 'declined'] },
            reason: { type: 'string', enum: DECLINE_REASONS, description: 'Why an authorization was declined' },
          },
        },
        networkReplayHeaders,
      ),
      ...messageErrors('not_found', 'authorization_closed', 'cancel_window_closed', 'exceeds_held_amount', 'exceeds_captured_amount', 'balance_limit_exceeded'),
    },
  },
} as const;
