// Group commit: callers submit one item each; items that arrive while a batch
// is being written wait and go together in the next one. One batch in flight
// at a time, so batches from this process never deadlock with each other, and
// under load one database commit carries many operations.

export type GroupCommitOptions<Item, Result> = {
  /** Writes a batch; returns one result per item, in order. */
  execute: (items: Item[]) => Promise<Result[]>;
  batchSizeMax: number;
  queueDepthMax: number;
  /** Called instead of queueing when the queue is full. */
  onOverload: () => Error;
};

type Waiting<Item, Result> = { item: Item; resolve: (result: Result) => void; reject: (error: unknown) => void };

export class GroupCommitQueue<Item, Result> {
  readonly #options: GroupCommitOptions<Item, Result>;
  #queue: Waiting<Item, Result>[] = [];
  #running: Promise<void> | undefined;

  constructor(options: GroupCommitOptions<Item, Result>) {
    this.#options = options;
  }

  get depth(): number {
    return this.#queue.length;
  }

  submit(item: Item): Promise<Result> {
    if (this.#queue.length >= this.#options.queueDepthMax) return Promise.reject(this.#options.onOverload());
    return new Promise<Result>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#running ??= this.#drain();
    });
  }

  /** Resolves once everything submitted so far has been written. */
  async flush(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #drain(): Promise<void> {
    // Let the requests that arrived in this same tick join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#options.batchSizeMax);
        try {
          const results = await this.#options.execute(batch.map((waiting) => waiting.item));
          batch.forEach((waiting, index) => waiting.resolve(results[index]!));
        } catch (error) {
          for (const waiting of batch) waiting.reject(error);
        }
      }
    } finally {
      this.#running = undefined;
    }
  }
}
