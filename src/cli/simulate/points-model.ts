// What the points service must end with for a simulation plan, from the
// earning rules alone: one grant per payment that was not declined, confirmed
// at the rule's points for the captured total (voided when nothing was
// captured), clawed back in proportion to what was refunded; one grant per
// reward purchase; the referral bonus per referral that is not a self-referral.
import type { EarningRules } from '../../services/points/domain/earning-rules.ts';
import { computePoints } from '../../services/points/domain/earning-rules.ts';
import type { Plan } from './plan.ts';

export type ExpectedGrant = { points: number; status: 'pending' | 'confirmed' | 'voided' | 'clawed_back'; clawed_back_points: number };
export type PointsExpectation = { available: number; pending: number; grants: Map<string, ExpectedGrant> };

/** The rules must be free of caps and campaign windows over the run: then each payment's points depend on it alone. */
export type PointsModelOptions = { rules: EarningRules; referralBonusPoints: number; occurredAt: string };

export function expectedPoints(plan: Plan, options: PointsModelOptions): Map<string, PointsExpectation> {
  const byUser = new Map<string, PointsExpectation>();
  const of = (userId: string) => {
    let expectation = byUser.get(userId);
    if (expectation === undefined) {
      expectation = { available: 0, pending: 0, grants: new Map() };
      byUser.set(userId, expectation);
    }
    return expectation;
  };
  for (const payment of plan.payments) {
    if (payment.declined) continue;
    const user = of(payment.user_id);
    if (payment.captured_total === 0) {
      user.grants.set(`payment:${payment.payment_id}`, { points: 0, status: 'voided', clawed_back_points: 0 });
      continue;
    }
    const points = computePoints(options.rules, {
      route: payment.route,
      amount: payment.captured_total,
      mcc: payment.merchant.category_code,
      occurred_at: options.occurredAt,
      month_points_earned: 0,
    }).points;
    const clawed = payment.refunded_total === 0 ? 0 : Math.floor((points * payment.refunded_total) / payment.captured_total);
    const status = payment.refunded_total >= payment.captured_total ? 'clawed_back' : 'confirmed';
    user.grants.set(`payment:${payment.payment_id}`, { points, status, clawed_back_points: clawed });
    user.available += points - clawed;
  }
  for (const reward of plan.rewards) {
    of(reward.user_id).grants.set(`reward:${reward.purchase_id}`, { points: reward.points, status: 'confirmed', clawed_back_points: 0 });
    of(reward.user_id).available += reward.points;
  }
  for (const referral of plan.referrals) {
    if (referral.referrer_id === referral.referee_id) continue;
    of(referral.referrer_id).grants.set(`referral:${referral.referral_id}`, { points: options.referralBonusPoints, status: 'confirmed', clawed_back_points: 0 });
    of(referral.referrer_id).available += options.referralBonusPoints;
  }
  return byUser;
}
