// Goal: small loopback-only helpers shared by the benchmark (free ports, timeouts, sleeps).

/** Hosts the benchmark may talk to: it sends no traffic off this machine. */
export const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost']);

/** Asks the kernel for a free TCP port on 127.0.0.1 (a small race with other processes is accepted). */
export { freePort } from '../../src/platform/net.ts';

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Rejects with a message naming `what` if the promise takes longer than `timeoutMs`. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads until `done` says so or `waitMs` has passed (a bounded wait, never a sleep-and-hope); resolves with the last reading either way. */
export async function pollUntil<T>(read: () => Promise<T>, done: (value: T) => boolean, options: { waitMs: number; intervalMs: number; signal: AbortSignal }): Promise<T> {
  const deadline = performance.now() + options.waitMs;
  for (;;) {
    const value = await read();
    if (done(value) || performance.now() > deadline) return value;
    await sleep(options.intervalMs, options.signal);
  }
}
