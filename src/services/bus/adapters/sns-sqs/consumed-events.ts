// The consuming side's record of which message owns each event of a
// subscription (see 0003_consumed_events.sql, 0004_consumed_events_died.sql):
// SNS standard topics and SQS standard queues deliver at least once, so the
// event id decides what a handler sees, not the message. A claim is freed
// only when its message died and a redrive sends another, so no two messages
// of one event are ever both handled, whatever fails or is retried.
// The statements that touch dead_letters too are here, each one statement, so
// a death and its claim, or a redrive and the claims it frees, never part.
import type { Pool } from '../../../../platform/postgres/pool.ts';
import type { CloudEvent } from '../../../../contracts/events/envelope.ts';

/**
 * What to do with a received message: `handle` it, drop it (`handled`: a
 * redelivery of what its handler did; `duplicate`: another message owns the
 * event), or, `died`, leave it to SQS's dead-letter queue: its event died
 * (recorded dead) and no redrive has freed it. That message back before SQS
 * moved it, another copy of the event, or one a move task brought back with a
 * new id before its dead letter was redriven: each waits in the dead-letter
 * queue, where a redrive finds it.
 */
export type Ownership = 'handle' | 'handled' | 'duplicate' | 'died';

export type ReceivedCopy = Readonly<{ eventId: string; messageId: string }>;

/**
 * Claims each event for the message that carries it, unless another message
 * owns it already. Per message: `handle` (it owns the event, not yet
 * handled), `handled` (it owns it and a handler already succeeded: a
 * redelivery) or `duplicate` (another message owns it). Two messages of one
 * batch with the same event id: the first one claims it.
 */
export async function claimEvents(pool: Pool, subscription: string, copies: readonly ReceivedCopy[]): Promise<Ownership[]> {
  if (copies.length === 0) return [];
  const owners = new Map<string, { messageId: string; handled: boolean; died: boolean }>();
  const firsts = new Map<string, string>();
  for (const copy of copies) if (!firsts.has(copy.eventId)) firsts.set(copy.eventId, copy.messageId);
  const eventIds = [...firsts.keys()];
  // Unnamed, so planned each time: a plan cached while the table was small keeps its sequential scan as the
  // table grows (until the next ANALYZE), and a consumer drained 20,000 messages at half the speed by the end.
  const result = await pool.query<{ event_id: string; message_id: string; handled: boolean; died: boolean }>({
    text: `WITH input AS (SELECT * FROM unnest($2::text[], $3::text[]) AS i (event_id, message_id)),
           claimed AS (
             INSERT INTO consumed_events (subscription, event_id, message_id) SELECT $1, event_id, message_id FROM input
             ON CONFLICT (subscription, event_id) DO NOTHING
             RETURNING event_id, message_id)
           SELECT event_id, message_id, false AS handled, false AS died FROM claimed
           UNION ALL
           SELECT c.event_id, c.message_id, c.handled_at IS NOT NULL, c.died_at IS NOT NULL FROM consumed_events c JOIN input i ON c.event_id = i.event_id
            WHERE c.subscription = $1`,
    values: [subscription, eventIds, eventIds.map((id) => firsts.get(id)!)],
  });
  for (const row of result.rows) owners.set(row.event_id, { messageId: row.message_id, handled: row.handled, died: row.died });
  // A claim another consumer committed after this statement began is invisible to it: read it in a statement of its own.
  const unseen = eventIds.filter((id) => !owners.has(id));
  if (unseen.length > 0) {
    const late = await pool.query<{ event_id: string; message_id: string; handled: boolean; died: boolean }>(
      'SELECT event_id, message_id, handled_at IS NOT NULL AS handled, died_at IS NOT NULL AS died FROM consumed_events WHERE subscription = $1 AND event_id = ANY($2::text[])',
      [subscription, unseen],
    );
    for (const row of late.rows) owners.set(row.event_id, { messageId: row.message_id, handled: row.handled, died: row.died });
  }
  return copies.map((copy) => {
    const owner = owners.get(copy.eventId);
    // Every message of a dead event goes to the dead-letter queue, whatever its id: a move task gives what it moves new ids.
    if (owner?.died === true && !owner.handled) return 'died';
    if (owner === undefined || owner.messageId !== copy.messageId) return 'duplicate';
    return owner.handled ? 'handled' : 'handle';
  });
}

/** Records that handlers succeeded for these events: a later copy of any of them is dropped. */
export async function markEventsHandled(pool: Pool, subscription: string, copies: readonly ReceivedCopy[]): Promise<void> {
  if (copies.length === 0) return;
  // Unnamed, planned each time (see claimEvents).
  await pool.query({
    text: `UPDATE consumed_events c SET handled_at = now()
             FROM unnest($2::text[], $3::text[]) AS h (event_id, message_id)
            WHERE c.subscription = $1 AND c.event_id = h.event_id AND c.message_id = h.message_id AND c.handled_at IS NULL`,
    values: [subscription, copies.map((copy) => copy.eventId), copies.map((copy) => copy.messageId)],
  });
}

