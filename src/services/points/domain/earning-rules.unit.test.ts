// Goal: the earning-rules engine is a pure, integer-exact function — base rate per route floored, category multipliers and exclusions, minimum amount, campaign windows with their per-user caps, the monthly cap — that picks the version in force at the authorization and keeps a pinned version's result whatever versions are appended later.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { PAYMENT_ROUTES } from '../../../contracts/events/payments.ts';
import { type Campaign, computePoints, type EarningInput, type EarningRules, isEarningRulesError, type RuleVersion } from './earning-rules.ts';
import { BASE_RATE_BP_MAX, CAMPAIGN_BONUS_POINTS_MAX, CAMPAIGN_RATE_BP_MAX, EARNING_AMOUNT_MAX, MULTIPLIER_PERCENT_MAX } from './limits.ts';

const JAN = Date.parse('2026-01-01T00:00:00Z');
const FEB = Date.parse('2026-02-01T00:00:00Z');
const MAR = Date.parse('2026-03-01T00:00:00Z');

function version(overrides: Partial<RuleVersion> = {}): RuleVersion {
  return {
    version: 'v1',
    effective_from_ms: JAN,
    base_rate_bp: 50,
    route_base_rate_bp: {},
    category_multipliers_percent: {},
    excluded_categories: [],
    minimum_amount: 0,
    monthly_cap_points: null,
    campaigns: [],
    ...overrides,
  };
}

function campaign(overrides: Partial<Campaign> = {}): Campaign {
  return { id: 'spring', starts_at_ms: FEB, ends_at_ms: MAR, rate_bp: 100, bonus_points: null, user_cap_points: null, routes: null, categories: null, minimum_amount: 0, ...overrides };
}

function payment(overrides: Partial<EarningInput> = {}): EarningInput {
  return { route: 'visa', amount: 12_345, mcc: '5411', occurred_at: '2026-02-10T12:00:00Z', month_points_earned: 0, ...overrides };
}

const rules = (...versions: RuleVersion[]): EarningRules => ({ versions });
const sum = (lines: readonly { points: number }[]) => lines.reduce((total, line) => total + line.points, 0);

describe('earning-rules.unit: base rate', () => {
  test('0.5 % of the amount, floored: 12,345 JPY earns 61 points', () => {
    const earning = computePoints(rules(version()), payment());
    assert.deepEqual(earning, { version: 'v1', points: 61, reason: null, breakdown: [{ rule: 'base', points: 61 }], campaign_points: {} });
  });

  test('a route with its own rate uses it; the others the default', () => {
    const set = rules(version({ route_base_rate_bp: { quicpay: 100 } }));
    assert.equal(computePoints(set, payment({ route: 'quicpay' })).points, 123);
    assert.equal(computePoints(set, payment({ route: 'visa' })).points, 61);
  });

  test('exact at the largest amount and rate (no float rounding): 10^15 − 1 at 1,000 bp × 1,000 %', () => {
    const set = rules(version({ base_rate_bp: BASE_RATE_BP_MAX, category_multipliers_percent: { '5411': MULTIPLIER_PERCENT_MAX } }));
    const earning = computePoints(set, payment({ amount: EARNING_AMOUNT_MAX - 1 }));
    assert.equal(earning.points, 999_999_999_999_999);
    assert.deepEqual(earning.breakdown, [
      { rule: 'base', points: 99_999_999_999_999 },
      { rule: 'multiplier', points: 900_000_000_000_000 },
    ]);
  });

  test('amount 0 earns 0; amounts below one point floor to 0', () => {
    assert.equal(computePoints(rules(version()), payment({ amount: 0 })).points, 0);
    assert.equal(computePoints(rules(version()), payment({ amount: 199 })).points, 0);
    assert.equal(computePoints(rules(version()), payment({ amount: 200 })).points, 1);
  });

  test('refuses an amount out of range or not an integer, and an occurred_at that is not an instant', () => {
    for (const amount of [-1, 1.5, EARNING_AMOUNT_MAX + 1, Number.NaN]) assert.throws(() => computePoints(rules(version()), payment({ amount })), RangeError);
    assert.throws(() => computePoints(rules(version()), payment({ month_points_earned: -1 })), RangeError);
    assert.throws(() => computePoints(rules(version()), payment({ campaign_points_earned: { spring: 0.5 } })), RangeError);
    assert.throws(() => computePoints(rules(version()), payment({ occurred_at: 'yesterday' })), RangeError);
  });
});

