// NATS JetStream adapter of the EventBus. One stream per topic, one durable
// pull consumer per subscription; a message stays in its stream until every
// subscription has acknowledged it: the adapter trims below the lowest ack
// floor itself (limits retention, see TRIM_INTERVAL_MS for why not the
// server's interest retention). The registry keeps every
// published (topic, id) with a fingerprint of its content, so a repeat is a
// duplicate or a conflict however late it comes; publishing also sets
// Nats-Msg-Id to the event id, so the stream's duplicate window absorbs a
// copy of a publish that reached the stream but was never marked. Retry
// delays are explicit naks; the delivery limit is enforced here, not by the
// server, so a message whose last lease runs out still becomes a dead letter
// we keep. Declarations and dead letters live in the bus's registry (its own
// tables in the bus database, which every adapter shares), so list, redrive
// and discard behave the same on every adapter.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, JetStreamApiError, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import { connect, headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { Clock } from '../../../../platform/clock.ts';
import { createPool, type Pool } from '../../../../platform/postgres/pool.ts';
import { type CloudEvent, filterAttributes } from '../../../../contracts/events/envelope.ts';
import type { DeadLetter, DeadLetterPage, DeadLetterQuery, OutgoingMessage, PublishStatus, SubscriptionStats, Topology } from '../../../../contracts/bus/event-bus.ts';
import { ConsumerLifecycle, type ConsumerOptions } from '../../domain/consumer-lifecycle.ts';
import { matchesFilter } from '../../domain/filter.ts';
import { IN_FLIGHT_MAX_LIMIT, LAST_ERROR_LENGTH_MAX, NATS_NAMESPACE_DEFAULT } from '../../domain/limits.ts';
import { ACK_DEADLINE_EXCEEDED, truncateError } from '../../domain/dead-letters.ts';
import { claimBatch, markBatchPublished } from '../../registry/event-fingerprints.ts';
import { declareTopology, loadSubscriptions, loadTopics, migrateRegistry } from '../../registry/registry.ts';
import { RegistryEventBus } from '../../registry/registry-event-bus.ts';
import { countDeadLetters, discardDeadLetter, listDeadLetters, recordDeadLetter, redriveDeadLetters } from '../../registry/dead-letters.ts';
import { checkNatsNamespace, resolveTopology, retryDelayMs } from '../../domain/topology.ts';

/** How long the stream remembers a Nats-Msg-Id: a relay down longer than this may publish a second copy. */
export const DUPLICATE_WINDOW_MS_DEFAULT = 15 * 60 * 1000;
/** How long one publish waits for the stream's acknowledgement. */
export const PUBLISH_TIMEOUT_MS_DEFAULT = 5_000;
/** Unacknowledged messages one subscription may have outstanding, across all its consumers. */
const CONSUMER_ACK_PENDING_MAX = IN_FLIGHT_MAX_LIMIT;
/**
 * How long a consumer's pull request lives. The client library also waits
 * about this long (jittered, up to 1.5×) before checking its consumer again
 * when a check failed — JetStream not answering yet after a restart — and
 * pulls nothing meanwhile: its default, 30 s, stalled consumption 15–45 s after
 * a broker restart. A pull every 5 s per consumer costs nothing.
 */
const PULL_EXPIRES_MS = 5_000;
/** After JetStream answers again, a consumer is pulling again within this (the library's backoff, jitter included). */
export const CONSUMER_RESUME_MS_MAX = PULL_EXPIRES_MS * 1.5;
/** Wait between reconnect attempts while the server is away. */
const RECONNECT_WAIT_MS = 250;
/** Stream sequences probed past the ack floor to find the oldest unacknowledged message. */
const OLDEST_PROBE_MAX = 16;
/**
 * How often a bus trims its declared topics' streams below the lowest ack
 * floor of their subscriptions. The streams keep messages by limits (none
 * set), not by interest: a nats-server stopping cleanly removes a stream's
 * consumers before it stops taking publishes, and an interest stream with
 * no consumer acknowledges a publish (PubAck with a sequence) while storing
 * nothing — events reported published that no subscription ever receives.
 * Trimming ourselves keeps "until every subscription acknowledged it" with
 * what the consumers have acknowledged, which a restart does not lose.
 */
