// What a caller may send the ledger, as JSON schemas defined once: the domain
// compiles them to check every request (validation.ts), whatever the
// transport; the HTTP routes reuse them for fast rejection and for OpenAPI.
import { TRANSACTION_TYPES } from '../../../contracts/ledger/types.ts';
import {
  AMOUNT_MAX,
  AMOUNT_MIN,
  CALLER_TRANSACTION_ID_PATTERN,
  DESCRIPTION_LENGTH_MAX,
  ID_LENGTH_MAX,
  ID_PATTERN,
  METADATA_BYTES_MAX,
  PAGE_LIMIT_DEFAULT,
  PAGE_LIMIT_MAX,
  SYSTEM_TRANSACTION_ID_PREFIX,
} from './limits.ts';

import { STORABLE_TEXT_PATTERN } from '../../../platform/storable-text.ts';

export { STORABLE_TEXT_PATTERN };
/** Page cursors as the ledger issues them (base64url of a short key). */
const CURSOR_PATTERN = '^[A-Za-z0-9_-]+$';
const CURSOR_LENGTH_MAX = 64;

const ID_SHAPE = `1–${ID_LENGTH_MAX} characters of [A-Za-z0-9._:-], not \`.\` or \`..\``;
export const idSchema = (what: string) => ({ type: 'string', pattern: ID_PATTERN, description: `${what}: ${ID_SHAPE}` }) as const;

export type LedgerRequestSchemas = ReturnType<typeof ledgerRequestSchemas>;

/** One set per service instance: the balance types are configuration. */
export function ledgerRequestSchemas(balanceTypes: readonly string[]) {
  const balanceType = { type: 'string', enum: [...balanceTypes], description: 'A configured balance type' } as const;
  const amount = { type: 'integer', minimum: AMOUNT_MIN, maximum: AMOUNT_MAX, description: 'Minor units (yen, points); a JSON integer' } as const;
  const instant = (description: string) => ({ type: 'string', format: 'date-time', description: `${description} (RFC 3339, with a time zone)` }) as const;

  const transactionRequest = {
    type: 'object',
    additionalProperties: false,
    required: ['transaction_id', 'type', 'user_id', 'balance_type', 'amount'],
    properties: {
      transaction_id: {
        type: 'string',
        pattern: CALLER_TRANSACTION_ID_PATTERN,
        description: `Caller-chosen id of the operation: ${ID_SHAPE}, not starting with \`${SYSTEM_TRANSACTION_ID_PREFIX}\` (reserved for the ledger)`,
      },
      type: { type: 'string', enum: [...TRANSACTION_TYPES] },
      user_id: idSchema('The user whose balance moves'),
      balance_type: balanceType,
      amount,
      pending: { type: 'boolean', description: 'Create a hold (add or consume): reserved until posted, voided or past pending_expires_at' },
      pending_expires_at: instant("The hold's deadline; 7 days from now if absent"),
      expires_at: instant('For an add: when its value expires (a time-limited balance)'),
      refund_of: idSchema('For a refund: the transaction id of the posted consume to give value back from'),
      force: {
        type: 'boolean',
        description:
          'For a consume (posted or a hold): take it even beyond the available balance, which may go below zero (at most DEBT_MAX below); the lots it can draw are drawn, the rest is a debt that the next credits pay first. false is the same as absent',
      },
      description: { type: 'string', maxLength: DESCRIPTION_LENGTH_MAX, pattern: STORABLE_TEXT_PATTERN, description: 'Free text: no NUL, no lone surrogate' },
      metadata: {
        type: 'object',
        additionalProperties: true,
        description: `Caller data kept with the transaction, at most ${METADATA_BYTES_MAX / 1024} KiB as JSON; no NUL or lone surrogate in any key or string`,
      },
    },
  } as const;

  return {
    transactionRequest,
    postRequest: {
      type: 'object',
      additionalProperties: false,
      required: ['balance_type'],
      properties: {
        balance_type: balanceType,
        amount: { ...amount, description: 'Part to post; the whole hold if absent. More than the hold only with force' },
        force: {
          type: 'boolean',
          description: 'For a hold on a consume: an amount above the hold posts the hold and debits the difference as a forced consume (the balance may go below zero). false is the same as absent',
        },
      },
    },
    voidRequest: { type: 'object', additionalProperties: false, required: ['balance_type'], properties: { balance_type: balanceType } },
    holdParams: { type: 'object', required: ['transaction_id'], properties: { transaction_id: idSchema('The hold') } },
    transactionParams: { type: 'object', required: ['transaction_id'], properties: { transaction_id: idSchema('Transaction id') } },
    userParams: { type: 'object', required: ['user_id'], properties: { user_id: idSchema('User id') } },
    balanceParams: { type: 'object', required: ['user_id', 'balance_type'], properties: { user_id: idSchema('User id'), balance_type: balanceType } },
    transactionListQuery: {
      type: 'object',
      additionalProperties: false,
      properties: {
        balance_type: balanceType,
        limit: { type: 'integer', minimum: 1, maximum: PAGE_LIMIT_MAX, default: PAGE_LIMIT_DEFAULT },
        cursor: { type: 'string', minLength: 1, maxLength: CURSOR_LENGTH_MAX, pattern: CURSOR_PATTERN },
      },
    },
  } as const;
}
