// The ledger's storage port. The service and HTTP layer speak only this;
// adapters (today: postgres/) live in folders of their own.
import type { Balance, Transaction, TransactionRequest } from '../types.ts';

export type WriteOperation = TransactionRequest & { created_at: Date };

export type WriteOutcome =
  | { outcome: 'created'; transaction: Transaction }
  | { outcome: 'replayed'; transaction: Transaction }
  | { outcome: 'conflict'; fields: string[] }
  | { outcome: 'insufficient_balance'; available: number }
  | { outcome: 'balance_limit_exceeded'; available: number };

export type TransactionPage = { transactions: Transaction[]; lastKey: number | undefined };

export type AuditReport = {
  ok: boolean;
  balance_types: Array<{
    balance_type: string;
    /** Sum over every account (users' stored balances, system accounts' derived ones): must be 0. */
    sum: number;
    accounts_checked: number;
    /** Accounts whose stored balance differs from what their transactions imply. */
    mismatches: Array<{ account_id: number; owner: string; stored: number; derived: number }>;
  }>;
  /** Transactions whose accounts hold another balance type than the transaction's. */
  misrouted_transactions: number;
};

export interface LedgerStore {
  /** Creates the system accounts every transaction of these balance types needs. */
  ensureSystemAccounts(balanceTypes: readonly string[], now: Date): Promise<void>;
  /** Applies operations in order in one atomic unit; one outcome per operation. */
  applyBatch(operations: readonly WriteOperation[]): Promise<WriteOutcome[]>;
  findTransactions(transactionId: string): Promise<Transaction[]>;
  findBalances(userId: string, balanceTypes: readonly string[]): Promise<Balance[]>;
  /** Newest first; `beforeKey` continues after the last row of the previous page. */
  listUserTransactions(query: {
    userId: string;
    balanceType: string | undefined;
    limit: number;
    beforeKey: number | undefined;
  }): Promise<TransactionPage>;
  audit(): Promise<AuditReport>;
  close(): Promise<void>;
}
