// The notifications store on PostgreSQL: every statement in one place.
import path from 'node:path';
import type { Logger } from 'pino';
import { migrate } from '../../../../platform/postgres/migrate.ts';
import { GroupCommitQueue } from '../../../../platform/group-commit.ts';
import type { Pool } from '../../../../platform/postgres/pool.ts';
import type { DeliveryOutcome } from '../../domain/delivery.ts';
import { LAST_ERROR_LENGTH_MAX, type Language } from '../../domain/limits.ts';
import type { ChannelName, Notice, NotifiedTopic, UserSettings } from '../../domain/notice.ts';
import type { ClaimedDelivery, DeadDelivery, NewDelivery, NotificationStore, StoredNotice } from '../notification-store.ts';

const MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');
/** Successful deliveries recorded by one statement, at most. */
const DELIVERED_BATCH_SIZE_MAX = 256;
/** Successful deliveries waiting to be recorded, at most: bounded by the worker's concurrency in practice. */
const DELIVERED_QUEUE_DEPTH_MAX = 10_000;

export async function migrateNotifications(pool: Pool, logger: Logger): Promise<void> {
  await migrate(pool, MIGRATIONS_DIR, logger);
}

type NoticeRow = {
  seq: string;
  notice_id: string;
  topic: NotifiedTopic;
  event_id: string;
  user_id: string;
  type: string;
  title: string;
  body: string;
  language: Language;
  created_at: Date;
};

export class PostgresNotificationStore implements NotificationStore {
  readonly #pool: Pool;

  /** Deliveries that succeeded together are recorded in one statement. */
  readonly #delivered: GroupCommitQueue<{ seq: number; attempt: number; at: Date }, void>;

