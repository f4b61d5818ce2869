// Goal: what a Koban-over-HTTP benchmark measures besides Koban, on the same machine and PostgreSQL in
// the same run: the server's settings, how busy the host already is, and the pgbench reference rows.
import { databaseUrl, withClient } from './pg-server.ts';
import { PgObserver, type PgWindowFigures } from './pg-observer.ts';
import { type PgbenchFigures, findPgbench, pgbenchInit, pgbenchRun, pgbenchScale, pgbenchVersion } from './pgbench.ts';
import { sleep } from './net.ts';
import { readHostCpuTicks } from './proc.ts';
import { fixed } from './report.ts';
import { median } from './rounds.ts';

/** The server settings that shape every figure, as one line. */
export async function describePgSettings(serverUrl: string): Promise<string> {
  return withClient(serverUrl, async (client) => {
    const result = await client.query<{ name: string; setting: string; unit: string | null }>(
      `SELECT name, setting, unit FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections') ORDER BY name`,
    );
    return result.rows.map((row) => `${row.name}=${row.setting}${row.unit ? ` ${row.unit}` : ''}`).join(', ');
  });
}

/** The machine's busy share (all cores, in %) over `ms`: others' work, before the benchmark loads it. */
export async function hostBusyPercentOver(ms: number, signal: AbortSignal): Promise<number> {
  const before = readHostCpuTicks();
  await sleep(ms, signal);
  const after = readHostCpuTicks();
  return before && after ? (100 * (after.busy - before.busy)) / (after.total - before.total) : Number.NaN;
}

export type PgbenchRow = { round: number; concurrency: number; figures: PgbenchFigures; pg: PgWindowFigures } | { round: number; concurrency: number; error: string };
export type PgbenchMeasured = Extract<PgbenchRow, { figures: PgbenchFigures }>;

/**
 * The pgbench reference of a run: its database initialised once (scale from
 * the client counts), then one row per client count each round, each watched
 * by `observer`. Without pgbench on PATH, every row is skipped and `note` says so.
 */
export class PgbenchReference {
  readonly rows: PgbenchRow[] = [];
  readonly #bin: string | undefined;
  readonly #url: string;
  readonly #database: string;
  readonly note: string;
  readonly scale: number;

  private constructor(bin: string | undefined, url: string, database: string, note: string, scale: number) {
    this.#bin = bin;
    this.#url = url;
    this.#database = database;
    this.note = note;
    this.scale = scale;
  }

  static async prepare(options: {
    selected: boolean;
    serverUrl: string;
    database: string;
    concurrencies: readonly number[];
    signal: AbortSignal;
    log: (message: string) => void;
  }): Promise<PgbenchReference> {
    const url = databaseUrl(options.serverUrl, options.database);
    const scale = pgbenchScale(options.concurrencies);
    const bin = options.selected ? await findPgbench() : undefined;
    if (!bin) {
      const note = options.selected
        ? 'pgbench not found on PATH: the pgbench reference was SKIPPED (install it with `apt-get install postgresql-client`)'
        : 'pgbench reference not selected (BENCH_SCENARIOS)';
      if (options.selected) options.log(note);
      return new PgbenchReference(undefined, url, options.database, note, scale);
    }
    const note = await pgbenchVersion(bin, options.signal);
    options.log(`${note}: pgbench -i -s ${scale} …`);
    await pgbenchInit(bin, url, scale, options.signal);
    return new PgbenchReference(bin, url, options.database, note, scale);
  }

  get available(): boolean {
    return this.#bin !== undefined;
  }

  /** How the reference ran, for the report's header. */
  describe(): string {
    return this.#bin ? `${this.note}, tpcb-like, scale ${this.scale}, -j min(C,2), no vacuum (-n), same server` : this.note;
  }

  /** One pgbench row per client count; a failed row is kept as an error and logged, not thrown. */
  async runRound(round: number, rounds: number, concurrencies: readonly number[], durationS: number, observer: PgObserver, signal: AbortSignal, log: (message: string) => void): Promise<void> {
    if (!this.#bin) return;
    for (const concurrency of concurrencies) {
      const pgWindow = observer.window(this.#database);
      try {
        pgWindow.begin();
        let figures: PgbenchFigures;
        try {
          figures = await pgbenchRun(this.#bin, this.#url, concurrency, durationS, signal);
        } finally {
          pgWindow.end();
        }
        const pg = await pgWindow.figures();
        this.rows.push({ round, concurrency, figures, pg });
        log(`round ${round}/${rounds}: pgbench c=${concurrency}: ${fixed(figures.tps, 0)} tps, latency average ${fixed(figures.latencyAvgMs, 2)} ms, ${figures.failedTransactions} failed`);
      } catch (error) {
        signal.throwIfAborted();
        this.rows.push({ round, concurrency, error: (error as Error).message });
        log(`round ${round}/${rounds}: pgbench c=${concurrency} FAILED: ${(error as Error).message}`);
      }
    }
  }

  measured(concurrency: number): PgbenchMeasured[] {
    return this.rows.filter((row): row is PgbenchMeasured => row.concurrency === concurrency && 'figures' in row);
  }

  /** Median tps over rounds at `concurrency` (NaN when none was measured). */
  tps(concurrency: number): number {
    return median(this.measured(concurrency).map((row) => row.figures.tps));
  }

  tpsByRound(concurrency: number): Map<number, number> {
    return new Map(this.measured(concurrency).map((row) => [row.round, row.figures.tps]));
  }
}
