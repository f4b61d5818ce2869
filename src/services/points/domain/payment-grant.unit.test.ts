// Goal: the pure points lifecycle of a card payment — each step's exact ledger commands, the rule version pinned at authorization, and the same final grant and balance for every delivery order with duplicates (checked against simple arithmetic and an in-memory ledger).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import { parsePaymentEvent } from '../../../contracts/events/payments.ts';
import { deliveries, expectedPoints, paymentEvents, type Step, stepsArbitrary } from '../testing/payment-script.ts';
import { DEFAULT_EARNING_RULES } from './default-rules.ts';
import type { EarningRules, RuleVersion } from './earning-rules.ts';
import { ledgerIdBase } from './ledger-ids.ts';
import { decide, EMPTY_BOOK, evolve, initialSeen, jstMonth, type LedgerCommand, type PaymentRecord } from './payment-grant.ts';

const NOW = new Date('2026-04-10T00:00:00.000Z');
const START = '2026-04-01T03:00:00.000Z';
const NO_TOTALS = { month_points_others: 0, campaign_points_others: {} };

/** The service's loop without its database: fold, decide, keep the record; commands are collected. */
function run(events: readonly CloudEvent[], rules: EarningRules = DEFAULT_EARNING_RULES, start?: PaymentRecord) {
  let record: PaymentRecord | undefined = start;
  const commands: LedgerCommand[] = [];
  let grant = null as ReturnType<typeof decide>['grant'];
  for (const cloudEvent of events) {
    const event = parsePaymentEvent(cloudEvent);
    const current: PaymentRecord = record ?? { seen: initialSeen(event), book: EMPTY_BOOK };
    const seen = evolve(current.seen, event);
    if (record !== undefined && JSON.stringify(seen) === JSON.stringify(current.seen)) continue;
    const decision = decide({ seen, book: current.book }, { rules, now: NOW, expiryDays: 0, totals: NO_TOTALS });
    record = decision.record;
    commands.push(...decision.commands);
    grant = decision.grant ?? grant;
  }
  return { record: record!, commands, grant };
}

