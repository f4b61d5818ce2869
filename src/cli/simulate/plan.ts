// What `npm run simulate` sends, decided up front from a seed: users with
// varying balances and, per user, a sequence of card payments on both routes
// (captures partial, multiple and over, reversals, expiries, refunds, stand-in
// advices, declines), shopping rewards, referrals and late-created accounts.
// Pure: the same seed gives the same plan, and each step carries the answer
// the network must get — the plan keeps a model of the user's cash as it
// goes, so a decline is predicted, not guessed after the fact.
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { Merchant, PaymentRoute } from '../../contracts/events/payments.ts';

/** Merchants the traffic spreads over: supermarket, fast food, restaurant, fuel, transit, misc. */
export const SIMULATED_MERCHANTS: readonly Merchant[] = [
  { id: 'super-1', name: 'Super Aoba', category_code: '5411' },
  { id: 'burger-2', name: 'Burger Nishi', category_code: '5814' },
  { id: 'izakaya-3', name: 'Izakaya Kita', category_code: '5812' },
  { id: 'fuel-4', name: 'Fuel Minami', category_code: '5541' },
  { id: 'rail-5', name: 'Rail Card', category_code: '4111' },
  { id: 'misc-6', name: 'Zakka Higashi', category_code: '5999' },
];

/** The welcome cash an account gets (the points service's default): part of each user's funds in the model. */
export const WELCOME_CASH_DEFAULT = 500;

export type Expected = 'approved' | 'declined' | 'ok';

export type Step = Readonly<
  | { kind: 'authorize'; route: PaymentRoute; payment: string; id: string; amount: number; merchant: Merchant; advice: boolean; incremental_of?: string; expect: 'approved' | 'declined' }
  | { kind: 'capture'; route: PaymentRoute; payment: string; id: string; authorization_id: string; amount: number; merchant: Merchant; final: boolean; expect: 'ok' }
  | { kind: 'reverse'; route: PaymentRoute; payment: string; id: string; authorization_id: string; amount: number; merchant: Merchant; expect: 'ok' }
  | { kind: 'refund'; route: PaymentRoute; payment: string; id: string; authorization_id: string; sales_draft_id: string; amount: number; merchant: Merchant; expect: 'ok' }
  | { kind: 'reward'; id: string; purchase_id: string; points: number; duplicate: boolean; expect: 'ok' }
  | { kind: 'referral'; id: string; referral_id: string; referrer_id: string; referee_id: string; expect: 'ok' }
>;

/** What became of a payment in the model, for the end-state check. */
export type PaymentOutcome = {
  payment_id: string;
  route: PaymentRoute;
  user_id: string;
  merchant: Merchant;
  declined: boolean;
  authorized_total: number;
  captured_total: number;
  refunded_total: number;
  /** Held when traffic stops; released by expiry before the check. */
  held: number;
  expires: boolean;
};

export type UserPlan = {
  user_id: string;
  /** Cash topped up before any payment. */
  topup: number;
  /** Created through `POST /v1/users` (its welcome cash awaited) before its payments: every user is. */
  steps: Step[];
  /** Cash the user ends with in the model (expired holds released). */
  cash_end: number;
};

export type Plan = { seed: number; users: UserPlan[]; payments: PaymentOutcome[]; rewards: Array<{ user_id: string; purchase_id: string; points: number }>; referrals: Array<{ referral_id: string; referrer_id: string; referee_id: string }>; expiries: number };

export type PlanOptions = { seed: number; payments: number; users: number; expiries: boolean; welcomeCash: number };

type Rng = ReturnType<typeof xoroshiro128plus>;

const between = (rng: Rng, from: number, to: number): number => uniformInt(rng, from, to);
const pick = <T>(rng: Rng, items: readonly T[]): T => items[between(rng, 0, items.length - 1)]!;
const chance = (rng: Rng, percent: number): boolean => between(rng, 1, 100) <= percent;

