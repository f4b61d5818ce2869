// The transactional outbox, for any service that publishes events. The event
// row is written with the caller's own client inside the caller's transaction,
// so the state change and its event commit together or not at all. A relay
// then publishes committed rows to the bus, at least once: it marks a row only
// after the bus accepted it, and the bus deduplicates by event id, so a relay
// that dies between publish and mark causes a duplicate the bus absorbs.
import type { Logger } from 'pino';
import type { CloudEvent, CloudEventInput } from '../../contracts/events/envelope.ts';
import { checkTopicName, validateEvent } from '../../contracts/events/envelope.ts';
import type { EventBus, PublishStatus } from '../../contracts/bus/event-bus.ts';
import { brokerRetryDelayMs, Wakeup } from '../wakeup.ts';
import { failpoint } from '../failpoints.ts';
import type { Clock } from '../clock.ts';
import { migrate } from '../postgres/migrate.ts';
import { createPool, type Pool, type PoolClient, withTransaction } from '../postgres/pool.ts';
import { pgErrorCode } from '../postgres/errors.ts';
import path from 'node:path';

/**
 * The outbox's schema inside the service's database, by default. A service
 * that may share a database with another producer (DATABASE_URL alone) names
 * its own, so each has an outbox of its own.
 */
export const OUTBOX_SCHEMA = 'koban_outbox';
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function checkSchema(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) throw new Error(`not an outbox schema name: ${schema}`);
  return schema;
}
const OUTBOX_MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');
const DUPLICATE_SCHEMA = '42P06';

/** Rows published per bus round trip. */
export const RELAY_BATCH_SIZE_MAX_DEFAULT = 256;
/** An idle relay looks for new rows this often: the most an event waits in the outbox before publishing starts. */
export const RELAY_IDLE_POLL_MS_DEFAULT = 20;
/** After the bus fails, the relay waits this long, doubling up to the max: no busy loop through an outage. */
export const RELAY_RETRY_INITIAL_MS_DEFAULT = 100;
export const RELAY_RETRY_MAX_MS_DEFAULT = 10_000;
/** A row the bus refused (unknown topic) is retried after this long, so it never blocks the rows behind it. */
export const RELAY_REFUSED_RETRY_MS = 60_000;
/** Conflicting rows quoted in one log line (the rest are counted). */
const RELAY_ERRORS_LOGGED_MAX = 10;

/** Anything with pg's `query`: a PoolClient inside the caller's transaction, or a Client. */
export type Queryable = Pick<PoolClient, 'query'>;

