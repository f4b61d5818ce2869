// The webhook channel: one HTTP POST of the notice as JSON to the user's (or
// the global) endpoint, signed (Koban-Signature, see domain/signature.ts),
// within a timeout. Any 2xx is delivered; anything else — another status, a
// redirect, a refused connection, a timeout — is a failed attempt the worker
// retries. The response body is not read: an endpoint cannot hold the worker
// by streaming one.
import type { Clock } from '../../../../platform/clock.ts';
import type { AttemptResult } from '../../domain/delivery.ts';
import { SIGNATURE_HEADER, signatureHeader } from '../../domain/signature.ts';
import type { ChannelMessage, NotificationChannel } from '../channel.ts';

export const DELIVERY_ID_HEADER = 'Koban-Delivery-Id';
export const EVENT_ID_HEADER = 'Koban-Event-Id';
export const ATTEMPT_HEADER = 'Koban-Delivery-Attempt';
const USER_AGENT = 'koban-notifications/1';

export class WebhookChannel implements NotificationChannel {
  readonly name = 'webhook' as const;
  readonly #secret: string;
  readonly #timeoutMs: number;
  readonly #clock: Clock;

  constructor(options: { secret: string; timeoutMs: number; clock: Clock }) {
    this.#secret = options.secret;
    this.#timeoutMs = options.timeoutMs;
    this.#clock = options.clock;
  }

  async deliver(message: ChannelMessage, signal: AbortSignal): Promise<AttemptResult> {
    if (message.target === null) return { ok: false, error: 'webhook delivery without a URL' };
    const timestamp = Math.floor(this.#clock.now().getTime() / 1000);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    try {
      const response = await fetch(message.target, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.any([signal, timeout]),
        headers: {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          [SIGNATURE_HEADER]: signatureHeader(this.#secret, timestamp, message.payload),
          [DELIVERY_ID_HEADER]: message.delivery_id,
          [EVENT_ID_HEADER]: message.event_id,
          [ATTEMPT_HEADER]: String(message.attempt),
        },
        body: message.payload,
      });
      await response.body?.cancel().catch(() => undefined);
      if (response.status >= 200 && response.status < 300) return { ok: true };
      return { ok: false, error: `HTTP ${response.status} from the endpoint` };
    } catch (error) {
      if (timeout.aborted) return { ok: false, error: `no answer within ${this.#timeoutMs} ms` };
      if (signal.aborted) return { ok: false, error: 'stopped while sending' };
      return { ok: false, error: describe(error) };
    }
  }
}

/** fetch's own message is "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, …). */
function describe(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  const text = typeof cause?.message === 'string' ? cause.message : error instanceof Error ? error.message : String(error);
  return code === undefined ? text : `${code}: ${text}`;
}
