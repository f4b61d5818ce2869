// The soak's samples as a PNG: panels stacked vertically — RSS per process,
// the largest tables' sizes, latency p99 — declared in Vega-Lite, rendered to
// SVG by Vega without a browser, and rasterized by resvg.
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { type SoakSample, type SoakSeriesKind, soakSeries } from './sample.ts';

/** Tables drawn, at most: the largest at the end of the run. */
export const CHART_TABLES_MAX = 8;
const PANEL_WIDTH_PX = 720;
const PANEL_HEIGHT_PX = 180;
const MIB = 1024 * 1024;

type Row = { minutes: number; series: string; value: number };

/** The Vega-Lite spec of the chart (exported for tests and for anyone who wants the SVG or the JSON). */
export function soakChartSpec(samples: readonly SoakSample[], title = 'Koban soak'): TopLevelSpec {
  const series = soakSeries(samples);
  const start = Math.min(...samples.map((sample) => sample.at_ms));
  const rows = (kind: SoakSeriesKind, scale: number, keep?: ReadonlySet<string>): Row[] =>
    series
      .filter((one) => one.kind === kind && (keep === undefined || keep.has(one.name)))
      .flatMap((one) => one.points.map((point) => ({ minutes: (point.at_ms - start) / 60_000, series: one.name, value: point.value / scale })));
  const largestTables = new Set(
    series
      .filter((one) => one.kind === 'table_bytes')
      .sort((a, b) => b.points.at(-1)!.value - a.points.at(-1)!.value)
      .slice(0, CHART_TABLES_MAX)
      .map((one) => one.name),
  );
  const panel = (panelTitle: string, unit: string, values: Row[]) => ({
    title: panelTitle,
    width: PANEL_WIDTH_PX,
    height: PANEL_HEIGHT_PX,
    data: { values },
    mark: { type: 'line' as const },
    encoding: {
      x: { field: 'minutes', type: 'quantitative' as const, title: 'minutes' },
      y: { field: 'value', type: 'quantitative' as const, title: unit },
      color: { field: 'series', type: 'nominal' as const, title: null, legend: { labelLimit: 320 } },
    },
    resolve: { scale: { color: 'independent' as const } },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    background: 'white',
    vconcat: [
      panel('RSS per process', 'MiB', rows('rss_bytes', MIB)),
      panel(`Largest tables (top ${CHART_TABLES_MAX})`, 'MiB', rows('table_bytes', MIB, largestTables)),
      panel('Latency p99', 'ms', rows('latency_p99_ms', 1)),
    ],
    resolve: { scale: { color: 'independent' } },
  } as TopLevelSpec;
}

/** The chart as SVG text. */
export async function soakChartSvg(samples: readonly SoakSample[], title?: string): Promise<string> {
  const view = new vega.View(vega.parse(compile(soakChartSpec(samples, title)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The chart as PNG bytes, white background, with the system's fonts. */
export async function soakChartPng(samples: readonly SoakSample[], title?: string): Promise<Buffer> {
  const svg = await soakChartSvg(samples, title);
  return new Resvg(svg, { background: 'white', font: { loadSystemFonts: true } }).render().asPng();
}
