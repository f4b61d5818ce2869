// Goal: see what PostgreSQL does during a measured window — CPU of its processes (from /proc), write transactions, WAL, and sampled activity and wait events of one database's backends.
import pg from 'pg';
import { listChildren, readCmdline, readProcStat } from './proc.ts';
import { PG_CONNECT_TIMEOUT_MS } from './pg-server.ts';

/** pg_stat_activity is sampled this often while a window is open. */
const SAMPLE_INTERVAL_MS = 25;
/**
 * The server's processes are re-read this often while a window is open, so
 * that a backend exiting before the window closes (pgbench's, at its end)
 * still counts for the database it served, up to its last reading.
 */
const PROC_REFRESH_INTERVAL_MS = 200;
/** Wait events listed per window, most frequent first. */
const WAIT_EVENTS_LISTED = 4;

/** CPU of the server's processes over a window, in ms, by what they serve. */
export type PgCpuFigures = {
  /** Every process of the server, those that exited during the window included. */
  totalMs: number;
  /** Client backends connected to the watched database. */
  watchedBackendsMs: number;
  /** Autovacuum launcher and workers. */
  autovacuumMs: number;
  /** Everything else: WAL writer, checkpointer, background writer, other databases' backends (the benchmark's own probes), exited processes. */
  otherMs: number;
};

export type PgWindowFigures = {
  /** Undefined when /proc does not show the server (another machine or container). */
  cpu: PgCpuFigures | undefined;
  /** Transaction ids assigned on the whole server: one per write transaction (a Koban batch, a pgbench transaction). */
  writeTransactions: number;
  walBytes: number;
  samples: number;
  /** Average number of the watched database's client backends running a statement (state active). */
  activeBackendsAvg: number;
  /** Share of active-backend samples per wait (`CPU` when not waiting), most frequent first. */
  waits: Array<{ wait: string; share: number }>;
};

type ProcessKind = 'watched' | 'autovacuum' | 'other';
type CpuSnapshot = { postmasterMs: number; children: Map<number, { cpuMs: number; kind: ProcessKind }> };

type ServerMark = { nextXid: bigint; walLsn: string };

/** Watches one PostgreSQL server through a connection to its maintenance database and /proc. */
export class PgObserver {
  readonly #client: pg.Client;
  readonly #postmasterPid: number | undefined;

  private constructor(client: pg.Client, postmasterPid: number | undefined) {
    this.#client = client;
    this.#postmasterPid = postmasterPid;
  }

  static async open(serverUrl: string): Promise<PgObserver> {
    const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS, application_name: 'koban-bench-observer' });
    // The server stopping under an interrupted run fails the next query; an unheard 'error' event would crash the cleanup.
    client.on('error', () => undefined);
    await client.connect();
    try {
      const result = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const backendPid = result.rows[0]?.pid;
      // A backend is a child of the postmaster; when /proc does not show it, the server is elsewhere.
      const postmasterPid = backendPid === undefined ? undefined : readProcStat(backendPid)?.ppid;
      return new PgObserver(client, postmasterPid);
    } catch (error) {
      await client.end();
      throw error;
    }
  }

  /** Whether CPU figures are available (the server's processes are visible in /proc). */
  get seesProcesses(): boolean {
    return this.#postmasterPid !== undefined;
  }

  /** A window on the activity of `watchedDatabase`'s backends; call begin() and end() from synchronous callbacks, then await figures(). */
  window(watchedDatabase: string): PgWindow {
    return new PgWindow(this.#client, this.#postmasterPid, watchedDatabase);
  }

  async close(): Promise<void> {
    await this.#client.end();
  }
}

export class PgWindow {
  readonly #client: pg.Client;
  readonly #postmasterPid: number | undefined;
  readonly #watchedDatabase: string;
  #cpuAtBegin: CpuSnapshot | undefined;
  #cpuAtEnd: CpuSnapshot | undefined;
  /** Last reading of every server process seen during the window, exited ones included. */
  readonly #lastSeen = new Map<number, { cpuMs: number; kind: ProcessKind }>();
  #refreshTimer: NodeJS.Timeout | undefined;
  #markAtBegin: Promise<ServerMark> | undefined;
  #markAtEnd: Promise<ServerMark> | undefined;
  #sampling: Promise<void> | undefined;
  #stop = false;
  #samples = 0;
  #activeTotal = 0;
  readonly #waitCounts = new Map<string, number>();

  constructor(client: pg.Client, postmasterPid: number | undefined, watchedDatabase: string) {
    this.#client = client;
    this.#postmasterPid = postmasterPid;
    this.#watchedDatabase = watchedDatabase;
  }

  begin(): void {
    this.#cpuAtBegin = this.#snapshotCpu();
    this.#refreshTimer = setInterval(() => this.#snapshotCpu(), PROC_REFRESH_INTERVAL_MS);
    this.#markAtBegin = handled(this.#mark());
    this.#sampling = handled(this.#sample());
  }

