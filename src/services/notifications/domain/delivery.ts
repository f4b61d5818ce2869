// What becomes of a delivery after an attempt: pure decisions, the worker
// applies them. Retries back off exponentially with "equal jitter" (half
// fixed, half random), so deliveries that failed together (an endpoint that
// was down) spread out when they come back, yet never sooner than half the
// nominal delay.

export type RetryPolicy = Readonly<{
  /** Attempts, the first included, before the delivery becomes a dead letter. */
  attemptsMax: number;
  retryInitialMs: number;
  retryMaxMs: number;
}>;

/**
 * How an attempt ended, as a channel reports it. A `permanent` failure is one
 * no later attempt can change (the endpoint is one it may not reach): it is
 * dead at once rather than retried.
 */
export type AttemptResult = Readonly<{ ok: true } | { ok: false; error: string; permanent?: boolean }>;

export type DeliveryOutcome = Readonly<
  | { kind: 'delivered'; at: Date }
  | { kind: 'retry'; nextAttemptAt: Date; error: string }
  | { kind: 'dead'; at: Date; error: string }
>;

/** Delay before the attempt after attempt number `attempt` (1-based) failed. */
export function retryDelayMs(policy: Pick<RetryPolicy, 'retryInitialMs' | 'retryMaxMs'>, attempt: number, random: () => number = Math.random): number {
  const exponential = policy.retryInitialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30));
  const capped = Math.min(policy.retryMaxMs, exponential);
  return Math.max(1, Math.floor(capped / 2 + random() * (capped / 2)));
}

/** After attempt number `attempt` ended with `result` at `now`. */
export function decideOutcome(policy: RetryPolicy, attempt: number, result: AttemptResult, now: Date, random: () => number = Math.random): DeliveryOutcome {
  if (result.ok) return { kind: 'delivered', at: now };
  if (result.permanent === true || attempt >= policy.attemptsMax) return { kind: 'dead', at: now, error: result.error };
  return { kind: 'retry', nextAttemptAt: new Date(now.getTime() + retryDelayMs(policy, attempt, random)), error: result.error };
}
