// The chaos run's client, as card networks and partners behave: each request
// has a short timeout drawn from the seed, and a request that got no answer —
// a timeout, a dropped or refused connection, a 502/503/504 or an error the
// server calls retryable — is resent with the same id until an answer arrives
// (bounded). Those are "resend", never a mismatch; any other answer is the
// answer, and the driver compares it with the model.
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { call, type Send } from '../simulate/driver.ts';

/** The usual patience of a network: a request gets this long (drawn per request from the seed). */
const TIMEOUT_MS_MIN = 2_000;
const TIMEOUT_MS_MAX = 6_000;
/** Inside a client-timeout fault: the client gives up this fast, usually after the server committed. */
const SHORT_TIMEOUT_MS_MIN = 1;
const SHORT_TIMEOUT_MS_MAX = 25;
/** A message still unanswered after this long is reported as such (a mismatch), not resent forever. */
export const RESEND_DEADLINE_MS = 180_000;
const BACKOFF_MS_MIN = 50;
const BACKOFF_MS_MAX = 1_000;

export type ClientStats = {
  requests: number;
  /** Requests sent again with the same id after no answer. */
  resends: number;
  /** Of those, after the client's own timeout fired. */
  timeouts: number;
  /** Timeouts whose resend was answered as a replay: the server had committed before the client gave up. */
  timeoutsAfterCommit: number;
  /** Dropped or refused connections. */
  dropped: number;
  /** 502/503/504 and retryable errors. */
  unavailable: number;
  /** Messages that got no answer within RESEND_DEADLINE_MS. */
  unanswered: number;
};

export type ChaosClient = {
  send: Send;
  stats: ClientStats;
  /** Until this instant (performance.now()), requests time out within milliseconds. */
  shortTimeoutsUntil: number;
  /** Latencies of answered requests since the last take (for the soak sampler). */
  takeLatencies(): number[];
};

export function chaosClient(seed: number): ChaosClient {
  const rng = xoroshiro128plus(seed ^ 0x0c11_e47);
  const stats: ClientStats = { requests: 0, resends: 0, timeouts: 0, timeoutsAfterCommit: 0, dropped: 0, unavailable: 0, unanswered: 0 };
  let latencies: number[] = [];
  const client: ChaosClient = {
    stats,
    shortTimeoutsUntil: 0,
    takeLatencies() {
      const taken = latencies;
      latencies = [];
      return taken;
    },
    async send(url, method, body) {
      const started = performance.now();
      let timedOut = false;
      for (let attempt = 0; ; attempt += 1) {
        const short = performance.now() < client.shortTimeoutsUntil;
        const timeoutMs = short ? uniformInt(rng, SHORT_TIMEOUT_MS_MIN, SHORT_TIMEOUT_MS_MAX) : uniformInt(rng, TIMEOUT_MS_MIN, TIMEOUT_MS_MAX);
        stats.requests += 1;
        if (attempt > 0) stats.resends += 1;
        const sentAt = performance.now();
        try {
          const answer = await call(url, method, body, timeoutMs);
          const error = answer.json.error as { retryable?: boolean } | undefined;
          if (answer.status === 502 || answer.status === 503 || answer.status === 504 || error?.retryable === true) {
            stats.unavailable += 1;
          } else {
            latencies.push(performance.now() - sentAt);
            if (timedOut && answer.replayed === 'true') stats.timeoutsAfterCommit += 1;
            return answer;
          }
        } catch (error) {
          const name = (error as Error).name;
          if (name === 'TimeoutError' || name === 'AbortError') {
            stats.timeouts += 1;
            timedOut = true;
          } else stats.dropped += 1;
        }
        if (performance.now() - started > RESEND_DEADLINE_MS) {
          stats.unanswered += 1;
          return { status: 0, json: { error: `no answer within ${RESEND_DEADLINE_MS} ms` }, replayed: null };
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(BACKOFF_MS_MAX, BACKOFF_MS_MIN * 2 ** Math.min(attempt, 5)) * (0.5 + uniformInt(rng, 0, 100) / 200)));
      }
    },
  };
  return client;
}
