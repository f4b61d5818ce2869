// The points service's storage port: what the service needs, in its own
// words; the postgres adapter (postgres/) holds every statement.
import type { Book, GrantStatus, LedgerCommand, PaymentRecord } from '../domain/payment-grant.ts';

export type GrantSource = 'payment' | 'reward' | 'referral';

export type GrantRow = Readonly<{
  seq: number;
  grant_id: string;
  user_id: string;
  source: GrantSource;
  reference: string;
  points: number;
  status: GrantStatus;
  clawed_back_points: number;
  rule_version: string | null;
  created_at: string;
  updated_at: string;
}>;

export type GrantWrite = Omit<GrantRow, 'seq' | 'created_at' | 'updated_at'>;

export type Counted = Book['counted'];

/**
 * What a payment's decision writes, all at once: its record, its grant as
 * users read it, the move of its count in the cap totals, and the ledger
 * writes to run after it (journaled under `key`).
 */
export type DecisionWrite = Readonly<{
  key: string;
  payment?: Readonly<{ payment_id: string; user_id: string; record: PaymentRecord }>;
  grant?: GrantWrite;
  recount?: Readonly<{ user_id: string; before: Counted; after: Counted }>;
  commands: readonly LedgerCommand[];
}>;

/** One database transaction under a key's lock. */
export interface PointsTransaction {
  /** The user's month total and campaign totals, locked until commit, without what `own` (this payment's last count) added. */
  capTotals(userId: string, month: string, own: Counted): Promise<{ month_points_others: number; campaign_points_others: Record<string, number> }>;
  /** A payment's decision, inside the transaction that holds the cap totals' locks. */
  saveDecision(write: DecisionWrite): Promise<void>;
  grant(grantId: string): Promise<GrantRow | undefined>;
  /** Inserts the grant, or updates its figures and status. */
  saveGrant(grant: GrantWrite): Promise<void>;
  /** Whether this source's reference was already skipped (and records it if not). */
  recordSkipped(source: string, reference: string, userId: string, reason: string): Promise<boolean>;
  /** Whether this user already had a welcome balance (and records it if not). */
  recordWelcome(userId: string, amount: number, expiresAt: string): Promise<boolean>;
  /** Journals ledger writes to run after commit, in order. */
  addCommands(key: string, commands: readonly LedgerCommand[]): Promise<void>;
}

export type JournaledCommand = Readonly<{ seq: number; command: LedgerCommand }>;

/** A connection holding one key's lock. */
export interface KeySession {
  /** The payment's record as it was when the key was opened (with a payment id), if it had one. */
  readonly payment: PaymentRecord | undefined;
  /** A payment's decision in one statement, when no cap needs the totals locked while it decides. */
  saveDecision(write: DecisionWrite): Promise<void>;
  transaction<T>(work: (tx: PointsTransaction) => Promise<T>): Promise<T>;
  /** Ledger writes journaled for the key and not yet done, oldest first. */
  journaled(): Promise<JournaledCommand[]>;
  /** A journaled write is done (the ledger answered it, or it is moot): forget it. */
  done(seq: number): Promise<void>;
}

export interface PointsStore {
  /** Runs `work` holding the key's lock: two deliveries for one payment (or purchase, referral, user) never decide from the same state. */
  withKey<T>(key: string, work: (session: KeySession) => Promise<T>, options?: { paymentId?: string }): Promise<T>;
  /** Keys with journaled ledger writes not yet done, oldest first: decisions a crash or an outage left unfinished. */
  journaledKeys(limit: number): Promise<string[]>;
  /** A user's grants, newest first, after the row `beforeSeq` if given. */
  grants(userId: string, options: { limit: number; beforeSeq?: number | undefined }): Promise<GrantRow[]>;
  close(): Promise<void>;
}
