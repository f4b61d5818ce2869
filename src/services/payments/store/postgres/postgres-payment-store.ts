// The payment store on PostgreSQL: every statement in one place. A payment is
// locked with an advisory lock on its id (it may not exist yet), so two
// messages for one payment never decide from the same state.
import path from 'node:path';
import type { Logger } from 'pino';
import { migrateOutbox, outboxInsert, outboxPruneSql } from '../../../../platform/outbox/outbox.ts';
import type { Clock } from '../../../../platform/clock.ts';
import { migrate } from '../../../../platform/postgres/migrate.ts';
import type { Pool, PoolClient } from '../../../../platform/postgres/pool.ts';
import type { Payment } from '../../domain/payment.ts';
import { PAYMENTS_TOPIC, type PaymentRoute } from '../../../../contracts/events/payments.ts';
import type { Intent, Opened, PaymentEventRow, PaymentSession, PaymentStore, StoredMessage } from '../payment-store.ts';

const MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');

/** Each route's outbox has a schema of its own: two routes sharing one database (DATABASE_URL alone) still have an outbox each. */
export function paymentsOutboxSchema(route: PaymentRoute): string {
  return `koban_${route}_outbox`;
}

/** Tables of the route (payments, messages) and its outbox, in its database. */
export async function migratePayments(pool: Pool, databaseUrl: string, logger: Logger, route: PaymentRoute): Promise<void> {
  await migrate(pool, MIGRATIONS_DIR, logger);
  await migrateOutbox(databaseUrl, logger, paymentsOutboxSchema(route));
}

export class PostgresPaymentStore implements PaymentStore {
  readonly #pool: Pool;
  readonly #clock: Clock;
  readonly #outbox: string;

  constructor(pool: Pool, clock: Clock, route: PaymentRoute) {
    this.#pool = pool;
    this.#clock = clock;
    this.#outbox = paymentsOutboxSchema(route);
  }