  end(): void {
    clearInterval(this.#refreshTimer);
    this.#cpuAtEnd = this.#snapshotCpu();
    this.#stop = true;
    this.#markAtEnd = handled(this.#mark());
  }

  async figures(): Promise<PgWindowFigures> {
    if (!this.#markAtBegin || !this.#markAtEnd) throw new Error('PgWindow.figures() before begin() and end()');
    const [begin, end] = await Promise.all([this.#markAtBegin, this.#markAtEnd, this.#sampling]);
    const walBytes = await this.#client.query<{ bytes: string }>('SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::text AS bytes', [end.walLsn, begin.walLsn]);
    const activeSamples = this.#activeTotal;
    return {
      cpu: this.#cpuFigures(),
      writeTransactions: Number(end.nextXid - begin.nextXid),
      walBytes: Number(walBytes.rows[0]?.bytes ?? Number.NaN),
      samples: this.#samples,
      activeBackendsAvg: this.#samples === 0 ? Number.NaN : activeSamples / this.#samples,
      waits: [...this.#waitCounts]
        .sort((a, b) => b[1] - a[1])
        .slice(0, WAIT_EVENTS_LISTED)
        .map(([wait, count]) => ({ wait, share: activeSamples === 0 ? 0 : count / activeSamples })),
    };
  }

  async #mark(): Promise<ServerMark> {
    // xmax of a fresh snapshot is the next transaction id to be assigned; reading it assigns none.
    const result = await this.#client.query<{ next_xid: string; lsn: string }>(
      'SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid, pg_current_wal_lsn()::text AS lsn',
    );
    const row = result.rows[0]!;
    return { nextXid: BigInt(row.next_xid), walLsn: row.lsn };
  }

  async #sample(): Promise<void> {
    while (!this.#stop) {
      const result = await this.#client.query<{ state: string | null; wait_event_type: string | null; wait_event: string | null }>(
        `SELECT state, wait_event_type, wait_event FROM pg_stat_activity
          WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
        [this.#watchedDatabase],
      );
      this.#samples++;
      for (const row of result.rows) {
        if (row.state !== 'active') continue;
        this.#activeTotal++;
        const wait = row.wait_event_type === null ? 'CPU' : `${row.wait_event_type}:${row.wait_event ?? '?'}`;
        this.#waitCounts.set(wait, (this.#waitCounts.get(wait) ?? 0) + 1);
      }
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
    }
  }

  #snapshotCpu(): CpuSnapshot | undefined {
    if (this.#postmasterPid === undefined) return undefined;
    const postmaster = readProcStat(this.#postmasterPid);
    if (!postmaster) return undefined;
    const children: CpuSnapshot['children'] = new Map();
    for (const pid of listChildren(this.#postmasterPid)) {
      const stat = readProcStat(pid);
      if (!stat) continue;
      const kind = this.#lastSeen.get(pid)?.kind ?? this.#classify(pid);
      children.set(pid, { cpuMs: stat.cpuMs, kind });
      this.#lastSeen.set(pid, { cpuMs: stat.cpuMs, kind });
    }
    // Reaped children's CPU lands in the postmaster's cutime/cstime: the total stays exact when backends exit.
    return { postmasterMs: postmaster.cpuMs + postmaster.reapedChildrenCpuMs, children };
  }

  #classify(pid: number): ProcessKind {
    const title = readCmdline(pid) ?? '';
    // A client backend's title is "postgres: [cluster: ]user database host(port) activity".
    if (title.includes('autovacuum')) return 'autovacuum';
    return title.split(' ').includes(this.#watchedDatabase) ? 'watched' : 'other';
  }

  #cpuFigures(): PgCpuFigures | undefined {
    const begin = this.#cpuAtBegin;
    const end = this.#cpuAtEnd;
    if (!begin || !end) return undefined;
    const sum = (snapshot: CpuSnapshot) => snapshot.postmasterMs + [...snapshot.children.values()].reduce((total, child) => total + child.cpuMs, 0);
    const totalMs = sum(end) - sum(begin);
    const byKind: Record<ProcessKind, number> = { watched: 0, autovacuum: 0, other: 0 };
    for (const [pid, child] of this.#lastSeen) byKind[child.kind] += child.cpuMs - (begin.children.get(pid)?.cpuMs ?? 0);
    return {
      totalMs,
      watchedBackendsMs: byKind.watched,
      autovacuumMs: byKind.autovacuum,
      otherMs: totalMs - byKind.watched - byKind.autovacuum,
    };
  }
}

/** Marks a promise as handled (it is awaited later, in figures()) so that an early rejection does not end the process. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** The window's wait events as shares of active-backend samples, e.g. `CPU 60%, IO:WALSync 30%`. */
export function describeWaits(pg: PgWindowFigures): string {
  return pg.waits.map((wait) => `${wait.wait} ${Math.round(wait.share * 100)}%`).join(', ') || '-';
}
