// The earning-rules engine: how many points a card payment earns, as a pure
// function of the rules and the payment (no clock, no database, no I/O).
//
// Rules come in versions, each in force from its `effective_from_ms`. A grant
// records the version it used, and a recomputation (at capture, with the
// captured amount) passes that version back, so a rule change never rewrites
// the points of an earlier authorization. Caps need running totals (what the
// user already earned this month, and per campaign): the caller passes them
// in, the engine only reads them.
//
// All arithmetic on amounts and rates is in BigInt, floored once per line:
// 10^15 yen × 1,000 bp × 1,000 % overflows a double, and floors must be exact
// (12,345 yen at 50 bp is 61 points, never 61.725 rounded either way).
import type { PaymentRoute } from '../../../contracts/events/payments.ts';
import { BASIS_POINTS_PER_UNIT, EARNING_AMOUNT_MAX, PERCENT_PER_UNIT } from './limits.ts';

export type Campaign = Readonly<{
  id: string;
  /** The window, as epoch milliseconds: from `starts_at_ms` (included) to `ends_at_ms` (excluded). */
  starts_at_ms: number;
  ends_at_ms: number;
  /** Extra points as a rate on the amount, in basis points; exactly one of `rate_bp` and `bonus_points` is set. */
  rate_bp: number | null;
  /** A fixed bonus per qualifying payment, in points. */
  bonus_points: number | null;
  /** The most one user earns from this campaign, in points; null: no cap. */
  user_cap_points: number | null;
  /** The routes it applies to; null: every route. */
  routes: readonly PaymentRoute[] | null;
  /** The merchant category codes it applies to; null: every category not excluded. */
  categories: readonly string[] | null;
  /** The smallest qualifying amount, in minor units (0: any). */
  minimum_amount: number;
}>;

export type RuleVersion = Readonly<{
  version: string;
  /** From when this version is in force, as epoch milliseconds; the next version's start ends it. */
  effective_from_ms: number;
  /** The base rate of a route without one of its own, in basis points (50 = 0.5 %). */
  base_rate_bp: number;
  /** Base rates per route, in basis points, overriding `base_rate_bp`. */
  route_base_rate_bp: Readonly<Partial<Record<PaymentRoute, number>>>;
  /** Multipliers of the base by merchant category code, in percent (200: twice the base points). */
  category_multipliers_percent: Readonly<Record<string, number>>;
  /** Merchant category codes that earn nothing at all (cash withdrawals, gambling...). */
  excluded_categories: readonly string[];
  /** A payment below this amount, in minor units, earns nothing. */
  minimum_amount: number;
  /** The most one user earns per calendar month, in points; null: no cap. */
  monthly_cap_points: number | null;
  campaigns: readonly Campaign[];
}>;

/** What the loader returns; versions in increasing `effective_from_ms`, ids unique. */
export type EarningRules = Readonly<{ versions: readonly RuleVersion[] }>;

export type EarningInput = Readonly<{
  route: PaymentRoute;
  /** The amount the points are computed on (authorized, or captured at recomputation), in minor units. */
  amount: number;
  /** The merchant's category code. */
  mcc: string;
  /** The authorization's instant (RFC 3339): picks the version and the campaigns; a recomputation passes the authorization's, not the capture's. */
  occurred_at: string;
  /** The version a grant recorded: a recomputation uses it even if a newer one is in force. */
  version?: string;
  /** Points this user already earned this calendar month, this payment excluded. */
  month_points_earned: number;
  /** Points this user already earned per campaign id, this payment excluded; absent: none. */
  campaign_points_earned?: Readonly<Record<string, number>>;
}>;

export type BreakdownRule = 'base' | 'multiplier' | 'monthly_cap' | `campaign:${string}` | `campaign_cap:${string}`;
/** One line of the computation; the lines sum to `points`. Caps are negative lines: what they took off. */
export type BreakdownLine = Readonly<{ rule: BreakdownRule; points: number }>;

/** Why a payment earned nothing before any rate was applied. */
export type NoPointsReason = 'excluded_category' | 'below_minimum_amount';

export type Earning = Readonly<{
  /** The version used: the grant records it. */
  version: string;
  points: number;
  reason: NoPointsReason | null;
  breakdown: readonly BreakdownLine[];
  /** Points granted per campaign (after its own cap, before the monthly cap): what the caller adds to its per-campaign totals. */
  campaign_points: Readonly<Record<string, number>>;
}>;

export type EarningRulesErrorCode = 'no_version_in_force' | 'unknown_version';

