// How every adapter's consumer starts, counts what it holds, and stops: the
// adapter writes the loop that takes messages and what a handler's outcome
// does at its broker; this keeps the rest, once. A graceful stop takes no
// more and waits for the handlers already running; an abandoning stop (as a
// crash would) returns at once and settles nothing.
import { failpoint } from '../../../platform/failpoints.ts';
import { Wakeup } from '../../../platform/wakeup.ts';
import type { Consumer, Handler } from '../../../contracts/bus/event-bus.ts';
import type { Subscription } from './topology.ts';

/** What every consumer is made with: the subscription as registered, the handler, checked limits. */
export type ConsumerOptions = {
  subscription: Subscription;
  handler: Handler;
  inFlightMax: number;
  batchSizeMax: number;
  /** Called once stopped, so the bus's close() no longer waits for it. */
  onStopped: () => void;
};

export abstract class ConsumerLifecycle implements Consumer {
  readonly subscription: Subscription;
  protected readonly handler: Handler;
  /** Handlers running at once, at most. */
  protected readonly inFlightMax: number;
  /** Messages taken from the broker in one round trip, at most. */
  protected readonly batchSizeMax: number;
  /** Woken when a handler settles, on stop, and by the adapter (new messages). */
  protected readonly wakeup = new Wakeup();
  protected stopping = false;
  /** Set by an abandoning stop: outcomes of handlers still running are dropped. */
  protected abandoned = false;
  readonly #onStopped: () => void;
  readonly #settling = new Set<Promise<void>>();
  #loop: Promise<void> | undefined;

  constructor(options: ConsumerOptions) {
    this.subscription = options.subscription;
    this.handler = withFailpoints(options.handler, options.subscription.name);
    this.inFlightMax = options.inFlightMax;
    this.batchSizeMax = options.batchSizeMax;
    this.#onStopped = options.onStopped;
  }

  /** Handlers running (taken and not yet settled). */
  get inFlight(): number {
    return this.#settling.size;
  }

  start(): void {
    this.#loop = this.run();
  }

  wake(): void {
    this.wakeup.wake();
  }

  /** Takes messages until stopping; started once by start(). */
  protected abstract run(): Promise<void>;

  /** Counts `handle` in flight until it settles (it must not reject), then wakes the loop: a slot is free. */
  protected track(handle: () => Promise<void>): void {
    const settled: Promise<void> = Promise.resolve()
      .then(handle)
      .finally(() => {
        this.#settling.delete(settled);
        this.wakeup.wake();
      });
    this.#settling.add(settled);
  }

  /** Called first by stop(): stop taking from the broker. */
  protected async stopTaking(): Promise<void> {}

  /** Called by a graceful stop after every handler settled: write what is still buffered. */
  protected async flush(): Promise<void> {}

  async stop(options: { abandonInFlight?: boolean } = {}): Promise<void> {
    this.stopping = true;
    if (options.abandonInFlight) this.abandoned = true;
    this.wakeup.wake();
    await this.stopTaking();
    await this.#loop;
    if (!this.abandoned) {
      while (this.#settling.size > 0) await Promise.all([...this.#settling]);
      await this.flush();
    }
    this.#onStopped();
  }
}

/**
 * The handler as every adapter runs it, with the consumer failpoints around it
 * (inert unless KOBAN_FAILPOINTS arms them): `consumer.handle` before it runs,
 * `consumer.after_handle` after its effect and before the adapter acks.
 */
function withFailpoints(handler: Handler, subscription: string): Handler {
  return async (delivery) => {
    // Unarmed, a failpoint returns undefined: no await, no extra turn of the event loop.
    const before = failpoint('consumer.handle', subscription);
    if (before !== undefined) await before;
    await handler(delivery);
    const after = failpoint('consumer.after_handle', subscription);
    if (after !== undefined) await after;
  };
}
