// Goal: loaded into a Koban server process with `--import` when a benchmark profiles it: counts and times
// what the process asks of PostgreSQL (statements, and waits for a pooled connection, by pool) and of
// other services over HTTP (fetch calls, by path), and on SIGUSR2 writes the running totals to
// `${BENCH_PROBE_FILE}.<n>` (n = 1, 2, …) so the benchmark can take the difference over a window.
// Only the promise forms Koban uses are timed; anything else passes through uncounted.
import { writeFileSync } from 'node:fs';
import pg from 'pg';

export type ProbeTally = { count: number; ms: number };
/** What one dump holds: totals since the process started, keyed `<application_name>\t<statement>`, `<application_name>`, `<METHOD> <path>`. */
export type ProbeDump = { seq: number; statements: Record<string, ProbeTally>; connects: Record<string, ProbeTally>; fetches: Record<string, ProbeTally> };

/** Statements are keyed by their first characters, whitespace collapsed. */
const STATEMENT_KEY_CHARS = 90;

const file = process.env.BENCH_PROBE_FILE;
if (file) install(file);

function install(file: string): void {
  const statements = new Map<string, ProbeTally>();
  const connects = new Map<string, ProbeTally>();
  const fetches = new Map<string, ProbeTally>();
  const note = (map: Map<string, ProbeTally>, key: string, startedAt: number) => {
    const ms = performance.now() - startedAt;
    const tally = map.get(key);
    if (tally) {
      tally.count++;
      tally.ms += ms;
    } else {
      map.set(key, { count: 1, ms });
    }
  };

  type Query = (this: pg.Client, ...args: unknown[]) => unknown;
  const clientPrototype = pg.Client.prototype as unknown as { query: Query; connectionParameters?: { application_name?: string } };
  const query = clientPrototype.query;
  clientPrototype.query = function (this: pg.Client, ...args: unknown[]) {
    const first = args[0];
    const text = typeof first === 'string' ? first : typeof first === 'object' && first !== null && 'text' in first && !('submit' in first) ? String((first as { text: unknown }).text) : undefined;
    if (text === undefined || args.some((arg) => typeof arg === 'function')) return query.apply(this, args);
    const startedAt = performance.now();
    const app = (this as unknown as { connectionParameters?: { application_name?: string } }).connectionParameters?.application_name ?? '?';
    const key = `${app}\t${text.replace(/\s+/g, ' ').trim().slice(0, STATEMENT_KEY_CHARS)}`;
    const result = query.apply(this, args) as Promise<unknown>;
    return result.finally(() => note(statements, key, startedAt));
  };

  // pool.query runs client.query with a callback (uncounted above): counted here, its wait for a connection included.
  type PoolQuery = (this: pg.Pool, ...args: unknown[]) => unknown;
  const poolQueryPrototype = pg.Pool.prototype as unknown as { query: PoolQuery };
  const poolQuery = poolQueryPrototype.query;
  poolQueryPrototype.query = function (this: pg.Pool, ...args: unknown[]) {
    const first = args[0];
    const text = typeof first === 'string' ? first : typeof first === 'object' && first !== null && 'text' in first ? String((first as { text: unknown }).text) : undefined;
    if (text === undefined || args.some((arg) => typeof arg === 'function')) return poolQuery.apply(this, args);
    const startedAt = performance.now();
    const app = (this as unknown as { options?: { application_name?: string } }).options?.application_name ?? '?';
    const key = `${app}\t${text.replace(/\s+/g, ' ').trim().slice(0, STATEMENT_KEY_CHARS)}`;
    return (poolQuery.apply(this, args) as Promise<unknown>).finally(() => note(statements, key, startedAt));
  };

  type Connect = (this: pg.Pool, callback?: (...args: unknown[]) => void) => unknown;
  const poolPrototype = pg.Pool.prototype as unknown as { connect: Connect };
  const connect = poolPrototype.connect;
  poolPrototype.connect = function (this: pg.Pool, callback?: (...args: unknown[]) => void) {
    const startedAt = performance.now();
    const app = (this as unknown as { options?: { application_name?: string } }).options?.application_name ?? '?';
    if (typeof callback === 'function') {
      return connect.call(this, (...results: unknown[]) => {
        note(connects, app, startedAt);
        callback(...results);
      });
    }
    return (connect.call(this) as Promise<unknown>).finally(() => note(connects, app, startedAt));
  };

  const originalFetch = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const startedAt = performance.now();
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    const path = url.pathname.replace(/^(\/v1\/transactions\/)[^/]+/, '$1{id}');
    try {
      return await originalFetch(input, init);
    } finally {
      note(fetches, `${init?.method ?? 'GET'} ${path}`, startedAt);
    }
  };

  let seq = 0;
  process.on('SIGUSR2', () => {
    seq++;
    const dump: ProbeDump = { seq, statements: Object.fromEntries(statements), connects: Object.fromEntries(connects), fetches: Object.fromEntries(fetches) };
    writeFileSync(`${file}.${seq}`, JSON.stringify(dump));
  });
}
