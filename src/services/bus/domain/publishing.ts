// What publishing means on every adapter: one event is validated, then
// published as a batch of one; in a batch, the first message with a given
// topic and id is the one stored, later ones are duplicates.
import { KobanError } from '../../../platform/errors.ts';
import type { Clock } from '../../../platform/clock.ts';
import { validateEvent } from '../../../contracts/events/envelope.ts';
import type { OutgoingMessage, PublishResult, PublishStatus } from '../../../contracts/bus/event-bus.ts';

/** EventBus.publish on top of the adapter's publishBatch: `invalid_request` for a bad event, `not_found` for an unknown topic. */
export async function publishOne(
  publishBatch: (messages: readonly OutgoingMessage[]) => Promise<PublishStatus[]>,
  clock: Clock,
  topic: string,
  input: unknown,
): Promise<PublishResult> {
  const event = validateEvent(input, clock);
  const [status] = await publishBatch([{ topic, event }]);
  if (status === 'unknown_topic') throw new KobanError('not_found', `No topic named ${topic}`, { topic });
  return { id: event.id, duplicate: status === 'duplicate' };
}

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

export function assertOpen(closed: boolean): void {
  if (closed) throw new KobanError('unavailable', 'The event bus is closed');
}
