// The registry's dead letters: kept here for adapters whose broker keeps
// none of its own (NATS JetStream now, SNS+SQS next), one row per
// subscription x event id. The adapter decides when a message is dead and how
// a redrive reaches its broker; the rows, their states and their pages are
// kept here, once.
import type { Pool } from '../../../platform/postgres/pool.ts';
import { withTransaction } from '../../../platform/postgres/pool.ts';
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import type { DeadLetter, DeadLetterPage, DeadLetterQuery } from '../../../contracts/bus/event-bus.ts';
import { checkRedriveIds, deadLetterPage, deadLetterPageQuery, type DeadLetterRow, discardedDeadLetter } from '../domain/dead-letters.ts';
import { loadSubscription } from './registry.ts';

const DEAD_LETTER_COLUMNS = 'seq, event_id, event, attempts, last_error, dead_lettered_at, discarded_at';

/** Records a dead letter; a redriven one that dies again becomes dead again, a dead or discarded one stays as it is. */
export async function recordDeadLetter(pool: Pool, subscription: string, event: CloudEvent, attempts: number, lastError: string): Promise<void> {
  await pool.query({
    name: 'bus_record_dead_letter',
    text: `INSERT INTO dead_letters AS l (subscription, event_id, event, state, attempts, last_error, dead_lettered_at)
           VALUES ($1, $2, $3, 'dead', $4, $5, now())
           ON CONFLICT (subscription, event_id) DO UPDATE
             SET state = 'dead', event = EXCLUDED.event, attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, dead_lettered_at = now()
           WHERE l.state = 'redriven'`,
    values: [subscription, event.id, JSON.stringify(event), attempts, lastError],
  });
}

/** Dead letters awaiting a decision, per subscription that has any. */
export async function countDeadLetters(pool: Pool): Promise<Map<string, number>> {
  const result = await pool.query<{ subscription: string; count: number }>(
    `SELECT subscription, count(*)::int AS count FROM dead_letters WHERE state = 'dead' GROUP BY subscription`,
  );
  return new Map(result.rows.map((row) => [row.subscription, row.count]));
}

/** A page of a subscription's dead (or discarded) letters; `not_found` for an unknown subscription. */
export async function listDeadLetters(pool: Pool, subscription: string, query: DeadLetterQuery): Promise<DeadLetterPage> {
  const { afterSeq, state, rowsMax } = deadLetterPageQuery(query);
  await loadSubscription(pool, subscription);
  const result = await pool.query<DeadLetterRow>(
    `SELECT ${DEAD_LETTER_COLUMNS} FROM dead_letters WHERE subscription = $1 AND state = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
    [subscription, state, afterSeq, rowsMax],
  );
  return deadLetterPage(result.rows, query);
}

/** A dead letter on its way back; redrive_number counts this subscription's redrives of it, 1 for the first. */
export type RedrivenDeadLetter = { event_id: string; event: CloudEvent; redrive_number: number };

/**
 * Hands the subscription's dead letters (all, or those ids) to `send`, one by
 * one in seq order, and marks them redriven in the same transaction: a send
 * that fails leaves them dead. The redrive's number lets `send` name it, so a
 * redrive retried after a crash is a duplicate to the broker.
 */
export async function redriveDeadLetters(
  pool: Pool,
  subscriptionName: string,
  ids: readonly string[] | undefined,
  send: (deadLetter: RedrivenDeadLetter, topic: string) => Promise<void>,
): Promise<{ redriven: number }> {
  const subscription = await loadSubscription(pool, subscriptionName);
  checkRedriveIds(ids);
  return withTransaction(pool, async (client) => {
    const rows = await client.query<RedrivenDeadLetter & { seq: number }>(
      `SELECT seq, event_id, event, redrive_count + 1 AS redrive_number FROM dead_letters
        WHERE subscription = $1 AND state = 'dead' AND ($2::text[] IS NULL OR event_id = ANY($2::text[]))
        ORDER BY seq FOR UPDATE`,
      [subscription.name, ids === undefined ? null : [...ids]],
    );
    for (const row of rows.rows) await send(row, subscription.topic);
    await client.query(`UPDATE dead_letters SET state = 'redriven', redriven_at = now(), redrive_count = redrive_count + 1 WHERE seq = ANY($1::bigint[])`, [
      rows.rows.map((row) => row.seq),
    ]);
    return { redriven: rows.rows.length };
  });
}

/** Marks a dead letter discarded; `not_found` if the subscription has no such dead letter. */
export async function discardDeadLetter(pool: Pool, subscriptionName: string, id: string): Promise<DeadLetter> {
  const subscription = await loadSubscription(pool, subscriptionName);
  const result = await pool.query<DeadLetterRow>(
    `UPDATE dead_letters SET state = 'discarded', discarded_at = coalesce(discarded_at, now())
      WHERE subscription = $1 AND event_id = $2 AND state IN ('dead', 'discarded')
      RETURNING ${DEAD_LETTER_COLUMNS}`,
    [subscription.name, id],
  );
  return discardedDeadLetter(result.rows[0], subscription.name, id);
}