/**
 * Records a dead letter (as recordDeadLetter does: a redriven one that dies
 * again is dead again, a dead or discarded one stays as it is) and, in the
 * same statement, marks the claim of the message that died, when that message
 * owns the event: the claim a redrive may free. No message (an unreadable
 * body, which claims nothing): the dead letter alone.
 */
export async function recordDeath(pool: Pool, subscription: string, event: CloudEvent, messageId: string | undefined, attempts: number, lastError: string): Promise<void> {
  await pool.query({
    name: 'bus_sqs_record_death',
    text: `WITH died AS (
             UPDATE consumed_events SET died_at = now()
              WHERE subscription = $1 AND event_id = $2 AND message_id = $6 AND handled_at IS NULL AND died_at IS NULL)
           INSERT INTO dead_letters AS l (subscription, event_id, event, state, attempts, last_error, dead_lettered_at)
           VALUES ($1, $2, $3, 'dead', $4, $5, now())
           ON CONFLICT (subscription, event_id) DO UPDATE
             SET state = 'dead', event = EXCLUDED.event, attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, dead_lettered_at = now()
           WHERE l.state = 'redriven'`,
    values: [subscription, event.id, JSON.stringify(event), attempts, lastError, messageId ?? null],
  });
}

/** A dead letter being redriven. */
export type RedrivenRow = { seq: number; event_id: string; event: CloudEvent };

/** The subscription's dead letters (all, or those ids), in seq order: what one redrive takes on, fixed at its start. */
export async function deadLetterKeys(pool: Pool, subscription: string, ids: readonly string[] | undefined): Promise<{ seq: number; eventId: string }[]> {
  const result = await pool.query<{ seq: string; event_id: string }>(
    `SELECT seq, event_id FROM dead_letters WHERE subscription = $1 AND state = 'dead' AND ($2::text[] IS NULL OR event_id = ANY($2::text[])) ORDER BY seq`,
    [subscription, ids === undefined ? null : [...ids]],
  );
  return result.rows.map((row) => ({ seq: Number(row.seq), eventId: row.event_id }));
}

/**
 * Marks these dead letters (null: all the subscription's) redriven and frees
 * their claims, in one statement, before anything is sent: from then on no
 * other redrive takes them, and whichever message of the event comes first
 * owns it. Only claims whose message died are freed: a claim held by a
 * message that may still be delivered (one a failed redrive sent after all)
 * stays, so a second message of that event is dropped. Those no longer dead
 * (redriven meanwhile by another redrive) are left out.
 */
export async function markRedriven(pool: Pool, subscription: string, seqs: readonly number[] | null): Promise<RedrivenRow[]> {
  const result = await pool.query<{ seq: string; event_id: string; event: CloudEvent }>({
    name: 'bus_sqs_mark_redriven',
    text: `WITH marked AS (
             UPDATE dead_letters SET state = 'redriven', redriven_at = now(), redrive_count = redrive_count + 1
              WHERE subscription = $1 AND state = 'dead' AND ($2::bigint[] IS NULL OR seq = ANY($2::bigint[]))
             RETURNING seq, event_id, event),
           released AS (
             DELETE FROM consumed_events c USING marked m WHERE c.subscription = $1 AND c.event_id = m.event_id AND c.died_at IS NOT NULL)
           SELECT seq, event_id, event FROM marked ORDER BY seq`,
    values: [subscription, seqs === null ? null : [...seqs]],
  });
  return result.rows.map((row) => ({ seq: Number(row.seq), event_id: row.event_id, event: row.event }));
}

/**
 * Lists these dead letters as dead again: what a redrive marked but could not
 * send (or could not tell it sent). Their claims stay free: if SQS took a
 * message after all, it owns its event, and another redrive's is dropped.
 */
export async function restoreDead(pool: Pool, seqs: readonly number[]): Promise<void> {
  if (seqs.length === 0) return;
  await pool.query(`UPDATE dead_letters SET state = 'dead', redrive_count = redrive_count - 1 WHERE seq = ANY($1::bigint[]) AND state = 'redriven'`, [[...seqs]]);
}

/**
 * Deletes up to `rowsMax` claims handled before `cutoff`, oldest first;
 * returns how many. A claim not handled (its message retried, dead, or being
 * redriven) stays whatever its age. Once gone, a later copy of that event is
 * handled again: the retention is this dedupe's window.
 */
export async function pruneHandledClaims(pool: Pool, cutoff: Date, rowsMax: number): Promise<number> {
  const result = await pool.query<{ pruned: number }>(
    `WITH pruned AS (
       DELETE FROM consumed_events c
        USING (SELECT subscription, event_id FROM consumed_events
                WHERE claimed_at < $1 AND handled_at < $1
                ORDER BY claimed_at LIMIT $2 FOR UPDATE SKIP LOCKED) old
        WHERE c.subscription = old.subscription AND c.event_id = old.event_id
       RETURNING 1)
     SELECT count(*)::int AS pruned FROM pruned`,
    [cutoff, rowsMax],
  );
  return result.rows[0]!.pruned;
}
