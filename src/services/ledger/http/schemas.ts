// JSON schemas of the balance API for Fastify and OpenAPI. Requests use the
// domain's schemas (domain/request-schemas.ts), which the service checks again
// on every call: here they only reject early. Responses are described here.
import { ERROR_SCHEMA_ID } from '../../../platform/http/server.ts';
import { EXPIRING_LISTED_MAX } from '../domain/limits.ts';
import { ledgerRequestSchemas } from '../domain/request-schemas.ts';
import { TRANSACTION_STATUSES, TRANSACTION_TYPES } from '../../../contracts/ledger/types.ts';

const errorRef = { $ref: `${ERROR_SCHEMA_ID}#` } as const;

export function ledgerSchemas(balanceTypes: readonly string[]) {
  const requests = ledgerRequestSchemas(balanceTypes);

  const instant = { type: ['string', 'null'], format: 'date-time' } as const;
  const transaction = {
    type: 'object',
    required: [
      'transaction_id', 'type', 'user_id', 'balance_type', 'amount', 'status', 'pending', 'posted_amount', 'pending_expires_at',
      'resolved_at', 'expires_at', 'refund_of', 'lots', 'description', 'metadata', 'balance_after', 'created_at',
    ],
    properties: {
      transaction_id: { type: 'string' },
      type: { type: 'string', enum: [...TRANSACTION_TYPES, 'expire'] },
      user_id: { type: 'string' },
      balance_type: { type: 'string' },
      amount: { type: 'integer' },
      status: { type: 'string', enum: [...TRANSACTION_STATUSES] },
      pending: { type: 'boolean', description: 'Whether this was created as a hold' },
      posted_amount: { type: ['integer', 'null'], description: 'What was posted: the amount, or for a hold the part posted (0 if voided or expired); null while pending' },
      pending_expires_at: { ...instant, description: "A hold's deadline" },
      resolved_at: { ...instant, description: 'When a hold was posted, voided or expired' },
      expires_at: { ...instant, description: 'When the value of this add expires' },
      refund_of: { type: ['string', 'null'] },
      lots: {
        type: ['array', 'null'],
        description: 'The lots a consume or expiry drew from (soonest-expiring first), or a refund gave back to',
        items: {
          type: 'object',
          required: ['source_transaction_id', 'amount', 'expires_at'],
          properties: { source_transaction_id: { type: 'string' }, amount: { type: 'integer' }, expires_at: instant },
        },
      },
      description: { type: ['string', 'null'] },
      metadata: { type: ['object', 'null'], additionalProperties: true },
      balance_after: { type: 'integer', description: "The user's available balance right after this transaction (or its resolution)" },
      created_at: { type: 'string', format: 'date-time' },
    },
  } as const;

  const balance = {
    type: 'object',
    required: ['user_id', 'balance_type', 'available', 'posted', 'pending_debit', 'pending_credit', 'expiring'],
    properties: {
      user_id: { type: 'string' },
      balance_type: { type: 'string' },
      available: { type: 'integer', description: 'What the user can spend now: posted − pending debits, expired lots excluded' },
      posted: { type: 'integer', description: 'Posted credits minus posted debits' },
      pending_debit: { type: 'integer', description: 'Reserved by holds on consumes' },
      pending_credit: { type: 'integer', description: 'To be earned from holds on adds: visible, not spendable' },
      expiring: {
        type: 'array',
        description: `Upcoming expirations, soonest first (at most ${EXPIRING_LISTED_MAX})`,
        items: { type: 'object', required: ['amount', 'expires_at'], properties: { amount: { type: 'integer' }, expires_at: { type: 'string', format: 'date-time' } } },
      },
    },
  } as const;

  const errors = { 400: errorRef, 404: errorRef, 503: errorRef, 504: errorRef, 500: errorRef } as const;

  return {
    postTransaction: {
      summary: 'Add to or consume from a balance, idempotently',
      description:
        'Identified by (transaction_id, balance_type). An identical repeat returns 200 with the stored body and `Idempotent-Replayed: true`; a repeat with different content is 409 `idempotency_conflict`.',
      tags: ['balances'],
      body: requests.transactionRequest,
      response: { 201: transaction, 200: transaction, ...errors, 409: errorRef, 415: errorRef, 422: errorRef },
    },
    postHold: {
      summary: 'Post all or part of a hold; the rest is released',
      description: 'At most once. An identical repeat replays (200, `Idempotent-Replayed: true`); a different amount after a post is 409 `idempotency_conflict`.',
      tags: ['holds'],
      params: requests.holdParams,
      body: requests.postRequest,
      response: { 200: transaction, 201: transaction, ...errors, 409: errorRef, 415: errorRef, 422: errorRef },
    },
    voidHold: {
      summary: 'Void a hold, releasing all of it',
      tags: ['holds'],
      params: requests.holdParams,
      body: requests.voidRequest,
      response: { 200: transaction, 201: transaction, ...errors, 409: errorRef, 415: errorRef },
    },
    getTransaction: {
      summary: 'Every balance type recorded under a transaction id',
      tags: ['balances'],
      params: requests.transactionParams,
      response: { 200: { type: 'object', required: ['data'], properties: { data: { type: 'array', items: transaction } } }, ...errors },
    },
    listBalances: {
      summary: "A user's balance of every configured type",
      tags: ['balances'],
      params: requests.userParams,
      response: { 200: { type: 'object', required: ['data'], properties: { data: { type: 'array', items: balance } } }, ...errors },
    },
    getBalance: {
      summary: "A user's balance of one type (zero for a user never seen)",
      tags: ['balances'],
      params: requests.balanceParams,
      response: { 200: balance, ...errors },
    },
    audit: {
      summary: 'Recompute every balance from the stored transactions and check each balance type sums to zero',
      tags: ['audit'],
      response: {
        200: {
          type: 'object',
          required: ['ok', 'balance_types', 'misrouted_transactions', 'inconsistent_lots', 'dangling_references'],
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
                      properties: {
                        account_id: { type: 'integer' },
                        owner: { type: 'string' },
                        field: { type: 'string', enum: ['posted', 'pending_debit', 'pending_credit', 'lots'] },
                        stored: { type: 'integer' },
                        derived: { type: 'integer' },
                      },
                    },
                  },
                },
              },
            },
            misrouted_transactions: { type: 'integer', description: 'Transactions whose accounts hold another balance type' },
            inconsistent_lots: { type: 'integer', description: 'Lots whose remaining value differs from amount − draws + returns' },
            dangling_references: { type: 'integer', description: 'Transactions, lots or draws naming an account, transaction or lot that does not exist' },
          },
        },
        ...errors,
      },
    },
    listTransactions: {
      summary: "A user's transactions, newest first",
      description: 'Cursor pagination: pass `next_cursor` back as `cursor`; pages neither skip nor repeat rows while writes continue.',
      tags: ['balances'],
      params: requests.userParams,
      querystring: requests.transactionListQuery,
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
