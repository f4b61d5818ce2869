// PostgreSQL adapter of the EventBus: the default, on the embedded database.
// Publish writes the message once (unique per topic and id; a repeat is
// compared with the stored event: a duplicate, or a conflict) and one delivery
// row per matching subscription in the same transaction; consumers claim
// deliveries with FOR UPDATE SKIP LOCKED, hold them under a lease
// (visible_at), and are woken by LISTEN/NOTIFY, with a slow poll as a backstop
// for retries coming due and leases of crashed consumers running out.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../../../../platform/clock.ts';
import { GroupCommitQueue } from '../../../../platform/group-commit.ts';
import { migrate } from '../../../../platform/postgres/migrate.ts';
import { createPool, type Pool, type PoolClient, withTransaction } from '../../../../platform/postgres/pool.ts';
import { type CloudEvent, filterAttributes } from '../../../../contracts/events/envelope.ts';
import type { DeadLetter, DeadLetterPage, DeadLetterQuery, OutgoingMessage, PublishStatus, SubscriptionStats, Topology } from '../../../../contracts/bus/event-bus.ts';
import { ConsumerLifecycle, type ConsumerOptions } from '../../domain/consumer-lifecycle.ts';
import { matchesFilter } from '../../domain/filter.ts';
import {
  BROKER_RETRY_INITIAL_MS,
  BROKER_RETRY_MAX_MS,
  IDLE_POLL_MS_DEFAULT,
  IN_FLIGHT_MAX_LIMIT,
  LAST_ERROR_LENGTH_MAX,
} from '../../domain/limits.ts';
import { resolveTopology, retryDelayMs, type Subscription } from '../../domain/topology.ts';
import { brokerRetryDelayMs } from '../../../../platform/wakeup.ts';
import { PgListener } from './listener.ts';
import { declareTopology, loadSubscription, migrateRegistry } from '../../registry/registry.ts';
import {
  ACK_DEADLINE_EXCEEDED,
  checkRedriveIds,
  deadLetterPage,
  deadLetterPageQuery,
  type DeadLetterRow,
  discardedDeadLetter,
  truncateError,
} from '../../domain/dead-letters.ts';
import { type Fingerprint, fingerprint, firstOccurrences, messageKey, repeatStatus } from '../../domain/publishing.ts';
import { RegistryEventBus } from '../../registry/registry-event-bus.ts';

/** The adapter's queue (messages, deliveries), migrated after the registry its tables refer to. */
export const POSTGRES_MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');
export const POSTGRES_MIGRATION_COMPONENT = 'bus_postgres';

/** The registry's tables and this adapter's own (messages, deliveries): what `koban migrate bus` creates. */
export async function migratePostgresBus(pool: Pool, logger: Logger): Promise<void> {
  await migrateRegistry(pool, logger);
  await migrate(pool, POSTGRES_MIGRATIONS_DIR, logger, { component: POSTGRES_MIGRATION_COMPONENT });
}
/**
 * Deletes up to `rowsMax` messages published before `cutoff` whose every
 * delivery was acknowledged before it, with those deliveries; returns how many
 * messages went. A message with a pending (waiting or leased), dead or
 * discarded delivery stays, and so does every delivery of it: dead letters are
 * listed, redriven and discarded from these rows. Acknowledged is final (no
 * statement changes an acked delivery), so what was checked stays true.
 * Once gone, a repeat of the event's id is published as new.
 */
export async function pruneAckedMessages(pool: Pool, cutoff: Date, rowsMax: number): Promise<number> {
  const result = await pool.query<{ pruned: number }>(
    `WITH doomed AS (
       SELECT m.seq FROM messages m
        WHERE m.published_at < $1
          AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_seq = m.seq AND (d.state <> 'acked' OR d.acked_at >= $1))
        ORDER BY m.published_at LIMIT $2
        FOR UPDATE SKIP LOCKED
     ), gone AS (
       DELETE FROM deliveries d USING doomed WHERE d.message_seq = doomed.seq
     ), pruned AS (
       DELETE FROM messages m USING doomed WHERE m.seq = doomed.seq RETURNING 1
     )
     SELECT count(*)::int AS pruned FROM pruned`,
    [cutoff, rowsMax],
  );
  return result.rows[0]!.pruned;
}

