// The registry's record of published event ids and their fingerprints, for
// adapters whose broker does not keep ids for good (see 0002_event_fingerprints.sql).
// A publish claims its ids first, then publishes what it claimed, then marks
// what the broker acknowledged; the first claim of a (topic, id) owns it.
import { GroupCommitQueue } from '../../../platform/group-commit.ts';
import type { Pool } from '../../../platform/postgres/pool.ts';
import type { OutgoingMessage, PublishStatus } from '../../../contracts/bus/event-bus.ts';
import { differingFields, type Fingerprint, fingerprint, firstOccurrences, messageKey, repeatStatus } from '../domain/publishing.ts';

/** Marks written by one statement, at most, and waiting, at most (a relay's batches of a few hundred). */
const DEFERRED_MARKS_BATCH_SIZE_MAX = 1_000;
const DEFERRED_MARKS_QUEUE_DEPTH_MAX = 100_000;

export type Claim = Readonly<{ topic: string; id: string; fingerprint: Fingerprint }>;
export type StoredFingerprint = Readonly<{ fingerprint: Fingerprint; published: boolean }>;

/**
 * Claims each (topic, id) not yet known; returns the keys claimed now and,
 * for the others, what was stored by whoever claimed them first.
 */
export async function claimEventIds(pool: Pool, claims: readonly Claim[]): Promise<{ claimed: Set<string>; stored: Map<string, StoredFingerprint> }> {
  const claimed = new Set<string>();
  const stored = new Map<string, StoredFingerprint>();
  if (claims.length === 0) return { claimed, stored };
  const inserted = await pool.query<{ topic: string; event_id: string }>({
    name: 'bus_claim_event_ids',
    text: `INSERT INTO event_fingerprints (topic, event_id, fingerprint)
           SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])
           ON CONFLICT (topic, event_id) DO NOTHING
           RETURNING topic, event_id`,
    values: [claims.map((claim) => claim.topic), claims.map((claim) => claim.id), claims.map((claim) => JSON.stringify(claim.fingerprint))],
  });
  for (const row of inserted.rows) claimed.add(messageKey(row.topic, row.event_id));
  const repeats = claims.filter((claim) => !claimed.has(messageKey(claim.topic, claim.id)));
  if (repeats.length === 0) return { claimed, stored };
  // A statement of its own: it sees a claim that a concurrent publish committed after the insert began.
  const rows = await pool.query<{ topic: string; event_id: string; fingerprint: Fingerprint; published: boolean }>(
    `SELECT f.topic, f.event_id, f.fingerprint, f.published_at IS NOT NULL AS published FROM event_fingerprints f
       JOIN unnest($1::text[], $2::text[]) AS r (topic, event_id) ON f.topic = r.topic AND f.event_id = r.event_id`,
    [repeats.map((claim) => claim.topic), repeats.map((claim) => claim.id)],
  );
  for (const row of rows.rows) stored.set(messageKey(row.topic, row.event_id), { fingerprint: row.fingerprint, published: row.published });
  for (const claim of repeats) {
    if (!stored.has(messageKey(claim.topic, claim.id))) throw new Error(`Event ${claim.id} on topic ${claim.topic} was neither claimed nor found; try again`);
  }
  return { claimed, stored };
}

/** Marks events the broker acknowledged: their repeats are duplicates without asking it again. */
export async function markEventsPublished(pool: Pool, keys: ReadonlyArray<{ topic: string; id: string }>): Promise<void> {
  if (keys.length === 0) return;
  // Unnamed, so planned each time: a join with unnest planned while the table was small keeps its sequential
  // scan as the table grows (until the next ANALYZE).
  await pool.query({
    text: `UPDATE event_fingerprints f SET published_at = now()
             FROM unnest($1::text[], $2::text[]) AS r (topic, event_id)
            WHERE f.topic = r.topic AND f.event_id = r.event_id AND f.published_at IS NULL`,
    values: [keys.map((key) => key.topic), keys.map((key) => key.id)],
  });
}

/**
 * Deletes up to `rowsMax` fingerprints of events the broker acknowledged
 * before `cutoff`, oldest first; returns how many. One never acknowledged
 * stays (its event is published again when it comes again). Once gone, a
 * repeat of that id is published as new: the retention is this dedupe's window.
 */
export async function prunePublishedFingerprints(pool: Pool, cutoff: Date, rowsMax: number): Promise<number> {
  const result = await pool.query<{ pruned: number }>(
    `WITH pruned AS (
       DELETE FROM event_fingerprints f
        USING (SELECT topic, event_id FROM event_fingerprints
                WHERE claimed_at < $1 AND published_at < $1
                ORDER BY claimed_at LIMIT $2 FOR UPDATE SKIP LOCKED) old
        WHERE f.topic = old.topic AND f.event_id = old.event_id
       RETURNING 1)
     SELECT count(*)::int AS pruned FROM pruned`,
    [cutoff, rowsMax],
  );
  return result.rows[0]!.pruned;
}

