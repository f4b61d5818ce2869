// Goal: what a benchmark run leaves behind, undone in reverse order however the run ends — databases,
// servers, observers — and the Koban processes running at a given moment, killed if the benchmark exits first.
import type { KobanProcess } from './koban-process.ts';
import { type PgServer, createDatabase, dropDatabase } from './pg-server.ts';

export class RunCleanup {
  readonly #steps: Array<{ what: string; run: () => Promise<unknown> }> = [];
  #processes: readonly KobanProcess[] = [];
  readonly #killOnExit = () => {
    for (const koban of this.#processes) if (koban.alive()) process.kill(koban.pid, 'SIGKILL');
  };

  constructor() {
    process.on('exit', this.#killOnExit);
  }

  add(what: string, run: () => Promise<unknown>): void {
    this.#steps.push({ what, run });
  }

  /** The Koban processes running now (none once stopped): a last-resort SIGKILL if the benchmark exits with them alive. */
  track(processes: readonly KobanProcess[]): void {
    this.#processes = processes;
  }

  /** Creates a throwaway database on the run's server, dropped at the end unless kept (BENCH_KEEP_DBS) or the server itself is throwaway. */
  async createDatabase(server: PgServer, name: string, keep: boolean): Promise<void> {
    await createDatabase(server.serverUrl, name);
    if (server.kind === 'DATABASE_URL' && !keep) this.add(`drop database ${name}`, () => dropDatabase(server.serverUrl, name));
  }

  /** Every step, newest first; a failed step is reported and the rest still run. */
  async runAll(): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step.run();
      } catch (error) {
        console.error(`cleanup "${step.what}" failed: ${(error as Error).message}`);
      }
    }
    process.off('exit', this.#killOnExit);
  }
}
