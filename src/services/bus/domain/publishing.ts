// The first-in-batch rule every adapter's publishBatch follows: the first
// message with a given topic and id is the one stored, later ones in the same
// batch are duplicates (repeats across batches are the broker's to catch).
import type { OutgoingMessage } from '../../../contracts/bus/event-bus.ts';

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
