// The service processes of a chaos run under supervision: each spawned with
// its environment plus the failpoints and clock skew the schedule gives it at
// that moment, restarted when it dies on its own (a failpoint crash), killed
// or restarted on the injector's orders — one operation per process at a time
// — and watched for the "failpoint fired" lines that prove a fault happened.
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Served, ServedProcesses } from '../served-processes.ts';
import { type Fault, failpointsFor, FAILPOINT_LEAD_MS } from './schedule.ts';
import { sleep } from './topology.ts';

/** A process that died on its own is started again after this pause. */
const RESPAWN_PAUSE_MS = 200;
/** A process that will not start is tried again after this pause, for this long. */
const SPAWN_RETRY_PAUSE_MS = 500;
const SPAWN_RETRY_DEADLINE_MS = 120_000;

export type Observation = Readonly<{ target: string; at: number; what: 'fired' | 'thrown' | 'killed'; failpoint?: string }>;

export class Fleet {
  readonly #processes: ServedProcesses;
  readonly #env: (name: string) => NodeJS.ProcessEnv;
  readonly #faults: readonly Fault[];
  readonly #served = new Map<string, Served>();
  readonly #expected = new Set<Served>();
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #skew = new Map<string, number>();
  readonly observations: Observation[] = [];
  readonly respawnFailures: string[] = [];
  readonly #logDir: string | undefined;
  #startEpochMs: number | undefined;
  #stopping = false;

  constructor(processes: ServedProcesses, env: (name: string) => NodeJS.ProcessEnv, faults: readonly Fault[], logDir?: string) {
    this.#processes = processes;
    this.#env = env;
    this.#faults = faults;
    this.#logDir = logDir;
    if (logDir !== undefined) mkdirSync(logDir, { recursive: true });
  }

  /** Traffic starts now: failpoint windows are placed from here. */
  set startEpochMs(value: number) {
    this.#startEpochMs = value;
  }

  /** When the failpoint window of `fault` opens (epoch ms). */
  windowStart(fault: Fault): number {
    return this.#startEpochMs! + fault.at_ms + FAILPOINT_LEAD_MS;
  }

  names(): string[] {
    return [...this.#served.keys()];
  }

  pids(): Record<string, number | undefined> {
    return Object.fromEntries([...this.#served].map(([name, served]) => [name, served.child.pid]));
  }

  async start(name: string): Promise<void> {
    await this.#spawn(name);
  }

  /** SIGKILL, then the same process again. */
  kill(name: string): Promise<void> {
    return this.#locked(name, async () => {
      const served = this.#served.get(name)!;
      this.#expected.add(served);
      await this.#processes.kill(served);
      await this.#spawn(name);
    });
  }

  /**
   * Whether the failpoint window of `fault` is in the process's settings: every process starts armed with all
   * its windows, and one left out (a crash window already begun when the process was started again, after an
   * earlier fault) is not made up by a restart — restarts to arm cascaded under a dense schedule.
   */
  arm(fault: Fault): Promise<boolean> {
    return this.#locked(fault.target, async () => {
      const from = this.windowStart(fault);
      return (this.#served.get(fault.target)!.env.KOBAN_FAILPOINTS ?? '').includes(`from=${from};`);
    });
  }

  /** Restarts with its clock shifted by `skewMs` (0: back to the true time; nothing to do if it was not shifted). */
  skew(name: string, skewMs: number): Promise<void> {
    return this.#locked(name, async () => {
      if (skewMs === 0 && !this.#skew.has(name)) return;
      if (skewMs === 0) this.#skew.delete(name);
      else this.#skew.set(name, skewMs);
      await this.#restart(name);
    });
  }

  /** Waits for every pending operation, then for nothing to be down. */
  async settle(): Promise<void> {
    while (this.#locks.size > 0) await Promise.allSettled([...this.#locks.values()]);
  }

  async stopAll(): Promise<void> {
    this.#stopping = true;
    await this.settle();
    await Promise.all(
      [...this.#served.values()].map((served) => {
        this.#expected.add(served);
        return this.#processes.stop(served);
      }),
    );
  }

  #envFor(name: string): NodeJS.ProcessEnv {
    const env = { ...this.#env(name) };
    const failpoints = this.#startEpochMs === undefined ? undefined : failpointsFor(this.#faults, name, this.#startEpochMs, Date.now());
    if (failpoints !== undefined) env.KOBAN_FAILPOINTS = failpoints;
    const skew = this.#skew.get(name);
    if (skew !== undefined) env.KOBAN_CLOCK_SKEW_MS = String(skew);
    return env;
  }

  async #restart(name: string): Promise<void> {
    const served = this.#served.get(name)!;
    this.#expected.add(served);
    await this.#processes.stop(served);
    await this.#spawn(name);
  }

  /** Started again until it stays up, as a supervisor would: a service refuses to start while its database or a peer is down (a restart of PostgreSQL under way). */
  async #spawn(name: string): Promise<void> {
    const deadline = Date.now() + SPAWN_RETRY_DEADLINE_MS;
    let served: Served | undefined;
    while (served === undefined) {
      try {
        served = await this.#processes.serve(name.split('+'), this.#envFor(name), { onLine: (line) => this.#read(name, line) });
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(SPAWN_RETRY_PAUSE_MS);
      }
    }
    this.#served.set(name, served);
    void served.exited.then(() => {
      if (this.#expected.has(served) || this.#stopping) return;
      // Died on its own: a failpoint crash (SIGKILL) or a failure; either way the service must come back.
      const exit = served.exit();
      if (exit?.signal === 'SIGKILL') this.observations.push({ target: name, at: Date.now(), what: 'killed' });
      void this.#locked(name, async () => {
        if (this.#served.get(name) !== served || this.#stopping) return;
        await sleep(RESPAWN_PAUSE_MS);
        await this.#spawn(name);
      }).catch((error: Error) => this.respawnFailures.push(`${name}: ${error.message.slice(0, 2_000)}`));
    });
  }

  #read(name: string, line: string): void {
    // Synchronous, so a line is on disk before the process that wrote it can be killed and respawned.
    if (this.#logDir !== undefined) appendFileSync(path.join(this.#logDir, `${name}.log`), `${line}\n`);
    if (line.includes('"failpoint fired"')) {
      let fired: { failpoint?: string; action?: string } = {};
      try {
        fired = JSON.parse(line) as typeof fired;
      } catch {
        // a torn line: counted as fired, name unknown
      }
      this.observations.push({ target: name, at: Date.now(), what: fired.action === 'throw' ? 'thrown' : 'fired', ...(fired.failpoint === undefined ? {} : { failpoint: fired.failpoint }) });
    }
  }

  #locked<T>(name: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(operation);
    this.#locks.set(name, next);
    void next
      .catch(() => {})
      .finally(() => {
        if (this.#locks.get(name) === next) this.#locks.delete(name);
      });
    return next;
  }
}