/** Creates the outbox schema and table in a service's database; safe from concurrent starts. */
export async function migrateOutbox(serviceDatabaseUrl: string, logger: Logger, schema: string = OUTBOX_SCHEMA): Promise<void> {
  checkSchema(schema);
  const url = new URL(serviceDatabaseUrl);
  // The shared migrator keeps its bookkeeping in `schema_migrations`; with the
  // search path set to the outbox schema it gets a table of its own there.
  url.searchParams.set('options', `-c search_path=${schema}`);
  const pool = createPool({ url: url.toString(), size: 1, applicationName: 'koban-outbox-migrate', logger });
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`).catch((error: unknown) => {
      if (pgErrorCode(error) !== DUPLICATE_SCHEMA && pgErrorCode(error) !== '23505') throw error;
    });
    await migrate(pool, OUTBOX_MIGRATIONS_DIR, logger);
  } finally {
    await pool.end();
  }
}

/**
 * Writes events to the outbox with the caller's client: call it inside the
 * transaction that makes the state change. Validates every topic name and
 * event first (throws `invalid_request`, writing nothing) and returns them as they will
 * be delivered, `time` stamped.
 */
export async function appendToOutbox(
  client: Queryable,
  messages: readonly { topic: string; event: CloudEventInput }[],
  clock: Clock,
  schema: string = OUTBOX_SCHEMA,
): Promise<CloudEvent[]> {
  const insert = outboxInsert(messages, clock, 1, schema);
  if (insert.events.length === 0) return insert.events;
  await client.query(insert.sql, insert.params);
  return insert.events;
}

/**
 * The outbox insert as a statement to compose into the caller's own (a
 * data-modifying CTE, say: one round trip, one commit), its parameters
 * numbered from `firstParameter`. Validates as appendToOutbox does.
 */
export function outboxInsert(
  messages: readonly { topic: string; event: CloudEventInput }[],
  clock: Clock,
  firstParameter: number,
  schema: string = OUTBOX_SCHEMA,
): { sql: string; params: unknown[]; events: CloudEvent[] } {
  checkSchema(schema);
  const events = messages.map((message) => {
    checkTopicName(message.topic);
    return validateEvent(message.event, clock);
  });
  const [topics, ids, bodies] = [firstParameter, firstParameter + 1, firstParameter + 2];
  // No NOTIFY here: PostgreSQL serializes the commits of notifying
  // transactions on one cluster-wide lock, which would cap the producer's
  // commit rate (measured: ~1,000/s). The relay polls instead (idlePollMs).
  return {
    sql: `INSERT INTO ${schema}.events (topic, event_id, event) SELECT * FROM unnest($${topics}::text[], $${ids}::text[], $${bodies}::json[])`,
    params: [messages.map((message) => message.topic), events.map((event) => event.id), events.map((event) => JSON.stringify(event))],
    events,
  };
}

export type OutboxRelayOptions = {
  /** A pool on the service's database (the one the outbox rows are written to). */
  pool: Pool;
  /** The outbox's schema there; OUTBOX_SCHEMA by default. */
  schema?: string;
  bus: Pick<EventBus, 'publishBatch'>;
  logger: Logger;
  batchSizeMax?: number;
  idlePollMs?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
};

type OutboxRow = { seq: number; topic: string; event: CloudEvent; attempts: number };

/**
 * Publishes committed outbox rows. Several relays may run on one database:
 * each locks the rows it publishes (SKIP LOCKED), so they share the work.
 */
export class OutboxRelay {
  readonly #options: Required<Omit<OutboxRelayOptions, 'bus'>> & { bus: Pick<EventBus, 'publishBatch'> };
  readonly #wakeup = new Wakeup();
  #loop: Promise<void> | undefined;
  #stopping = false;
  /** Consecutive failed rounds; tests and health checks read it. */
  failures = 0;

  constructor(options: OutboxRelayOptions) {
    this.#options = {
      batchSizeMax: RELAY_BATCH_SIZE_MAX_DEFAULT,
      idlePollMs: RELAY_IDLE_POLL_MS_DEFAULT,
      retryInitialMs: RELAY_RETRY_INITIAL_MS_DEFAULT,
      retryMaxMs: RELAY_RETRY_MAX_MS_DEFAULT,
      schema: OUTBOX_SCHEMA,
      ...options,
      logger: options.logger.child({ component: 'outbox-relay' }),
    };
    checkSchema(this.#options.schema);
  }

  start(): void {
    if (this.#loop) return;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      let published: number;
      try {
        published = await this.relayOnce();
        if (this.failures > 0) this.#options.logger.info({ afterFailures: this.failures }, 'outbox relay publishing again');
        this.failures = 0;
      } catch (error) {
        this.failures += 1;
        const delayMs = brokerRetryDelayMs(this.failures, this.#options.retryInitialMs, this.#options.retryMaxMs);
        this.#options.logger.warn({ err: error, delayMs, failures: this.failures }, 'outbox relay could not publish; backing off');
        await this.#sleepUnlessStopping(delayMs);
        continue;
      }
      // A full batch means more rows may be waiting: go again at once.
      if (published < this.#options.batchSizeMax) await this.#wakeup.sleep(this.#options.idlePollMs);
    }
  }

  async #sleepUnlessStopping(ms: number): Promise<void> {
    // Notifications do not end an outage, so only stop() cuts this sleep short.
    const deadline = Date.now() + ms;
    while (!this.#stopping && Date.now() < deadline) await this.#wakeup.sleep(deadline - Date.now());
  }

  /** Publishes one batch of due rows; returns how many rows it handled. Throws if the bus or database failed. */
  async relayOnce(): Promise<number> {
    return withTransaction(this.#options.pool, async (client) => {
      const rows = await client.query<OutboxRow>({
        name: `outbox_claim_${this.#options.schema}`,
        text: `SELECT seq, topic, event, attempts FROM ${this.#options.schema}.events
                WHERE published_at IS NULL AND available_at <= now()
                ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`,
        values: [this.#options.batchSizeMax],
      });
      if (rows.rows.length === 0) return 0;
      // The row locks are held while publishing: another relay skips these rows.
      const statuses = await this.#options.bus.publishBatch(rows.rows.map((row) => ({ topic: row.topic, event: row.event })));
      // A crash here publishes these rows again after a restart: the bus's dedupe by event id must absorb it.
      await failpoint('outbox.after_publish');
      await this.#record(client, rows.rows, statuses);
      return rows.rows.length;
    });
  }

  async #record(client: PoolClient, rows: OutboxRow[], statuses: PublishStatus[]): Promise<void> {
    const done = rows.filter((_, index) => statuses[index] === 'published' || statuses[index] === 'duplicate').map((row) => row.seq);
    const refused = rows.filter((_, index) => statuses[index] === 'unknown_topic');
    const conflicting = rows.flatMap((row, index) => {
      const status = statuses[index];
      return typeof status === 'object' ? [{ row, fields: status.conflict }] : [];
    });
    if (done.length > 0) {
      await client.query({
        name: `outbox_mark_published_${this.#options.schema}`,
        text: `UPDATE ${this.#options.schema}.events SET published_at = now(), attempts = attempts + 1 WHERE seq = ANY($1::bigint[])`,
        values: [done],
      });
    }
    if (refused.length > 0) {
      this.#options.logger.error({ topics: [...new Set(refused.map((row) => row.topic))], count: refused.length }, 'outbox rows name a topic the bus does not know; retrying later');
      await client.query(
        `UPDATE ${this.#options.schema}.events
            SET attempts = attempts + 1, last_error = 'unknown topic ' || topic, available_at = now() + $2 * interval '1 millisecond'
          WHERE seq = ANY($1::bigint[])`,
        [refused.map((row) => row.seq), RELAY_REFUSED_RETRY_MS],
      );
    }
    if (conflicting.length > 0) {
      // Retrying cannot help (the bus keeps the other event under that id): the
      // row is parked, unpublished, with its error, until a person decides
      // (give it an id of its own and set available_at to now()).
      const errors = conflicting.map(({ row, fields }) => `idempotency_conflict: event ${row.event.id} was already published on topic ${row.topic} with different ${fields.join(', ')}`);
      this.#options.logger.error({ conflicts: errors.slice(0, RELAY_ERRORS_LOGGED_MAX), count: conflicting.length }, 'outbox rows reuse an event id with different content; set aside');
      await client.query(
        `UPDATE ${this.#options.schema}.events AS e
            SET attempts = e.attempts + 1, last_error = c.error, available_at = 'infinity'
           FROM unnest($1::bigint[], $2::text[]) AS c (seq, error)
          WHERE e.seq = c.seq`,
        [conflicting.map(({ row }) => row.seq), errors],
      );
    }
  }

  /** Stops after the batch in progress; rows not yet published stay for the next relay. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wakeup.wake();
    await this.#loop;
  }
}

/**
 * The statement that deletes up to `$<rowsMax>` published rows published
 * before `$<cutoff>`, oldest first, returning each row's event id, subject and
 * when it was published: for a producer that keeps when its events were
 * published elsewhere before the row goes (a data-modifying CTE). Never an
 * unpublished row, whatever its age. Rows another transaction holds (the
 * relay marking them) are skipped, not waited for.
 */
