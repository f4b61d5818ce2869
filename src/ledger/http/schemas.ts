// JSON schemas of the balance API: they validate requests and generate OpenAPI.
import { ERROR_SCHEMA_ID } from '../../platform/http/server.ts';
import { AMOUNT_MAX, AMOUNT_MIN, DESCRIPTION_LENGTH_MAX, ID_PATTERN, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX } from '../limits.ts';
import { TRANSACTION_TYPES } from '../types.ts';

const idSchema = (what: string) => ({ type: 'string', pattern: ID_PATTERN, description: `${what}: 1–128 characters of [A-Za-z0-9._:-]` }) as const;
const errorRef = { $ref: `${ERROR_SCHEMA_ID}#` } as const;

export function ledgerSchemas(balanceTypes: readonly string[]) {
  const balanceType = { type: 'string', enum: [...balanceTypes], description: 'A configured balance type' } as const;
  const amount = { type: 'integer', minimum: AMOUNT_MIN, maximum: AMOUNT_MAX, description: 'Minor units (yen, points); a JSON integer' } as const;
  const metadata = { type: 'object', additionalProperties: true, description: 'Caller data kept with the transaction, at most 4 KiB as JSON' } as const;

  const transaction = {
    type: 'object',
    required: ['transaction_id', 'type', 'user_id', 'balance_type', 'amount', 'status', 'description', 'metadata', 'balance_after', 'created_at'],
    properties: {
      transaction_id: { type: 'string' },
      type: { type: 'string', enum: [...TRANSACTION_TYPES] },
      user_id: { type: 'string' },
      balance_type: { type: 'string' },
      amount: { type: 'integer' },
      status: { type: 'string', enum: ['posted'] },
      description: { type: ['string', 'null'] },
      metadata: { type: ['object', 'null'], additionalProperties: true },
      balance_after: { type: 'integer', description: "The user's balance right after this transaction" },
      created_at: { type: 'string', format: 'date-time' },
    },
  } as const;

  const balance = {
    type: 'object',
    required: ['user_id', 'balance_type', 'available', 'posted'],
    properties: {
      user_id: { type: 'string' },
      balance_type: { type: 'string' },
      available: { type: 'integer', description: 'What the user can spend now' },
      posted: { type: 'integer', description: 'Posted credits minus posted debits' },
    },
  } as const;

  const errors = { 400: errorRef, 404: errorRef, 503: errorRef, 504: errorRef, 500: errorRef } as const;

  return {
    postTransaction: {
      summary: 'Add to or consume from a balance, idempotently',
      description:
        'Identified by (transaction_id, balance_type). An identical repeat returns 200 with the stored body and `Idempotent-Replayed: true`; a repeat with different content is 409 `idempotency_conflict`.',
      tags: ['balances'],
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['transaction_id', 'type', 'user_id', 'balance_type', 'amount'],
        properties: {
          transaction_id: idSchema('Caller-chosen id of the operation'),
          type: { type: 'string', enum: [...TRANSACTION_TYPES] },
          user_id: idSchema('The user whose balance moves'),
          balance_type: balanceType,
          amount,
          description: { type: 'string', maxLength: DESCRIPTION_LENGTH_MAX },
          metadata,
        },
      },
      response: { 201: transaction, 200: transaction, ...errors, 409: errorRef, 415: errorRef, 422: errorRef },
    },
    getTransaction: {
      summary: 'Every balance type recorded under a transaction id',
      tags: ['balances'],
      params: { type: 'object', required: ['transaction_id'], properties: { transaction_id: idSchema('Transaction id') } },
      response: { 200: { type: 'object', required: ['data'], properties: { data: { type: 'array', items: transaction } } }, ...errors },
    },
    listBalances: {
      summary: "A user's balance of every configured type",
      tags: ['balances'],
      params: { type: 'object', required: ['user_id'], properties: { user_id: idSchema('User id') } },
      response: { 200: { type: 'object', required: ['data'], properties: { data: { type: 'array', items: balance } } }, ...errors },
    },
    getBalance: {
      summary: "A user's balance of one type (zero for a user never seen)",
      tags: ['balances'],
      params: { type: 'object', required: ['user_id', 'balance_type'], properties: { user_id: idSchema('User id'), balance_type: balanceType } },
      response: { 200: balance, ...errors },
    },
    audit: {
      summary: 'Recompute every balance from the stored transactions and check each balance type sums to zero',
      tags: ['audit'],
      response: {
        200: {
          type: 'object',
          required: ['ok', 'balance_types', 'misrouted_transactions'],
          properties: {
            ok: { type: 'boolean' },
            balance_types: {
              type: 'array',
              items: {
                type: 'object',
                required: ['balance_type', 'sum', 'accounts_checked', 'mismatches'],
                properties: {
                  balance_type: { type: 'string' },
                  sum: { type: 'integer', description: 'Over every account of this type; 0 when the books balance' },
                  accounts_checked: { type: 'integer' },
                  mismatches: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: { account_id: { type: 'integer' }, owner: { type: 'string' }, stored: { type: 'integer' }, derived: { type: 'integer' } },
                    },
                  },
                },
              },
            },
            misrouted_transactions: { type: 'integer' },
          },
        },
        ...errors,
      },
    },
    listTransactions: {
      summary: "A user's transactions, newest first",
      description: 'Cursor pagination: pass `next_cursor` back as `cursor`; pages neither skip nor repeat rows while writes continue.',
      tags: ['balances'],
      params: { type: 'object', required: ['user_id'], properties: { user_id: idSchema('User id') } },
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          balance_type: balanceType,
          limit: { type: 'integer', minimum: 1, maximum: PAGE_LIMIT_MAX, default: PAGE_LIMIT_DEFAULT },
          cursor: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' },
        },
      },
      response: {
        200: {
          type: 'object',
          required: ['data', 'next_cursor'],
          properties: { data: { type: 'array', items: transaction }, next_cursor: { type: ['string', 'null'] } },
        },
        ...errors,
      },
    },
  } as const;
}
