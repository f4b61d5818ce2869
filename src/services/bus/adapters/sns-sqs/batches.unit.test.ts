// Goal: batches never exceed SNS's and SQS's 10 entries nor 256 KiB altogether, keep the order, and put an oversized message alone rather than drop it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AWS_BATCH_BYTES_MAX, batches, messageBytes } from './batches.ts';

test('by count: 25 small messages make batches of 10, 10 and 5, in order', () => {
  const items = Array.from({ length: 25 }, (_, index) => index);
  const runs = batches(items, () => 1);
  assert.deepEqual(runs.map((run) => run.length), [10, 10, 5]);
  assert.deepEqual(runs.flat(), items);
});

test('by bytes: ten 64 KiB events (the event limit) do not fit one 256 KiB batch; each batch stays within it', () => {
  const size = 64 * 1024;
  const runs = batches(Array.from({ length: 10 }, (_, index) => index), () => size);
  assert.deepEqual(runs.map((run) => run.length), [4, 4, 2]);
  for (const run of runs) assert.ok(run.length * size <= AWS_BATCH_BYTES_MAX);
});

test('a message larger than a whole batch goes alone, neither dropped nor joined', () => {
  const sizes = [10, AWS_BATCH_BYTES_MAX + 1, 10];
  assert.deepEqual(batches(sizes, (size) => size), [[10], [AWS_BATCH_BYTES_MAX + 1], [10]]);
  assert.deepEqual(batches([], () => 1), []);
});

test('a message counts its body and its attributes, in UTF-8 bytes', () => {
  assert.equal(messageBytes('é', {}), 2);
  assert.equal(messageBytes('{}', { type: { DataType: 'String', StringValue: 'a.b' } }), 2 + 4 + 6 + 3);
});
