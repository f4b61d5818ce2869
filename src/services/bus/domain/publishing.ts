// The rules every adapter's publishBatch follows, so that all decide alike.
// Uniqueness: the first message with a given topic and id is the one stored;
// a later one, in the same batch or any later one, is compared with it: the
// same event is a duplicate (delivered once), different content is a
// conflict naming the attributes that differ. Content is compared through a
// fingerprint: a digest of each top-level attribute's canonical JSON (keys
// sorted, no whitespace), so key order and formatting never count.
import { hash } from 'node:crypto';
import { configure } from 'safe-stable-stringify';
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import type { OutgoingMessage, PublishStatus } from '../../../contracts/bus/event-bus.ts';

/**
 * Attributes that do not decide whether a repeat is the same event: `time`,
 * which the bus stamps at publish when a producer leaves it out, so an
 * identical retry would otherwise conflict with itself. The first one stands.
 */
const NOT_COMPARED: ReadonlySet<string> = new Set(['time']);
/** Characters of base64url kept per attribute digest: 128 bits of SHA-256. */
const DIGEST_CHARS = 22;

/** Sorted keys, JSON's own number and string forms (those of RFC 8785 for JSON data). */
const canonicalJson = configure({ deterministic: true, bigint: false });

/** Per compared attribute, a digest of its canonical JSON. */
export type Fingerprint = Readonly<Record<string, string>>;

/** The key a topic's message is unique by. */
export function messageKey(topic: string, id: string): string {
  return `${topic}\u0000${id}`;
}

/** Per message of a batch: whether it is the first with its topic and id (the one that may be stored). */
export function firstOccurrences(messages: readonly OutgoingMessage[]): boolean[] {
  const seen = new Set<string>();
  return messages.map((message) => {
    const key = messageKey(message.topic, message.event.id);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function fingerprint(event: CloudEvent): Fingerprint {
  const digests: Record<string, string> = {};
  for (const [name, value] of Object.entries(event)) {
    if (NOT_COMPARED.has(name) || value === undefined) continue;
    // The one-shot hash: for values this small, several times cheaper than a Hash object.
    digests[name] = hash('sha256', canonicalJson(value) ?? '', 'base64url').slice(0, DIGEST_CHARS);
  }
  return digests;
}

/** The attributes whose content differs (present in one only, or different), sorted. */
export function differingFields(stored: Fingerprint, repeat: Fingerprint): string[] {
  return [...new Set([...Object.keys(stored), ...Object.keys(repeat)])].filter((name) => stored[name] !== repeat[name]).sort();
}

/** A repeat's status against the fingerprint of the event stored under its id. */
export function repeatStatus(stored: Fingerprint, repeat: Fingerprint): PublishStatus {
  const fields = differingFields(stored, repeat);
  return fields.length === 0 ? 'duplicate' : { conflict: fields };
}