export function outboxPruneSql(schema: string, cutoffParameter: number, rowsMaxParameter: number): string {
  checkSchema(schema);
  return `DELETE FROM ${schema}.events AS o
           WHERE o.seq IN (SELECT seq FROM ${schema}.events
                            WHERE published_at < $${cutoffParameter}::timestamptz
                            ORDER BY published_at LIMIT $${rowsMaxParameter}::int FOR UPDATE SKIP LOCKED)
       RETURNING o.event_id, o.event->>'subject' AS subject, o.published_at`;
}

/** Deletes up to `rowsMax` rows published before `cutoff` (see outboxPruneSql); returns how many. */
export async function pruneOutbox(pool: Pool, cutoff: Date, rowsMax: number, schema: string = OUTBOX_SCHEMA): Promise<number> {
  const result = await pool.query(`WITH pruned AS (${outboxPruneSql(schema, 1, 2)}) SELECT count(*)::int AS pruned FROM pruned`, [cutoff, rowsMax]);
  return (result.rows[0] as { pruned: number }).pruned;
}

/** Rows not yet published, set-aside ones included (a conflict waits for a person): for health checks and tests. */
export async function outboxBacklog(pool: Pool, schema: string = OUTBOX_SCHEMA): Promise<number> {
  const result = await pool.query<{ count: number }>(`SELECT count(*)::int AS count FROM ${checkSchema(schema)}.events WHERE published_at IS NULL`);
  return result.rows[0]?.count ?? 0;
}