/** What a batch may hand to its broker once its ids are claimed, and how every repeat in it is answered. */
export type ClaimedBatch = Readonly<{
  /** Indexes to publish: claimed now, or claimed before with the same content and never acknowledged. */
  toPublish: readonly number[];
  /** The answer for a message on a known topic that was not published now: duplicate or conflict. */
  repeatStatus(index: number): PublishStatus;
}>;

/**
 * Claims a batch's ids in the registry (the first claim of an id owns it) and
 * decides what to publish. Messages on topics not in `knownTopics` are left
 * out; the adapter answers them `unknown_topic`.
 */
export async function claimBatch(
  pool: Pool,
  messages: readonly OutgoingMessage[],
  knownTopics: ReadonlySet<string>,
  /** Keys this process published and is still marking (DeferredMarks): acknowledged already. */
  marking?: ReadonlySet<string>,
): Promise<ClaimedBatch> {
  const first = firstOccurrences(messages);
  const prints = messages.map((message) => (knownTopics.has(message.topic) ? fingerprint(message.event) : undefined));
  const candidates = messages.flatMap((message, index) => (first[index] && knownTopics.has(message.topic) ? [index] : []));
  const { stored } = await claimEventIds(
    pool,
    candidates.map((index) => ({ topic: messages[index]!.topic, id: messages[index]!.event.id, fingerprint: prints[index]! })),
  );
  const reference = new Map<string, Fingerprint>();
  const toPublish: number[] = [];
  for (const index of candidates) {
    const key = messageKey(messages[index]!.topic, messages[index]!.event.id);
    const earlier = stored.get(key);
    reference.set(key, earlier?.fingerprint ?? prints[index]!);
    // Claimed now; or claimed before, identical, and never acknowledged (that publish may have failed): publish it.
    const published = earlier?.published === true || marking?.has(key) === true;
    if (earlier === undefined || (!published && differingFields(earlier.fingerprint, prints[index]!).length === 0)) toPublish.push(index);
  }
  return {
    toPublish,
    repeatStatus: (index) => repeatStatus(reference.get(messageKey(messages[index]!.topic, messages[index]!.event.id))!, prints[index]!),
  };
}

/** Marks the messages at these indexes acknowledged by the broker. */
export function markBatchPublished(pool: Pool, messages: readonly OutgoingMessage[], indexes: Iterable<number>): Promise<void> {
  return markEventsPublished(pool, [...indexes].map((index) => ({ topic: messages[index]!.topic, id: messages[index]!.event.id })));
}

/**
 * Marks of published events written after publish answers, off its path: a
 * publisher's next batch is not held up by the last one's mark, and marks that
 * finish together share one statement. Until its mark is written, a key counts
 * as marked for this process's own repeats (`marking`). A mark lost to a crash
 * or an error leaves the event claimed and unmarked: an identical repeat is
 * then published again, which the consumers' dedupe by event id absorbs, as
 * after a publisher dying between publish and mark.
 */
export class DeferredMarks {
  readonly #pool: Pool;
  readonly #onError: (error: unknown) => void;
  readonly #marking = new Set<string>();
  readonly #queue: GroupCommitQueue<{ topic: string; id: string }, void>;
  readonly #writes = new Set<Promise<void>>();

  constructor(pool: Pool, onError: (error: unknown) => void) {
    this.#pool = pool;
    this.#onError = onError;
    this.#queue = new GroupCommitQueue<{ topic: string; id: string }, void>({
      execute: async (keys) => {
        await markEventsPublished(this.#pool, keys);
        return keys.map(() => undefined);
      },
      batchSizeMax: DEFERRED_MARKS_BATCH_SIZE_MAX,
      queueDepthMax: DEFERRED_MARKS_QUEUE_DEPTH_MAX,
      onOverload: () => new Error('too many published events waiting to be marked'),
    });
  }

  /** Keys published and not yet marked. */
  get marking(): ReadonlySet<string> {
    return this.#marking;
  }

  /** Marks the messages at these indexes, without waiting; a failure is reported to onError. */
  add(messages: readonly OutgoingMessage[], indexes: Iterable<number>): void {
    for (const index of indexes) {
      const { topic, event } = messages[index]!;
      const key = messageKey(topic, event.id);
      if (this.#marking.has(key)) continue;
      this.#marking.add(key);
      const write: Promise<void> = this.#queue
        .submit({ topic, id: event.id })
        .catch(this.#onError)
        .finally(() => {
          this.#marking.delete(key);
          this.#writes.delete(write);
        });
      this.#writes.add(write);
    }
  }

  /** Waits for every mark added so far (before the pool closes). */
  async flush(): Promise<void> {
    while (this.#writes.size > 0) await Promise.all([...this.#writes]);
  }
}
