// Works the deliveries table: claims due deliveries (each claim is one
// attempt, leased for the channel's timeout plus a margin), sends each through
// its channel, and records the outcome the domain decides (delivered, retry at
// a backed-off time, dead). Up to `concurrency` attempts run at once and a
// slot is refilled as soon as one settles, so an endpoint that hangs holds one
// slot until its timeout and never the event consumer, which only writes rows.
// A process that dies mid-attempt leaves a lease that lapses: the delivery is
// sent again (at least once; receivers dedupe on Koban-Delivery-Id).
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.ts';
import { Wakeup } from '../../platform/wakeup.ts';
import type { ChannelMessage, NotificationChannel } from './channels/channel.ts';
import { type AttemptResult, decideOutcome, type RetryPolicy } from './domain/delivery.ts';
import { DELIVERY_FAILURE_PAUSE_MS, DELIVERY_IDLE_POLL_MS, DELIVERY_LEASE_MARGIN_MS } from './domain/limits.ts';
import type { ChannelName } from './domain/notice.ts';
import type { ClaimedDelivery, NotificationStore } from './store/notification-store.ts';

/** The shortest sleep when deliveries are due but were locked by another worker's claim. */
const CONTENDED_RETRY_MS = 10;

export class DeliveryWorker {
  readonly #store: NotificationStore;
  readonly #channels: ReadonlyMap<ChannelName, NotificationChannel>;
  readonly #policy: RetryPolicy;
  readonly #leaseMs: number;
  readonly #concurrency: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #wakeup = new Wakeup();
  readonly #abort = new AbortController();
  readonly #inFlight = new Set<Promise<void>>();
  #loop: Promise<void> | undefined;
  #stopping = false;

  constructor(options: {
    store: NotificationStore;
    channels: readonly NotificationChannel[];
    policy: RetryPolicy;
    /** The longest a channel's attempt may take (the webhook timeout). */
    attemptTimeoutMs: number;
    concurrency: number;
    clock: Clock;
    logger: Logger;
  }) {
    this.#store = options.store;
    this.#channels = new Map(options.channels.map((channel) => [channel.name, channel]));
    this.#policy = options.policy;
    this.#leaseMs = options.attemptTimeoutMs + DELIVERY_LEASE_MARGIN_MS;
    this.#concurrency = options.concurrency;
    this.#clock = options.clock;
    this.#logger = options.logger;
  }

  /** Whether deliveries to `channel` can be made here. */
  has(channel: ChannelName): boolean {
    return this.#channels.has(channel);
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** New deliveries are due: look now rather than at the next poll. */
  wake(): void {
    this.#wakeup.wake();
  }

  /** Takes no more; aborts attempts in flight (their leases lapse, so they are sent again later) and waits for them. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wakeup.wake();
    await this.#loop;
    this.#abort.abort();
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      let sleepMs = DELIVERY_IDLE_POLL_MS;
      const free = this.#concurrency - this.#inFlight.size;
      if (free > 0) {
        try {
          const now = this.#clock.now();
          const claimed = await this.#store.claimDue(now, free, new Date(now.getTime() + this.#leaseMs));
          for (const delivery of claimed) this.#track(delivery);
          if (claimed.length === free) continue;
          const next = await this.#store.nextDueAt();
          if (next !== undefined) sleepMs = Math.min(DELIVERY_IDLE_POLL_MS, Math.max(CONTENDED_RETRY_MS, next.getTime() - this.#clock.now().getTime()));
        } catch (error) {
          if (this.#stopping) break;
          this.#logger.warn({ err: error }, 'delivery worker cannot read its deliveries; trying again');
          sleepMs = DELIVERY_FAILURE_PAUSE_MS;
        }
      }
      // A settling attempt wakes the loop too: its slot is free.
      await this.#wakeup.sleep(sleepMs);
    }
  }

  #track(delivery: ClaimedDelivery): void {
    const attempt: Promise<void> = this.#attempt(delivery).finally(() => {
      this.#inFlight.delete(attempt);
      this.#wakeup.wake();
    });
    this.#inFlight.add(attempt);
  }

  async #attempt(delivery: ClaimedDelivery): Promise<void> {
    const channel = this.#channels.get(delivery.channel);
    const message: ChannelMessage = {
      delivery_id: delivery.delivery_id,
      event_id: delivery.event_id,
      user_id: delivery.user_id,
      target: delivery.target,
      user_endpoint: delivery.user_endpoint,
      payload: delivery.payload,
      attempt: delivery.attempt,
    };
    let result: AttemptResult;
    try {
      result = channel === undefined ? { ok: false, error: `the ${delivery.channel} channel is not configured in this process` } : await channel.deliver(message, this.#abort.signal);
    } catch (error) {
      result = { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
    // Cut short by stop: its lease lapses and the attempt is made again, not counted as the endpoint's failure.
    if (!result.ok && this.#abort.signal.aborted) return;
    const outcome = decideOutcome(this.#policy, delivery.attempt, result, this.#clock.now());
    const context = { delivery_id: delivery.delivery_id, channel: delivery.channel, event_id: delivery.event_id, attempt: delivery.attempt };
    if (outcome.kind === 'retry') this.#logger.warn({ ...context, error: outcome.error, next_attempt_at: outcome.nextAttemptAt }, 'delivery failed; will retry');
    // A permanent failure (an endpoint it may not reach) is the endpoint's configuration, not an outage: warn, not error.
    if (outcome.kind === 'dead' && !result.ok && result.permanent === true) this.#logger.warn({ ...context, error: outcome.error }, 'delivery refused: dead letter without retries');
    else if (outcome.kind === 'dead') this.#logger.error({ ...context, error: outcome.error }, 'delivery failed for the last time: dead letter');
    try {
      await this.#store.settle(delivery.seq, delivery.attempt, outcome);
    } catch (error) {
      this.#logger.warn({ ...context, err: error }, 'could not record a delivery attempt; it is made again when its lease lapses');
    }
  }
}
