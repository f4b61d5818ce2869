// The ledger's published language: what callers send and get back.

export const TRANSACTION_TYPES = ['add', 'consume', 'refund'] as const;
/** Types a caller may create; `expire` is recorded by the ledger itself. */
export type TransactionType = (typeof TRANSACTION_TYPES)[number];
export type RecordedTransactionType = TransactionType | 'expire';

export const TRANSACTION_STATUSES = ['pending', 'posted', 'voided', 'expired'] as const;
export type TransactionStatus = (typeof TRANSACTION_STATUSES)[number];

export type Metadata = Record<string, unknown>;

/** A request to move value into (`add`) or out of (`consume`) a balance, or back (`refund`). */
export type TransactionRequest = {
  transaction_id: string;
  type: TransactionType;
  user_id: string;
  balance_type: string;
  amount: number;
  /** A hold: reserves the amount until it is posted, voided or times out. */
  pending?: boolean | undefined;
  /** When a hold times out (ISO 8601); a default applies if absent. */
  pending_expires_at?: string | undefined;
  /** An add whose value expires at this instant (a time-limited balance). */
  expires_at?: string | undefined;
  /** For a refund: the consume it gives value back from. */
  refund_of?: string | undefined;
  /**
   * A forced consume (or forced hold): taken even if it leaves the balance
   * below zero, as card networks settle more than was held. The next credits
   * pay the debt first. Only on `consume`.
   */
  force?: boolean | undefined;
  description?: string | undefined;
  metadata?: Metadata | undefined;
};

/** Posts all (no amount) or part of a hold; with `force`, an amount above the hold posts the hold and debits the difference. */
export type PostRequest = { balance_type: string; amount?: number | undefined; force?: boolean | undefined };
export type VoidRequest = { balance_type: string };

export type LotDraw = { source_transaction_id: string; amount: number; expires_at: string | null };

export type Transaction = {
  transaction_id: string;
  type: RecordedTransactionType;
  user_id: string;
  balance_type: string;
  amount: number;
  status: TransactionStatus;
  pending: boolean;
  /** How much of a hold was posted (the rest was released); the amount for a posted transaction. */
  posted_amount: number | null;
  pending_expires_at: string | null;
  resolved_at: string | null;
  expires_at: string | null;
  refund_of: string | null;
  /** Whether it was created as a forced consume (or forced hold), which may take the balance below zero. */
  force: boolean;
  /** The lots a consume or expiry drew from, or a refund gave back to. */
  lots: LotDraw[] | null;
  description: string | null;
  metadata: Metadata | null;
  /** The user's available balance right after this transaction (or its resolution), as recorded at commit. */
  balance_after: number;
  created_at: string;
};

export type Balance = {
  user_id: string;
  balance_type: string;
  /** What the user can spend now: posted − pending debits, without expired lots. Negative after a forced debit: a debt the next credits pay first. */
  available: number;
  /** Posted credits minus posted debits (expired lots already deducted). */
  posted: number;
  /** Held for pending consumes. */
  pending_debit: number;
  /** To be earned from pending adds: visible, not spendable. */
  pending_credit: number;
  /** Upcoming expirations, soonest first. */
  expiring: Array<{ amount: number; expires_at: string }>;
};
