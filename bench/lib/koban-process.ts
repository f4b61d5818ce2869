// Goal: run the Koban server as a child process of the benchmark, and read its CPU time and peak memory from /proc.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import readline from 'node:readline';
import { freePort, sleep } from './net.ts';
import { readProcStat } from './proc.ts';

const HEALTH_WAIT_MS = 60_000;
const HEALTH_POLL_INTERVAL_MS = 100;
const HEALTH_REQUEST_TIMEOUT_MS = 1_000;
/** Koban drains for up to 15 s on SIGTERM (src/cli/koban.ts); past this, it is killed. */
const STOP_GRACE_MS = 20_000;
const KILL_WAIT_MS = 5_000;
const OUTPUT_LINES_KEPT = 40;

export type KobanProcess = {
  readonly pid: number;
  readonly origin: string;
  /** False once the process has exited. */
  alive(): boolean;
  /** How the process ended (exit code or signal), once it has. */
  exitDescription(): string | undefined;
  /** VmHWM (peak resident set) in bytes, while the process runs. */
  peakRssBytes(): number | undefined;
  /** User + system CPU time used so far, all threads, in ms. */
  cpuMs(): number | undefined;
  /** The same for the main thread alone (the event loop: JavaScript, parsing, most of HTTP), in ms. */
  mainThreadCpuMs(): number | undefined;
  /** Last lines the server printed, for error reports. */
  recentOutput(): string;
  /** SIGTERM, wait for the drain, SIGKILL past the grace period. Resolves with the exit code or signal. Safe to call twice. */
  stop(): Promise<string>;
};

export async function startKoban(options: {
  repoRoot: string;
  ledgerDatabaseUrl: string;
  extraNodeArgs: readonly string[];
  env: NodeJS.ProcessEnv;
}): Promise<KobanProcess> {
  const port = await freePort();
  // DATABASE_URL names the benchmark's server, not a database for Koban: the ledger gets the
  // benchmark's database to itself (public schema) and the bus shares it in schema koban_bus.
  const { DATABASE_URL: _server, ...env } = options.env;
  return spawnKoban({
    repoRoot: options.repoRoot,
    args: ['start'],
    extraNodeArgs: options.extraNodeArgs,
    env: { ...env, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', LEDGER_DATABASE_URL: options.ledgerDatabaseUrl, DATABASE_URL: options.ledgerDatabaseUrl },
    origins: [`http://127.0.0.1:${port}`],
    label: 'koban',
  });
}

/**
 * `koban <args>` as a child process with exactly `env`, healthy once every
 * origin answers GET /readyz (a `koban serve` of several services listens on
 * one port each). Its output is echoed to stderr prefixed with `[label]`.
 */
export async function spawnKoban(options: {
  repoRoot: string;
  args: readonly string[];
  extraNodeArgs: readonly string[];
  env: NodeJS.ProcessEnv;
  /** http://127.0.0.1:<port> of each port it listens on; the first is `origin`. */
  origins: readonly string[];
  label: string;
}): Promise<KobanProcess> {
  const origin = options.origins[0]!;
  const child = spawn(process.execPath, [...options.extraNodeArgs, 'src/cli/koban.ts', ...options.args], {
    cwd: options.repoRoot,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const recent: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    readline.createInterface({ input: stream }).on('line', (line) => {
      recent.push(line);
      if (recent.length > OUTPUT_LINES_KEPT) recent.shift();
      process.stderr.write(`[${options.label}] ${line}\n`);
    });
  }
  let exitDescription: string | undefined;
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      exitDescription = signal ? `signal ${signal}` : `exit code ${code}`;
      resolve(exitDescription);
    });
    child.once('error', (error) => {
      exitDescription = `spawn error: ${error.message}`;
      resolve(exitDescription);
    });
  });

  const pid = child.pid;
  let stopping: Promise<string> | undefined;
  const handle: KobanProcess = {
    pid: pid ?? -1,
    origin,
    alive: () => exitDescription === undefined,
    exitDescription: () => exitDescription,
    peakRssBytes: () => (pid === undefined ? undefined : readPeakRssBytes(pid)),
    cpuMs: () => (pid === undefined ? undefined : readProcStat(pid)?.cpuMs),
    mainThreadCpuMs: () => (pid === undefined ? undefined : readProcStat(pid, pid)?.cpuMs),
    recentOutput: () => recent.join('\n'),
    stop() {
      stopping ??= stopChild(child, exited);
      return stopping;
    },
  };

  try {
    for (const each of options.origins) await waitHealthy(each, () => exitDescription);
  } catch (error) {
    await handle.stop();
    throw new Error(`Koban did not become healthy: ${(error as Error).message}\n--- last server output ---\n${handle.recentOutput()}`);
  }
  return handle;
}

async function waitHealthy(origin: string, exitDescription: () => string | undefined): Promise<void> {
  const deadline = performance.now() + HEALTH_WAIT_MS;
  let lastProblem = 'no answer yet';
  while (performance.now() < deadline) {
    const exit = exitDescription();
    if (exit !== undefined) throw new Error(`the server exited (${exit})`);
    try {
      const response = await fetch(`${origin}/readyz`, { signal: AbortSignal.timeout(HEALTH_REQUEST_TIMEOUT_MS) });
      await response.body?.cancel();
      if (response.ok) return;
      lastProblem = `GET /readyz answered ${response.status}`;
    } catch (error) {
      lastProblem = (error as Error).message;
    }
    await sleep(HEALTH_POLL_INTERVAL_MS);
  }
  throw new Error(`no healthy answer within ${HEALTH_WAIT_MS} ms (${lastProblem})`);
}

async function stopChild(child: ChildProcess, exited: Promise<string>): Promise<string> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return exited;
  child.kill('SIGTERM');
  const graceful = await Promise.race([exited, sleep(STOP_GRACE_MS).then(() => undefined)]);
  if (graceful !== undefined) return graceful;
  child.kill('SIGKILL');
  const killed = await Promise.race([exited, sleep(KILL_WAIT_MS).then(() => 'did not exit after SIGKILL')]);
  return `killed after ${STOP_GRACE_MS} ms (${killed})`;
}

function readPeakRssBytes(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A failed load, naming any Koban process that had exited by then (the usual cause). */
export function loadFailure(what: string, processes: readonly KobanProcess[], error: unknown): Error {
  const exits = processes.map((koban) => koban.exitDescription()).filter((exit) => exit !== undefined);
  return new Error(`${what}: ${(error as Error).message}${exits.length ? ` — a Koban process had exited (${exits.join(', ')})` : ''}`, { cause: error });
}

/** Throws if a Koban process exited during `what`, with its last output. */
export function assertAlive(processes: readonly KobanProcess[], what: string): void {
  for (const koban of processes) {
    if (!koban.alive()) throw new Error(`a Koban process exited during ${what}: ${koban.exitDescription()}\n${koban.recentOutput()}`);
  }
}
