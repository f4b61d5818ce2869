// Goal: the soak's growth rule passes series that level off (flat, noisy, warming up, pruned in a sawtooth)
// and fails series that keep rising, fast or slow.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GROWTH_POINTS_MIN, judgeGrowth, type GrowthPoint } from './growth.ts';

const POINTS = 60;
const STEP_MS = 10_000;

function series(value: (i: number) => number, count = POINTS): GrowthPoint[] {
  return Array.from({ length: count }, (_, i) => ({ at_ms: 1_000_000 + i * STEP_MS, value: value(i) }));
}

/** A fixed pseudo-random sequence in [-1, 1), so the noisy cases are the same on every run. */
function noise(seed: number): (i: number) => number {
  return (i) => {
    const x = Math.sin((i + 1) * 12.9898 + seed * 78.233) * 43_758.5453;
    return (x - Math.floor(x)) * 2 - 1;
  };
}

const MIB = 1024 * 1024;

test('flat: bounded', () => {
  assert.equal(judgeGrowth(series(() => 120 * MIB)).verdict, 'bounded');
});

test('noisy flat (±5 %): bounded, for several noise sequences', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const jitter = noise(seed);
    const verdict = judgeGrowth(series((i) => 120 * MIB * (1 + 0.05 * jitter(i))));
    assert.equal(verdict.verdict, 'bounded', `seed ${seed}: ${verdict.reason}`);
  }
});

test('warm-up then flat (caches filling, then a plateau): bounded', () => {
  const verdict = judgeGrowth(series((i) => 80 * MIB + 60 * MIB * (1 - Math.exp(-i / 6))));
  assert.equal(verdict.verdict, 'bounded', verdict.reason);
});

test('sawtooth (rows pile up, retention prunes them back): bounded', () => {
  const jitter = noise(9);
  const verdict = judgeGrowth(series((i) => 10 * MIB + 4 * MIB * ((i % 10) / 10) + 0.1 * MIB * jitter(i)));
  assert.equal(verdict.verdict, 'bounded', verdict.reason);
});

test('linear growth: unbounded', () => {
  const verdict = judgeGrowth(series((i) => 10 * MIB + i * 1 * MIB));
  assert.equal(verdict.verdict, 'unbounded', verdict.reason);
  assert.match(verdict.reason, /still rising/);
});

test('slow but steady growth (+10 % over the run, with noise): unbounded', () => {
  const jitter = noise(11);
  const verdict = judgeGrowth(series((i) => 200 * MIB * (1 + 0.1 * (i / POINTS)) + 0.2 * MIB * jitter(i)));
  assert.equal(verdict.verdict, 'unbounded', verdict.reason);
});

test('growth smaller than the floor passes; too few points is too short to say', () => {
  assert.equal(judgeGrowth(series((i) => 8192 + (i >= 30 ? 8192 : 0) + i * 10), { floor: 1 * MIB }).verdict, 'bounded');
  assert.equal(judgeGrowth(series((i) => i * MIB, GROWTH_POINTS_MIN - 1)).verdict, 'too_short');
});