describe('earning-rules.unit: categories and minimum', () => {
  test('a multiplier scales the base, floored once on the product', () => {
    const earning = computePoints(rules(version({ category_multipliers_percent: { '5411': 150 } })), payment());
    // 12,345 × 0.5 % × 150 % = 92.59 → 92 (flooring the base first would give 91).
    assert.equal(earning.points, 92);
    assert.deepEqual(earning.breakdown, [
      { rule: 'base', points: 61 },
      { rule: 'multiplier', points: 31 },
    ]);
  });

  test('a multiplier below 100 % is a negative line; other categories are untouched', () => {
    const set = rules(version({ category_multipliers_percent: { '4900': 50 } }));
    assert.deepEqual(computePoints(set, payment({ mcc: '4900' })).breakdown, [
      { rule: 'base', points: 61 },
      { rule: 'multiplier', points: -31 },
    ]);
    assert.equal(computePoints(set, payment({ mcc: '5411' })).points, 61);
  });

  test('an excluded category earns 0 with the reason, campaigns included', () => {
    const set = rules(version({ excluded_categories: ['6011'], campaigns: [campaign({ rate_bp: null, bonus_points: 500 })] }));
    assert.deepEqual(computePoints(set, payment({ mcc: '6011' })), { version: 'v1', points: 0, reason: 'excluded_category', breakdown: [], campaign_points: {} });
  });

  test('below the minimum amount earns 0 with the reason; at it, the usual points', () => {
    const set = rules(version({ minimum_amount: 1_000 }));
    assert.deepEqual(computePoints(set, payment({ amount: 999 })), { version: 'v1', points: 0, reason: 'below_minimum_amount', breakdown: [], campaign_points: {} });
    assert.equal(computePoints(set, payment({ amount: 1_000 })).points, 5);
  });
});

describe('earning-rules.unit: campaigns', () => {
  test('a rate campaign adds its rate inside its window only (start included, end excluded)', () => {
    const set = rules(version({ campaigns: [campaign()] }));
    assert.equal(computePoints(set, payment({ occurred_at: '2026-01-31T23:59:59.999Z' })).points, 61);
    const inside = computePoints(set, payment({ occurred_at: '2026-02-01T00:00:00Z' }));
    assert.equal(inside.points, 61 + 123);
    assert.deepEqual(inside.campaign_points, { spring: 123 });
    assert.equal(computePoints(set, payment({ occurred_at: '2026-03-01T00:00:00Z' })).points, 61);
  });

  test('a fixed bonus, limited to routes, categories and a minimum amount', () => {
    const bonus = campaign({ rate_bp: null, bonus_points: 300, routes: ['quicpay'], categories: ['5812'], minimum_amount: 2_000 });
    const set = rules(version({ campaigns: [bonus] }));
    const qualifying = payment({ route: 'quicpay', mcc: '5812', amount: 2_000 });
    assert.equal(computePoints(set, qualifying).points, 10 + 300);
    assert.equal(computePoints(set, { ...qualifying, route: 'visa' }).points, 10);
    assert.equal(computePoints(set, { ...qualifying, mcc: '5411' }).points, 10);
    assert.equal(computePoints(set, { ...qualifying, amount: 1_999 }).points, 9);
  });

  test('the per-user campaign cap counts what the user already earned from it', () => {
    const set = rules(version({ campaigns: [campaign({ user_cap_points: 150 })] }));
    const first = computePoints(set, payment({ campaign_points_earned: { spring: 100 } }));
    assert.equal(first.points, 61 + 50);
    assert.deepEqual(first.breakdown, [
      { rule: 'base', points: 61 },
      { rule: 'campaign:spring', points: 123 },
      { rule: 'campaign_cap:spring', points: -73 },
    ]);
    assert.deepEqual(first.campaign_points, { spring: 50 });
    const spent = computePoints(set, payment({ campaign_points_earned: { spring: 200, other: 5 } }));
    assert.equal(spent.points, 61);
    assert.deepEqual(spent.campaign_points, { spring: 0 });
  });
});

