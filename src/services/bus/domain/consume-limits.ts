// A consumer's limits, shared by every adapter.
import type { ConsumeOptions } from '../../../contracts/bus/event-bus.ts';
import { BATCH_SIZE_MAX_DEFAULT, IN_FLIGHT_MAX_DEFAULT, IN_FLIGHT_MAX_LIMIT } from './limits.ts';

/** A consumer's limits, defaulted and checked (both adapters use it): a zero or fractional batch would spin without delivering. */
export function consumeLimits(options: ConsumeOptions): { inFlightMax: number; batchSizeMax: number } {
  const inFlightMax = options.inFlightMax ?? IN_FLIGHT_MAX_DEFAULT;
  const batchSizeMax = options.batchSizeMax ?? BATCH_SIZE_MAX_DEFAULT;
  for (const [name, value] of [
    ['inFlightMax', inFlightMax],
    ['batchSizeMax', batchSizeMax],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1 || value > IN_FLIGHT_MAX_LIMIT) throw new Error(`${name} must be an integer 1–${IN_FLIGHT_MAX_LIMIT}`);
  }
  return { inFlightMax, batchSizeMax: Math.min(batchSizeMax, inFlightMax) };
}
