// The ledger's storage port. The service and HTTP layer speak only this;
// adapters (today: postgres/) live in folders of their own.
import type { Balance, Transaction, TransactionRequest } from '../../../contracts/ledger/types.ts';

/** One write, stamped with the instant it was submitted. */
export type LedgerOperation =
  | ({ kind: 'create'; at: Date; hold_timeout_ms: number } & TransactionRequest)
  | { kind: 'post'; at: Date; transaction_id: string; balance_type: string; amount?: number | undefined; force?: boolean | undefined }
  | { kind: 'void'; at: Date; transaction_id: string; balance_type: string }
  | { kind: 'sweep'; at: Date; account_id: number };

export type LedgerOutcome =
  | { outcome: 'created' | 'replayed' | 'resolved'; transaction: Transaction }
  | { outcome: 'conflict'; fields: string[]; posted_amount?: number }
  | { outcome: 'invalid'; field: string; message: string }
  | { outcome: 'insufficient_balance'; available: number }
  /** An add (or refund) above BALANCE_MAX, or a forced debit below −DEBT_MAX. */
  | { outcome: 'balance_limit_exceeded'; available: number }
  | { outcome: 'exceeds_refundable_amount'; refundable: number }
  | { outcome: 'exceeds_pending_amount'; pending_amount: number }
  | { outcome: 'not_refundable'; reason: string }
  | { outcome: 'not_pending'; status: string }
  | { outcome: 'pending_expired'; pending_expires_at: string }
  | { outcome: 'refund_of_not_found' | 'not_found' | 'pending_already_posted' | 'pending_already_voided' | 'swept' };

export type TransactionPage = { transactions: Transaction[]; lastKey: number | undefined };

/**
 * `lots`: the lots' remaining value differs from available plus the debts of
 * forced debits; `debt`: an account owes a debt while a lot still holds value
 * that should have paid it (`derived`: what it would owe then).
 */
export type AuditMismatch = { account_id: number; owner: string; field: 'posted' | 'pending_debit' | 'pending_credit' | 'lots' | 'debt'; stored: number; derived: number };

export type AuditReport = {
  ok: boolean;
  balance_types: Array<{
    balance_type: string;
    /** Sum of posted balances over every account (users' stored, system accounts' derived): must be 0. */
    sum: number;
    accounts_checked: number;
    /** Accounts whose stored figures differ from what their transactions and lots imply. */
    mismatches: AuditMismatch[];
  }>;
  /** Transactions whose accounts hold another balance type than the transaction's. */
  misrouted_transactions: number;
  /** Lots whose remaining value differs from their amount minus draws plus returns. */
  inconsistent_lots: number;
  /** Transactions, lots or draws naming an account, transaction or lot that does not exist. */
  dangling_references: number;
};

export interface LedgerStore {
  /** Creates the system accounts every transaction of these balance types needs. */
  ensureSystemAccounts(balanceTypes: readonly string[], now: Date): Promise<void>;
  /** Applies operations in order in one atomic unit; one outcome per operation. */
  applyBatch(operations: readonly LedgerOperation[]): Promise<LedgerOutcome[]>;
  findTransactions(transactionId: string, at: Date): Promise<Transaction[]>;
  findBalances(userId: string, balanceTypes: readonly string[], at: Date): Promise<Balance[]>;
  /** Newest first; `beforeKey` continues after the last row of the previous page. */
  listUserTransactions(query: { userId: string; balanceType: string | undefined; limit: number; beforeKey: number | undefined; at: Date }): Promise<TransactionPage>;
  /** User accounts with a hold or lot due to expire at `at`. */
  findAccountsDueForSweep(at: Date, limit: number): Promise<Array<{ account_id: number; user_id: string; balance_type: string }>>;
  /** The user of a transaction, if it exists. */
  findTransactionOwner(transactionId: string, balanceType: string): Promise<string | undefined>;
  audit(): Promise<AuditReport>;
  close(): Promise<void>;
}
