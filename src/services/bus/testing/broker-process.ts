// A broker of a test's (or a chaos run's) own as a child process on a free
// loopback port, with its state in a directory of its own: stopped cleanly
// (SIGTERM, waited for; SIGKILL after a grace) and started again on the same
// port and directory, as an operator restarts one. nats-server.ts and the
// chaos run's SNS+SQS emulator are two of these.
import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { portAnswers } from '../../../platform/net.ts';

const READY_TIMEOUT_MS = 30_000;
const POLL_MS = 20;
/** A clean stop that takes longer than this becomes a kill. */
const STOP_GRACE_MS = 10_000;

export type BrokerProcess = {
  readonly port: number;
  /** Stopped cleanly, down for `downMs`, started again on the same port and directory. */
  restart(downMs: number): Promise<void>;
  pid(): number | undefined;
  /** Stops it and deletes its directory. */
  stop(): Promise<void>;
};

/** Starts `spawn()` and resolves once `port` answers; `name` says which broker in errors. */
export async function startBrokerProcess(options: { name: string; port: number; dataDir: string; spawn: () => ChildProcess }): Promise<BrokerProcess> {
  const { name, port } = options;
  let child: ChildProcess | undefined;
  // Once stopped, a restart under way does not start it again (it would outlive its owner).
  let stopped = false;
  const start = async () => {
    if (stopped) return;
    const started = options.spawn();
    child = started;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await portAnswers(port))) {
      if (started.exitCode !== null) throw new Error(`${name} on port ${port} exited with code ${started.exitCode}`);
      if (Date.now() > deadline) throw new Error(`${name} on port ${port} did not answer within ${READY_TIMEOUT_MS} ms`);
      await sleep(POLL_MS);
    }
  };
  const halt = async () => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };
  await start();
  return {
    port,
    pid: () => child?.pid,
    async restart(downMs) {
      await halt();
      await sleep(downMs);
      await start();
    },
    async stop() {
      stopped = true;
      await halt();
      await rm(options.dataDir, { recursive: true, force: true });
    },
  };
}
