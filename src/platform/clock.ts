// The clock is injected so tests can stand at an exact instant.
export type Clock = { now(): Date };

export const systemClock: Clock = { now: () => new Date() };