/** NOTIFY channel; the payload is the subscription that has new deliveries. */
const NOTIFY_CHANNEL = 'koban_bus';
/** Acknowledgements written together in one statement. */
const ACK_BATCH_SIZE_MAX = 512;
const ACK_QUEUE_DEPTH_MAX = IN_FLIGHT_MAX_LIMIT;

export type PostgresEventBusOptions = {
  url: string;
  poolSize: number;
  logger: Logger;
  clock: Clock;
  /** How often an idle consumer looks for due retries and expired leases without being notified. */
  idlePollMs?: number;
};

export class PostgresEventBus extends RegistryEventBus<PostgresConsumer> {
  readonly adapter = 'postgres' as const;
  readonly #options: PostgresEventBusOptions;
  readonly #logger: Logger;
  #listener: PgListener | undefined;

  private constructor(pool: Pool, options: PostgresEventBusOptions) {
    super(pool, options.clock);
    this.#options = options;
    this.#logger = options.logger;
  }

  /** Opens a pool on the bus database and brings its schema up to date. */
  static async open(options: PostgresEventBusOptions): Promise<PostgresEventBus> {
    const pool = createPool({ url: options.url, size: options.poolSize, applicationName: 'koban-bus', logger: options.logger });
    try {
      await migratePostgresBus(pool, options.logger);
    } catch (error) {
      await pool.end();
      throw error;
    }
    return new PostgresEventBus(pool, options);
  }

  async declare(topology: Topology): Promise<void> {
    await declareTopology(this.pool, resolveTopology(topology));
  }

  async publishBatch(messages: readonly OutgoingMessage[]): Promise<PublishStatus[]> {
    this.assertOpen();
    if (messages.length === 0) return [];
    const topicNames = [...new Set(messages.map((message) => message.topic))];
    return withTransaction(this.pool, async (client) => {
      const topics = await client.query<{ name: string }>('SELECT name FROM topics WHERE name = ANY($1::text[])', [topicNames]);
      const knownTopics = new Set(topics.rows.map((row) => row.name));
      const first = firstOccurrences(messages);
      // The first message of each key in the batch: the one that may be stored.
      const candidates = messages.filter((message, index) => first[index] && knownTopics.has(message.topic));
      // Per key, the fingerprint every message with that key is compared with: the stored event's, or the batch's first.
      const reference = new Map<string, Fingerprint>();
      const inserted = new Set<string>();
      if (candidates.length > 0) {
        const rows = await client.query<{ seq: number; topic: string; event_id: string }>(
          `INSERT INTO messages (topic, event_id, event)
           SELECT * FROM unnest($1::text[], $2::text[], $3::json[])
           ON CONFLICT (topic, event_id) DO NOTHING
           RETURNING seq, topic, event_id`,
          [candidates.map((message) => message.topic), candidates.map((message) => message.event.id), candidates.map((message) => JSON.stringify(message.event))],
        );
        const eventByKey = new Map(candidates.map((message) => [messageKey(message.topic, message.event.id), message.event]));
        for (const row of rows.rows) inserted.add(messageKey(row.topic, row.event_id));
        await this.#deliver(client, rows.rows.map((row) => ({ seq: row.seq, topic: row.topic, event: eventByKey.get(messageKey(row.topic, row.event_id))! })));
        const repeats = candidates.filter((message) => !inserted.has(messageKey(message.topic, message.event.id)));
        if (repeats.length > 0) {
          // Kept for the retention (KOBAN_RETENTION_DAYS), so a repeat within it is compared with the stored event.
          const stored = await client.query<{ topic: string; event_id: string; event: CloudEvent }>(
            `SELECT m.topic, m.event_id, m.event FROM messages m
               JOIN unnest($1::text[], $2::text[]) AS r (topic, event_id) ON m.topic = r.topic AND m.event_id = r.event_id`,
            [repeats.map((message) => message.topic), repeats.map((message) => message.event.id)],
          );
          for (const row of stored.rows) reference.set(messageKey(row.topic, row.event_id), fingerprint(row.event));
        }
        for (const key of inserted) reference.set(key, fingerprint(eventByKey.get(key)!));
      }
      return messages.map((message, index): PublishStatus => {
        if (!knownTopics.has(message.topic)) return 'unknown_topic';
        const key = messageKey(message.topic, message.event.id);
        if (first[index] && inserted.has(key)) return 'published';
        return repeatStatus(reference.get(key)!, fingerprint(message.event));
      });
    });
  }

