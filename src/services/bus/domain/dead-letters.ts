// What every adapter does with dead letters the same way, whatever stores
// them: the row a dead letter is read from, its page, the checks and errors
// of list, redrive and discard, the stored last error.
import { KobanError } from '../../../platform/errors.ts';
import { decodeCursor, encodeCursor } from '../../../platform/cursor.ts';
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import type { DeadLetter, DeadLetterPage, DeadLetterQuery } from '../../../contracts/bus/event-bus.ts';
import { REDRIVE_IDS_MAX } from './limits.ts';

/** Recorded when a delivery's last lease runs out: its handler neither returned nor threw in time. */
export const ACK_DEADLINE_EXCEEDED = 'ack deadline exceeded: the consumer did not acknowledge within ack_wait_ms';

/** The columns a dead letter is read from; `seq` orders the pages. */
export type DeadLetterRow = {
  seq: number;
  event_id: string;
  event: CloudEvent;
  attempts: number;
  last_error: string | null;
  dead_lettered_at: Date;
  discarded_at: Date | null;
};

export function toDeadLetter(row: DeadLetterRow): DeadLetter {
  return {
    id: row.event_id,
    event: row.event,
    attempts: row.attempts,
    last_error: row.last_error,
    dead_lettered_at: row.dead_lettered_at.toISOString(),
    discarded_at: row.discarded_at?.toISOString() ?? null,
  };
}

/** Where a page starts (rows with a greater seq), what state it lists, and how many rows to read: one more than the page, to know if another follows. */
export function deadLetterPageQuery(query: DeadLetterQuery): { afterSeq: number; state: 'dead' | 'discarded'; rowsMax: number } {
  return { afterSeq: query.cursor === undefined ? 0 : decodeCursor(query.cursor), state: query.state ?? 'dead', rowsMax: query.limit + 1 };
}

/** The page from rows read with deadLetterPageQuery, in seq order. */
export function deadLetterPage(rows: readonly DeadLetterRow[], query: DeadLetterQuery): DeadLetterPage {
  const page = rows.slice(0, query.limit);
  return { data: page.map(toDeadLetter), next_cursor: rows.length > query.limit ? encodeCursor(page.at(-1)!.seq) : null };
}

export function checkRedriveIds(ids: readonly string[] | undefined): void {
  if (ids !== undefined && ids.length > REDRIVE_IDS_MAX) throw new KobanError('invalid_request', `ids has at most ${REDRIVE_IDS_MAX} items`, { field: 'ids' });
}

/** The discarded dead letter, or `not_found`: discarding twice returns the same record, the first discard stands. */
export function discardedDeadLetter(row: DeadLetterRow | undefined, subscription: string, id: string): DeadLetter {
  if (!row) throw new KobanError('not_found', `Subscription ${subscription} has no dead letter ${id}`, { subscription, id });
  return toDeadLetter(row);
}

/** The error as stored with a failed delivery: name and message, at most lengthMax characters. */
export function truncateError(error: unknown, lengthMax: number): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.length > lengthMax ? `${text.slice(0, lengthMax - 1)}…` : text;
}
