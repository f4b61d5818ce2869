// A nats-server of a test's (or a chaos run's) own: a free port on the
// loopback, a fresh store directory, stopped cleanly (SIGTERM) and started
// again on the same port and store, as an operator restarts one.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, portAnswers } from '../../../platform/net.ts';

const NATS_BINARIES = ['/usr/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server'];
const READY_TIMEOUT_MS = 30_000;
const POLL_MS = 20;

/** nats-server on PATH or in the usual places; undefined when it is not installed. */
export function natsServerBinary(): string | undefined {
  for (const directory of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(directory, 'nats-server');
    if (directory !== '' && existsSync(candidate)) return candidate;
  }
  return NATS_BINARIES.find((candidate) => existsSync(candidate));
}

export type OwnNatsServer = {
  readonly url: string;
  readonly port: number;
  /** Stopped cleanly (SIGTERM, waited for), down for `downMs`, started again on the same port and store. */
  restart(downMs: number): Promise<void>;
  pid(): number | undefined;
  /** Stops it and deletes its store. */
  stop(): Promise<void>;
};

export async function startOwnNatsServer(options: { storePrefix: string }): Promise<OwnNatsServer> {
  const binary = natsServerBinary();
  if (binary === undefined) throw new Error('nats-server is not installed (on PATH or in /usr/sbin)');
  const storeDir = await mkdtemp(path.join(tmpdir(), options.storePrefix));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    const started = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: 'ignore' });
    child = started;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await portAnswers(port))) {
      if (started.exitCode !== null) throw new Error(`nats-server on port ${port} exited with code ${started.exitCode}`);
      if (Date.now() > deadline) throw new Error(`nats-server on port ${port} did not answer within ${READY_TIMEOUT_MS} ms`);
      await sleep(POLL_MS);
    }
  };
  const halt = async () => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGTERM');
    await exited;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    pid: () => child?.pid,
    async restart(downMs) {
      await halt();
      await sleep(downMs);
      await start();
    },
    async stop() {
      await halt();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