  /** One delivery row per matching subscription of each newly stored message, announced at commit. */
  async #deliver(client: PoolClient, stored: ReadonlyArray<{ seq: number; topic: string; event: CloudEvent }>): Promise<void> {
    if (stored.length === 0) return;
    const subscriptions = await client.query<{ name: string; topic: string; filter: Subscription['filter'] }>(
      'SELECT name, topic, filter FROM subscriptions WHERE topic = ANY($1::text[])',
      [[...new Set(stored.map((message) => message.topic))]],
    );
    const deliveries: { subscription: string[]; seq: number[] } = { subscription: [], seq: [] };
    for (const message of stored) {
      const attributes = filterAttributes(message.event);
      for (const subscription of subscriptions.rows) {
        if (subscription.topic === message.topic && matchesFilter(subscription.filter, attributes)) {
          deliveries.subscription.push(subscription.name);
          deliveries.seq.push(message.seq);
        }
      }
    }
    if (deliveries.seq.length === 0) return;
    await client.query('INSERT INTO deliveries (subscription, message_seq) SELECT * FROM unnest($1::text[], $2::bigint[])', [deliveries.subscription, deliveries.seq]);
    // Delivered at commit, once per subscription.
    await client.query(`SELECT pg_notify('${NOTIFY_CHANNEL}', name) FROM unnest($1::text[]) AS name`, [[...new Set(deliveries.subscription)]]);
  }

  protected async newConsumer(options: ConsumerOptions): Promise<PostgresConsumer> {
    this.#listener ??= new PgListener(this.#options.url, NOTIFY_CHANNEL, this.#logger, (name) => {
      for (const consumer of this.consumers) if (name === undefined || consumer.subscription.name === name) consumer.wake();
    });
    return new PostgresConsumer({
      ...options,
      pool: this.pool,
      logger: this.#logger.child({ component: 'bus-consumer', subscription: options.subscription.name }),
      idlePollMs: this.#options.idlePollMs ?? IDLE_POLL_MS_DEFAULT,
    });
  }

  async subscriptions(): Promise<SubscriptionStats[]> {
    const result = await this.pool.query<SubscriptionStats>(
      `SELECT s.name, s.topic, s.filter,
              count(*) FILTER (WHERE d.state = 'pending' AND (d.leased_until IS NULL OR d.leased_until <= now()))::int AS depth,
              count(*) FILTER (WHERE d.state = 'pending' AND d.leased_until > now())::int AS in_flight,
              (extract(epoch FROM now() - min(m.published_at)) * 1000)::bigint AS oldest_age_ms,
              count(*) FILTER (WHERE d.state = 'dead')::int AS dead_letters
         FROM subscriptions s
         LEFT JOIN deliveries d ON d.subscription = s.name AND d.state IN ('pending', 'dead')
         LEFT JOIN messages m ON m.seq = d.message_seq AND d.state = 'pending'
        GROUP BY s.name, s.topic, s.filter
        ORDER BY s.name`,
    );
    return result.rows.map((row) => ({ ...row, oldest_age_ms: row.oldest_age_ms === null ? null : Math.max(0, row.oldest_age_ms) }));
  }

  async deadLetters(subscriptionName: string, query: DeadLetterQuery): Promise<DeadLetterPage> {
    const { afterSeq, state, rowsMax } = deadLetterPageQuery(query);
    await loadSubscription(this.pool, subscriptionName);
    const result = await this.pool.query<DeadLetterRow>(
      `SELECT d.message_seq AS seq, m.event_id, m.event, d.attempts, d.last_error, d.dead_lettered_at, d.discarded_at
         FROM deliveries d JOIN messages m ON m.seq = d.message_seq
        WHERE d.subscription = $1 AND d.state = $2 AND d.message_seq > $3
        ORDER BY d.message_seq
        LIMIT $4`,
      [subscriptionName, state, afterSeq, rowsMax],
    );
    return deadLetterPage(result.rows, query);
  }

  async redrive(subscriptionName: string, ids?: readonly string[]): Promise<{ redriven: number }> {
    const subscription = await loadSubscription(this.pool, subscriptionName);
    checkRedriveIds(ids);
    const result = await this.pool.query<{ redriven: number }>(
      `WITH redriven AS (
         UPDATE deliveries d
            SET state = 'pending', attempts = 0, visible_at = now(), leased_until = NULL, redriven_at = now(), redrive_count = d.redrive_count + 1
          WHERE d.subscription = $1 AND d.state = 'dead'
            AND ($2::text[] IS NULL OR d.message_seq IN (SELECT seq FROM messages WHERE topic = $3 AND event_id = ANY($2::text[])))
          RETURNING 1
       ), notified AS (
         SELECT pg_notify('${NOTIFY_CHANNEL}', $1) WHERE EXISTS (SELECT 1 FROM redriven)
       )
       SELECT (SELECT count(*) FROM redriven)::int AS redriven, (SELECT count(*) FROM notified) AS notified`,
      [subscription.name, ids === undefined ? null : [...ids], subscription.topic],
    );
    return { redriven: result.rows[0]?.redriven ?? 0 };
  }

  async discard(subscriptionName: string, id: string): Promise<DeadLetter> {
    const subscription = await loadSubscription(this.pool, subscriptionName);
    // Discarding twice returns the same record: the first discard stands.
    const result = await this.pool.query<DeadLetterRow>(
      `WITH target AS (
         SELECT d.subscription, d.message_seq FROM deliveries d JOIN messages m ON m.seq = d.message_seq
          WHERE d.subscription = $1 AND m.topic = $2 AND m.event_id = $3 AND d.state IN ('dead', 'discarded')
       ), updated AS (
         UPDATE deliveries d SET state = 'discarded', discarded_at = coalesce(d.discarded_at, now())
           FROM target t WHERE d.subscription = t.subscription AND d.message_seq = t.message_seq
         RETURNING d.*
       )
       SELECT u.message_seq AS seq, m.event_id, m.event, u.attempts, u.last_error, u.dead_lettered_at, u.discarded_at
         FROM updated u JOIN messages m ON m.seq = u.message_seq`,
      [subscription.name, subscription.topic, id],
    );
    return discardedDeadLetter(result.rows[0], subscription.name, id);
  }

  protected async closeBroker(): Promise<void> {
    await this.#listener?.close();
  }
}

