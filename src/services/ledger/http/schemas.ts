// JSON schemas of the balance API for Fastify and OpenAPI. Requests use the
// domain's schemas (domain/request-schemas.ts), which the service checks again
// on every call: here they only reject early. Responses are described here.
import { BODY_ERRORS, COMMON_ERRORS, errorResponses, jsonResponse, replayHeaders } from '../../../platform/http/openapi.ts';
import type { ErrorCode } from '../../../platform/errors.ts';
import { EXPIRING_LISTED_MAX } from '../domain/limits.ts';
import { ledgerRequestSchemas } from '../domain/request-schemas.ts';
import { TRANSACTION_STATUSES, TRANSACTION_TYPES } from '../../../contracts/ledger/types.ts';

/** A JSON response: its schema's `title` names it in OpenAPI. */

/** The errors a read can answer, and those of a write with its own. */
const readErrors = (...codes: ErrorCode[]) => errorResponses([...COMMON_ERRORS, ...codes]);
const writeErrors = (...codes: ErrorCode[]) => errorResponses([...BODY_ERRORS, ...codes]);

const transactionExample = {
  transaction_id: 'welcome-alice',
  type: 'add',
  user_id: 'alice',
  balance_type: 'points',
  amount: 500,
  status: 'posted',
  pending: false,
  posted_amount: 500,
  pending_expires_at: null,
  resolved_at: null,
  expires_at: null,
  refund_of: null,
  force: false,
  lots: null,
  description: 'welcome bonus',
  metadata: null,
  balance_after: 500,
  created_at: '2026-01-05T09:30:00.000Z',
};
const balanceExample = { user_id: 'alice', balance_type: 'points', available: 300, posted: 300, pending_debit: 0, pending_credit: 0, expiring: [] };

