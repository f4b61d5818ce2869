// The ledger's one interface for callers: everything another service may ask
// of it. Implemented over HTTP (services/ledger/clients/http-client.ts) and in
// process (clients/in-process.ts) with the same validation and the same
// errors, so a caller does not care which one it was given. Operator tools
// (audit, sweep) are not here: no service calls them.
import { ERROR_CATALOGUE, type ErrorCode, type ErrorDetails, KobanError } from '../../platform/errors.ts';
import type { Balance, PostRequest, Transaction, TransactionRequest, VoidRequest } from './types.ts';

export type { PostRequest, TransactionRequest, VoidRequest } from './types.ts';

/** The outcome of a write: the transaction as stored, and whether this call only replayed an earlier identical one. */
export type WriteResult = { transaction: Transaction; replayed: boolean };

/** One page of a user's transactions, newest first; pass `next_cursor` back as `cursor` for the next. */
export type TransactionList = { data: Transaction[]; next_cursor: string | null };

export type TransactionListQuery = {
  balance_type?: string | undefined;
  /** 1–200; 50 if absent. */
  limit?: number | undefined;
  cursor?: string | undefined;
};

export interface LedgerApi {
  /** Add, consume or refund — posted at once, or as a hold — exactly once per (transaction_id, balance_type). */
  submit(request: TransactionRequest): Promise<WriteResult>;
  /** Posts all or part of a hold (the rest is released). Repeating it replays. */
  post(transactionId: string, request: PostRequest): Promise<WriteResult>;
  /** Voids a hold, releasing all of it. Repeating it replays. */
  void(transactionId: string, request: VoidRequest): Promise<WriteResult>;
  /** Every balance type recorded under this transaction id; `not_found` if none. */
  getTransactions(transactionId: string): Promise<Transaction[]>;
  /** Zero for a user never seen. */
  getBalance(userId: string, balanceType: string): Promise<Balance>;
  /** One balance per configured balance type. */
  listBalances(userId: string): Promise<Balance[]>;
  listTransactions(userId: string, query?: TransactionListQuery): Promise<TransactionList>;
}

/**
 * What every LedgerApi method throws, whatever the transport: a catalogue
 * `code` (docs/errors.md), its HTTP `status`, whether the same call may
 * succeed if `retryable`, and `details` (e.g. `details.field` for
 * `invalid_request`). A transport failure is `unavailable` (nothing reached the
 * ledger) or `timeout` (it may have taken effect: retry with the same ids).
 */
export type LedgerError = KobanError;
export type LedgerErrorCode = ErrorCode;
export type LedgerErrorDetails = ErrorDetails;

/** Whether `error` is a ledger error, and of this code if one is given. */
export function isLedgerError(error: unknown, code?: LedgerErrorCode): error is LedgerError {
  return error instanceof KobanError && (code === undefined || error.code === code);
}

/** Whether `code` is one of the catalogue's (a newer server may answer with one this client does not know). */
export function isLedgerErrorCode(code: unknown): code is LedgerErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CATALOGUE, code);
}
