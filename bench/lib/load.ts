// Goal: closed-loop HTTP load with undici: N workers, each sending its next request (or short sequence of requests) when the previous one answers, with latency percentiles.
import type { IncomingHttpHeaders } from 'node:http';
import type { Pool } from 'undici';

const JSON_HEADERS = { 'content-type': 'application/json' } as const;
/** Examples of each unexpected answer kept for the report. */
const UNEXPECTED_SAMPLES_KEPT = 5;
const RESPONSE_SNIPPET_CHARS = 300;
/** A scenario stops early after this many transport errors (server gone, connections refused). */
const CLIENT_ERRORS_MAX = 200;

export type Answer = { status: number; headers: IncomingHttpHeaders; body: string };

/** One request and how to judge its answer: `check` returns null when expected, else a short label for the report. */
export type Plan = {
  method: 'POST' | 'GET';
  path: string;
  body?: string;
  check(answer: Answer): string | null;
};

export type Unexpected = { counts: Map<string, number>; samples: string[]; total: number };

export function newUnexpected(): Unexpected {
  return { counts: new Map(), samples: [], total: 0 };
}

function noteUnexpected(unexpected: Unexpected, label: string, detail: string): void {
  unexpected.total++;
  unexpected.counts.set(label, (unexpected.counts.get(label) ?? 0) + 1);
  if (unexpected.samples.length < UNEXPECTED_SAMPLES_KEPT) unexpected.samples.push(`${label}: ${detail.slice(0, RESPONSE_SNIPPET_CHARS)}`);
}

/** Sends one request; transport failures become a label rather than an exception. */
export async function send(pool: Pool, plan: Plan, unexpected: Unexpected): Promise<{ ok: boolean; transportError: boolean }> {
  let answer: Answer;
  try {
    const response = await pool.request({
      method: plan.method,
      path: plan.path,
      headers: plan.body === undefined ? undefined : JSON_HEADERS,
      body: plan.body,
    });
    answer = { status: response.statusCode, headers: response.headers, body: await response.body.text() };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    noteUnexpected(unexpected, `transport error ${typeof code === 'string' ? code : (error as Error).name}`, (error as Error).message);
    return { ok: false, transportError: true };
  }
  const label = plan.check(answer);
  if (label !== null) {
    noteUnexpected(unexpected, label, `${plan.method} ${plan.path} ${plan.body ?? ''} -> ${answer.status} ${answer.body}`);
    return { ok: false, transportError: false };
  }
  return { ok: true, transportError: false };
}

export type LoadResult = {
  concurrency: number;
  /** Units (one request, or a sequence such as hold then post) started inside the measured window. */
  units: number;
  /** HTTP requests sent by those units. */
  requests: number;
  measuredS: number;
  unitsPerS: number;
  requestsPerS: number;
  /** Percentiles of the latency of a whole unit, or of its first request (`latencyOf: 'first'`). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Unexpected answers, warm-up included. */
  unexpected: Unexpected;
};

/**
 * Runs `concurrency` closed-loop workers for warm-up + measured time. Each
 * worker sends a unit — the plans of `nextUnit()` one after the other,
 * stopping at the first unexpected answer — then the next. Units started
 * during warm-up are sent and checked but not timed.
 */
export async function runClosedLoop(
  pool: Pool,
  options: {
    concurrency: number;
    warmupMs: number;
    durationMs: number;
    nextUnit: () => readonly Plan[];
    /** What a latency is of: the whole unit (the default), or its first request alone (an authorization whose capture follows, untimed). */
    latencyOf?: 'unit' | 'first';
    signal: AbortSignal;
    /** Called when the measured window opens and when it closes (for CPU readings); `onWindowEnd` always runs once `onWindowStart` has. */
    onWindowStart?: () => void;
    onWindowEnd?: () => void;
  },
): Promise<LoadResult> {
  const unexpected = newUnexpected();
  const latenciesMs: number[] = [];
  let requestsInWindow = 0;
  const startedAt = performance.now();
  const measureFrom = startedAt + options.warmupMs;
  const stopAt = measureFrom + options.durationMs;
  let transportErrors = 0;
  let windowOpen = false;
  const openWindow = () => {
    windowOpen = true;
    options.onWindowStart?.();
  };
  const closeWindow = () => {
    if (!windowOpen) return;
    windowOpen = false;
    options.onWindowEnd?.();
  };
  const windowStartTimer = setTimeout(openWindow, options.warmupMs);
  const windowEndTimer = setTimeout(closeWindow, options.warmupMs + options.durationMs);

  const worker = async () => {
    while (!options.signal.aborted && transportErrors < CLIENT_ERRORS_MAX) {
      const sentAt = performance.now();
      if (sentAt >= stopAt) return;
      const measured = sentAt >= measureFrom;
      let timed = false;
      for (const plan of options.nextUnit()) {
        if (measured) requestsInWindow++;
        const outcome = await send(pool, plan, unexpected);
        if (measured && !timed && options.latencyOf === 'first') {
          latenciesMs.push(performance.now() - sentAt);
          timed = true;
        }
        if (outcome.transportError) transportErrors++;
        if (!outcome.ok) break;
      }
      if (measured && !timed) latenciesMs.push(performance.now() - sentAt);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, worker));
  } finally {
    clearTimeout(windowStartTimer);
    clearTimeout(windowEndTimer);
    // The last answers can beat the timer by a fraction of a millisecond.
    closeWindow();
  }
  options.signal.throwIfAborted();
  if (transportErrors >= CLIENT_ERRORS_MAX) {
    throw new Error(`stopped after ${transportErrors} transport errors: ${unexpected.samples.join(' | ')}`);
  }

  const sorted = Float64Array.from(latenciesMs).sort();
  const measuredS = options.durationMs / 1000;
  return {
    concurrency: options.concurrency,
    units: sorted.length,
    requests: requestsInWindow,
    measuredS,
    unitsPerS: sorted.length / measuredS,
    requestsPerS: requestsInWindow / measuredS,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
    unexpected,
  };
}

/** Sends a fixed list of requests with `concurrency` workers (setup work such as funding users). */
export async function runAll(pool: Pool, plans: readonly Plan[], concurrency: number, signal: AbortSignal): Promise<Unexpected> {
  const unexpected = newUnexpected();
  let next = 0;
  const worker = async () => {
    while (!signal.aborted && next < plans.length) {
      await send(pool, plans[next++]!, unexpected);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  signal.throwIfAborted();
  return unexpected;
}

/** Nearest-rank percentile of an ascending array, in its unit; NaN when empty. */
export function percentile(sorted: Float64Array, quantile: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(quantile * sorted.length)));
  return sorted[rank - 1]!;
}

/** Adds `from`'s unexpected answers to `into` (samples up to ten). */
export function mergeUnexpected(into: Unexpected, from: Unexpected): void {
  into.total += from.total;
  for (const [label, count] of from.counts) into.counts.set(label, (into.counts.get(label) ?? 0) + count);
  for (const sample of from.samples) if (into.samples.length < 10) into.samples.push(sample);
}

/** `3× label, 1× other label`. */
export function describeUnexpected(unexpected: Unexpected): string {
  return [...unexpected.counts].map(([label, count]) => `${count}× ${label}`).join(', ');
}

/** The report's lines for a run's unexpected answers: a count by label and some examples, or that there were none. */
export function unexpectedLines(unexpected: Unexpected): string[] {
  if (unexpected.total === 0) return ['unexpected answers: 0'];
  return [`UNEXPECTED answers: ${unexpected.total} (${describeUnexpected(unexpected)})`, ...unexpected.samples.map((sample) => `  e.g. ${sample}`)];
}
