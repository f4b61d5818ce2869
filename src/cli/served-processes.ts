// Koban services as real OS processes (`koban serve <name...>`), for the split
// topology of the e2e tests and of `npm run chaos`: started with their own
// environment, awaited until each service listens, stopped with SIGTERM
// (SIGKILL after a grace), killed (SIGKILL) and restarted with the same
// environment, and every one killed when the run ends, even after a failure.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

const KOBAN = path.join(import.meta.dirname, 'koban.ts');
export const SERVE_START_TIMEOUT_MS = 60_000;
export const SERVE_STOP_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 50;
/** Output kept per process: enough to explain a failure, bounded for a long run. */
const OUTPUT_KEPT_CHARS = 4_000_000;

export type Served = {
  name: string;
  names: readonly string[];
  env: NodeJS.ProcessEnv;
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  /** How it ended: its code, or the signal that killed it (null while it runs). */
  exit: () => { code: number | null; signal: NodeJS.Signals | null } | null;
};

export class ServedProcesses {
  readonly #children: ChildProcess[] = [];

  /** `koban serve <names…>` with exactly `env`; resolves once every named service logged that it listens. */
  async serve(names: readonly string[], env: NodeJS.ProcessEnv, options: { onLine?: (line: string) => void } = {}): Promise<Served> {
    const child = spawn(process.execPath, [KOBAN, 'serve', ...names], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#children.push(child);
    let output = '';
    let partial = '';
    let ended: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    const take = (chunk: Buffer) => {
      const text = chunk.toString();
      output += text;
      if (output.length > OUTPUT_KEPT_CHARS) output = output.slice(-OUTPUT_KEPT_CHARS / 2);
      if (options.onLine) {
        const lines = (partial + text).split('\n');
        partial = lines.pop()!;
        for (const line of lines) options.onLine(line);
      }
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code, signal) => {
        ended = { code, signal };
        resolve(code);
      }),
    );
    // One "listening" line per service (each on its own port).
    const listening = () => output.split('"msg":"Koban is listening"').length - 1;
    const deadline = Date.now() + SERVE_START_TIMEOUT_MS;
    while (listening() < names.length) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`koban serve ${names.join(' ')} exited with ${child.exitCode ?? child.signalCode}:\n${output.slice(-8_000)}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`koban serve ${names.join(' ')} did not start within ${SERVE_START_TIMEOUT_MS} ms:\n${output.slice(-8_000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
    return { name: names.join('+'), names, env, child, output: () => output, exited, exit: () => ended };
  }

  /** `koban serve <names…>` expected to exit by itself (a refused configuration): its code and output. */
  async runToExit(names: readonly string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
    const child = spawn(process.execPath, [KOBAN, 'serve', ...names], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#children.push(child);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), SERVE_START_TIMEOUT_MS);
    const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
    clearTimeout(timer);
    return { code, output };
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace: its exit code. */
  async stop(served: Served): Promise<number | null> {
    if (served.child.exitCode !== null || served.child.signalCode !== null) return served.child.exitCode;
    served.child.kill('SIGTERM');
    const timer = setTimeout(() => served.child.kill('SIGKILL'), SERVE_STOP_TIMEOUT_MS);
    const code = await served.exited;
    clearTimeout(timer);
    return code;
  }

  /** SIGKILL, as the OOM killer or a lost machine would: resolves once it is gone. */
  async kill(served: Served): Promise<void> {
    if (served.child.exitCode === null && served.child.signalCode === null) served.child.kill('SIGKILL');
    await served.exited;
  }

  /** The same services again, with the same environment (or `env` instead): after a kill, a crash or a stop. */
  async restart(served: Served, env: NodeJS.ProcessEnv = served.env, options: { onLine?: (line: string) => void } = {}): Promise<Served> {
    await this.kill(served);
    return this.serve(served.names, env, options);
  }

  /** Kills whatever still runs: for `after`, so one failure never leaves a process (and the test run) hanging. */
  killAll(): void {
    for (const child of this.#children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** The environment of this process without anything that would point a service at another database, broker or peer. */
export function isolatedEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'DATABASE_URL' || key === 'KOBAN_BUS' || key === 'KOBAN_TEST_SERVER_URL' || /_(DATABASE_)?URL$/.test(key)) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}