describe('earning-rules.unit: monthly cap', () => {
  test('caps the total at what is left of the month, never below 0', () => {
    const set = rules(version({ monthly_cap_points: 1_000, campaigns: [campaign()] }));
    assert.equal(computePoints(set, payment({ month_points_earned: 0 })).points, 184);
    const capped = computePoints(set, payment({ month_points_earned: 900 }));
    assert.equal(capped.points, 100);
    assert.deepEqual(capped.breakdown.at(-1), { rule: 'monthly_cap', points: -84 });
    assert.equal(computePoints(set, payment({ month_points_earned: 5_000 })).points, 0);
  });
});

describe('earning-rules.unit: versions', () => {
  const v1 = version({ version: 'v1', effective_from_ms: JAN });
  const v2 = version({ version: 'v2', effective_from_ms: FEB, base_rate_bp: 100 });

  test('picks the version in force at occurred_at; the grant records it', () => {
    assert.deepEqual(
      [computePoints(rules(v1, v2), payment({ occurred_at: '2026-01-31T23:59:59Z' })), computePoints(rules(v1, v2), payment({ occurred_at: '2026-02-01T00:00:00Z' }))].map((e) => [e.version, e.points]),
      [
        ['v1', 61],
        ['v2', 123],
      ],
    );
  });

  test('a recomputation with the recorded version uses it, though a newer one is in force', () => {
    const atCapture = computePoints(rules(v1, v2), payment({ version: 'v1', amount: 10_000, occurred_at: '2026-02-10T00:00:00Z' }));
    assert.deepEqual([atCapture.version, atCapture.points], ['v1', 50]);
  });

  test('no version in force, or an unknown one, is an error, not zero points', () => {
    assert.throws(() => computePoints(rules(v2), payment({ occurred_at: '2026-01-15T00:00:00Z' })), (error) => isEarningRulesError(error, 'no_version_in_force'));
    assert.throws(() => computePoints(rules(v1), payment({ version: 'v9' })), (error) => isEarningRulesError(error, 'unknown_version'));
  });
});

// Property tests: arbitrary rule versions within the limits.
const mccArb = fc.constantFrom('5411', '5812', '6011', '4900');
const campaignArb = (capped: boolean) =>
  fc.record({
    id: fc.constantFrom('a', 'b', 'c'),
    starts_at_ms: fc.constant(JAN),
    ends_at_ms: fc.constant(MAR),
    rate_bp: fc.option(fc.integer({ min: 0, max: CAMPAIGN_RATE_BP_MAX }), { nil: null }),
    bonus_points: fc.integer({ min: 0, max: CAMPAIGN_BONUS_POINTS_MAX }),
    user_cap_points: capped ? fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: null }) : fc.constant(null),
    routes: fc.option(fc.subarray([...PAYMENT_ROUTES]), { nil: null }),
    categories: fc.option(fc.subarray(['5411', '5812']), { nil: null }),
    minimum_amount: fc.integer({ min: 0, max: 10_000 }),
  }).map((c): Campaign => ({ ...c, bonus_points: c.rate_bp === null ? c.bonus_points : null }));