type ClaimedRow = { message_seq: number; attempts: number; event: CloudEvent };

class PostgresConsumer extends ConsumerLifecycle {
  readonly #pool: Pool;
  readonly #logger: Logger;
  readonly #idlePollMs: number;
  readonly #acks: GroupCommitQueue<number, void>;

  constructor(options: ConsumerOptions & { pool: Pool; logger: Logger; idlePollMs: number }) {
    super(options);
    this.#pool = options.pool;
    this.#logger = options.logger;
    this.#idlePollMs = options.idlePollMs;
    // Acks of handlers that finish together share one statement.
    this.#acks = new GroupCommitQueue<number, void>({
      execute: async (seqs) => {
        await this.#pool.query({
          name: 'bus_ack',
          text: `UPDATE deliveries SET state = 'acked', acked_at = now(), leased_until = NULL
                  WHERE subscription = $1 AND message_seq = ANY($2::bigint[]) AND state = 'pending'`,
          values: [this.subscription.name, seqs],
        });
        return seqs.map(() => undefined);
      },
      batchSizeMax: ACK_BATCH_SIZE_MAX,
      queueDepthMax: ACK_QUEUE_DEPTH_MAX,
      onOverload: () => new Error('ack queue full'),
    });
  }

  protected async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      const capacity = this.inFlightMax - this.inFlight;
      if (capacity <= 0) {
        await this.wakeup.sleep(this.#idlePollMs);
        continue;
      }
      let rows: ClaimedRow[];
      try {
        rows = await this.#claim(Math.min(capacity, this.batchSizeMax));
        if (failures > 0) this.#logger.info('bus database reachable again; consuming');
        failures = 0;
      } catch (error) {
        failures += 1;
        const delayMs = brokerRetryDelayMs(failures, BROKER_RETRY_INITIAL_MS, BROKER_RETRY_MAX_MS);
        this.#logger.warn({ err: error, delayMs }, 'claiming deliveries failed; backing off');
        // Woken early by stop(), or by a notification (the database is back).
        await this.wakeup.sleep(delayMs);
        continue;
      }
      // Claimed even if stop() came meanwhile: the attempt is already counted, so
      // handle it (stop waits for it) rather than let its lease run out unhandled.
      if (this.abandoned) break;
      for (const row of rows) this.#dispatch(row);
      if (this.stopping) break;
      // A full batch means more may be waiting: claim again at once.
      if (rows.length < Math.min(capacity, this.batchSizeMax)) await this.wakeup.sleep(this.#idlePollMs);
    }
  }

  #claim(limit: number): Promise<ClaimedRow[]> {
    return this.#pool
      .query<ClaimedRow>({
        // Not a named (prepared) statement: a generic plan made while the
        // table was small turned this into a scan costing ~1 s per claim under
        // load; planning afresh costs ~1 ms and stays right as the table grows.
        // Deliveries whose last lease ran out on their final attempt become
        // dead letters here, in the same statement that claims the others.
        text: `WITH candidates AS (
                 SELECT d.message_seq, d.attempts FROM deliveries d
                  WHERE d.subscription = $1 AND d.state = 'pending' AND d.visible_at <= now()
                  ORDER BY d.visible_at
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED
               ), expired AS (
                 UPDATE deliveries d
                    SET state = 'dead', dead_lettered_at = now(), leased_until = NULL,
                        last_error = $3
                   FROM candidates c, subscriptions s
                  WHERE d.subscription = $1 AND d.message_seq = c.message_seq AND s.name = $1 AND c.attempts >= s.max_deliveries
                 RETURNING d.message_seq
               ), claimed AS (
                 UPDATE deliveries d
                    SET attempts = d.attempts + 1,
                        visible_at = now() + s.ack_wait_ms * interval '1 millisecond',
                        leased_until = now() + s.ack_wait_ms * interval '1 millisecond'
                   FROM candidates c, subscriptions s
                  WHERE d.subscription = $1 AND d.message_seq = c.message_seq AND s.name = $1 AND c.attempts < s.max_deliveries
                 RETURNING d.message_seq, d.attempts
               )
               SELECT c.message_seq, c.attempts, m.event FROM claimed c JOIN messages m ON m.seq = c.message_seq`,
        values: [this.subscription.name, limit, ACK_DEADLINE_EXCEEDED],
      })
      .then((result) => result.rows);
  }

  #dispatch(row: ClaimedRow): void {
    const delivery = { event: row.event, subscription: this.subscription.name, attempt: row.attempts };
    this.track(() =>
      // A handler that throws at once fails like one that rejects.
      Promise.resolve()
        .then(() => this.handler(delivery))
        .then(
          () => (this.abandoned ? undefined : this.#acks.submit(row.message_seq)),
          (error: unknown) => (this.abandoned ? undefined : this.#fail(row, error)),
        )
        .catch((error: unknown) => {
          // The lease runs out and the message comes back: at-least-once holds.
          this.#logger.warn({ err: error, id: row.event.id }, 'recording the outcome of a delivery failed');
        }),
    );
  }

  async #fail(row: ClaimedRow, error: unknown): Promise<void> {
    const delayMs = retryDelayMs(this.subscription, row.attempts);
    const lastError = truncateError(error, LAST_ERROR_LENGTH_MAX);
    const result = await this.#pool.query<{ state: string }>({
      name: 'bus_fail',
      // Guarded by the attempt number: a lease that already ran out and was
      // claimed again belongs to the newer delivery.
      text: `UPDATE deliveries d
                SET last_error = $4, leased_until = NULL,
                    visible_at = now() + $5 * interval '1 millisecond',
                    state = CASE WHEN d.attempts >= s.max_deliveries THEN 'dead' ELSE 'pending' END,
                    dead_lettered_at = CASE WHEN d.attempts >= s.max_deliveries THEN now() ELSE d.dead_lettered_at END
               FROM subscriptions s
              WHERE s.name = d.subscription AND d.subscription = $1 AND d.message_seq = $2 AND d.attempts = $3 AND d.state = 'pending'
              RETURNING d.state`,
      values: [this.subscription.name, row.message_seq, row.attempts, lastError, delayMs],
    });
    const state = result.rows[0]?.state;
    if (state === 'dead') {
      this.#logger.warn({ id: row.event.id, attempts: row.attempts, lastError }, 'message dead-lettered after its last delivery failed');
    } else {
      this.#logger.debug({ id: row.event.id, attempt: row.attempts, delayMs, lastError }, 'delivery failed; will retry');
      // Come back for it when its delay is over, not only at the next idle poll.
      setTimeout(() => this.wakeup.wake(), delayMs + 1).unref();
    }
  }

  protected override async flush(): Promise<void> {
    await this.#acks.flush();
  }
}