export function ledgerSchemas(balanceTypes: readonly string[]) {
  const requests = ledgerRequestSchemas(balanceTypes);

  const instant = { type: ['string', 'null'], format: 'date-time' } as const;
  const lot = {
    title: 'LotDraw',
    type: 'object',
    additionalProperties: false,
    description: 'Value drawn from (or, for a refund, given back to) one lot',
    required: ['source_transaction_id', 'amount', 'expires_at'],
    properties: { source_transaction_id: { type: 'string', description: 'The add that created the lot' }, amount: { type: 'integer' }, expires_at: instant },
  } as const;
  const transaction = {
    title: 'Transaction',
    type: 'object',
    additionalProperties: false,
    description: 'A transaction as stored; every write answers with it, and an identical repeat replays it byte for byte.',
    required: [
      'transaction_id', 'type', 'user_id', 'balance_type', 'amount', 'status', 'pending', 'posted_amount', 'pending_expires_at',
      'resolved_at', 'expires_at', 'refund_of', 'force', 'lots', 'description', 'metadata', 'balance_after', 'created_at',
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
      force: {
        type: 'boolean',
        description: 'Whether this consume was forced: taken even beyond the available balance, which may then be negative (a debt the next credits pay first)',
      },
      lots: {
        type: ['array', 'null'],
        description:
          'The lots a consume or expiry drew from (soonest-expiring first) when it was applied (and, for a hold, at its post), or a refund gave back to. A forced consume lists only the lots it could draw; the rest was a debt, and the lots that later repay it are not listed here',
        items: lot,
      },
      description: { type: ['string', 'null'] },
      metadata: { type: ['object', 'null'], additionalProperties: true },
      balance_after: { type: 'integer', description: "The user's available balance right after this transaction (or its resolution)" },
      created_at: { type: 'string', format: 'date-time' },
    },
    examples: [transactionExample],
  } as const;

  const balance = {
    title: 'Balance',
    type: 'object',
    additionalProperties: false,
    required: ['user_id', 'balance_type', 'available', 'posted', 'pending_debit', 'pending_credit', 'expiring'],
    properties: {
      user_id: { type: 'string' },
      balance_type: { type: 'string' },
      available: {
        type: 'integer',
        description: 'What the user can spend now: posted − pending debits, expired lots excluded. Negative after a forced debit: a debt that the next credits pay first',
      },
      posted: { type: 'integer', description: 'Posted credits minus posted debits' },
      pending_debit: { type: 'integer', description: 'Reserved by holds on consumes' },
      pending_credit: { type: 'integer', description: 'To be earned from holds on adds: visible, not spendable' },
      expiring: {
        type: 'array',
        description: `Upcoming expirations, soonest first (at most ${EXPIRING_LISTED_MAX})`,
        items: {
          title: 'ExpiringAmount',
          type: 'object',
          additionalProperties: false,
          required: ['amount', 'expires_at'],
          properties: { amount: { type: 'integer' }, expires_at: { type: 'string', format: 'date-time' } },
        },
      },
    },
    examples: [balanceExample],
  } as const;

  const written = {
    201: jsonResponse('Applied: the transaction as stored', transaction),
    200: jsonResponse('An identical repeat: the stored transaction, byte for byte, and nothing applied again', transaction, replayHeaders),
  };

  return {
    postTransaction: {
      operationId: 'submitTransaction',
      summary: 'Add to or consume from a balance, idempotently',
      description:
        'Identified by (transaction_id, balance_type). An identical repeat returns 200 with the stored body and `Idempotent-Replayed: true`; a repeat with different content (`force` included) is 409 `idempotency_conflict`. ' +
        'A consume beyond the available balance is 422 `insufficient_balance` unless it has `force: true`: then it draws the lots it can and the rest is a debt (available goes below zero, at most 10^15 below, else 422 `balance_limit_exceeded`); the next credits pay the debt first. `force` on an add or refund is 400.',
      tags: ['balances'],
      body: {
        ...requests.transactionRequest,
        title: 'TransactionRequest',
        examples: [
          { transaction_id: 'welcome-alice', type: 'add', user_id: 'alice', balance_type: 'points', amount: 500, description: 'welcome bonus' },
          { transaction_id: 'auth-77', type: 'consume', user_id: 'alice', balance_type: 'points', amount: 100, pending: true, pending_expires_at: '2030-01-01T00:00:00Z' },
          { transaction_id: 'advice-9', type: 'consume', user_id: 'alice', balance_type: 'cash', amount: 4200, force: true, description: 'stand-in advice' },
        ],
      },
      response: {
        ...written,
        ...writeErrors('not_found', 'idempotency_conflict', 'insufficient_balance', 'balance_limit_exceeded', 'exceeds_refundable_amount', 'not_refundable'),
      },
    },
    postHold: {
      operationId: 'postHold',
      summary: 'Post all or part of a hold; the rest is released',
      description:
        'At most once. An identical repeat replays (200, `Idempotent-Replayed: true`); a different amount or `force` after a post is 409 `idempotency_conflict`. ' +
        'An amount above the hold is 422 `exceeds_pending_amount`, unless `force: true` (holds on consumes only): then the hold is posted and the difference debited as a forced consume, which may take the balance below zero.',
      tags: ['holds'],
      params: requests.holdParams,
      body: { ...requests.postRequest, title: 'PostHoldRequest', examples: [{ balance_type: 'points', amount: 80 }, { balance_type: 'cash', amount: 5200, force: true }] },
      response: {
        ...written,
        ...writeErrors('not_found', 'idempotency_conflict', 'not_pending', 'pending_already_voided', 'pending_expired', 'exceeds_pending_amount', 'balance_limit_exceeded'),
      },
    },
    voidHold: {
      operationId: 'voidHold',
      summary: 'Void a hold, releasing all of it',
      description: 'At most once. An identical repeat replays (200, `Idempotent-Replayed: true`).',
      tags: ['holds'],
      params: requests.holdParams,
      body: { ...requests.voidRequest, title: 'VoidHoldRequest', examples: [{ balance_type: 'points' }] },
      response: { ...written, ...writeErrors('not_found', 'not_pending', 'pending_already_posted', 'pending_expired') },
    },
    getTransaction: {
      operationId: 'getTransactions',
      summary: 'Every balance type recorded under a transaction id',
      tags: ['balances'],
      params: requests.transactionParams,
      response: {
        200: jsonResponse('The transactions under that id, one per balance type', {
          title: 'TransactionsById',
          type: 'object',
          additionalProperties: false,
          required: ['data'],
          properties: { data: { type: 'array', minItems: 1, items: transaction } },
        }),
        ...readErrors('not_found'),
      },
    },
    listBalances: {
      operationId: 'listBalances',
      summary: "A user's balance of every configured type",
      tags: ['balances'],
      params: requests.userParams,
      response: {
        200: jsonResponse('One balance per configured balance type (zero for a user never seen)', {
          title: 'BalanceList',
          type: 'object',
          additionalProperties: false,
          required: ['data'],
          properties: { data: { type: 'array', items: balance } },
        }),
        ...readErrors(),
      },
    },
    getBalance: {
      operationId: 'getBalance',
      summary: "A user's balance of one type (zero for a user never seen)",
      tags: ['balances'],
      params: requests.balanceParams,
      response: { 200: jsonResponse('The balance', balance), ...readErrors() },
    },
    audit: {
      operationId: 'audit',
      summary: 'Recompute every balance from the stored transactions and check each balance type sums to zero',
      tags: ['audit'],
      response: {
        200: jsonResponse('The audit report (`ok` is false when anything does not balance)', {
          title: 'AuditReport',
          type: 'object',
          additionalProperties: false,
          required: ['ok', 'balance_types', 'misrouted_transactions', 'inconsistent_lots', 'dangling_references'],
          properties: {
            ok: { type: 'boolean' },
            balance_types: {
              type: 'array',
              items: {
                title: 'BalanceTypeAudit',
                type: 'object',
                additionalProperties: false,
                required: ['balance_type', 'sum', 'accounts_checked', 'mismatches'],
                properties: {
                  balance_type: { type: 'string' },
                  sum: { type: 'integer', description: 'Over every account of this type; 0 when the books balance' },
                  accounts_checked: { type: 'integer' },
                  mismatches: {
                    type: 'array',
                    items: {
                      title: 'BalanceMismatch',
                      type: 'object',
                      additionalProperties: false,
                      properties: {
                        account_id: { type: 'integer' },
                        owner: { type: 'string' },
                        field: {
                          type: 'string',
                          enum: ['posted', 'pending_debit', 'pending_credit', 'lots', 'debt'],
                          description: '`lots`: lots ≠ available + debts of forced debits; `debt`: a debt owed while a lot still holds value that should have paid it',
                        },
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
        }),
        ...errorResponses(['internal', 'unavailable', 'timeout']),
      },
    },
    listTransactions: {
      operationId: 'listTransactions',
      summary: "A user's transactions, newest first",
      description: 'Cursor pagination: pass `next_cursor` back as `cursor`; pages neither skip nor repeat rows while writes continue.',
      tags: ['balances'],
      params: requests.userParams,
      querystring: requests.transactionListQuery,
      response: {
        200: jsonResponse('One page, newest first', {
          title: 'TransactionPage',
          type: 'object',
          additionalProperties: false,
          required: ['data', 'next_cursor'],
          properties: { data: { type: 'array', items: transaction }, next_cursor: { type: ['string', 'null'], description: 'Pass back as `cursor` for the next page; null on the last' } },
        }),
        ...readErrors(),
      },
    },
  } as const;
}