  constructor(pool: Pool) {
    this.#pool = pool;
    this.#delivered = new GroupCommitQueue<{ seq: number; attempt: number; at: Date }, void>({
      execute: async (items) => {
        // Unnamed, so planned each time: a join with unnest planned while the table was small keeps its
        // sequential scan as the table grows (until the next ANALYZE).
        await this.#pool.query({
          text: `UPDATE deliveries d SET status = 'delivered', delivered_at = v.at, last_error = NULL
                 FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[]) AS v (seq, attempts, at)
                 WHERE d.seq = v.seq AND d.attempts = v.attempts AND d.status = 'pending'`,
          values: [items.map((item) => item.seq), items.map((item) => item.attempt), items.map((item) => item.at)],
        });
        return items.map(() => undefined);
      },
      batchSizeMax: DELIVERED_BATCH_SIZE_MAX,
      queueDepthMax: DELIVERED_QUEUE_DEPTH_MAX,
      onOverload: () => new Error('too many delivered deliveries waiting to be recorded'),
    });
  }

  async userSettings(userId: string): Promise<UserSettings | undefined> {
    const result = await this.#pool.query<{ language: Language | null; webhook_url: string | null }>(
      'SELECT language, webhook_url FROM user_settings WHERE user_id = $1',
      [userId],
    );
    return result.rows[0];
  }

  async putUserSettings(userId: string, settings: UserSettings, now: Date): Promise<UserSettings> {
    const result = await this.#pool.query<{ language: Language | null; webhook_url: string | null }>(
      `INSERT INTO user_settings (user_id, language, webhook_url, updated_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (user_id) DO UPDATE SET language = EXCLUDED.language, webhook_url = EXCLUDED.webhook_url, updated_at = EXCLUDED.updated_at
       RETURNING language, webhook_url`,
      [userId, settings.language, settings.webhook_url, now],
    );
    return result.rows[0]!;
  }

  /** The notice and its deliveries in one statement (atomic on its own): one round trip per event. */
  async recordNotice(notice: Notice, deliveries: readonly NewDelivery[]): Promise<boolean> {
    const result = await this.#pool.query<{ seq: string }>({
      name: 'notifications_record',
      text: `WITH notice AS (
               INSERT INTO notices (notice_id, topic, event_id, user_id, type, title, body, language, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (topic, event_id) DO NOTHING
               RETURNING seq
             ), planned AS (
               INSERT INTO deliveries (delivery_id, notice_seq, channel, target, user_endpoint, payload, next_attempt_at, created_at)
               SELECT d.delivery_id, notice.seq, d.channel, d.target, d.user_endpoint, d.payload, $9, $9
               FROM notice, unnest($10::uuid[], $11::text[], $12::text[], $13::boolean[], $14::text[]) AS d (delivery_id, channel, target, user_endpoint, payload)
             )
             SELECT seq FROM notice`,
      values: [
        notice.notice_id,
        notice.topic,
        notice.event_id,
        notice.user_id,
        notice.type,
        notice.title,
        notice.body,
        notice.language,
        notice.created_at,
        deliveries.map((delivery) => delivery.delivery_id),
        deliveries.map((delivery) => delivery.channel),
        deliveries.map((delivery) => delivery.target),
        deliveries.map((delivery) => delivery.user_endpoint),
        deliveries.map((delivery) => delivery.payload),
      ],
    });
    return result.rows.length > 0;
  }

  async notices(userId: string, beforeSeq: number | undefined, rowsMax: number): Promise<StoredNotice[]> {
    const result = await this.#pool.query<NoticeRow>(
      `SELECT seq, notice_id, topic, event_id, user_id, type, title, body, language, created_at
       FROM notices WHERE user_id = $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3`,
      [userId, beforeSeq ?? null, rowsMax],
    );
    return result.rows.map((row) => ({ ...row, seq: Number(row.seq), created_at: row.created_at.toISOString() }));
  }

  async claimDue(now: Date, limit: number, leaseUntil: Date): Promise<ClaimedDelivery[]> {
    const result = await this.#pool.query<{
      seq: string;
      delivery_id: string;
      channel: ChannelName;
      target: string | null;
      user_endpoint: boolean;
      payload: string;
      attempts: number;
      event_id: string;
      user_id: string;
    }>(
      `WITH due AS (
         SELECT seq FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1
         ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED
       )
       UPDATE deliveries d SET attempts = d.attempts + 1, next_attempt_at = $3
       FROM due, notices n
       WHERE d.seq = due.seq AND n.seq = d.notice_seq
       RETURNING d.seq, d.delivery_id, d.channel, d.target, d.user_endpoint, d.payload, d.attempts, n.event_id, n.user_id`,
      [now, limit, leaseUntil],
    );
    return result.rows.map(({ attempts, seq, ...row }) => ({ ...row, seq: Number(seq), attempt: attempts }));
  }

  async nextDueAt(): Promise<Date | undefined> {
    const result = await this.#pool.query<{ due: Date | null }>("SELECT min(next_attempt_at) AS due FROM deliveries WHERE status = 'pending'");
    return result.rows[0]?.due ?? undefined;
  }

  async settle(seq: number, attempt: number, outcome: DeliveryOutcome): Promise<void> {
    const guard = "seq = $1 AND attempts = $2 AND status = 'pending'";
    switch (outcome.kind) {
      case 'delivered':
        await this.#delivered.submit({ seq, attempt, at: outcome.at });
        return;
      case 'retry':
        await this.#pool.query(`UPDATE deliveries SET next_attempt_at = $3, last_error = $4 WHERE ${guard}`, [seq, attempt, outcome.nextAttemptAt, bounded(outcome.error)]);
        return;
      case 'dead':
        await this.#pool.query(`UPDATE deliveries SET status = 'dead', dead_lettered_at = $3, last_error = $4 WHERE ${guard}`, [seq, attempt, outcome.at, bounded(outcome.error)]);
        return;
    }
  }

  async deadLetters(afterSeq: number | undefined, rowsMax: number): Promise<DeadDelivery[]> {
    const result = await this.#pool.query<Omit<DeadDelivery, 'seq' | 'dead_lettered_at'> & { seq: string; dead_lettered_at: Date }>(
      `SELECT d.seq, d.delivery_id, n.notice_id, n.event_id, n.user_id, d.channel, d.target, d.attempts, d.last_error, d.dead_lettered_at, d.redrives
       FROM deliveries d JOIN notices n ON n.seq = d.notice_seq
       WHERE d.status = 'dead' AND ($1::bigint IS NULL OR d.seq > $1) ORDER BY d.seq LIMIT $2`,
      [afterSeq ?? null, rowsMax],
    );
    return result.rows.map((row) => ({ ...row, seq: Number(row.seq), dead_lettered_at: row.dead_lettered_at.toISOString() }));
  }

  async redrive(deliveryIds: readonly string[] | undefined, now: Date, limit: number): Promise<number> {
    const result = await this.#pool.query(
      `WITH chosen AS (
         SELECT seq FROM deliveries WHERE status = 'dead' AND ($1::uuid[] IS NULL OR delivery_id = ANY ($1::uuid[]))
         ORDER BY seq LIMIT $2 FOR UPDATE
       )
       UPDATE deliveries d SET status = 'pending', attempts = 0, next_attempt_at = $3, dead_lettered_at = NULL, redrives = d.redrives + 1
       FROM chosen WHERE d.seq = chosen.seq`,
      [deliveryIds ?? null, limit, now],
    );
    return result.rowCount ?? 0;
  }

  /**
   * Deletes up to `rowsMax` deliveries delivered before `cutoff`, oldest
   * first; returns how many. Never a pending or dead one, nor a notice: a
   * redelivered event finds its notice and plans no delivery again.
   */
  async pruneDelivered(cutoff: Date, rowsMax: number): Promise<number> {
    const result = await this.#pool.query<{ pruned: number }>(
      `WITH pruned AS (
         DELETE FROM deliveries d
          WHERE d.seq IN (SELECT seq FROM deliveries WHERE status = 'delivered' AND delivered_at < $1
                           ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING 1)
       SELECT count(*)::int AS pruned FROM pruned`,
      [cutoff, rowsMax],
    );
    return result.rows[0]!.pruned;
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

function bounded(error: string): string {
  return error.length > LAST_ERROR_LENGTH_MAX ? `${error.slice(0, LAST_ERROR_LENGTH_MAX)}…` : error;
}
