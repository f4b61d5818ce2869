// Goal: readiness checks run at once and are bounded in time: one that hangs or fails is reported by name, in one bounded line, without holding up the others.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runReadinessChecks } from './health.ts';

describe('runReadinessChecks', () => {
  test('reports each check by name: ok, failed with its message, or not answering within the bound', async () => {
    let aborted = false;
    const started = performance.now();
    const results = await runReadinessChecks(
      [
        { name: 'ledger.database', check: async () => undefined },
        { name: 'bus.broker', check: async () => Promise.reject(new Error('connection refused\n  on a second line')) },
        {
          name: 'bus.database',
          check: (signal) =>
            new Promise<void>(() => {
              signal.addEventListener('abort', () => (aborted = true));
            }),
        },
      ],
      50,
    );
    assert.deepEqual(results, {
      'ledger.database': { status: 'ok' },
      'bus.broker': { status: 'failed', error: 'connection refused on a second line' },
      'bus.database': { status: 'failed', error: 'did not answer within 50 ms' },
    });
    assert.ok(performance.now() - started < 1_000, 'the hanging check did not hold the answer beyond its bound');
    assert.equal(aborted, true, 'the hanging check was told to give up');
  });

  test('a long failure message is cut to a bounded line', async () => {
    const results = await runReadinessChecks([{ name: 'x', check: async () => Promise.reject(new Error('y'.repeat(10_000))) }], 50);
    const result = results.x!;
    assert.equal(result.status, 'failed');
    assert.ok(result.status === 'failed' && result.error.length <= 200);
  });
});
