// Bounded or unbounded growth, decided from one series of a soak run.
//
// The rule. With the series in time order, split in thirds and halves:
//   rise  = (mean of the last third − mean of the middle third) / level
//   slope = least-squares slope over the last half; growth = slope × the last half's duration
//   t     = slope / its standard error (how clearly the last half rises rather than wobbles)
// It is unbounded growth when all three hold:
//   rise   > GROWTH_THIRDS_RISE_MIN             the end sits higher than the middle
//   growth > GROWTH_LAST_HALF_RELATIVE_MIN × level, and > floor   it still rises by a noticeable amount
//   t      > GROWTH_SLOPE_T_MIN                 and steadily, not by noise or a sawtooth's phase
// where level is the mean of the last half. A series that levels off (caches
// warming, retention pruning back to a plateau) has a flat last half and
// passes; one that keeps rising, even slowly, fails. Fewer than
// GROWTH_POINTS_MIN points: too short to say.
/** Points needed before a verdict: three thirds of at least three each. */
export const GROWTH_POINTS_MIN = 9;
/** The last third's mean may exceed the middle third's by this fraction of the level. */
export const GROWTH_THIRDS_RISE_MIN = 0.01;
/** Growth over the last half, as a fraction of its level, above which a steady rise fails (2 %). */
export const GROWTH_LAST_HALF_RELATIVE_MIN = 0.02;
/** How many standard errors the last half's slope must clear to count as a steady rise. */
export const GROWTH_SLOPE_T_MIN = 4;

export type GrowthPoint = Readonly<{ at_ms: number; value: number }>;

export type GrowthVerdict = Readonly<{
  verdict: 'bounded' | 'unbounded' | 'too_short';
  /** (last third's mean − middle third's) / level. */
  thirds_rise: number;
  /** Least-squares growth across the last half, as a fraction of its level. */
  last_half_growth: number;
  /** The last half's slope in standard errors (Infinity for a perfectly straight rise). */
  slope_t: number;
  /** One line saying why. */
  reason: string;
}>;

export type GrowthOptions = {
  /** Growth over the last half at or below this absolute amount always passes (e.g. a table's next few pages). */
  floor?: number;
};

export function judgeGrowth(points: readonly GrowthPoint[], options: GrowthOptions = {}): GrowthVerdict {
  const sorted = [...points].sort((a, b) => a.at_ms - b.at_ms);
  if (sorted.length < GROWTH_POINTS_MIN) {
    return { verdict: 'too_short', thirds_rise: 0, last_half_growth: 0, slope_t: 0, reason: `${sorted.length} points, fewer than ${GROWTH_POINTS_MIN}` };
  }
  const third = Math.floor(sorted.length / 3);
  const middle = sorted.slice(third, sorted.length - third);
  const last = sorted.slice(sorted.length - third);
  const half = sorted.slice(Math.floor(sorted.length / 2));
  const level = Math.max(Math.abs(mean(half.map((point) => point.value))), Number.EPSILON);
  const thirdsRise = (mean(last.map((point) => point.value)) - mean(middle.map((point) => point.value))) / level;
  const fit = linearFit(half);
  const spanMs = half.at(-1)!.at_ms - half[0]!.at_ms;
  const growth = fit.slope * spanMs;
  const lastHalfGrowth = growth / level;
  const floor = options.floor ?? 0;
  const figures = { thirds_rise: thirdsRise, last_half_growth: lastHalfGrowth, slope_t: fit.t };
  const unbounded = thirdsRise > GROWTH_THIRDS_RISE_MIN && lastHalfGrowth > GROWTH_LAST_HALF_RELATIVE_MIN && growth > floor && fit.t > GROWTH_SLOPE_T_MIN;
  const said = `last third ${percent(thirdsRise)} vs middle, last half ${percent(lastHalfGrowth)} at ${fit.t === Infinity ? '∞' : fit.t.toFixed(1)} standard errors`;
  return { verdict: unbounded ? 'unbounded' : 'bounded', ...figures, reason: unbounded ? `still rising: ${said}` : `levels off: ${said}` };
}

function mean(values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** Least-squares slope (per ms) and its t statistic. */
function linearFit(points: readonly GrowthPoint[]): { slope: number; t: number } {
  const n = points.length;
  const xMean = mean(points.map((point) => point.at_ms));
  const yMean = mean(points.map((point) => point.value));
  let sxx = 0;
  let sxy = 0;
  for (const point of points) {
    sxx += (point.at_ms - xMean) ** 2;
    sxy += (point.at_ms - xMean) * (point.value - yMean);
  }
  if (sxx === 0) return { slope: 0, t: 0 };
  const slope = sxy / sxx;
  let residuals = 0;
  for (const point of points) residuals += (point.value - (yMean + slope * (point.at_ms - xMean))) ** 2;
  const standardError = Math.sqrt(residuals / Math.max(n - 2, 1) / sxx);
  // Relative to the values' size: a straight line computed in floating point leaves rounding residue.
  const straight = standardError * Math.sqrt(sxx) <= 1e-9 * Math.max(Math.abs(yMean), 1);
  const t = straight ? (slope === 0 ? 0 : Math.sign(slope) * Infinity) : slope / standardError;
  return { slope, t };
}

function percent(fraction: number): string {
  return `${fraction >= 0 ? '+' : ''}${(fraction * 100).toFixed(1)} %`;
}
