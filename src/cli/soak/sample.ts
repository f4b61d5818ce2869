// One soak sample: the resident memory of each process, the size of each table
// of each database, and the latency figures the caller measured over its last
// window. Pure data out, so a run's samples can be judged (growth.ts), charted
// (chart.ts) and tabled (table.ts) without touching anything again.
import { readFile } from 'node:fs/promises';
import pg from 'pg';

export type SoakProcess = Readonly<{ name: string; pid: number }>;
export type SoakDatabase = Readonly<{ name: string; url: string }>;
/** Percentiles of the caller's last window, in milliseconds. */
export type LatencyWindow = Readonly<{ p50: number; p99: number }>;

export type SoakSample = Readonly<{
  /** When it was taken (epoch milliseconds). */
  at_ms: number;
  /** VmRSS per process name, in bytes; a process that has gone is left out. */
  rss_bytes: Readonly<Record<string, number>>;
  /** pg_total_relation_size per `<database>.<schema>.<table>`, in bytes (indexes and TOAST included). */
  table_bytes: Readonly<Record<string, number>>;
  latency_ms: Readonly<Record<string, LatencyWindow>>;
}>;

/** Tables sampled per database, at most: the largest ones. */
export const SOAK_TABLES_PER_DATABASE_MAX = 50;

/** The RSS of a process from /proc/<pid>/status, in bytes; undefined once it has gone. */
export async function processRssBytes(pid: number): Promise<number | undefined> {
  let status: string;
  try {
    status = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match === null ? undefined : Number(match[1]) * 1024;
}

/**
 * Samples the given processes and databases, keeping one connection per
 * database open between samples (a soak takes one every few seconds).
 */
export class SoakSampler {
  readonly #processes: readonly SoakProcess[];
  readonly #databases: ReadonlyArray<{ name: string; client: pg.Client }>;
  readonly #tablesMax: number;

  private constructor(processes: readonly SoakProcess[], databases: ReadonlyArray<{ name: string; client: pg.Client }>, tablesMax: number) {
    this.#processes = processes;
    this.#databases = databases;
    this.#tablesMax = tablesMax;
  }

  static async open(options: { processes: readonly SoakProcess[]; databases: readonly SoakDatabase[]; tablesMax?: number }): Promise<SoakSampler> {
    const clients: Array<{ name: string; client: pg.Client }> = [];
    try {
      for (const database of options.databases) {
        const client = new pg.Client({ connectionString: database.url, application_name: 'koban-soak-sampler' });
        // Between samples the server may restart or the run drop the database: the next query fails and says so, the process goes on.
        client.on('error', () => undefined);
        await client.connect();
        clients.push({ name: database.name, client });
      }
    } catch (error) {
      await Promise.all(clients.map(({ client }) => client.end().catch(() => undefined)));
      throw error;
    }
    return new SoakSampler(options.processes, clients, options.tablesMax ?? SOAK_TABLES_PER_DATABASE_MAX);
  }

  /** Takes one sample; `latency` is what the caller measured since its previous one. */
  async sample(latency: Readonly<Record<string, LatencyWindow>> = {}, atMs: number = Date.now()): Promise<SoakSample> {
    const rss: Record<string, number> = {};
    for (const process of this.#processes) {
      const bytes = await processRssBytes(process.pid);
      if (bytes !== undefined) rss[process.name] = bytes;
    }
    const tables: Record<string, number> = {};
    for (const { name, client } of this.#databases) {
      const result = await client.query<{ schema: string; table: string; bytes: string }>(
        `SELECT n.nspname AS schema, c.relname AS table, pg_total_relation_size(c.oid) AS bytes
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
          ORDER BY pg_total_relation_size(c.oid) DESC, n.nspname, c.relname
          LIMIT $1`,
        [this.#tablesMax],
      );
      for (const row of result.rows) tables[`${name}.${row.schema}.${row.table}`] = Number(row.bytes);
    }
    return { at_ms: atMs, rss_bytes: rss, table_bytes: tables, latency_ms: { ...latency } };
  }

  async close(): Promise<void> {
    await Promise.all(this.#databases.map(({ client }) => client.end().catch(() => undefined)));
  }
}

export type SoakSeriesKind = 'rss_bytes' | 'table_bytes' | 'latency_p99_ms';
/** One measured quantity over the run: `points` in time order, a sample missing it leaves it out. */
export type SoakSeries = Readonly<{ kind: SoakSeriesKind; name: string; points: ReadonlyArray<Readonly<{ at_ms: number; value: number }>> }>;

/** The samples as series: RSS per process, bytes per table, p99 per latency name. */
export function soakSeries(samples: readonly SoakSample[]): SoakSeries[] {
  const series = new Map<string, { kind: SoakSeriesKind; name: string; points: Array<{ at_ms: number; value: number }> }>();
  const add = (kind: SoakSeriesKind, name: string, at_ms: number, value: number) => {
    const key = `${kind}\u0000${name}`;
    let entry = series.get(key);
    if (entry === undefined) series.set(key, (entry = { kind, name, points: [] }));
    entry.points.push({ at_ms, value });
  };
  for (const sample of [...samples].sort((a, b) => a.at_ms - b.at_ms)) {
    for (const [name, value] of Object.entries(sample.rss_bytes)) add('rss_bytes', name, sample.at_ms, value);
    for (const [name, value] of Object.entries(sample.table_bytes)) add('table_bytes', name, sample.at_ms, value);
    for (const [name, value] of Object.entries(sample.latency_ms)) add('latency_p99_ms', name, sample.at_ms, value.p99);
  }
  return [...series.values()];
}