const versionArb = (capped: boolean, id = 'v1', effective_from_ms = JAN) =>
  fc.record({
    base_rate_bp: fc.integer({ min: 0, max: BASE_RATE_BP_MAX }),
    visa_bp: fc.option(fc.integer({ min: 0, max: BASE_RATE_BP_MAX }), { nil: undefined }),
    multiplier: fc.option(fc.integer({ min: 0, max: MULTIPLIER_PERCENT_MAX }), { nil: undefined }),
    excluded: fc.subarray(['6011', '4900']),
    minimum_amount: fc.integer({ min: 0, max: 10_000 }),
    monthly_cap_points: capped ? fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: null }) : fc.constant(null),
    campaigns: fc.uniqueArray(campaignArb(capped), { maxLength: 3, selector: (c) => c.id }),
  }).map(
    (v): RuleVersion =>
      version({
        version: id,
        effective_from_ms,
        base_rate_bp: v.base_rate_bp,
        route_base_rate_bp: v.visa_bp === undefined ? {} : { visa: v.visa_bp },
        category_multipliers_percent: v.multiplier === undefined ? {} : { '5411': v.multiplier },
        excluded_categories: v.excluded,
        minimum_amount: v.minimum_amount,
        monthly_cap_points: v.monthly_cap_points,
        campaigns: v.campaigns,
      }),
  );
const paymentArb = fc.record({
  route: fc.constantFrom(...PAYMENT_ROUTES),
  amount: fc.oneof(fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: EARNING_AMOUNT_MAX })),
  mcc: mccArb,
  occurred_at: fc.integer({ min: JAN, max: MAR + 86_400_000 }).map((ms) => new Date(ms).toISOString()),
  month_points_earned: fc.integer({ min: 0, max: 200_000 }),
  campaign_points_earned: fc.dictionary(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 0, max: 20_000 })),
});

describe('earning-rules.unit: properties', () => {
  test('without caps, points never go down as the amount goes up, and are never negative', () => {
    fc.assert(
      fc.property(versionArb(false), paymentArb, fc.integer({ min: 0, max: EARNING_AMOUNT_MAX }), (rule, input, other) => {
        const [low, high] = input.amount <= other ? [input.amount, other] : [other, input.amount];
        const lower = computePoints(rules(rule), { ...input, amount: low });
        const higher = computePoints(rules(rule), { ...input, amount: high });
        assert.ok(lower.points >= 0);
        assert.ok(lower.points <= higher.points, `${low} → ${lower.points}, ${high} → ${higher.points}`);
      }),
    );
  });

  test('with caps, never negative, never above what is left of the month or of a campaign; lines sum to the points', () => {
    fc.assert(
      fc.property(versionArb(true), paymentArb, (rule, input) => {
        const earning = computePoints(rules(rule), input);
        assert.ok(Number.isSafeInteger(earning.points) && earning.points >= 0);
        assert.equal(sum(earning.breakdown), earning.points);
        if (rule.monthly_cap_points !== null) assert.ok(earning.points <= Math.max(0, rule.monthly_cap_points - input.month_points_earned));
        for (const c of rule.campaigns) {
          const granted = earning.campaign_points[c.id] ?? 0;
          assert.ok(granted >= 0);
          if (c.user_cap_points !== null) assert.ok(granted <= Math.max(0, c.user_cap_points - (input.campaign_points_earned[c.id] ?? 0)));
        }
      }),
    );
  });

  test('appending newer versions never changes a pinned version\'s result, nor one computed before they take effect', () => {
    fc.assert(
      fc.property(versionArb(true), fc.array(fc.integer({ min: 1, max: 60 * 86_400_000 }), { minLength: 1, maxLength: 3 }), paymentArb, (first, gapsMs, input) => {
        const before = computePoints(rules(first), input);
        let from = first.effective_from_ms;
        const appended: RuleVersion[] = gapsMs.map((gap, i) => {
          from += gap;
          return version({ version: `v${i + 2}`, effective_from_ms: from, base_rate_bp: BASE_RATE_BP_MAX, monthly_cap_points: null });
        });
        const grown = rules(first, ...appended);
        assert.deepEqual(computePoints(grown, { ...input, version: first.version }), before);
        if (Date.parse(input.occurred_at) < appended[0]!.effective_from_ms) assert.deepEqual(computePoints(grown, input), before);
      }),
    );
  });
});
