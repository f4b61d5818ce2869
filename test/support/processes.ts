// Koban services as real OS processes (`koban serve <name...>`), for the e2e
// tests that run the split topology: started with their own environment,
// awaited until each service listens, stopped with SIGTERM (SIGKILL after a
// grace), and every one killed when the suite ends, even after a failure.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

const KOBAN = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'koban.ts');
export const SERVE_START_TIMEOUT_MS = 60_000;
export const SERVE_STOP_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 50;

export type Served = { name: string; child: ChildProcess; output: () => string; exited: Promise<number | null> };

export class ServedProcesses {
  readonly #children: ChildProcess[] = [];

  /** `koban serve <names…>` with exactly `env`; resolves once every named service logged that it listens. */
  async serve(names: readonly string[], env: NodeJS.ProcessEnv): Promise<Served> {
    const child = spawn(process.execPath, [KOBAN, 'serve', ...names], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#children.push(child);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // One "listening" line per service (each on its own port).
    const listening = () => output.split('"msg":"Koban is listening"').length - 1;
    const deadline = Date.now() + SERVE_START_TIMEOUT_MS;
    while (listening() < names.length) {
      if (child.exitCode !== null) throw new Error(`koban serve ${names.join(' ')} exited with ${child.exitCode}:\n${output}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`koban serve ${names.join(' ')} did not start within ${SERVE_START_TIMEOUT_MS} ms:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
    return { name: names.join('+'), child, output: () => output, exited };
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

  /** Kills whatever still runs: for `after`, so one failure never leaves a process (and the test run) hanging. */
  killAll(): void {
    for (const child of this.#children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** The environment of the test process without anything that would point a service at another database, broker or peer. */
export function isolatedEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'DATABASE_URL' || key === 'KOBAN_BUS' || key === 'KOBAN_TEST_SERVER_URL' || /_(DATABASE_)?URL$/.test(key)) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}
