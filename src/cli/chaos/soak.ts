// `npm run chaos -- --profile soak`: steady traffic with no faults, sampled
// every few seconds (each process's memory, each table's size, the client's
// latency), then judged: memory, latency and every table retention prunes must
// level off. Business tables (payments, grants, notices, the ledger) grow with
// traffic by design: they are charted and tabled, not judged. The services run
// with a retention of a minute, so a soak of minutes reaches the steady state a
// deployment reaches in its retention (7 days by default).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { soakChartPng } from '../soak/chart.ts';
import { type LatencyWindow, type SoakSample as SoakSampleData, SoakSampler } from '../soak/sample.ts';
import { formatSoakTable, soakRows } from '../soak/table.ts';
import type { Violation } from '../simulate/check.ts';

export const SOAK_SAMPLE_INTERVAL_MS = 10_000;
/** The services' retention in a soak (KOBAN_RETENTION_DAYS as a fraction of a day), and how often they prune. */
export const SOAK_RETENTION_MS = 60_000;
export const SOAK_RETENTION_INTERVAL_MS = 5_000;
/** The delivery check trusts the bus's records only for events published this much less than a retention ago: sweeps go on while it reads. */
export const SOAK_CHECK_MARGIN_MS = 30_000;
/**
 * The shortest soak judged: the pruned tables reach their steady state a couple of minutes in (one-minute
 * retention, pruned every 5 s); a 150 s soak judged bus messages and two services' memory unbounded
 * that a 10-minute one, from the same start, saw level off.
 */
export const SOAK_DURATION_MIN_S = 300;
const DAY_MS = 86_400_000;

/** What the run hands the soak every interval: its processes, its databases and the client's latencies since the last one. */
export type SoakSample = Readonly<{ elapsedMs: number; pids: Record<string, number | undefined>; databaseUrls: Record<string, string>; latenciesMs: number[] }>;
export type SoakHook = Readonly<{ intervalMs: number; sample(sample: SoakSample): void | Promise<void> }>;

/** Tables that retention keeps bounded, as the sampler names them (`<service>.<schema>.<table>`): judged. */
const PRUNED_TABLES: readonly RegExp[] = [
  /^(visa|quicpay|accounts)\.koban_\w+_outbox\.events$/,
  /^bus\.\w+\.(messages|deliveries|consumed_events|event_fingerprints)$/,
  /^notifications\.\w+\.deliveries$/,
];

/** The settings a soak gives every service: retention short enough to reach its steady state within the run. */
export function soakServiceEnv(): NodeJS.ProcessEnv {
  return { KOBAN_RETENTION_DAYS: String(SOAK_RETENTION_MS / DAY_MS), KOBAN_RETENTION_INTERVAL_MS: String(SOAK_RETENTION_INTERVAL_MS) };
}

/** Collects the samples through the run's soak hook; `finish` judges them and writes the table, the chart and the samples. */
export class SoakRecorder {
  readonly samples: SoakSampleData[] = [];
  #sampler: SoakSampler | undefined;
  #pids = '';
  #failures = 0;

  hook(): SoakHook {
    return { intervalMs: SOAK_SAMPLE_INTERVAL_MS, sample: (sample) => this.#take(sample) };
  }

  async #take(sample: SoakSample): Promise<void> {
    try {
      const processes = Object.entries(sample.pids).flatMap(([name, pid]) => (pid === undefined ? [] : [{ name, pid }]));
      const key = JSON.stringify(processes);
      // A process restarted (a crash the supervisor undid) has a new pid: sample the new set.
      if (this.#sampler === undefined || key !== this.#pids) {
        await this.#sampler?.close();
        this.#sampler = await SoakSampler.open({ processes, databases: Object.entries(sample.databaseUrls).map(([name, url]) => ({ name, url })) });
        this.#pids = key;
      }
      // A window with no answers (traffic paused) has no latency: left out, not charted as zero.
      this.samples.push(await this.#sampler.sample(sample.latenciesMs.length === 0 ? {} : { client: percentiles(sample.latenciesMs) }));
    } catch {
      // A sample lost (a database busy restarting) leaves a gap, not a failed run; too many gaps make the verdict
      // too_short. The next sample opens fresh connections.
      this.#failures += 1;
      await this.#sampler?.close();
      this.#sampler = undefined;
    }
  }

  /** Judges the samples, writes `soak.txt`, `soak.png` and `soak-samples.json` into `dir`, and returns the table and a violation per unbounded series. */
  async finish(dir: string): Promise<{ table: string; violations: Violation[]; files: string[] }> {
    await this.#sampler?.close();
    const rows = soakRows(this.samples).filter((row) => row.kind !== 'table_bytes' || PRUNED_TABLES.some((pattern) => pattern.test(row.name)));
    const table = formatSoakTable(rows) + (this.#failures > 0 ? `\n(${this.#failures} sample(s) could not be taken)` : '');
    const violations: Violation[] = rows
      .filter((row) => row.growth.verdict === 'unbounded')
      .map((row) => ({ what: `soak: ${row.kind} ${row.name}`, expected: 'bounded: levels off over the run', got: `unbounded (${row.growth.reason})` }));
    await mkdir(dir, { recursive: true });
    const files = [path.join(dir, 'soak.txt'), path.join(dir, 'soak.png'), path.join(dir, 'soak-samples.json')];
    await writeFile(files[0]!, `${table}\n`);
    await writeFile(files[1]!, await soakChartPng(this.samples, 'Koban soak'));
    await writeFile(files[2]!, JSON.stringify(this.samples));
    return { table, violations, files };
  }
}

function percentiles(latenciesMs: readonly number[]): LatencyWindow {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  const at = (share: number) => sorted[Math.min(sorted.length - 1, Math.floor(share * sorted.length))]!;
  return { p50: at(0.5), p99: at(0.99) };
}
