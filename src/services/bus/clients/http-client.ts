// The bus over HTTP, for a producer in another process: its outbox relay
// publishes through it. Only publishing: consumers run beside the bus (they
// need its delivery loops), not across HTTP.
import type { EventBus, OutgoingMessage, PublishStatus } from '../../../contracts/bus/event-bus.ts';
import { KobanError } from '../../../platform/errors.ts';
import { PUBLISH_BATCH_BYTES_MAX } from '../domain/limits.ts';

/** How long one publish round trip may take before the relay tries again (it republishes: the bus deduplicates by event id). */
export const BUS_CLIENT_REQUEST_TIMEOUT_MS = 10_000;

type BatchResult = { results: Array<{ id: string; status: 'published' | 'duplicate' | 'unknown_topic' | 'conflict'; conflict?: string[] }> };

export class BusClient implements Pick<EventBus, 'publishBatch'> {
  readonly #baseUrl: string;
  readonly #requestTimeoutMs: number;

  constructor(options: { baseUrl: string; requestTimeoutMs?: number }) {
    this.#baseUrl = options.baseUrl.replace(/\/$/, '');
    this.#requestTimeoutMs = options.requestTimeoutMs ?? BUS_CLIENT_REQUEST_TIMEOUT_MS;
  }

  async publishBatch(messages: readonly OutgoingMessage[]): Promise<PublishStatus[]> {
    if (messages.length === 0) return [];
    const body = JSON.stringify({ messages });
    // A batch too large for one request goes in halves; one event alone is always small enough.
    if (Buffer.byteLength(body) > PUBLISH_BATCH_BYTES_MAX && messages.length > 1) {
      const middle = Math.ceil(messages.length / 2);
      return [...(await this.publishBatch(messages.slice(0, middle))), ...(await this.publishBatch(messages.slice(middle)))];
    }
    let response: Response;
    try {
      response = await fetch(`${this.#baseUrl}/v1/events/batch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.#requestTimeoutMs),
      });
    } catch (error) {
      throw new KobanError('unavailable', `the bus at ${this.#baseUrl} did not answer`, undefined, { cause: error });
    }
    const text = await response.text();
    if (!response.ok) throw new KobanError(response.status === 400 ? 'invalid_request' : 'unavailable', `the bus answered ${response.status}: ${text.slice(0, 200)}`);
    const { results } = JSON.parse(text) as BatchResult;
    return results.map((result) => (result.status === 'conflict' ? { conflict: result.conflict ?? [] } : result.status));
  }
}