/** The rules cannot answer: no version was in force at `occurred_at`, or the version asked for is not in the rules. */
export class EarningRulesError extends Error {
  override name = 'EarningRulesError';
  readonly code: EarningRulesErrorCode;
  constructor(code: EarningRulesErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export function isEarningRulesError(error: unknown, code?: EarningRulesErrorCode): error is EarningRulesError {
  return error instanceof EarningRulesError && (code === undefined || error.code === code);
}

/** The version in force at `occurred_at_ms`: the one with the latest `effective_from_ms` not after it. */
export function versionInForce(rules: EarningRules, occurred_at_ms: number): RuleVersion {
  let found: RuleVersion | undefined;
  for (const candidate of rules.versions) {
    if (candidate.effective_from_ms <= occurred_at_ms && (found === undefined || candidate.effective_from_ms > found.effective_from_ms)) found = candidate;
  }
  if (found === undefined) throw new EarningRulesError('no_version_in_force', `no earning rule version is in force at ${new Date(occurred_at_ms).toISOString()}`);
  return found;
}

export function computePoints(rules: EarningRules, input: EarningInput): Earning {
  assertInput(input);
  const occurred_at_ms = Date.parse(input.occurred_at);
  const rule = input.version === undefined ? versionInForce(rules, occurred_at_ms) : versionById(rules, input.version);
  const none = (reason: NoPointsReason): Earning => ({ version: rule.version, points: 0, reason, breakdown: [], campaign_points: {} });
  if (rule.excluded_categories.includes(input.mcc)) return none('excluded_category');
  if (input.amount < rule.minimum_amount) return none('below_minimum_amount');

  const amount = BigInt(input.amount);
  const base_rate_bp = BigInt(rule.route_base_rate_bp[input.route] ?? rule.base_rate_bp);
  const base = floorDiv(amount * base_rate_bp, BigInt(BASIS_POINTS_PER_UNIT));
  const breakdown: BreakdownLine[] = [{ rule: 'base', points: base }];
  let subtotal = base;

  const multiplier_percent = rule.category_multipliers_percent[input.mcc];
  if (multiplier_percent !== undefined) {
    // Floored once on the product, not on the base: 12,345 yen at 50 bp × 150 % is 92, not 61 × 1.5 = 91.
    const multiplied = floorDiv(amount * base_rate_bp * BigInt(multiplier_percent), BigInt(BASIS_POINTS_PER_UNIT * PERCENT_PER_UNIT));
    breakdown.push({ rule: 'multiplier', points: multiplied - base });
    subtotal = multiplied;
  }

  const campaign_points: Record<string, number> = {};
  for (const campaign of rule.campaigns) {
    if (!campaignApplies(campaign, input, occurred_at_ms)) continue;
    const raw = campaign.rate_bp !== null ? floorDiv(amount * BigInt(campaign.rate_bp), BigInt(BASIS_POINTS_PER_UNIT)) : (campaign.bonus_points ?? 0);
    breakdown.push({ rule: `campaign:${campaign.id}`, points: raw });
    let granted = raw;
    if (campaign.user_cap_points !== null) {
      const room = Math.max(0, campaign.user_cap_points - (input.campaign_points_earned?.[campaign.id] ?? 0));
      if (raw > room) {
        breakdown.push({ rule: `campaign_cap:${campaign.id}`, points: room - raw });
        granted = room;
      }
    }
    campaign_points[campaign.id] = granted;
    subtotal += granted;
  }

  let points = subtotal;
  if (rule.monthly_cap_points !== null) {
    const room = Math.max(0, rule.monthly_cap_points - input.month_points_earned);
    if (subtotal > room) {
      breakdown.push({ rule: 'monthly_cap', points: room - subtotal });
      points = room;
    }
  }
  return { version: rule.version, points, reason: null, breakdown, campaign_points };
}

function versionById(rules: EarningRules, version: string): RuleVersion {
  const found = rules.versions.find((candidate) => candidate.version === version);
  // A grant names a version the rules no longer hold: versions are append-only, so this is a configuration error, never a reason to guess.
  if (found === undefined) throw new EarningRulesError('unknown_version', `earning rule version ${JSON.stringify(version)} is not in the rules`);
  return found;
}

function campaignApplies(campaign: Campaign, input: EarningInput, occurred_at_ms: number): boolean {
  return (
    occurred_at_ms >= campaign.starts_at_ms &&
    occurred_at_ms < campaign.ends_at_ms &&
    (campaign.routes === null || campaign.routes.includes(input.route)) &&
    (campaign.categories === null || campaign.categories.includes(input.mcc)) &&
    input.amount >= campaign.minimum_amount
  );
}

/** Floor of a non-negative quotient, back to a number: every limit keeps it a safe integer. */
function floorDiv(numerator: bigint, denominator: bigint): number {
  const quotient = Number(numerator / denominator);
  if (!Number.isSafeInteger(quotient)) throw new RangeError(`points ${quotient} out of range: the earning limits should prevent this`);
  return quotient;
}

// The caller validated the payment event already; a bad input here is a bug, so it throws rather than earns.
function assertInput(input: EarningInput): void {
  if (!Number.isSafeInteger(input.amount) || input.amount < 0 || input.amount > EARNING_AMOUNT_MAX) throw new RangeError(`amount must be an integer, 0–${EARNING_AMOUNT_MAX}: ${input.amount}`);
  if (!Number.isSafeInteger(input.month_points_earned) || input.month_points_earned < 0) throw new RangeError(`month_points_earned must be a non-negative integer: ${input.month_points_earned}`);
  for (const [id, earned] of Object.entries(input.campaign_points_earned ?? {})) {
    if (!Number.isSafeInteger(earned) || earned < 0) throw new RangeError(`campaign_points_earned.${id} must be a non-negative integer: ${earned}`);
  }
  if (!Number.isFinite(Date.parse(input.occurred_at))) throw new RangeError(`occurred_at is not an instant: ${input.occurred_at}`);
}

/**
 * Whether any version caps what a user earns (a monthly cap, or a campaign's
 * per-user cap): only then must a decision read the user's totals and hold
 * them locked while it decides. Without caps the totals are still kept, by
 * increments that need no lock.
 */
export function rulesHaveCaps(rules: EarningRules): boolean {
  return rules.versions.some((version) => version.monthly_cap_points !== null || version.campaigns.some((campaign) => campaign.user_cap_points !== null));
}
