// Goal: a soak's samples become a readable table (first, middle, last, verdict; growing series first) and a PNG chart.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { soakChartPng, soakChartSpec } from './chart.ts';
import type { SoakSample } from './sample.ts';
import { formatSoakTable, soakRows } from './table.ts';

const MIB = 1024 * 1024;

/** 30 samples 20 s apart: koban's RSS flat, a leaky table growing, a pruned one in a sawtooth, p99 flat. */
function samples(): SoakSample[] {
  return Array.from({ length: 30 }, (_, i) => ({
    at_ms: 1_700_000_000_000 + i * 20_000,
    rss_bytes: { koban: 150 * MIB + (i % 3) * 0.5 * MIB, postgres: 60 * MIB },
    table_bytes: { 'koban_bus.public.messages': 2 * MIB + (i % 6) * 0.5 * MIB, 'koban_visa.public.payments': 1 * MIB + i * 0.4 * MIB },
    latency_ms: { authorize: { p50: 2, p99: 9 + (i % 2) } },
  }));
}

test('the table lists every series with first, middle and last, the growing one first and marked unbounded', () => {
  const rows = soakRows(samples());
  assert.deepEqual(
    rows.map((row) => [row.kind, row.name, row.growth.verdict]),
    [
      ['table_bytes', 'koban_visa.public.payments', 'unbounded'],
      ['latency_p99_ms', 'authorize', 'bounded'],
      ['rss_bytes', 'koban', 'bounded'],
      ['rss_bytes', 'postgres', 'bounded'],
      ['table_bytes', 'koban_bus.public.messages', 'bounded'],
    ],
  );
  const text = formatSoakTable(rows);
  const lines = text.split('\n');
  assert.match(lines[0]!, /^series\s+first\s+middle\s+last\s+growth$/);
  assert.match(lines[2]!, /^table koban_visa\.public\.payments\s+1\.0 MiB\s+6\.6 MiB\s+12\.6 MiB\s+unbounded \(still rising/);
  assert.match(text, /p99 authorize\s+9\.0 ms\s+9\.0 ms\s+10\.0 ms\s+bounded/);
  assert.equal(lines.length, 2 + rows.length);
});

test('the chart has a panel each for RSS, tables and latency, and renders to a PNG of some substance', async () => {
  const spec = soakChartSpec(samples()) as unknown as { vconcat: Array<{ title: string; data: { values: unknown[] } }> };
  assert.deepEqual(spec.vconcat.map((panel) => panel.title), ['RSS per process', 'Largest tables (top 8)', 'Latency p99']);
  assert.deepEqual(spec.vconcat.map((panel) => panel.data.values.length), [60, 60, 30]);
  const png = await soakChartPng(samples(), 'test soak');
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(png.length > 20_000, `a PNG of ${png.length} bytes is too small to hold three panels`);
  // IHDR: width and height, big-endian, at bytes 16–23: three panels of 720×180 stacked, with titles and legends.
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  assert.ok(width >= 720 && height >= 3 * 180, `${width}×${height}`);
});
