// Goal: the pgbench reference of the benchmark: initialise a pgbench database and run tpcb-like at a given concurrency.
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';

/**
 * Scale factor: at least this, and at least the highest concurrency, since
 * tpcb-like updates one of `scale` branch rows per transaction: with more
 * clients than branches, pgbench measures waits on those rows (its docs say
 * not to run more clients than the scale factor).
 */
export const PGBENCH_SCALE_MIN = 10;
const PGBENCH_INIT_TIMEOUT_MS = 240_000;
/** Beyond -T, time allowed for connecting and reporting before pgbench is killed. */
const PGBENCH_RUN_GRACE_MS = 60_000;
const PGBENCH_THREADS_MAX = 2;
const OUTPUT_TAIL_CHARS = 2_000;

export type PgbenchFigures = { tps: number; latencyAvgMs: number; failedTransactions: number; transactions: number };

/** The pgbench executable on PATH, or undefined. */
export async function findPgbench(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'pgbench');
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export async function pgbenchVersion(bin: string, signal: AbortSignal): Promise<string> {
  const result = await runProcess(bin, ['--version'], process.env, 10_000, signal);
  return result.stdout.trim();
}

export function pgbenchScale(concurrencies: readonly number[]): number {
  return Math.max(PGBENCH_SCALE_MIN, ...concurrencies);
}

/** `pgbench -i -s scale` into the database of `databaseUrl`. */
export async function pgbenchInit(bin: string, databaseUrl: string, scale: number, signal: AbortSignal): Promise<void> {
  const result = await runProcess(bin, ['-i', '-q', '-s', String(scale)], libpqEnv(databaseUrl), PGBENCH_INIT_TIMEOUT_MS, signal);
  if (result.code !== 0) throw new Error(`pgbench -i failed (${result.code}): ${tail(result.stderr + result.stdout)}`);
}

/**
 * `pgbench -n -b tpcb-like -c C -j min(C, 2) -T durationS` (or, given a script file, `-M prepared -f script`
 * instead of the built-in): tps without connection time and average latency.
 */
export async function pgbenchRun(bin: string, databaseUrl: string, concurrency: number, durationS: number, signal: AbortSignal, script?: string): Promise<PgbenchFigures> {
  const workload = script === undefined ? ['-b', 'tpcb-like'] : ['-M', 'prepared', '-f', script];
  const args = ['-n', ...workload, '-c', String(concurrency), '-j', String(Math.min(concurrency, PGBENCH_THREADS_MAX)), '-T', String(durationS)];
  const result = await runProcess(bin, args, libpqEnv(databaseUrl), durationS * 1000 + PGBENCH_RUN_GRACE_MS, signal);
  const tps = /^tps = ([\d.]+) \(without initial connection time\)$/m.exec(result.stdout);
  const latency = /^latency average = ([\d.]+) ms$/m.exec(result.stdout);
  const failed = /^number of failed transactions: (\d+)/m.exec(result.stdout);
  const processed = /^number of transactions actually processed: (\d+)/m.exec(result.stdout);
  if (result.code !== 0 || !tps || !latency) {
    throw new Error(`pgbench ${args.join(' ')} failed (${result.code}): ${tail(result.stderr + result.stdout)}`);
  }
  return {
    tps: Number(tps[1]),
    latencyAvgMs: Number(latency[1]),
    failedTransactions: failed ? Number(failed[1]) : 0,
    transactions: processed ? Number(processed[1]) : Number.NaN,
  };
}

/** libpq's environment for a postgres:// URL, so the password never shows on a command line. */
function libpqEnv(databaseUrl: string): NodeJS.ProcessEnv {
  const url = new URL(databaseUrl);
  return {
    ...process.env,
    PGHOST: url.hostname,
    PGPORT: url.port || '5432',
    PGUSER: decodeURIComponent(url.username) || 'postgres',
    PGPASSWORD: decodeURIComponent(url.password),
    PGDATABASE: decodeURIComponent(url.pathname.slice(1)),
    PGAPPNAME: 'koban-bench-pgbench',
  };
}

type ProcessResult = { code: number | string; stdout: string; stderr: string };

function runProcess(bin: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number, signal: AbortSignal): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const kill = () => child.kill('SIGKILL');
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`;
      kill();
    }, timeoutMs);
    signal.addEventListener('abort', kill, { once: true });
    child.once('error', (error) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', kill);
      reject(error);
    });
    child.once('close', (code, exitSignal) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', kill);
      resolve({ code: code ?? `signal ${exitSignal}`, stdout, stderr });
    });
  });
}

function tail(text: string): string {
  return text.length > OUTPUT_TAIL_CHARS ? `…${text.slice(-OUTPUT_TAIL_CHARS)}` : text;
}
