// Goal: group commit batches what waits, never writes one key in two batches at once, keeps each key's order, and starts a batch beside another only when it is large enough.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GroupCommitQueue } from './group-commit.ts';

type Item = { id: string; key?: string };
/** A writer that never lets a waiting item go would hang the run: fail instead. */
const TEST_TIMEOUT_MS = 5_000;
const it = (name: string, fn: () => Promise<void> | void) => test(name, { timeout: TEST_TIMEOUT_MS }, fn);

/** A writer whose batches finish only when the test says so. */
function controlledWriter(options: { batchesInFlightMax?: number; parallelBatchSizeMin?: number; batchSizeMax?: number; queueDepthMax?: number } = {}) {
  const batches: Array<{ ids: string[]; finish: () => void; fail: (error: Error) => void }> = [];
  let waiters: Array<() => void> = [];
  const queue = new GroupCommitQueue<Item, string>({
    execute: (items) =>
      new Promise<string[]>((resolve, reject) => {
        batches.push({ ids: items.map((item) => item.id), finish: () => resolve(items.map((item) => `done ${item.id}`)), fail: reject });
        for (const wake of waiters) wake();
        waiters = [];
      }),
    batchSizeMax: options.batchSizeMax ?? 100,
    queueDepthMax: options.queueDepthMax ?? 100,
    onOverload: () => new Error('overloaded'),
    ...(options.batchesInFlightMax === undefined ? {} : { batchesInFlightMax: options.batchesInFlightMax }),
    ...(options.parallelBatchSizeMin === undefined ? {} : { parallelBatchSizeMin: options.parallelBatchSizeMin }),
  });
  /** Resolves once `count` batches have been started. */
  const started = async (count: number) => {
    while (batches.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  /** Lets every pending callback run (the dispatcher reacts on the next turns of the event loop). */
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
  const submit = (id: string, key?: string) => queue.submit({ id, ...(key === undefined ? {} : { key }) }, key);
  return { queue, batches, started, settle, submit };
}

describe('group commit', () => {
  it('items that arrive while a batch is written go together in the next one, each answered with its own result', async () => {
    const { batches, started, settle, submit } = controlledWriter();
    const first = submit('a');
    await started(1);
    const rest = ['b', 'c', 'd'].map((id) => submit(id));
    await settle();
    assert.equal(batches.length, 1, 'one batch in flight at a time by default');
    batches[0]!.finish();
    assert.equal(await first, 'done a');
    await started(2);
    assert.deepEqual(batches[1]!.ids, ['b', 'c', 'd']);
    batches[1]!.finish();
    assert.deepEqual(await Promise.all(rest), ['done b', 'done c', 'done d']);
  });

  it('a second batch starts beside the first only with enough items, and never with a key the first holds', async () => {
    const { batches, started, settle, submit } = controlledWriter({ batchesInFlightMax: 2, parallelBatchSizeMin: 3 });
    const answers = [submit('a1', 'A')];
    await started(1);
    answers.push(submit('a2', 'A'), submit('b1', 'B'), submit('c1', 'C'));
    await settle();
    assert.equal(batches.length, 1, 'two items free to go (b1, c1) are fewer than 3: they wait');
    answers.push(submit('d1', 'D'));
    await started(2);
    assert.deepEqual(batches[1]!.ids, ['b1', 'c1', 'd1'], 'a2 waits: A is held by the batch in flight');
    batches[1]!.finish();
    batches[0]!.finish();
    await started(3);
    assert.deepEqual(batches[2]!.ids, ['a2'], "A's second item goes once its first is written");
    batches[2]!.finish();
    assert.deepEqual(await Promise.all(answers), ['done a1', 'done a2', 'done b1', 'done c1', 'done d1']);
  });

  it('a key is never in two batches at once, and its items are written in the order submitted', async () => {
    const { batches, started, submit } = controlledWriter({ batchesInFlightMax: 4, parallelBatchSizeMin: 1, batchSizeMax: 2 });
    const answers = [submit('h1', 'hot')];
    await started(1);
    answers.push(submit('h2', 'hot'), submit('x1', 'X'), submit('h3', 'hot'), submit('y1', 'Y'));
    await started(2);
    assert.deepEqual(batches[1]!.ids, ['x1', 'y1'], 'other keys go beside it; the hot key waits');
    batches[0]!.finish();
    await started(3);
    assert.deepEqual(batches[2]!.ids, ['h2', 'h3'], 'then the hot key, in order');
    batches[1]!.finish();
    batches[2]!.finish();
    assert.equal((await Promise.all(answers)).length, 5);
  });

  it('at most batchesInFlightMax batches are written at once', async () => {
    const { batches, started, settle, submit } = controlledWriter({ batchesInFlightMax: 2, parallelBatchSizeMin: 1, batchSizeMax: 1 });
    const answers = ['p', 'q', 'r', 's'].map((id) => submit(id, id));
    await started(2);
    await settle();
    assert.equal(batches.length, 2);
    batches[0]!.finish();
    await started(3);
    await settle();
    assert.equal(batches.length, 3, 'a third starts only when one of the two ends');
    for (const batch of batches.slice(1)) batch.finish();
    await started(4);
    batches[3]!.finish();
    assert.deepEqual(await Promise.all(answers), ['done p', 'done q', 'done r', 'done s']);
  });

  it("a failed batch rejects its own callers only, and the writer goes on", async () => {
    const { batches, started, submit } = controlledWriter({ batchesInFlightMax: 2, parallelBatchSizeMin: 1 });
    const failing = submit('f', 'F');
    await started(1);
    const fine = submit('g', 'G');
    await started(2);
    batches[0]!.fail(new Error('disk on fire'));
    await assert.rejects(failing, /disk on fire/);
    batches[1]!.finish();
    assert.equal(await fine, 'done g');
    const after = submit('f2', 'F');
    await started(3);
    batches[2]!.finish();
    assert.equal(await after, 'done f2', 'the failed batch let go of its key');
  });

  it('a full queue refuses at once, and flush() waits for everything submitted', async () => {
    const { queue, batches, started, submit } = controlledWriter({ queueDepthMax: 2 });
    const first = submit('1');
    await started(1);
    const queued = [submit('2'), submit('3')];
    await assert.rejects(submit('4'), /overloaded/);
    let flushed = false;
    const flushing = queue.flush().then(() => (flushed = true));
    batches[0]!.finish();
    await started(2);
    assert.equal(flushed, false, 'the second batch is still being written');
    batches[1]!.finish();
    await flushing;
    assert.deepEqual(await Promise.all([first, ...queued]), ['done 1', 'done 2', 'done 3']);
  });

  it('settings that make no sense are refused', () => {
    const base = { execute: async () => [], batchSizeMax: 1, queueDepthMax: 1, onOverload: () => new Error('x') };
    assert.throws(() => new GroupCommitQueue({ ...base, batchesInFlightMax: 0 }), /batchesInFlightMax/);
    assert.throws(() => new GroupCommitQueue({ ...base, parallelBatchSizeMin: 1.5 }), /parallelBatchSizeMin/);
  });
});
