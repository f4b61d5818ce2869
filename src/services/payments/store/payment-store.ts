// The payment services' store port: what the service needs from its
// database, nothing more. One adapter: store/postgres/.
import type { CloudEventInput } from '../../../contracts/events/envelope.ts';
import type { Decision, Payment } from '../domain/payment.ts';

export type MessageKind = 'authorization' | 'advice' | 'sales_draft' | 'reversal' | 'refund';

export type StoredMessage = Readonly<{ payment_id: string; request: unknown; response: string; status_code: number }>;

export type PaymentEventRow = Readonly<{ id: string; type: string; occurred_at: string; published_at: string | null }>;

/** A decision about to move cash, as journalled: enough to finish it after a crash. */
export type Intent = Readonly<{
  /** The message that caused it, or `expiry`. */
  kind: MessageKind | 'expiry';
  message_id: string;
  request: unknown;
  occurred_at: string;
  decision: Decision;
}>;

export type OpenIntent = Readonly<{ seq: number; intent: Intent }>;

/** What a message is decided from, read under the payment's lock. */
export type Opened = Readonly<{ intents: readonly OpenIntent[]; message: StoredMessage | undefined; payment: Payment | undefined }>;

/** Work done on one payment. `open` takes its lock (held until the session ends); the rest runs under it. */
export interface PaymentSession {
  /** Takes the payment's lock, then reads its unfinished decisions, the message (if named) and the payment. */
  open(lockKey: string, paymentId: string, message?: Readonly<{ namespace: string; id: string }>): Promise<Opened>;
  /**
   * `open` for a message that would create its payment: when the lock finds no payment, no answer to the
   * message and no unfinished decision, journals `intent` (decided from no payment) in the same round trip
   * and returns its sequence number; otherwise journals nothing and returns what `open` returns.
   */
  openFresh(lockKey: string, paymentId: string, message: Readonly<{ namespace: string; id: string }>, intent: Intent): Promise<Opened | Readonly<{ journalled: number }>>;
  /** A message by the key its id is unique under (its kind, or a network's own namespace). */
  message(namespace: string, messageId: string): Promise<StoredMessage | undefined>;
  payment(paymentId: string): Promise<Payment | undefined>;
  /** Journals a decision before its ledger writes; returns its sequence number. */
  recordIntent(paymentId: string, intent: Intent): Promise<number>;
  /** Closes a journalled decision the ledger refused before moving anything. */
  abandonIntent(seq: number): Promise<void>;
  /**
   * Records, in one transaction, the answer to a message, the payment after it, its events (into the outbox) and the intent finished.
   * `endsSession`: the session's last step — the payment's lock goes with this commit (no unlock of its own), and nothing may follow.
   */
  commit(entry: {
    message?: Readonly<{ kind: string; id: string; request: unknown; response: string; status_code: number }> | undefined;
    payment: Payment;
    events: readonly Readonly<{ event: CloudEventInput; type: string; occurred_at: string }>[];
    intentSeq?: number | undefined;
    endsSession?: boolean | undefined;
  }): Promise<void>;
}

export interface PaymentStore {
  /** Runs `work` on one connection; a lock its `open` took is released when it settles. */
  withPayment<T>(work: (session: PaymentSession) => Promise<T>): Promise<T>;
  /** A stored message, outside any lock (stored messages never change). */
  storedMessage(namespace: string, messageId: string): Promise<StoredMessage | undefined>;
  /** The payment a message belongs to, outside any lock (the mapping never changes once written). */
  paymentOfMessage(namespace: string, messageId: string): Promise<string | undefined>;
  /** Payments whose holds lapse at or before `now`, oldest deadline first. */
  expiredHolds(now: Date, limit: number): Promise<string[]>;
  /** Payments with a decision journalled before `before` and not finished. */
  stalledIntents(before: Date, limit: number): Promise<string[]>;
  /** A payment as stored, outside any lock. */
  payment(paymentId: string): Promise<Payment | undefined>;
  read(paymentId: string): Promise<{ payment: Payment; events: PaymentEventRow[] } | undefined>;
  close(): Promise<void>;
}