export const TRIM_INTERVAL_MS = 5_000;

export type NatsEventBusOptions = {
  natsUrl: string;
  /** The bus database: declarations and dead letters. */
  databaseUrl: string;
  poolSize: number;
  logger: Logger;
  clock: Clock;
  /** Prefix of stream names and subjects (NATS_NAMESPACE_PATTERN), so several deployments (or test runs) can share a server. */
  namespace?: string;
  duplicateWindowMs?: number;
  publishTimeoutMs?: number;
};

export class NatsEventBus extends RegistryEventBus<NatsConsumer> {
  readonly adapter = 'nats' as const;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #options: NatsEventBusOptions;
  readonly #namespace: string;
  readonly #logger: Logger;
  #topics = new Set<string>();
  #trimTimer: NodeJS.Timeout | undefined;
  #trimming: Promise<void> | undefined;

  private constructor(nc: NatsConnection, jsm: JetStreamManager, pool: Pool, options: NatsEventBusOptions) {
    super(pool, options.clock);
    this.#nc = nc;
    this.#jsm = jsm;
    this.#js = jetstream(nc);
    this.#options = options;
    this.#namespace = options.namespace ?? NATS_NAMESPACE_DEFAULT;
    this.#logger = options.logger;
  }

  static async open(options: NatsEventBusOptions): Promise<NatsEventBus> {
    checkNatsNamespace(options.namespace ?? NATS_NAMESPACE_DEFAULT);
    const pool = createPool({ url: options.databaseUrl, size: options.poolSize, applicationName: 'koban-bus-nats', logger: options.logger });
    let nc: NatsConnection | undefined;
    try {
      await migrateRegistry(pool, options.logger);
      nc = await connect({ servers: options.natsUrl, name: 'koban-bus', maxReconnectAttempts: -1, reconnectTimeWait: RECONNECT_WAIT_MS });
      const jsm = await jetstreamManager(nc);
      const bus = new NatsEventBus(nc, jsm, pool, options);
      bus.#watchStatus();
      bus.#trimTimer = setInterval(() => void bus.#trimQuietly(), TRIM_INTERVAL_MS).unref();
      return bus;
    } catch (error) {
      await nc?.close().catch(() => undefined);
      await pool.end();
      throw error;
    }
  }

