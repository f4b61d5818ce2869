// The ledger's published language: what callers send and get back.

export const TRANSACTION_TYPES = ['add', 'consume'] as const;
export type TransactionType = (typeof TRANSACTION_TYPES)[number];

export type Metadata = Record<string, unknown>;

/** A request to move value into (`add`) or out of (`consume`) a user's balance. */
export type TransactionRequest = {
  transaction_id: string;
  type: TransactionType;
  user_id: string;
  balance_type: string;
  amount: number;
  description?: string | undefined;
  metadata?: Metadata | undefined;
};

export type Transaction = {
  transaction_id: string;
  type: TransactionType;
  user_id: string;
  balance_type: string;
  amount: number;
  status: 'posted';
  description: string | null;
  metadata: Metadata | null;
  /** The user's balance right after this transaction, as recorded at commit. */
  balance_after: number;
  created_at: string;
};

export type Balance = {
  user_id: string;
  balance_type: string;
  /** What the user can spend now, in minor units. */
  available: number;
  posted: number;
};

/** The fields that, with the transaction id and balance type, make an operation's content. */
export const COMPARED_FIELDS = ['type', 'user_id', 'amount', 'description', 'metadata'] as const;
