// Goal: sum up a benchmark measured in several rounds. This machine is shared and noisy, so one
// window is one sample: each figure is quoted as the median over rounds, with its spread, and a
// ratio to a reference is taken round by round (both measured minutes apart, not an hour) and then
// its median.

/** The median of some numbers (the lower middle one for an even count; NaN for none). */
export function median(values: readonly number[]): number {
  const finite = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  return finite[Math.floor((finite.length - 1) / 2)]!;
}

/** The item whose key is the median of all keys: a real sample that stands for the rest. */
export function medianItem<T>(items: readonly T[], key: (item: T) => number): T | undefined {
  const sorted = items.filter((item) => Number.isFinite(key(item))).sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** Median over rounds of numerator(round) / denominator(round), for the rounds where both were measured. */
export function medianPairedRatio(numerators: ReadonlyMap<number, number>, denominators: ReadonlyMap<number, number>): { ratio: number; rounds: number } {
  const ratios: number[] = [];
  for (const [round, numerator] of numerators) {
    const denominator = denominators.get(round);
    if (denominator !== undefined && denominator > 0 && Number.isFinite(numerator)) ratios.push(numerator / denominator);
  }
  return { ratio: median(ratios), rounds: ratios.length };
}

