// Goal: print benchmark figures: a plain-text table with aligned columns, and the small conversions every benchmark formats with.

/** Columns whose cells are all numbers (or '-') are right-aligned; others left-aligned. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const numeric = headers.map((_, column) => rows.length > 0 && rows.every((row) => /^-?[\d.]+$|^-$/.test(row[column] ?? '')));
  const line = (cells: readonly string[]) =>
    cells.map((cell, column) => (numeric[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join(' | ');
  return [line(headers), widths.map((width) => '-'.repeat(width)).join('-|-'), ...rows.map(line)].join('\n');
}

const MS_PER_S = 1000;
const US_PER_MS = 1000;

/** The catalogue error code of an error body, or a short snippet. */
export function errorCode(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown } };
    if (typeof parsed.error?.code === 'string') return parsed.error.code;
  } catch {
    // not JSON
  }
  return body.slice(0, 80);
}

/** CPU milliseconds over a window, as a percentage of one core. */
export function percentOfCore(cpuMs: number, durationS: number): number {
  return (100 * cpuMs) / (durationS * MS_PER_S);
}

/** CPU milliseconds spread over `count` operations, in microseconds each. */
export function usPer(cpuMs: number, count: number): number {
  return (cpuMs * US_PER_MS) / count;
}

/**
 * The highest `units/s ÷ pgbench tps` a workload could reach on this machine if everything but PostgreSQL —
 * Koban, the load generator, a broker — cost no CPU and PostgreSQL kept every core busy at the CPU per unit it
 * showed under the load: an upper bound no change outside PostgreSQL's share of the work can beat.
 */
export function ratioCeiling(pgCpuUsPerUnit: number, cores: number, pgbenchTps: number): number {
  return (cores * MS_PER_S * US_PER_MS) / pgCpuUsPerUnit / pgbenchTps;
}

/** A figure for a table: `-` when it is not a number. */
export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

/** A figure for JSON output: null when it is not a number. */
export function round(value: number, digits: number): number | null {
  if (!Number.isFinite(value)) return null;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** Seconds since the benchmark began, and its log lines stamped with them: `[  12.3 s] …`. */
export function runClock(): { elapsedS(): number; log(message: string): void } {
  const startedAt = performance.now();
  const elapsedS = () => (performance.now() - startedAt) / 1000;
  return { elapsedS, log: (message) => console.log(`[${elapsedS().toFixed(1).padStart(6)} s] ${message}`) };
}
