// Goal: failed deliveries back off exponentially with equal jitter (between half and all of the nominal delay, capped), and become dead letters exactly at the last allowed attempt, or at once when the failure is permanent.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideOutcome, type RetryPolicy, retryDelayMs } from './delivery.ts';

const POLICY: RetryPolicy = { attemptsMax: 5, retryInitialMs: 1_000, retryMaxMs: 10_000 };
const NOW = new Date('2026-01-01T00:00:00.000Z');

test('the schedule doubles per attempt from the initial delay, up to the cap', () => {
  const highest = [1, 2, 3, 4, 5, 6].map((attempt) => retryDelayMs(POLICY, attempt, () => 1));
  const lowest = [1, 2, 3, 4, 5, 6].map((attempt) => retryDelayMs(POLICY, attempt, () => 0));
  assert.deepEqual(highest, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
  assert.deepEqual(lowest, [500, 1_000, 2_000, 4_000, 5_000, 5_000]);
  assert.equal(retryDelayMs(POLICY, 3, () => 0.5), 3_000);
});

test('stays finite and at least 1 ms for any attempt', () => {
  assert.equal(retryDelayMs(POLICY, 10_000, () => 1), 10_000);
  assert.equal(retryDelayMs({ retryInitialMs: 1, retryMaxMs: 1 }, 1, () => 0), 1);
});

test('a success is delivered, on any attempt', () => {
  assert.deepEqual(decideOutcome(POLICY, 5, { ok: true }, NOW), { kind: 'delivered', at: NOW });
});

test('a failure retries at the backed-off time until the last attempt, which is dead', () => {
  for (let attempt = 1; attempt < POLICY.attemptsMax; attempt++) {
    const outcome = decideOutcome(POLICY, attempt, { ok: false, error: 'HTTP 503' }, NOW, () => 1);
    assert.deepEqual(outcome, { kind: 'retry', nextAttemptAt: new Date(NOW.getTime() + retryDelayMs(POLICY, attempt, () => 1)), error: 'HTTP 503' });
  }
  assert.deepEqual(decideOutcome(POLICY, 5, { ok: false, error: 'HTTP 503' }, NOW), { kind: 'dead', at: NOW, error: 'HTTP 503' });
  // An attempt past the last (a lapsed lease of the last one) is dead too.
  assert.equal(decideOutcome(POLICY, 6, { ok: false, error: 'timeout' }, NOW).kind, 'dead');
});

test('a permanent failure is dead at once, on any attempt, with its error', () => {
  const refused = { ok: false, error: 'the endpoint resolves to a private address (10.0.0.5)', permanent: true } as const;
  assert.deepEqual(decideOutcome(POLICY, 1, refused, NOW), { kind: 'dead', at: NOW, error: refused.error });
  assert.equal(decideOutcome(POLICY, 1, { ok: false, error: 'HTTP 503', permanent: false }, NOW).kind, 'retry');
});
