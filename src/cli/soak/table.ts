// The soak's samples as a small text table: per series its first, middle and
// last value and the growth verdict (growth.ts), worst first.
import { judgeGrowth, type GrowthOptions, type GrowthVerdict } from './growth.ts';
import { type SoakSample, type SoakSeries, type SoakSeriesKind, soakSeries } from './sample.ts';

export type SoakRow = Readonly<{
  kind: SoakSeriesKind;
  name: string;
  first: number;
  middle: number;
  last: number;
  growth: GrowthVerdict;
}>;

/** Growth below these amounts over the last half passes whatever its shape: a few pages, a few MiB, a millisecond. */
export const SOAK_GROWTH_FLOORS: Readonly<Record<SoakSeriesKind, number>> = {
  rss_bytes: 8 * 1024 * 1024,
  table_bytes: 1024 * 1024,
  latency_p99_ms: 1,
};

const VERDICT_ORDER: Readonly<Record<GrowthVerdict['verdict'], number>> = { unbounded: 0, too_short: 1, bounded: 2 };

/** One row per series, unbounded ones first, then by kind and name. */
export function soakRows(samples: readonly SoakSample[], floors: Readonly<Record<SoakSeriesKind, number>> = SOAK_GROWTH_FLOORS): SoakRow[] {
  return soakSeries(samples)
    .filter((series) => series.points.length > 0)
    .map((series: SoakSeries): SoakRow => {
      const values = series.points.map((point) => point.value);
      const options: GrowthOptions = { floor: floors[series.kind] };
      return {
        kind: series.kind,
        name: series.name,
        first: values[0]!,
        middle: values[Math.floor((values.length - 1) / 2)]!,
        last: values.at(-1)!,
        growth: judgeGrowth(series.points, options),
      };
    })
    .sort((a, b) => VERDICT_ORDER[a.growth.verdict] - VERDICT_ORDER[b.growth.verdict] || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
}

/** The rows as aligned text, one line per series under a header. */
export function formatSoakTable(rows: readonly SoakRow[]): string {
  const header = ['series', 'first', 'middle', 'last', 'growth'];
  const lines = rows.map((row) => [
    `${KIND_LABEL[row.kind]} ${row.name}`,
    formatValue(row.kind, row.first),
    formatValue(row.kind, row.middle),
    formatValue(row.kind, row.last),
    `${row.growth.verdict} (${row.growth.reason})`,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column]!.length)));
  const render = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === 0 || column === cells.length - 1 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join('  ')
      .trimEnd();
  return [render(header), render(widths.map((width) => '-'.repeat(width))), ...lines.map(render)].join('\n');
}

const KIND_LABEL: Readonly<Record<SoakSeriesKind, string>> = { rss_bytes: 'rss', table_bytes: 'table', latency_p99_ms: 'p99' };

function formatValue(kind: SoakSeriesKind, value: number): string {
  if (kind === 'latency_p99_ms') return `${value.toFixed(1)} ms`;
  return `${(value / (1024 * 1024)).toFixed(1)} MiB`;
}
