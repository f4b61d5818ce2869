// The consuming side's record of which message owns each event of a
// subscription (see 0003_consumed_events.sql): SNS standard topics and SQS
// standard queues deliver at least once, so the event id decides what a
// handler sees, not the message.
import type { Pool } from '../../../../platform/postgres/pool.ts';

/** What to do with a received message. */
export type Ownership = 'handle' | 'handled' | 'duplicate';

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
  const owners = new Map<string, { messageId: string; handled: boolean }>();
  const firsts = new Map<string, string>();
  for (const copy of copies) if (!firsts.has(copy.eventId)) firsts.set(copy.eventId, copy.messageId);
  const eventIds = [...firsts.keys()];
  const result = await pool.query<{ event_id: string; message_id: string; handled: boolean }>({
    name: 'bus_sqs_claim_events',
    text: `WITH input AS (SELECT * FROM unnest($2::text[], $3::text[]) AS i (event_id, message_id)),
           claimed AS (
             INSERT INTO consumed_events (subscription, event_id, message_id) SELECT $1, event_id, message_id FROM input
             ON CONFLICT (subscription, event_id) DO NOTHING
             RETURNING event_id, message_id)
           SELECT event_id, message_id, false AS handled FROM claimed
           UNION ALL
           SELECT c.event_id, c.message_id, c.handled_at IS NOT NULL FROM consumed_events c JOIN input i ON c.event_id = i.event_id
            WHERE c.subscription = $1`,
    values: [subscription, eventIds, eventIds.map((id) => firsts.get(id)!)],
  });
  for (const row of result.rows) owners.set(row.event_id, { messageId: row.message_id, handled: row.handled });
  // A claim another consumer committed after this statement began is invisible to it: read it in a statement of its own.
  const unseen = eventIds.filter((id) => !owners.has(id));
  if (unseen.length > 0) {
    const late = await pool.query<{ event_id: string; message_id: string; handled: boolean }>(
      'SELECT event_id, message_id, handled_at IS NOT NULL AS handled FROM consumed_events WHERE subscription = $1 AND event_id = ANY($2::text[])',
      [subscription, unseen],
    );
    for (const row of late.rows) owners.set(row.event_id, { messageId: row.message_id, handled: row.handled });
  }
  return copies.map((copy) => {
    const owner = owners.get(copy.eventId);
    if (owner === undefined || owner.messageId !== copy.messageId) return 'duplicate';
    return owner.handled ? 'handled' : 'handle';
  });
}

/** Records that handlers succeeded for these events: a later copy of any of them is dropped. */
export async function markEventsHandled(pool: Pool, subscription: string, copies: readonly ReceivedCopy[]): Promise<void> {
  if (copies.length === 0) return;
  await pool.query({
    name: 'bus_sqs_mark_events_handled',
    text: `UPDATE consumed_events c SET handled_at = now()
             FROM unnest($2::text[], $3::text[]) AS h (event_id, message_id)
            WHERE c.subscription = $1 AND c.event_id = h.event_id AND c.message_id = h.message_id AND c.handled_at IS NULL`,
    values: [subscription, copies.map((copy) => copy.eventId), copies.map((copy) => copy.messageId)],
  });
}

/** Frees events for whichever message comes next (a redrive's): called before that message is sent. */
export async function releaseEvents(pool: Pool, subscription: string, eventIds: readonly string[]): Promise<void> {
  if (eventIds.length === 0) return;
  await pool.query('DELETE FROM consumed_events WHERE subscription = $1 AND event_id = ANY($2::text[])', [subscription, [...eventIds]]);
}
