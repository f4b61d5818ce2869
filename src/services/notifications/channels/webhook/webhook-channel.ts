// The webhook channel: one HTTP POST of the notice as JSON to the user's (or
// the global) endpoint, signed (Koban-Signature, see domain/signature.ts),
// within a timeout. Any 2xx is delivered; anything else — another status, a
// redirect, a refused connection, a timeout — is a failed attempt the worker
// retries. The response body is not read: an endpoint cannot hold the worker
// by streaming one.
// A user's own endpoint may reach public addresses only (unless the operator
// allows private ones): an IP literal is judged before sending, and a name in
// the lookup of the connection itself, so the address judged is the address
// connected to (a name cannot resolve to a public address for the check and
// to a private one for the request). That refusal is permanent: no retry.
// User endpoints have a connection pool of their own, so that one never
// reuses a connection opened to the operator's global endpoint.
import { Agent, fetch } from 'undici';
import type { Clock } from '../../../../platform/clock.ts';
import { checkedLookup, ipLiteral, isPublicAddress, NonPublicAddressError, type Resolver } from '../../../../platform/net-policy.ts';
import type { AttemptResult } from '../../domain/delivery.ts';
import { SIGNATURE_HEADER, signatureHeader } from '../../domain/signature.ts';
import type { ChannelMessage, NotificationChannel } from '../channel.ts';

export const DELIVERY_ID_HEADER = 'Koban-Delivery-Id';
export const EVENT_ID_HEADER = 'Koban-Event-Id';
export const ATTEMPT_HEADER = 'Koban-Delivery-Attempt';
const USER_AGENT = 'koban-notifications/1';
const USER_ENDPOINT_RULE = 'per-user webhooks may only reach public addresses';

export class WebhookChannel implements NotificationChannel {
  readonly name = 'webhook' as const;
  readonly #secret: string;
  readonly #timeoutMs: number;
  readonly #userPrivateAllowed: boolean;
  readonly #clock: Clock;
  /** Connections to users' endpoints, made through the checked lookup. */
  readonly #userAgent: Agent;

  constructor(options: {
    secret: string;
    timeoutMs: number;
    /** NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED: users' endpoints may reach any address. */
    userPrivateAllowed: boolean;
    clock: Clock;
    /** How users' endpoints' names are resolved; the system's resolver unless a test gives one. */
    resolve?: Resolver;
  }) {
    this.#secret = options.secret;
    this.#timeoutMs = options.timeoutMs;
    this.#userPrivateAllowed = options.userPrivateAllowed;
    this.#clock = options.clock;
    this.#userAgent = new Agent({ connect: { lookup: checkedLookup(this.#userPrivateAllowed ? () => true : isPublicAddress, options.resolve) } });
  }

  async deliver(message: ChannelMessage, signal: AbortSignal): Promise<AttemptResult> {
    if (message.target === null) return { ok: false, error: 'webhook delivery without a URL' };
    const restricted = message.user_endpoint && !this.#userPrivateAllowed;
    // A literal is connected to without a lookup: judged here. (An unparsable URL fails in fetch, as before.)
    const literal = restricted ? ipLiteral(URL.parse(message.target)?.hostname ?? '') : undefined;
    if (literal !== undefined && !isPublicAddress(literal)) return { ok: false, error: `the endpoint is a private address (${literal}); ${USER_ENDPOINT_RULE}`, permanent: true };
    const timestamp = Math.floor(this.#clock.now().getTime() / 1000);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    try {
      const response = await fetch(message.target, {
        method: 'POST',
        // Never followed (a redirect is a failed attempt); for a user's endpoint, one to an IP literal would also skip the lookup's check.
        redirect: 'manual',
        ...(message.user_endpoint ? { dispatcher: this.#userAgent } : {}),
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
      const cause = error instanceof Error ? error.cause : undefined;
      if (cause instanceof NonPublicAddressError) return { ok: false, error: `the endpoint resolves to a private address (${cause.address}); ${USER_ENDPOINT_RULE}`, permanent: true };
      return { ok: false, error: describe(error) };
    }
  }

  /** Closes the connections to users' endpoints; call once no delivery is in flight. */
  async close(): Promise<void> {
    await this.#userAgent.destroy();
  }
}

/** fetch's own message is "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, …). */
function describe(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  const text = typeof cause?.message === 'string' ? cause.message : error instanceof Error ? error.message : String(error);
  return code === undefined ? text : `${code}: ${text}`;
}
