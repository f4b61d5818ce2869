// The clock is injected so tests can stand at an exact instant.
export type Clock = { now(): Date };

export const systemClock: Clock = { now: () => new Date() };

/** `clock` moved by `skewMs` (signed): a process whose clock runs ahead or behind, as KOBAN_CLOCK_SKEW_MS sets for testing. */
export function skewedClock(clock: Clock, skewMs: number): Clock {
  if (skewMs === 0) return clock;
  return { now: () => new Date(clock.now().getTime() + skewMs) };
}
