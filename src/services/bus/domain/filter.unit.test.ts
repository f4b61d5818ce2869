// Goal: filter policies match attributes with SNS's semantics, bad policies are refused, and retry delays grow with jitter.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { filterPolicyProblem, matchesFilter } from './filter.ts';
import { resolveTopology, retryDelayMs } from './topology.ts';

describe('filter policies', () => {
  const visa = { type: 'koban.payment.authorized', network: 'visa' };

  test('no policy matches everything', () => {
    assert.equal(matchesFilter(null, visa), true);
    assert.equal(matchesFilter(undefined, {}), true);
  });

  test('exact and prefix conditions; conditions under one key are ORed', () => {
    assert.equal(matchesFilter({ network: ['visa'] }, visa), true);
    assert.equal(matchesFilter({ network: ['quicpay'] }, visa), false);
    assert.equal(matchesFilter({ network: ['quicpay', 'visa'] }, visa), true);
    assert.equal(matchesFilter({ type: [{ prefix: 'koban.payment.' }] }, visa), true);
    assert.equal(matchesFilter({ type: [{ prefix: 'koban.reward.' }] }, visa), false);
  });

  test('keys are ANDed', () => {
    assert.equal(matchesFilter({ network: ['visa'], type: [{ prefix: 'koban.payment.' }] }, visa), true);
    assert.equal(matchesFilter({ network: ['visa'], type: [{ prefix: 'koban.reward.' }] }, visa), false);
  });

  test('anything-but needs the attribute present', () => {
    assert.equal(matchesFilter({ network: [{ 'anything-but': 'jcb' }] }, visa), true);
    assert.equal(matchesFilter({ network: [{ 'anything-but': ['jcb', 'visa'] }] }, visa), false);
    assert.equal(matchesFilter({ network: [{ 'anything-but': { prefix: 'vi' } }] }, visa), false);
    assert.equal(matchesFilter({ campaign: [{ 'anything-but': 'x' }] }, visa), false);
  });

  test('exists true and false', () => {
    assert.equal(matchesFilter({ network: [{ exists: true }] }, visa), true);
    assert.equal(matchesFilter({ campaign: [{ exists: true }] }, visa), false);
    assert.equal(matchesFilter({ campaign: [{ exists: false }] }, visa), true);
    assert.equal(matchesFilter({ network: [{ exists: false }] }, visa), false);
  });

  test('inherited object keys are not attributes', () => {
    assert.equal(matchesFilter({ constructor: [{ exists: true }] }, visa), false);
  });

  test('malformed policies are described, valid ones are not', () => {
    assert.equal(filterPolicyProblem({ network: ['visa', { prefix: 'q' }, { 'anything-but': ['a'] }, { exists: false }] }), undefined);
    for (const bad of [[], null, 'visa', {}, { network: [] }, { network: 'visa' }, { network: [{ prefix: '' }] }, { network: [{ exists: 'yes' }] }, { network: [{ suffix: 'a' }] }, { network: [{ prefix: 'a', exists: true }] }, { network: [{ 'anything-but': [] }] }, { a: ['1'], b: ['1'], c: ['1'], d: ['1'], e: ['1'], f: ['1'] }, { network: [{ 'anything-but': Array.from({ length: 151 }, (_, index) => String(index)) }] }]) {
      assert.notEqual(filterPolicyProblem(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe('topology', () => {
  test('defaults are filled in and bad declarations throw', () => {
    const resolved = resolveTopology({ topics: ['payments'], subscriptions: [{ name: 'points', topic: 'payments' }] });
    assert.equal(resolved.subscriptions[0]?.maxDeliveries, 5);
    assert.equal(resolved.subscriptions[0]?.filter, null);
    assert.throws(() => resolveTopology({ topics: ['Payments'], subscriptions: [] }), /Topic name/);
    assert.throws(() => resolveTopology({ topics: ['payments'], subscriptions: [{ name: 'points', topic: 'rewards' }] }), /not declared/);
    assert.throws(() => resolveTopology({ topics: ['payments'], subscriptions: [{ name: 'p', topic: 'payments' }, { name: 'p', topic: 'payments' }] }), /twice/);
    assert.throws(() => resolveTopology({ topics: ['payments'], subscriptions: [{ name: 'p', topic: 'payments', maxDeliveries: 0 }] }), /maxDeliveries/);
    assert.throws(() => resolveTopology({ topics: ['payments'], subscriptions: [{ name: 'p', topic: 'payments', filter: { a: [] } }] }), /filter/);
  });

  test('retry delays double per attempt up to the cap, with half of each step random', () => {
    const spec = { retryBackoffInitialMs: 100, retryBackoffMaxMs: 1_000 };
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((attempt) => retryDelayMs(spec, attempt, () => 0)), [50, 100, 200, 400, 500, 500]);
    assert.deepEqual([1, 2, 3, 4, 5, 6].map((attempt) => retryDelayMs(spec, attempt, () => 0.999999)), [99, 199, 399, 799, 999, 999]);
    assert.equal(retryDelayMs(spec, 1_000, () => 0.5), 750, 'huge attempt counts do not overflow');
  });
});
