// Retention: rows that only served delivery or deduplication (published outbox
// rows, acknowledged bus messages, handled dedupe records, delivered
// notifications) are deleted once they are older than the retention, so those
// tables stay bounded under steady traffic. Business records and the ledger are
// never pruned. Each service prunes only its own database, on a timer of its
// own, in bounded batches: one statement deletes at most RETENTION_BATCH_ROWS_MAX
// rows, and the loop yields between batches so a backlog never holds a
// connection or the event loop for long. The store decides what may go (one
// statement per table, next to the table's other SQL); this file only decides
// when, and how much at a time.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import { Wakeup } from './wakeup.ts';

/** Days a prunable row is kept (KOBAN_RETENTION_DAYS): NServiceBus keeps outbox dedupe records as long. */
export const RETENTION_DAYS_DEFAULT = 7;
/** The longest retention accepted, in days (100 years: in effect, keep). */
export const RETENTION_DAYS_MAX = 36_500;
/** How often each service looks for rows to prune (KOBAN_RETENTION_INTERVAL_MS); 0: never. */
export const RETENTION_INTERVAL_MS_DEFAULT = 60_000;
export const RETENTION_INTERVAL_MS_MAX = 86_400_000;
/** Rows one prune statement deletes, at most: a short transaction, a bounded WAL burst. */
export const RETENTION_BATCH_ROWS_MAX = 1_000;
const DAY_MS = 86_400_000;

export type RetentionConfig = Readonly<{
  /** Rows older than this (by the time that made them prunable: published, acked, handled, delivered) may go. */
  retentionMs: number;
  /** Time between prune runs; 0: never prune. */
  intervalMs: number;
}>;

export function retentionMs(days: number): number {
  return Math.round(days * DAY_MS);
}

/**
 * One bounded delete: removes at most `rowsMax` prunable rows older than
 * `cutoff` and resolves with how many it removed. Never anything still
 * needed (unpublished, unacknowledged, unhandled, dead): the store's rule.
 */
export type PruneBatch = (cutoff: Date, rowsMax: number) => Promise<number>;

export type RetentionTask = Readonly<{
  /** What it prunes, for logs and results: `outbox`, `bus.messages`. */
  name: string;
  pruneBatch: PruneBatch;
}>;

/**
 * Runs one task's batches until a batch comes back less than full (nothing
 * older is left) or `stopping()` says so, yielding to the event loop between
 * batches. Resolves with the rows deleted.
 */
export async function pruneInBatches(
  task: RetentionTask,
  cutoff: Date,
  rowsMax: number = RETENTION_BATCH_ROWS_MAX,
  stopping: () => boolean = () => false,
): Promise<number> {
  if (!Number.isInteger(rowsMax) || rowsMax < 1) throw new Error(`rowsMax must be a positive integer, not ${rowsMax}`);
  let total = 0;
  for (;;) {
    const deleted = await task.pruneBatch(cutoff, rowsMax);
    if (deleted > rowsMax) throw new Error(`retention task ${task.name} deleted ${deleted} rows in one batch, more than ${rowsMax}`);
    total += deleted;
    if (deleted < rowsMax || stopping()) return total;
    await yieldToEventLoop();
  }
}

export type RetentionSweeperOptions = {
  tasks: readonly RetentionTask[];
  config: RetentionConfig;
  clock: Clock;
  logger: Logger;
  /** Rows per statement; RETENTION_BATCH_ROWS_MAX unless a test says otherwise. */
  rowsMax?: number;
};

/**
 * A service's retention timer: every `intervalMs`, each task pruned in turn
 * up to the cutoff (now − retention by the service's clock). A failed task is
 * logged and tried again next time; the others still run.
 */
export class RetentionSweeper {
  readonly #options: RetentionSweeperOptions;
  readonly #logger: Logger;
  readonly #wakeup = new Wakeup();
  #loop: Promise<void> | undefined;
  #stopping = false;

  constructor(options: RetentionSweeperOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: 'retention' });
  }

  /** Starts the timer, unless the interval is 0 (pruning off). The first run comes one interval after start. */
  start(): void {
    if (this.#loop !== undefined || this.#options.config.intervalMs === 0) return;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      await this.#wakeup.sleep(this.#options.config.intervalMs);
      if (this.#stopping) return;
      await this.runOnce();
    }
  }

  /** Prunes every task once, now; resolves with the rows each deleted (a failed task: absent, and logged). */
  async runOnce(): Promise<Record<string, number>> {
    const cutoff = new Date(this.#options.clock.now().getTime() - this.#options.config.retentionMs);
    const deleted: Record<string, number> = {};
    for (const task of this.#options.tasks) {
      if (this.#stopping) break;
      try {
        deleted[task.name] = await pruneInBatches(task, cutoff, this.#options.rowsMax, () => this.#stopping);
      } catch (error) {
        this.#logger.warn({ err: error, task: task.name }, 'retention: pruning failed; trying again at the next interval');
      }
    }
    const total = Object.values(deleted).reduce((sum, count) => sum + count, 0);
    if (total > 0) this.#logger.info({ deleted, cutoff: cutoff.toISOString() }, `retention: pruned ${total} rows older than the retention`);
    return deleted;
  }

  /** Ends the timer after the batch in progress. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wakeup.wake();
    await this.#loop;
  }
}
