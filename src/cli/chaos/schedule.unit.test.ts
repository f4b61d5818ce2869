// Goal: the chaos run's fault schedule is a pure function of its seed — the same seed replays the same faults — and every profile injects every kind the run supports, at least as often as the issue asks, inside the run and on targets that exist.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { countByKind, FAILPOINT_LEAD_MS, failpointsFor, LONG_FAULTS_PER_KIND, planFaults, type ProcessRole, processSpan, supportedKinds } from './schedule.ts';

const processes: ProcessRole[] = [
  { name: 'ledger+bus', producer: false, subscriptions: [] },
  { name: 'visa', producer: 'steady', subscriptions: [] },
  { name: 'accounts', producer: 'sparse', subscriptions: [] },
  { name: 'points', producer: false, subscriptions: ['points-payments', 'points-accounts'] },
  { name: 'notifications', producer: false, subscriptions: ['notifications-payments'] },
];
const options = { seed: 7, durationMs: 60_000, profile: 'short' as const, bus: 'nats' as const, ownPostgres: true, processes };

describe('planFaults', () => {
  test('the same seed gives the same schedule; another seed another', () => {
    assert.deepEqual(planFaults(options), planFaults(options));
    assert.notDeepEqual(planFaults(options), planFaults({ ...options, seed: 8 }));
  });

  test('short: every supported kind at least once, in time order, inside the run, on existing targets', () => {
    for (let seed = 0; seed < 50; seed += 1) {
      const faults = planFaults({ ...options, seed });
      const counts = countByKind(faults);
      for (const kind of supportedKinds(options)) assert.ok(counts[kind] >= 1, `${kind} in seed ${seed}`);
      assert.deepEqual(faults.map((fault) => fault.at_ms), faults.map((fault) => fault.at_ms).sort((a, b) => a - b));
      for (const fault of faults) {
        assert.ok(fault.at_ms > 0 && fault.at_ms + fault.window_ms + FAILPOINT_LEAD_MS < options.durationMs, JSON.stringify(fault));
        if (fault.kind === 'relay_crash') assert.equal(fault.target, 'visa', 'a relay crash goes to a producer card traffic keeps busy');
        if (fault.kind === 'consumer_crash' || fault.kind === 'poison_window') assert.ok(['points', 'notifications'].includes(fault.target));
        if (fault.kind === 'poison_window') assert.ok(processes.find((role) => role.name === fault.target)!.subscriptions.includes(fault.scope!));
        if (fault.kind === 'clock_skew') assert.ok(Math.abs(fault.skew_ms!) >= 1 && Math.abs(fault.skew_ms!) <= 2_000);
      }
    }
  });

  test('no broker restart on the postgres bus, no PostgreSQL restart on a server the run does not own', () => {
    const counts = countByKind(planFaults({ ...options, bus: 'postgres', ownPostgres: false }));
    assert.equal(counts.broker_restart, 0);
    assert.equal(counts.postgres_restart, 0);
    assert.ok(counts.service_kill >= 1 && counts.client_timeout >= 1);
  });

  test(`long: at least ${LONG_FAULTS_PER_KIND} faults of every supported kind, and never two on one process at once (its window, then its way back)`, () => {
    // The run's own shape: two card routes publishing all along, two consumers.
    const run = [
      ...processes,
      { name: 'quicpay', producer: 'steady' as const, subscriptions: [] },
    ];
    for (let seed = 0; seed < 10; seed += 1) {
      const faults = planFaults({ ...options, seed, processes: run, profile: 'long', durationMs: 1_500_000 });
      const counts = countByKind(faults);
      for (const kind of supportedKinds(options)) assert.ok(counts[kind] >= LONG_FAULTS_PER_KIND, `seed ${seed}, ${kind}: ${counts[kind]}`);
      const spans = new Map<string, Array<readonly [number, number]>>();
      for (const fault of faults) {
        const span = processSpan(fault);
        if (span === undefined) continue;
        const taken = spans.get(fault.target) ?? [];
        const clash = taken.find(([from, until]) => span[0] < until && from < span[1]);
        assert.equal(clash, undefined, `seed ${seed}: ${JSON.stringify(fault)} overlaps ${JSON.stringify(clash)} on ${fault.target}`);
        spans.set(fault.target, [...taken, span]);
      }
    }
  });
});

describe('failpointsFor', () => {
  const start = 1_000_000;
  const faults = [
    { at_ms: 1_000, kind: 'poison_window' as const, target: 'points', window_ms: 2_000, failpoint: 'consumer.handle', scope: 'points-payments' },
    { at_ms: 2_000, kind: 'consumer_crash' as const, target: 'points', window_ms: 3_000, failpoint: 'consumer.after_handle' },
    { at_ms: 9_000, kind: 'consumer_crash' as const, target: 'points', window_ms: 3_000, failpoint: 'consumer.after_handle' },
    { at_ms: 3_000, kind: 'relay_crash' as const, target: 'visa', window_ms: 3_000, failpoint: 'outbox.after_publish' },
  ];

  test('a process spawned before its windows gets every window to come, one entry each', () => {
    assert.equal(
      failpointsFor(faults, 'points', start, start),
      `consumer.handle@points-payments=throw;from=${start + 1_000 + FAILPOINT_LEAD_MS};until=${start + 3_000 + FAILPOINT_LEAD_MS},` +
        `consumer.after_handle=crash;from=${start + 2_000 + FAILPOINT_LEAD_MS};until=${start + 5_000 + FAILPOINT_LEAD_MS},` +
        `consumer.after_handle=crash;from=${start + 9_000 + FAILPOINT_LEAD_MS};until=${start + 12_000 + FAILPOINT_LEAD_MS}`,
    );
    assert.equal(failpointsFor(faults, 'ledger+bus', start, start), undefined);
  });

  test('respawned inside a crash window (it fired), that window is left out and the next one given; a poison window still open is kept', () => {
    const now = start + 2_500 + FAILPOINT_LEAD_MS;
    assert.equal(
      failpointsFor(faults, 'points', start, now),
      `consumer.handle@points-payments=throw;from=${start + 1_000 + FAILPOINT_LEAD_MS};until=${start + 3_000 + FAILPOINT_LEAD_MS},consumer.after_handle=crash;from=${start + 9_000 + FAILPOINT_LEAD_MS};until=${start + 12_000 + FAILPOINT_LEAD_MS}`,
    );
    assert.equal(failpointsFor(faults, 'points', start, start + 20_000), undefined);
  });
});
