// The port every channel fulfils: deliver one notice, once, and say how it
// went. The delivery worker calls it; retries, backoff and dead letters are
// the worker's, so a channel only makes one attempt. Each adapter lives in a
// folder of its own (log/, webhook/).
import type { AttemptResult } from '../domain/delivery.ts';
import type { ChannelName } from '../domain/notice.ts';

export type ChannelMessage = Readonly<{
  delivery_id: string;
  event_id: string;
  user_id: string;
  /** Where to (a webhook's URL); null for channels with one destination. */
  target: string | null;
  /** Whether the user chose the target (it may then reach public addresses only, unless the operator allows private ones). */
  user_endpoint: boolean;
  /** The bytes to send, the same on every attempt. */
  payload: string;
  /** 1 on the first attempt. */
  attempt: number;
}>;

export interface NotificationChannel {
  readonly name: ChannelName;
  /** One attempt. Never rejects: a failure is `{ ok: false, error }`. `signal` aborts it when the service stops. */
  deliver(message: ChannelMessage, signal: AbortSignal): Promise<AttemptResult>;
}