/** An in-memory points ledger: ids are idempotent (a repeat must carry the same content), holds open until voided. */
class LedgerModel {
  readonly #writes = new Map<string, string>();
  readonly #holds = new Map<string, { amount: number; open: boolean }>();
  available = 0;
  apply(command: LedgerCommand): void {
    if (command.kind === 'void') {
      const hold = this.#holds.get(command.transaction_id);
      assert.ok(hold, `void of an unknown hold ${command.transaction_id}`);
      hold.open = false;
      return;
    }
    const { request } = command;
    const content = JSON.stringify(request);
    const earlier = this.#writes.get(request.transaction_id);
    if (earlier !== undefined) {
      assert.equal(content, earlier, `${request.transaction_id} reused with other content`);
      return;
    }
    this.#writes.set(request.transaction_id, content);
    assert.ok(Number.isSafeInteger(request.amount) && request.amount > 0, `amount ${request.amount}`);
    if (request.pending === true) this.#holds.set(request.transaction_id, { amount: request.amount, open: true });
    else if (request.type === 'add') this.available += request.amount;
    else {
      assert.equal(request.force, true, 'a debit of points is forced');
      this.available -= request.amount;
    }
  }
  get pending(): number {
    return [...this.#holds.values()].filter((hold) => hold.open).reduce((sum, hold) => sum + hold.amount, 0);
  }
}

const facts = { payment_id: 'visa:a1', user_id: 'u1', start: START };
const base = 'points:visa:a1';

describe('each step of the lifecycle', () => {
  test('authorization: a pending add of 0.5 % of the amount, pinned to the version in force', () => {
    const { commands, grant, record } = run(paymentEvents(facts, [{ kind: 'authorize', amount: 12_345 }]));
    assert.equal(commands.length, 1);
    const [hold] = commands;
    assert.ok(hold?.kind === 'submit');
    assert.deepEqual(
      { id: hold.request.transaction_id, type: hold.request.type, pending: hold.request.pending, amount: hold.request.amount, balance_type: hold.request.balance_type },
      { id: `${base}:pending:1`, type: 'add', pending: true, amount: 61, balance_type: 'points' },
    );
    assert.deepEqual(grant, { points: 61, status: 'pending', clawed_back_points: 0, rule_version: 'default' });
    assert.equal(record.book.rule_version, 'default');
  });

  test('incremental authorization: the pending add is replaced by one for the new total', () => {
    const { commands } = run(paymentEvents(facts, [{ kind: 'authorize', amount: 10_000 }, { kind: 'increase', amount: 2_000 }]));
    assert.deepEqual(summarize(commands), [`submit ${base}:pending:1 add pending 50`, `void ${base}:pending:1`, `submit ${base}:pending:2 add pending 60`]);
  });

  test('capture: pending voided, the captured total confirmed (under-capture earns on what was captured)', () => {
    const { commands, grant } = run(paymentEvents(facts, [{ kind: 'authorize', amount: 10_000 }, { kind: 'capture', amount: 8_000, final: true }]));
    assert.deepEqual(summarize(commands), [`submit ${base}:pending:1 add pending 50`, `void ${base}:pending:1`, `submit ${base}:confirm:1 add 40`]);
    assert.deepEqual(grant, { points: 40, status: 'confirmed', clawed_back_points: 0, rule_version: 'default' });
  });

  test('multi-capture: each capture confirms the difference; the rest stays pending until the final one', () => {
    const { commands, grant } = run(
      paymentEvents(facts, [
        { kind: 'authorize', amount: 10_000 },
        { kind: 'capture', amount: 3_000, final: false },
        { kind: 'capture', amount: 9_000, final: true },
      ]),
    );
    assert.deepEqual(summarize(commands), [
      `submit ${base}:pending:1 add pending 50`,
      `void ${base}:pending:1`,
      `submit ${base}:pending:2 add pending 35`,
      `submit ${base}:confirm:1 add 15`,
      `void ${base}:pending:2`,
      `submit ${base}:confirm:2 add 45`,
    ]);
    assert.deepEqual(grant, { points: 60, status: 'confirmed', clawed_back_points: 0, rule_version: 'default' }, 'over-capture earns on the captured 12,000');
  });

  test('partial reversal lowers the pending grant; full reversal or expiry voids it', () => {
    const partial = run(paymentEvents(facts, [{ kind: 'authorize', amount: 10_000 }, { kind: 'reverse', amount: 4_000 }]));
    assert.deepEqual(summarize(partial.commands).slice(1), [`void ${base}:pending:1`, `submit ${base}:pending:2 add pending 30`]);
    const full = run(paymentEvents(facts, [{ kind: 'authorize', amount: 10_000 }, { kind: 'reverse', amount: 10_000 }]));
    assert.deepEqual(summarize(full.commands).slice(1), [`void ${base}:pending:1`]);
    assert.equal(full.grant?.status, 'voided');
    const expired = run(paymentEvents(facts, [{ kind: 'authorize', amount: 10_000 }, { kind: 'expire' }]));
    assert.deepEqual(summarize(expired.commands).slice(1), [`void ${base}:pending:1`]);
    assert.equal(expired.grant?.status, 'voided');
  });

  test('refunds claw back in proportion, as forced debits, floored so that all of them sum to the whole', () => {
    const steps: Step[] = [{ kind: 'authorize', amount: 10_001 }, { kind: 'capture', amount: 10_001, final: true }];
    const refunds: Step[] = [{ kind: 'refund', amount: 3_333 }, { kind: 'refund', amount: 3_333 }, { kind: 'refund', amount: 3_335 }];
    const { commands, grant } = run(paymentEvents(facts, [...steps, ...refunds]));
    // 50 confirmed; 50 × 3,333 / 10,001 = 16.66 → 16; then 33.32 → 33 (17 more); then all: 50 (17 more).
    assert.deepEqual(summarize(commands).slice(-3), [`submit ${base}:claw:1 consume forced 16`, `submit ${base}:claw:2 consume forced 17`, `submit ${base}:claw:3 consume forced 17`]);
    assert.deepEqual(grant, { points: 50, status: 'clawed_back', clawed_back_points: 50, rule_version: 'default' });
  });

  test('a capture before its authorization waits for it; a capture with none at all (forced) is its own anchor', () => {
    const events = paymentEvents(facts, [{ kind: 'authorize', amount: 10_000 }, { kind: 'capture', amount: 10_000, final: true }]);
    const early = run([events[1]!]);
    assert.deepEqual(early.commands, [], 'nothing is granted before the authorization says which rules apply');
    assert.equal(early.grant, null);
    assert.deepEqual(summarize(run([events[0]!], DEFAULT_EARNING_RULES, early.record).commands), [`submit ${base}:confirm:1 add 50`]);
    const forced = run(paymentEvents(facts, [{ kind: 'capture', amount: 4_000, final: true }]));
    assert.deepEqual(summarize(forced.commands), [`submit ${base}:confirm:1 add 20`]);
  });

  test('a declined payment and a redelivered event issue nothing', () => {
    const events = paymentEvents(facts, [{ kind: 'authorize', amount: 10_000 }]);
    const once = run(events);
    assert.deepEqual(run([events[0]!, events[0]!]).commands, once.commands);
  });

  test('confirmed points expire after POINTS_EXPIRY_DAYS: the confirming add carries expires_at', () => {
    const events = paymentEvents(facts, [{ kind: 'capture', amount: 4_000, final: true }]);
    const event = parsePaymentEvent(events[0]!);
    const decision = decide({ seen: evolve(initialSeen(event), event), book: EMPTY_BOOK }, { rules: DEFAULT_EARNING_RULES, now: NOW, expiryDays: 365, totals: NO_TOTALS });
    const [confirm] = decision.commands;
    assert.ok(confirm?.kind === 'submit');
    assert.equal(confirm.request.expires_at, '2027-04-10T00:00:00.000Z');
  });
});

describe('rule versions', () => {
  const v1: RuleVersion = { ...DEFAULT_EARNING_RULES.versions[0]!, version: 'v1', effective_from_ms: 0 };
  const v2: RuleVersion = { ...v1, version: 'v2', base_rate_bp: 200, effective_from_ms: Date.parse('2026-03-01T00:00:00Z') };
  const authorize = paymentEvents(facts, [{ kind: 'authorize', amount: 10_000 }, { kind: 'capture', amount: 10_000, final: true }]);

  test('a version added later, in force before the capture and even before the authorization, does not change a grant pinned to v1', () => {
    const authorized = run([authorize[0]!], { versions: [v1] });
    assert.equal(authorized.record.book.rule_version, 'v1');
    const captured = run([authorize[1]!], { versions: [v1, v2] }, authorized.record);
    assert.deepEqual(summarize(captured.commands), [`void ${base}:pending:1`, `submit ${base}:confirm:1 add 50`], 'recomputed at 0.5 %, not v2’s 2 %');
    assert.equal(captured.grant?.rule_version, 'v1');
  });

  test('a payment authorized under v2 earns under v2', () => {
    assert.deepEqual(summarize(run(authorize, { versions: [v1, v2] }).commands).at(-1), `submit ${base}:confirm:1 add 200`);
  });
});

describe('caps and months', () => {
  test('the monthly cap applies once to captured plus held, from the totals of other payments', () => {
    const capped: EarningRules = { versions: [{ ...DEFAULT_EARNING_RULES.versions[0]!, monthly_cap_points: 100 }] };
    const events = paymentEvents(facts, [{ kind: 'authorize', amount: 100_000 }]);
    const event = parsePaymentEvent(events[0]!);
    const decision = decide({ seen: evolve(initialSeen(event), event), book: EMPTY_BOOK }, { rules: capped, now: NOW, expiryDays: 0, totals: { month_points_others: 70, campaign_points_others: {} } });
    assert.deepEqual(summarize(decision.commands), [`submit ${base}:pending:1 add pending 30`]);
    assert.deepEqual(decision.record.book.counted, { month: '2026-04', points: 30, campaigns: {} });
  });

  test('months are counted in JST', () => {
    assert.equal(jstMonth('2026-03-31T14:59:59.999Z'), '2026-03');
    assert.equal(jstMonth('2026-03-31T15:00:00.000Z'), '2026-04');
  });
});

test('ledger ids that would not fit the ledger are replaced by a digest, the same every time', () => {
  assert.equal(ledgerIdBase('points:visa:a1'), 'points:visa:a1');
  const long = ledgerIdBase(`points:visa:${'x'.repeat(200)}`);
  assert.match(long, /^points:h\.[0-9a-f]{40}$/);
  assert.equal(ledgerIdBase(`points:visa:${'x'.repeat(200)}`), long);
  assert.match(ledgerIdBase('points:visa:a b/é'), /^points:h\.[0-9a-f]{40}$/);
});

test('property: any delivery order, with duplicates, ends in the grant and balance simple arithmetic predicts, every id used with one content', () => {
  fc.assert(
    fc.property(
      stepsArbitrary.chain((steps) => {
        const events = paymentEvents(facts, steps);
        return fc.tuple(fc.constant(events), deliveries(events));
      }),
      ([events, order]) => {
        const expected = expectedPoints(events);
        const { commands, grant } = run(order);
        const ledger = new LedgerModel();
        for (const command of commands) ledger.apply(command);
        assert.equal(ledger.available, expected.available, 'available');
        assert.equal(ledger.pending, expected.pending, 'pending');
        assert.equal(grant?.status ?? null, expected.status, 'status');
        assert.equal(grant?.clawed_back_points ?? 0, expected.clawed, 'clawed back');
        // The same events in production order decide the same grant.
        assert.deepEqual(run(events).grant, grant);
      },
    ),
    { numRuns: 500 },
  );
});

function summarize(commands: readonly LedgerCommand[]): string[] {
  return commands.map((command) =>
    command.kind === 'void'
      ? `void ${command.transaction_id}`
      : `submit ${command.request.transaction_id} ${command.request.type}${command.request.pending ? ' pending' : ''}${command.request.force ? ' forced' : ''} ${command.request.amount}`,
  );
}
