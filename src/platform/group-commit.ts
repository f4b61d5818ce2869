// Group commit: callers submit one item each; items that arrive while a batch
// is being written wait and go together in the next one, so under load one
// database commit carries many operations.
//
// Several batches may be written at once (`batchesInFlightMax`). Each item
// names what it writes (its key, e.g. an account); a batch in flight holds
// its keys and an item whose key is held waits for a later batch, so batches
// in flight never write the same rows, never wait on each other's locks, and
// each key's items are written in the order they were submitted. A batch
// beside one already in flight starts only with at least
// `parallelBatchSizeMin` items: every batch has a fixed cost, and under light
// load one larger batch costs less than two small ones.

export type GroupCommitOptions<Item, Result> = {
  /** Writes a batch; returns one result per item, in order. */
  execute: (items: Item[]) => Promise<Result[]>;
  batchSizeMax: number;
  queueDepthMax: number;
  /** Batches written at once, at most (default 1). */
  batchesInFlightMax?: number;
  /** Items a batch needs to start while another is in flight (default 1). */
  parallelBatchSizeMin?: number;
  /** Called instead of queueing when the queue is full. */
  onOverload: () => Error;
};

type Waiting<Item, Result> = { item: Item; key: string | undefined; resolve: (result: Result) => void; reject: (error: unknown) => void };

export class GroupCommitQueue<Item, Result> {
  readonly #options: GroupCommitOptions<Item, Result>;
  readonly #batchesInFlightMax: number;
  readonly #parallelBatchSizeMin: number;
  #queue: Waiting<Item, Result>[] = [];
  /** Keys of the items in batches being written. */
  readonly #heldKeys = new Set<string>();
  /** Queued items whose key no batch holds: kept up to date so that a submit never rescans the queue. */
  #freeQueued = 0;
  readonly #inFlight = new Set<Promise<void>>();
  #running: Promise<void> | undefined;
  /** Wakes the dispatcher waiting for an item to arrive or a batch to end. */
  #wake: (() => void) | undefined;

  constructor(options: GroupCommitOptions<Item, Result>) {
    this.#options = options;
    this.#batchesInFlightMax = options.batchesInFlightMax ?? 1;
    this.#parallelBatchSizeMin = options.parallelBatchSizeMin ?? 1;
    for (const [name, value] of [
      ['batchesInFlightMax', this.#batchesInFlightMax],
      ['parallelBatchSizeMin', this.#parallelBatchSizeMin],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a whole number ≥ 1, not ${value}`);
    }
  }

  get depth(): number {
    return this.#queue.length;
  }

  /** Queues an item; `key` names what it writes (an item without one never waits for another's). */
  submit(item: Item, key?: string): Promise<Result> {
    if (this.#queue.length >= this.#options.queueDepthMax) return Promise.reject(this.#options.onOverload());
    return new Promise<Result>((resolve, reject) => {
      this.#queue.push({ item, key, resolve, reject });
      if (key === undefined || !this.#heldKeys.has(key)) this.#freeQueued++;
      this.#wake?.();
      this.#running ??= this.#dispatch();
    });
  }

  /** Resolves once everything submitted so far has been written. */
  async flush(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #dispatch(): Promise<void> {
    // Let the requests that arrived in this same tick join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#queue.length > 0 || this.#inFlight.size > 0) {
        const batch = this.#inFlight.size < this.#batchesInFlightMax ? this.#takeBatch(this.#inFlight.size === 0 ? 1 : this.#parallelBatchSizeMin) : [];
        if (batch.length === 0) await this.#nextEvent();
        else this.#write(batch);
      }
    } finally {
      this.#running = undefined;
    }
  }

  /**
   * The oldest queued items whose keys no batch in flight holds, if there are
   * at least `sizeMin` of them; the others keep their places.
   */
  #takeBatch(sizeMin: number): Waiting<Item, Result>[] {
    if (this.#freeQueued < sizeMin) return [];
    const batch: Waiting<Item, Result>[] = [];
    const left: Waiting<Item, Result>[] = [];
    for (const waiting of this.#queue) {
      if (batch.length < this.#options.batchSizeMax && (waiting.key === undefined || !this.#heldKeys.has(waiting.key))) batch.push(waiting);
      else left.push(waiting);
    }
    if (batch.length < sizeMin) return [];
    this.#queue = left;
    return batch;
  }

  #write(batch: Waiting<Item, Result>[]): void {
    const keys = batch.flatMap((waiting) => (waiting.key === undefined ? [] : [waiting.key]));
    for (const key of keys) this.#heldKeys.add(key);
    this.#countFreeQueued();
    const writing: Promise<void> = this.#options
      .execute(batch.map((waiting) => waiting.item))
      .then(
        (results) => batch.forEach((waiting, index) => waiting.resolve(results[index]!)),
        (error: unknown) => batch.forEach((waiting) => waiting.reject(error)),
      )
      .finally(() => {
        for (const key of keys) this.#heldKeys.delete(key);
        this.#countFreeQueued();
        this.#inFlight.delete(writing);
        this.#wake?.();
      });
    this.#inFlight.add(writing);
  }

  /** Once per batch started or ended: which keys are held changed. */
  #countFreeQueued(): void {
    this.#freeQueued = this.#queue.reduce((count, waiting) => (waiting.key === undefined || !this.#heldKeys.has(waiting.key) ? count + 1 : count), 0);
  }

  #nextEvent(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = () => {
        this.#wake = undefined;
        resolve();
      };
    });
  }
}
