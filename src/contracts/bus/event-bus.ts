// The EventBus port. Producers publish to a topic; every subscription of the
// topic whose filter matches gets its own copy; a consumer's handler either
// returns (ack) or throws (retry with backoff, dead letter after
// maxDeliveries). Delivery is at-least-once and unordered. Adapters live in
// their own folders (postgres/, nats/); nothing here imports a driver.
import type { CloudEvent } from '../events/envelope.ts';
import type { FilterPolicy } from './filter-policy.ts';

export type SubscriptionSpec = {
  name: string;
  topic: string;
  filter?: FilterPolicy;
  /** Deliveries before the message becomes a dead letter (the first one counts). */
  maxDeliveries?: number;
  /** How long a delivery may stay unacknowledged before it is redelivered. */
  ackWaitMs?: number;
  /** First retry delay; doubles per attempt up to retryBackoffMaxMs, with jitter. */
  retryBackoffInitialMs?: number;
  retryBackoffMaxMs?: number;
};

export type Topology = Readonly<{ topics: readonly string[]; subscriptions: readonly SubscriptionSpec[] }>;

export type Delivery = Readonly<{
  event: CloudEvent;
  subscription: string;
  /** 1 on the first delivery; redrive starts counting again. */
  attempt: number;
}>;

/** Resolves to acknowledge; throws to have the message retried. */
export type Handler = (delivery: Delivery) => Promise<void>;

export type ConsumeOptions = {
  /** Messages this consumer holds unacknowledged at once. */
  inFlightMax?: number;
  /** Messages claimed or pulled per round trip. */
  batchSizeMax?: number;
};

export type Consumer = {
  /**
   * Stops taking messages and waits for those in flight. `abandonInFlight`
   * returns at once and never acknowledges them, as a crash would: they come
   * back after their ack deadline.
   */
  stop(options?: { abandonInFlight?: boolean }): Promise<void>;
};

export type OutgoingMessage = Readonly<{ topic: string; event: CloudEvent }>;

/**
 * Per message of a batch: stored now; already stored (same topic and id, same
 * content but `time`); refused for an unknown topic; or refused because its id
 * was already used on the topic with different content (the attributes that differ).
 */
export type PublishStatus = 'published' | 'duplicate' | 'unknown_topic' | PublishConflict;

export type PublishConflict = Readonly<{ conflict: readonly string[] }>;

export type PublishResult = { id: string; duplicate: boolean };

export type SubscriptionStats = {
  name: string;
  topic: string;
  filter: FilterPolicy | null;
  /** Messages waiting to be delivered (including those waiting out a retry delay). */
  depth: number;
  /** Messages delivered and not yet acknowledged. */
  in_flight: number;
  /** Age of the oldest message not yet acknowledged; null when there is none. */
  oldest_age_ms: number | null;
  dead_letters: number;
};

export type DeadLetter = {
  /** The event id. */
  id: string;
  event: CloudEvent;
  attempts: number;
  last_error: string | null;
  dead_lettered_at: string;
  /** Set once the dead letter is discarded: it is kept, never deleted. */
  discarded_at: string | null;
};

export type DeadLetterQuery = {
  limit: number;
  cursor?: string | undefined;
  /** `dead` (the default) lists what awaits a decision; `discarded` what was set aside. */
  state?: 'dead' | 'discarded' | undefined;
};

export type DeadLetterPage = { data: DeadLetter[]; next_cursor: string | null };

export interface EventBus {
  readonly adapter: 'postgres' | 'nats' | 'sns-sqs';
  /** Creates or updates topics and subscriptions; idempotent, safe from concurrent starts. */
  declare(topology: Topology): Promise<void>;
  /** Validates one event and publishes it. Throws `invalid_request`, `not_found` (unknown topic) or `idempotency_conflict` (id reused with other content). */
  publish(topic: string, event: unknown): Promise<PublishResult>;
  /** Publishes already-valid events, as the outbox relay does; one status per message, in order. */
  publishBatch(messages: readonly OutgoingMessage[]): Promise<PublishStatus[]>;
  consume(subscription: string, handler: Handler, options?: ConsumeOptions): Promise<Consumer>;
  subscriptions(): Promise<SubscriptionStats[]>;
  /** Throws `not_found` for an unknown subscription. */
  deadLetters(subscription: string, query: DeadLetterQuery): Promise<DeadLetterPage>;
  /** Sends dead letters (all, or those ids) back to their subscription with a fresh delivery count. */
  redrive(subscription: string, ids?: readonly string[]): Promise<{ redriven: number }>;
  /** Marks a dead letter discarded; throws `not_found` if there is no such dead letter. */
  discard(subscription: string, id: string): Promise<DeadLetter>;
  /** Resolves when the broker itself answers (for `/readyz`); adapters whose broker is the bus database leave it out. */
  ping?(signal: AbortSignal): Promise<void>;
  /** Stops every consumer (waiting for in-flight handlers) and closes connections. */
  close(): Promise<void>;
}
