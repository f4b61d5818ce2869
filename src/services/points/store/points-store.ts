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

/** One database transaction under a key's lock. */
export interface PointsTransaction {
  payment(paymentId: string): Promise<PaymentRecord | undefined>;
  savePayment(paymentId: string, userId: string, record: PaymentRecord): Promise<void>;
  /** The user's month total and campaign totals, locked until commit, without what `own` (this payment's last count) added. */
  capTotals(userId: string, month: string, own: Counted): Promise<{ month_points_others: number; campaign_points_others: Record<string, number> }>;
  /** Moves this payment's count from `before` to `after` in the totals. */
  recount(userId: string, before: Counted, after: Counted): Promise<void>;
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
  transaction<T>(work: (tx: PointsTransaction) => Promise<T>): Promise<T>;
  /** Ledger writes journaled for the key and not yet done, oldest first. */
  journaled(): Promise<JournaledCommand[]>;
  /** A journaled write is done (the ledger answered it, or it is moot): forget it. */
  done(seq: number): Promise<void>;
}

export interface PointsStore {
  /** Runs `work` holding the key's lock: two deliveries for one payment (or purchase, referral, user) never decide from the same state. */
  withKey<T>(key: string, work: (session: KeySession) => Promise<T>): Promise<T>;
  /** Keys with journaled ledger writes not yet done, oldest first: decisions a crash or an outage left unfinished. */
  journaledKeys(limit: number): Promise<string[]>;
  /** A user's grants, newest first, after the row `beforeSeq` if given. */
  grants(userId: string, options: { limit: number; beforeSeq?: number | undefined }): Promise<GrantRow[]>;
  close(): Promise<void>;
}