/** Scenario weights in percent (they sum to 100). */
const SCENARIOS = [
  ['capture', 34],
  ['partial_capture', 10],
  ['multi_capture', 8],
  ['over_capture', 5],
  ['reversal', 9],
  ['partial_reversal', 5],
  ['refund', 8],
  ['partial_refunds', 5],
  ['incremental', 5],
  ['advice', 3],
  ['too_large', 8],
] as const;
type Scenario = (typeof SCENARIOS)[number][0] | 'expiry';
/** Share of users whose last payment is left to expire, in percent (when the run can wait for holds to lapse). */
const EXPIRY_PERCENT_OF_LAST = 40;

export function planSimulation(options: PlanOptions): Plan {
  const rng = xoroshiro128plus(options.seed);
  const tag = `s${options.seed}`;
  const users: UserPlan[] = Array.from({ length: options.users }, (_, index) => ({
    user_id: `sim-${tag}-u${index}`,
    // A few users run short and see declines; most have room.
    topup: chance(rng, 8) ? between(rng, 0, 3_000) : between(rng, 20_000, 300_000),
    steps: [],
    cash_end: 0,
  }));
  const payments: PaymentOutcome[] = [];
  const funds = new Map(users.map((user) => [user.user_id, user.topup + options.welcomeCash]));
  const perUser = new Map<string, PaymentOutcome[]>();
  let expiries = 0;
  for (let n = 0; n < options.payments; n += 1) {
    const user = users[n % users.length]!;
    const mine = perUser.get(user.user_id) ?? [];
    // Only a user's last payment may be left to expire: no later authorization of theirs depends on when its hold lapses.
    const last = n + users.length >= options.payments;
    const scenario: Scenario = options.expiries && last && chance(rng, EXPIRY_PERCENT_OF_LAST) ? 'expiry' : pickScenario(rng);
    const route: PaymentRoute = scenario === 'multi_capture' || scenario === 'incremental' || scenario === 'advice' || scenario === 'partial_refunds' || scenario === 'partial_reversal' ? 'visa' : pick(rng, ['visa', 'quicpay'] as const);
    const authId = `${tag}-a${n}`;
    const payment: PaymentOutcome = {
      payment_id: `${route}:${authId}`,
      route,
      user_id: user.user_id,
      merchant: pick(rng, SIMULATED_MERCHANTS),
      declined: false,
      authorized_total: 0,
      captured_total: 0,
      refunded_total: 0,
      held: 0,
      expires: false,
    };
    payments.push(payment);
    mine.push(payment);
    perUser.set(user.user_id, mine);
    const available = () => funds.get(user.user_id)! - heldBy(mine) - spentBy(mine);
    const amount = scenario === 'too_large' ? Math.max(0, available()) + between(rng, 1, 5_000) : between(rng, 100, 12_000);
    const advice = scenario === 'advice';
    const approved = advice || amount <= available();
    const common = { route, payment: payment.payment_id } as const;
    user.steps.push({ kind: 'authorize', ...common, id: authId, amount, merchant: payment.merchant, advice, expect: approved ? 'approved' : 'declined' });
    if (!approved) {
      payment.declined = true;
      continue;
    }
    payment.authorized_total = amount;
    payment.held = amount;
    const capture = (id: string, value: number, final: boolean) => {
      user.steps.push({ kind: 'capture', ...common, id, authorization_id: authId, amount: value, merchant: payment.merchant, final, expect: 'ok' });
      payment.captured_total += value;
      payment.held = final ? 0 : Math.max(0, payment.held - value);
    };
    const refund = (id: string, value: number, salesDraftId: string) => {
      user.steps.push({ kind: 'refund', ...common, id, authorization_id: authId, sales_draft_id: salesDraftId, amount: value, merchant: payment.merchant, expect: 'ok' });
      payment.refunded_total += value;
    };
    switch (scenario) {
      case 'capture':
      case 'advice':
      case 'too_large':
        capture(`${authId}-c1`, amount, true);
        break;
      case 'partial_capture':
        capture(`${authId}-c1`, between(rng, 1, amount), true);
        break;
      case 'multi_capture': {
        const first = between(rng, 1, Math.max(1, Math.floor(amount / 2)));
        capture(`${authId}-c1`, first, false);
        capture(`${authId}-c2`, between(rng, 1, amount - first), true);
        break;
      }
      case 'over_capture':
        capture(`${authId}-c1`, amount + between(rng, 1, Math.ceil(amount / 5)), true);
        break;
      case 'reversal':
        user.steps.push({ kind: 'reverse', ...common, id: `${authId}-r1`, authorization_id: authId, amount, merchant: payment.merchant, expect: 'ok' });
        payment.held = 0;
        break;
      case 'partial_reversal': {
        const released = between(rng, 1, amount - 1 || 1);
        user.steps.push({ kind: 'reverse', ...common, id: `${authId}-r1`, authorization_id: authId, amount: released, merchant: payment.merchant, expect: 'ok' });
        payment.held -= released;
        if (payment.held > 0) capture(`${authId}-c1`, payment.held, true);
        break;
      }
      case 'refund':
        capture(`${authId}-c1`, amount, true);
        refund(`${authId}-f1`, between(rng, 1, amount), `${authId}-c1`);
        break;
      case 'partial_refunds': {
        capture(`${authId}-c1`, amount, true);
        const first = between(rng, 1, Math.max(1, Math.floor(amount / 2)));
        refund(`${authId}-f1`, first, `${authId}-c1`);
        refund(`${authId}-f2`, amount - first, `${authId}-c1`);
        break;
      }
      case 'incremental': {
        const extra = between(rng, 100, 5_000);
        const raised = extra <= available();
        user.steps.push({ kind: 'authorize', ...common, id: `${authId}-i1`, amount: extra, merchant: payment.merchant, advice: false, incremental_of: authId, expect: raised ? 'approved' : 'declined' });
        if (raised) {
          payment.authorized_total += extra;
          payment.held += extra;
        }
        capture(`${authId}-c1`, payment.authorized_total, true);
        break;
      }
      case 'expiry':
        payment.expires = true;
        expiries += 1;
        break;
    }
  }
  const rewards: Plan['rewards'] = [];
  const referrals: Plan['referrals'] = [];
  users.forEach((user, index) => {
    if (chance(rng, 30)) {
      const purchase_id = `${tag}-p${index}`;
      const points = between(rng, 1, 1_000);
      rewards.push({ user_id: user.user_id, purchase_id, points });
      user.steps.push({ kind: 'reward', id: `reward.${purchase_id}`, purchase_id, points, duplicate: chance(rng, 30), expect: 'ok' });
    }
    if (chance(rng, 20) && users.length > 1) {
      const referee = chance(rng, 10) ? user : users[(index + between(rng, 1, users.length - 1)) % users.length]!;
      const referral_id = `${tag}-ref${index}`;
      referrals.push({ referral_id, referrer_id: user.user_id, referee_id: referee.user_id });
      user.steps.push({ kind: 'referral', id: `referral.${referral_id}`, referral_id, referrer_id: user.user_id, referee_id: referee.user_id, expect: 'ok' });
    }
    const mine = perUser.get(user.user_id) ?? [];
    user.cash_end = user.topup + options.welcomeCash - spentBy(mine);
  });
  return { seed: options.seed, users, payments, rewards, referrals, expiries };
}

function pickScenario(rng: Rng): Scenario {
  let roll = between(rng, 1, 100);
  for (const [scenario, weight] of SCENARIOS) {
    roll -= weight;
    if (roll <= 0) return scenario;
  }
  return 'capture';
}

/** Cash still held by a user's payments (the model's pending debit). */
function heldBy(payments: readonly PaymentOutcome[]): number {
  return payments.reduce((sum, payment) => sum + payment.held, 0);
}

/** Cash a user's payments took for good: captured minus refunded. */
function spentBy(payments: readonly PaymentOutcome[]): number {
  return payments.reduce((sum, payment) => sum + payment.captured_total - payment.refunded_total, 0);
}
