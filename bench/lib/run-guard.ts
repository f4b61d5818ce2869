// Goal: one way for a benchmark to end: a deadline that aborts a run gone
// wrong, SIGINT/SIGTERM that abort and clean up (a second one exits at once),
// and an exit code that says how it ended.

/** How long cleanup may take after an abort before the process exits anyway. */
export const CLEANUP_GRACE_MS = 60_000;

export class InterruptedError extends Error {
  override name = 'InterruptedError';
}

/**
 * Aborts `abort` past `deadlineMs` (exit 3 if cleanup hangs) or on
 * SIGINT/SIGTERM (exit 130 if it hangs, or on a second signal). Returns what
 * disarms the deadline once the run is over.
 */
export function guardRun(abort: AbortController, deadlineMs: number): { disarm(): void } {
  const watchdog = setTimeout(() => {
    console.error(`benchmark exceeded its ${deadlineMs} ms budget; aborting`);
    abort.abort(new Error('benchmark deadline exceeded'));
    setTimeout(() => process.exit(3), CLEANUP_GRACE_MS).unref();
  }, deadlineMs);
  watchdog.unref();
  let interrupted = false;
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    process.on(name, () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      console.error(`${name}: stopping the benchmark and cleaning up (send again to exit at once)`);
      abort.abort(new InterruptedError(`interrupted by ${name}`));
      setTimeout(() => process.exit(130), CLEANUP_GRACE_MS).unref();
    });
  }
  return { disarm: () => clearTimeout(watchdog) };
}

/** Runs a benchmark's main and exits with its code: 130 when interrupted, 2 when it failed. */
export async function runMain(main: () => Promise<number>): Promise<never> {
  try {
    process.exitCode = await main();
  } catch (error) {
    if (error instanceof InterruptedError) {
      console.error(`benchmark stopped: ${error.message}`);
      process.exitCode = 130;
    } else {
      console.error(`benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      process.exitCode = 2;
    }
  }
  // Everything is stopped by now; do not wait for stray handles (timers of aborted work, idle sockets).
  process.exit(process.exitCode);
}