  /**
   * One connection for the whole message: a session-level advisory lock, so
   * the decision's journal entry commits before the ledger writes and its
   * outcome after them, all under the one lock. A session whose last step is
   * an outcome (`endsSession`) lets the lock go in that statement; otherwise
   * the answer does not wait for the unlock: the connection returns to the
   * pool once it is done, and a next message for the payment waits for it at
   * the lock, as for any holder.
   */
  async withPayment<T>(work: (session: PaymentSession) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    const state: SessionState = { lockKey: undefined, ended: false };
    const finish = async () => {
      // A connection that cannot unlock is destroyed, which ends its session and so its lock.
      let healthy = true;
      if (state.lockKey !== undefined && !state.ended) {
        healthy = await client.query({ name: 'payments_unlock', text: 'SELECT pg_advisory_unlock(hashtextextended($1, 0))', values: [state.lockKey] }).then(
          () => true,
          () => false,
        );
      }
      client.release(!healthy);
    };
    let result: T;
    try {
      result = await work(session(client, this.#clock, this.#outbox, state));
    } catch (error) {
      await finish();
      throw error;
    }
    void finish();
    return result;
  }

  async storedMessage(namespace: string, messageId: string): Promise<StoredMessage | undefined> {
    return selectMessage(this.#pool, namespace, messageId);
  }

  async paymentOfMessage(kind: string, messageId: string): Promise<string | undefined> {
    const result = await this.#pool.query<{ payment_id: string }>('SELECT payment_id FROM network_messages WHERE kind = $1 AND message_id = $2', [kind, messageId]);
    return result.rows[0]?.payment_id;
  }

  async expiredHolds(now: Date, limit: number): Promise<string[]> {
    const result = await this.#pool.query<{ payment_id: string }>('SELECT payment_id FROM payments WHERE hold_expires_at <= $1 ORDER BY hold_expires_at LIMIT $2', [now, limit]);
    return result.rows.map((row) => row.payment_id);
  }

  async stalledIntents(before: Date, limit: number): Promise<string[]> {
    const result = await this.#pool.query<{ payment_id: string }>(
      'SELECT DISTINCT payment_id FROM (SELECT payment_id FROM payment_intents WHERE created_at < $1 ORDER BY seq LIMIT $2) stalled',
      [before, limit],
    );
    return result.rows.map((row) => row.payment_id);
  }

  payment(paymentId: string): Promise<Payment | undefined> {
    return selectPayment(this.#pool, paymentId);
  }

  async read(paymentId: string): Promise<{ payment: Payment; events: PaymentEventRow[] } | undefined> {
    const payment = await selectPayment(this.#pool, paymentId);
    if (payment === undefined) return undefined;
    const events = await this.#pool.query<{ id: string; type: string; occurred_at: Date; published_at: Date | null }>(
      // Once its outbox row is pruned, an event's publication instant is the one kept in the payment's own list.
      `SELECT e.event->>'id' AS id, e.event->>'type' AS type, (e.event->>'occurred_at')::timestamptz AS occurred_at,
              coalesce(o.published_at, (e.event->>'published_at')::timestamptz) AS published_at
         FROM payments p CROSS JOIN LATERAL jsonb_array_elements(p.events) WITH ORDINALITY AS e(event, n)
         LEFT JOIN ${this.#outbox}.events o ON o.event_id = e.event->>'id'
        WHERE p.payment_id = $1 ORDER BY e.n`,
      [paymentId],
    );
    // Written as the API writes every time (and the events their own): UTC, milliseconds, `Z`.
    return {
      payment,
      events: events.rows.map((row) => ({ id: row.id, type: row.type, occurred_at: row.occurred_at.toISOString(), published_at: row.published_at?.toISOString() ?? null })),
    };
  }

  /**
   * Deletes up to `rowsMax` outbox rows published before `cutoff` and, in the
   * same statement, copies when each was published into its payment's events
   * list: `GET /v1/payments/{id}` keeps answering `published_at` after the row
   * has gone (a payment is kept for good; its outbox rows are not).
   */
  async prunePublishedEvents(cutoff: Date, rowsMax: number): Promise<number> {
    const result = await this.#pool.query<{ pruned: number }>(
      `WITH pruned AS (${outboxPruneSql(this.#outbox, 1, 2)}),
       kept AS (
         UPDATE payments p
            SET events = (SELECT jsonb_agg(CASE WHEN x.published_at IS NULL THEN e.event
                                                ELSE e.event || jsonb_build_object('published_at', x.published_at) END ORDER BY e.n)
                            FROM jsonb_array_elements(p.events) WITH ORDINALITY AS e(event, n)
                            LEFT JOIN LATERAL (SELECT max(r.published_at) AS published_at FROM pruned r WHERE r.event_id = e.event->>'id') x ON true)
          WHERE p.payment_id IN (SELECT subject FROM pruned)
         RETURNING 1)
       SELECT count(*)::int AS pruned FROM pruned`,
      [cutoff, rowsMax],
    );
    return result.rows[0]!.pruned;
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}

/** The lock a session took, and whether an outcome has released it (nothing may follow that outcome). */
type SessionState = { lockKey: string | undefined; ended: boolean };

function session(client: PoolClient, clock: Clock, outboxSchema: string, state: SessionState): PaymentSession {
  return {
    async open(lockKey, paymentId, message): Promise<Opened> {
      takeLock(state, lockKey);
      const result = await client.query<{ opened: RawOpened }>({
        name: 'payments_open',
        text: 'SELECT payments_open($1, $2, $3, $4) AS opened',
        values: [lockKey, message?.namespace ?? null, message?.id ?? null, paymentId],
      });
      return openedOf(result.rows[0]!.opened);
    },
    async openFresh(lockKey, paymentId, message, intent) {
      takeLock(state, lockKey);
      // Stamped as recordIntent stamps (see there), in the statement that takes the lock.
      const result = await client.query<{ opened: { journalled: string } | RawOpened }>({
        name: 'payments_open_fresh',
        text: 'SELECT payments_open_fresh($1, $2, $3, $4, $5, $6) AS opened',
        values: [lockKey, message.namespace, message.id, paymentId, JSON.stringify(intent), clock.now()],
      });
      const opened = result.rows[0]!.opened;
      return 'journalled' in opened ? { journalled: Number(opened.journalled) } : openedOf(opened);
    },
    message: (namespace, messageId) => selectMessage(live(state, client), namespace, messageId),
    payment: (paymentId) => selectPayment(live(state, client), paymentId),
    async recordIntent(paymentId, intent): Promise<number> {
      live(state, client);
      // Committed before the ledger writes, without waiting for its flush (see payments_journal). Stamped by the
      // service's clock, the one finishStalled measures staleness with. One case loses it: PostgreSQL crashes
      // before the flush and the ledger takes the write only after the restart (the ledger client's retry); the
      // message is then decided again, and the service keeps the hold the ledger has (see #deadlineOfOwnHold).
      const result = await client.query<{ seq: string }>({
        name: 'payments_journal',
        text: 'SELECT payments_journal($1, $2, $3) AS seq',
        values: [paymentId, JSON.stringify(intent), clock.now()],
      });
      return Number(result.rows[0]!.seq);
    },
    async abandonIntent(seq): Promise<void> {
      await live(state, client).query('DELETE FROM payment_intents WHERE seq = $1', [seq]);
    },
    async commit({ message, payment, events, intentSeq, endsSession }) {
      live(state, client);
      const releases = endsSession === true;
      if (releases && state.lockKey === undefined) throw new Error('an outcome that ends the session needs the lock open took');
      // One statement, so one round trip and one commit: data-modifying CTEs, the outbox's own insert among them
      // (and, ending the session, the lock's release at commit: payments_release_at_commit).
      const outbox = outboxInsert(events.map(({ event }) => ({ topic: PAYMENTS_TOPIC, event })), clock, releases ? 17 : 16, outboxSchema);
      // Named: planned once per connection (four shapes: with events or without, releasing or not).
      await client.query({
        name: `${outbox.events.length > 0 ? 'payments_record_with_events' : 'payments_record'}${releases ? '_releasing' : ''}`,
        text: `WITH upserted AS (
           INSERT INTO payments (payment_id, route, authorization_id, user_id, status, state, hold_expires_at, created_at, events)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $15)
           ON CONFLICT (payment_id) DO UPDATE SET status = excluded.status, state = excluded.state, hold_expires_at = excluded.hold_expires_at,
             events = payments.events || excluded.events, updated_at = now()
           RETURNING 1
         ), answered AS (
           INSERT INTO network_messages (kind, message_id, payment_id, request, response, status_code)
           SELECT $9::text, $10::text, $1, $11::jsonb, $12::text, $13::integer WHERE $9::text IS NOT NULL
           RETURNING 1
         ), finished AS (
           DELETE FROM payment_intents WHERE seq = $14::bigint RETURNING 1
         )${outbox.events.length > 0 ? `, outboxed AS (${outbox.sql} RETURNING 1)` : ''}${releases ? ', released AS (SELECT payments_release_at_commit($16::text) AS released)' : ''}
         SELECT ${releases ? 'released FROM released' : '1'}`,
        values: [
          payment.payment_id,
          payment.route,
          payment.authorization_id,
          payment.user_id,
          payment.status,
          JSON.stringify(payment),
          payment.open_holds.length > 0 ? payment.hold_expires_at : null,
          payment.created_at,
          message?.kind ?? null,
          message?.id ?? null,
          message === undefined ? null : JSON.stringify(message.request),
          message?.response ?? null,
          message?.status_code ?? null,
          intentSeq ?? null,
          JSON.stringify(outbox.events.map((event, index) => ({ id: event.id, type: events[index]!.type, occurred_at: events[index]!.occurred_at }))),
          ...(releases ? [state.lockKey] : []),
          ...(outbox.events.length > 0 ? outbox.params : []),
        ],
      });
      if (releases) state.ended = true;
    },
  };
}

/** What payments_open returns, as JSON. */
type RawOpened = { intents: Array<{ seq: string | number; intent: Intent }>; message: StoredMessage | null; payment: Payment | null };

function openedOf(raw: RawOpened): Opened {
  return { intents: raw.intents.map(({ seq, intent }) => ({ seq: Number(seq), intent })), message: raw.message ?? undefined, payment: raw.payment ?? undefined };
}

/** A session opens one payment: its lock is released when the session ends. */
function takeLock(state: SessionState, lockKey: string): void {
  if (state.lockKey !== undefined) throw new Error(`this session already holds the lock of ${state.lockKey}`);
  state.lockKey = lockKey;
}

/** The session's connection, while the lock is still held: after an outcome that released it, nothing more may run. */
function live(state: SessionState, client: PoolClient): PoolClient {
  if (state.ended) throw new Error(`the session of ${state.lockKey} has ended: its outcome released the lock`);
  return client;
}

async function selectMessage(client: Pick<PoolClient, 'query'>, namespace: string, messageId: string): Promise<StoredMessage | undefined> {
  const result = await client.query<StoredMessage>('SELECT payment_id, request, response, status_code FROM network_messages WHERE kind = $1 AND message_id = $2', [namespace, messageId]);
  return result.rows[0];
}

async function selectPayment(client: Pick<PoolClient, 'query'>, paymentId: string): Promise<Payment | undefined> {
  const result = await client.query<{ state: Payment }>('SELECT state FROM payments WHERE payment_id = $1', [paymentId]);
  return result.rows[0]?.state;
}