  #watchStatus(): void {
    void (async () => {
      for await (const status of this.#nc.status()) {
        if (status.type === 'disconnect') this.#logger.warn({ server: status.server }, 'NATS connection lost; reconnecting');
        if (status.type === 'reconnect') this.#logger.info({ server: status.server }, 'NATS connection restored');
      }
    })().catch(() => undefined);
  }

  streamName(topic: string): string {
    return `${this.#namespace}_${topic}`;
  }

  #eventSubject(topic: string): string {
    return `${this.#namespace}.${topic}.events`;
  }

  #redriveSubject(topic: string, subscription: string): string {
    return `${this.#namespace}.${topic}.redrive.${subscription}`;
  }

  async declare(topology: Topology): Promise<void> {
    const resolved = resolveTopology(topology);
    await declareTopology(this.pool, resolved);
    for (const topic of resolved.topics) {
      const config = {
        name: this.streamName(topic),
        subjects: [`${this.#namespace}.${topic}.>`],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        duplicate_window: nanos(this.#options.duplicateWindowMs ?? DUPLICATE_WINDOW_MS_DEFAULT),
      };
      try {
        const existing = await this.#jsm.streams.info(config.name);
        if (existing.config.retention !== RetentionPolicy.Limits) {
          // The server does not change a stream's retention: such a stream must be drained and deleted to be made again.
          this.#logger.warn({ stream: config.name, retention: existing.config.retention }, 'stream made with interest retention: a clean restart of nats-server may drop events published while it stops; drain it, delete it and start again');
        }
      } catch (error) {
        if (!isNotFound(error)) throw error;
        await this.#jsm.streams.add(config);
      }
      this.#topics.add(topic);
    }
    for (const subscription of resolved.subscriptions) {
      const stream = this.streamName(subscription.topic);
      const settings = { ack_wait: nanos(subscription.ackWaitMs), max_ack_pending: CONSUMER_ACK_PENDING_MAX };
      try {
        await this.#jsm.consumers.info(stream, subscription.name);
        await this.#jsm.consumers.update(stream, subscription.name, settings);
      } catch (error) {
        if (!isNotFound(error)) throw error;
        // A new subscription receives what is published from now on, as with SNS.
        await this.#jsm.consumers.add(stream, {
          ...settings,
          durable_name: subscription.name,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.New,
          // The delivery limit is ours (see above): the server never gives up on a message by itself.
          max_deliver: -1,
          filter_subject: `${this.#namespace}.${subscription.topic}.>`,
        });
      }
    }
  }

  async publishBatch(messages: readonly OutgoingMessage[]): Promise<PublishStatus[]> {
    this.assertOpen();
    if (messages.some((message) => !this.#topics.has(message.topic))) this.#topics = new Set(await loadTopics(this.pool));
    // The registry decides first (the stream's window forgets ids).
    const { toPublish, repeatStatus } = await claimBatch(this.pool, messages, this.#topics);
    const outcomes = await Promise.allSettled(
      toPublish.map((index) => {
        const message = messages[index]!;
        // Nats-Msg-Id: the stream's window absorbs a copy of a publish that reached it but was never marked.
        return this.#js.publish(this.#eventSubject(message.topic), JSON.stringify(message.event), {
          msgID: message.event.id,
          timeout: this.#options.publishTimeoutMs ?? PUBLISH_TIMEOUT_MS_DEFAULT,
          ...(typeof message.event.traceparent === 'string' ? { headers: traceHeaders(message.event.traceparent) } : {}),
        });
      }),
    );
    const acked = new Map<number, boolean>();
    outcomes.forEach((outcome, position) => {
      if (outcome.status === 'fulfilled') acked.set(toPublish[position]!, outcome.value.duplicate);
    });
    await markBatchPublished(this.pool, messages, acked.keys());
    const failed = outcomes.find((outcome) => outcome.status === 'rejected');
    // The batch fails as a whole (the relay retries it): what was acknowledged is marked, and repeats as duplicates.
    if (failed) throw failed.reason;
    return messages.map((message, index): PublishStatus => {
      if (!this.#topics.has(message.topic)) return 'unknown_topic';
      const duplicateInStream = acked.get(index);
      if (duplicateInStream !== undefined) return duplicateInStream ? 'duplicate' : 'published';
      return repeatStatus(index);
    });
  }

  protected async newConsumer(options: ConsumerOptions): Promise<NatsConsumer> {
    const { subscription } = options;
    const jsConsumer = await this.#js.consumers.get(this.streamName(subscription.topic), subscription.name);
    return new NatsConsumer({
      ...options,
      messages: await jsConsumer.consume({ max_messages: options.batchSizeMax, expires: PULL_EXPIRES_MS }),
      ownRedriveSubject: this.#redriveSubject(subscription.topic, subscription.name),
      redrivePrefix: `${this.#namespace}.${subscription.topic}.redrive.`,
      deadLetter: (event, attempts, lastError) => recordDeadLetter(this.pool, subscription.name, event, attempts, lastError),
      logger: this.#logger.child({ component: 'bus-consumer', subscription: subscription.name }),
    });
  }

  async subscriptions(): Promise<SubscriptionStats[]> {
    const subscriptions = await loadSubscriptions(this.pool);
    const deadBySubscription = await countDeadLetters(this.pool);
    return Promise.all(
      subscriptions.map(async (subscription) => {
        const stream = this.streamName(subscription.topic);
        const info = await this.#jsm.consumers.info(stream, subscription.name);
        const unacknowledged = info.num_pending + info.num_ack_pending;
        return {
          name: subscription.name,
          topic: subscription.topic,
          filter: subscription.filter,
          depth: info.num_pending,
          // Includes messages waiting out a retry delay (naked with a delay): JetStream counts both as pending acks.
          in_flight: info.num_ack_pending,
          oldest_age_ms: unacknowledged === 0 ? null : await this.#oldestAgeMs(stream, info.ack_floor.stream_seq),
          dead_letters: deadBySubscription.get(subscription.name) ?? 0,
        };
      }),
    );
  }

  /**
   * Deletes, in each declared topic's stream, the messages every subscription
   * has acknowledged (those at or below the lowest ack floor). The stream's
   * last sequence is read before its consumers, so a subscription made
   * meanwhile (it takes what is published after it) loses nothing.
   */
  async trimAcknowledged(): Promise<void> {
    for (const topic of this.#topics) {
      const stream = this.streamName(topic);
      const { state } = await this.#jsm.streams.info(stream);
      let floor = state.last_seq;
      for await (const consumer of this.#jsm.consumers.list(stream)) floor = Math.min(floor, consumer.ack_floor.stream_seq);
      if (floor >= state.first_seq && state.messages > 0) await this.#jsm.streams.purge(stream, { seq: floor + 1 });
    }
  }

  async #trimQuietly(): Promise<void> {
    if (this.#trimming) return;
    this.#trimming = this.trimAcknowledged()
      .catch((error: unknown) => this.#logger.warn({ err: error }, 'trimming acknowledged messages failed; trying again at the next interval'))
      .finally(() => (this.#trimming = undefined));
    await this.#trimming;
  }

  async #oldestAgeMs(stream: string, ackFloor: number): Promise<number | null> {
    for (let seq = ackFloor + 1; seq <= ackFloor + OLDEST_PROBE_MAX; seq++) {
      const message = await this.#jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (message) return Math.max(0, this.#options.clock.now().getTime() - message.time.getTime());
    }
    return null;
  }

  async deadLetters(subscriptionName: string, query: DeadLetterQuery): Promise<DeadLetterPage> {
    return listDeadLetters(this.pool, subscriptionName, query);
  }

  async redrive(subscriptionName: string, ids?: readonly string[]): Promise<{ redriven: number }> {
    // The message id names the redrive, so a redrive retried after a crash is not delivered twice.
    return redriveDeadLetters(this.pool, subscriptionName, ids, async (deadLetter, topic) => {
      await this.#js.publish(this.#redriveSubject(topic, subscriptionName), JSON.stringify(deadLetter.event), {
        msgID: `redrive:${subscriptionName}:${deadLetter.event_id}:${deadLetter.redrive_number}`,
        timeout: this.#options.publishTimeoutMs ?? PUBLISH_TIMEOUT_MS_DEFAULT,
      });
    });
  }

  async discard(subscriptionName: string, id: string): Promise<DeadLetter> {
    return discardDeadLetter(this.pool, subscriptionName, id);
  }

  protected async closeBroker(): Promise<void> {
    clearInterval(this.#trimTimer);
    await this.#trimming;
    await this.#nc.close().catch(() => undefined);
  }

  /** Deletes this namespace's streams (and so their consumers): for tests and benchmarks only. */
  async deleteStreams(topics: readonly string[]): Promise<void> {
    for (const topic of topics) await this.#jsm.streams.delete(this.streamName(topic)).catch(() => undefined);
  }
}

function traceHeaders(traceparent: string) {
  const result = headers();
  result.set('traceparent', traceparent);
  return result;
}

function isNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && (error.code === 10059 || error.code === 10014);
}

class NatsConsumer extends ConsumerLifecycle {
  readonly #messages: ConsumerMessages;
  readonly #ownRedriveSubject: string;
  readonly #redrivePrefix: string;
  readonly #deadLetter: (event: CloudEvent, attempts: number, lastError: string) => Promise<void>;
  readonly #logger: Logger;

  constructor(
    options: ConsumerOptions & {
      messages: ConsumerMessages;
      ownRedriveSubject: string;
      redrivePrefix: string;
      deadLetter: (event: CloudEvent, attempts: number, lastError: string) => Promise<void>;
      logger: Logger;
    },
  ) {
    super(options);
    this.#messages = options.messages;
    this.#ownRedriveSubject = options.ownRedriveSubject;
    this.#redrivePrefix = options.redrivePrefix;
    this.#deadLetter = options.deadLetter;
    this.#logger = options.logger;
  }

  protected async run(): Promise<void> {
    try {
      for await (const message of this.#messages) {
        // As a crash would: left unacknowledged, it comes back after its ack deadline.
        if (this.abandoned) continue;
        // Already delivered to us (its delivery is counted), so it is handled
        // even during a graceful stop; pulling stopped when stop() began.
        this.#dispatch(message);
        while (this.inFlight >= this.inFlightMax && !this.abandoned) await this.wakeup.sleep(1_000);
      }
    } catch (error) {
      if (!this.stopping) this.#logger.error({ err: error }, 'NATS consumer stopped unexpectedly');
    }
  }

  #dispatch(message: JsMsg): void {
    if (message.subject.startsWith(this.#redrivePrefix) && message.subject !== this.#ownRedriveSubject) {
      message.ack(); // a redrive meant for another subscription of the topic
      return;
    }
    const isRedrive = message.subject === this.#ownRedriveSubject;
    let event: CloudEvent;
    try {
      event = message.json<CloudEvent>();
    } catch (error) {
      // Nothing but this adapter publishes here, so this is a bug; park it where it can be seen.
      this.#logger.error({ err: error, seq: message.seq }, 'message is not JSON; terminating it');
      message.term();
      return;
    }
    if (!isRedrive && !matchesFilter(this.subscription.filter, filterAttributes(event))) {
      message.ack();
      return;
    }
    const attempt = message.info.deliveryCount;
    this.track(() =>
      this.#process(message, event, attempt).catch((error: unknown) => {
        this.#logger.warn({ err: error, id: event.id }, 'recording the outcome of a delivery failed; it will be redelivered');
        if (!this.abandoned) message.nak(retryDelayMs(this.subscription, attempt));
      }),
    );
  }

  async #process(message: JsMsg, event: CloudEvent, attempt: number): Promise<void> {
    if (attempt > this.subscription.maxDeliveries) {
      // Its last delivery went unacknowledged until the deadline (a crashed consumer).
      await this.#deadLetter(event, attempt - 1, ACK_DEADLINE_EXCEEDED);
      message.term();
      return;
    }
    try {
      await this.handler({ event, subscription: this.subscription.name, attempt });
    } catch (error) {
      if (this.abandoned) return;
      const lastError = truncateError(error, LAST_ERROR_LENGTH_MAX);
      if (attempt >= this.subscription.maxDeliveries) {
        await this.#deadLetter(event, attempt, lastError);
        message.term();
        this.#logger.warn({ id: event.id, attempts: attempt, lastError }, 'message dead-lettered after its last delivery failed');
      } else {
        message.nak(retryDelayMs(this.subscription, attempt));
      }
      return;
    }
    if (!this.abandoned) message.ack();
  }

  // Stop pulling first: a consumer that kept pulling while its handlers
  // finished would hand messages back over and over, each a counted delivery.
  protected override async stopTaking(): Promise<void> {
    await this.#messages.close().catch(() => undefined);
  }
}
