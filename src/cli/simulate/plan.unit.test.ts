// Goal: a simulation plan is a pure function of its seed — exactly the payments asked for, every scenario the issue lists, and a cash model consistent with its predicted answers (the real system checks the predictions: simulate.e2e and whole-flow.e2e).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planSimulation, type Step } from './plan.ts';

const options = { seed: 42, payments: 2_000, users: 100, expiries: true, welcomeCash: 500 };

describe('planSimulation', () => {
  test('the same seed plans the same traffic; another seed other traffic', () => {
    assert.deepEqual(planSimulation(options), planSimulation(options));
    assert.notDeepEqual(planSimulation(options).users[0]!.steps, planSimulation({ ...options, seed: 43 }).users[0]!.steps);
  });

  test('exactly the payments asked for, over the users asked for, each user an expiring payment at most and only as its last', () => {
    const plan = planSimulation(options);
    assert.equal(plan.payments.length, options.payments);
    assert.equal(plan.users.length, options.users);
    for (const user of plan.users) {
      const mine = plan.payments.filter((payment) => payment.user_id === user.user_id);
      const expiring = mine.filter((payment) => payment.expires);
      assert.ok(expiring.length <= 1 && (expiring.length === 0 || mine.at(-1) === expiring[0]), user.user_id);
    }
    assert.ok(plan.expiries > 0);
    assert.equal(planSimulation({ ...options, expiries: false }).expiries, 0);
  });

  test('covers every kind of message: declines, advices, incrementals, partial/multi/over captures, reversals, refunds, both routes, rewards, referrals (a self-referral among them)', () => {
    const plan = planSimulation(options);
    const steps: Step[] = plan.users.flatMap((user) => user.steps);
    const has = (predicate: (step: Step) => boolean) => steps.some(predicate);
    assert.ok(has((step) => step.kind === 'authorize' && step.expect === 'declined'));
    assert.ok(has((step) => step.kind === 'authorize' && step.advice));
    assert.ok(has((step) => step.kind === 'authorize' && step.incremental_of !== undefined));
    assert.ok(has((step) => step.kind === 'capture' && !step.final));
    assert.ok(has((step) => step.kind === 'reverse') && has((step) => step.kind === 'refund'));
    assert.ok(has((step) => step.kind === 'authorize' && step.route === 'quicpay') && has((step) => step.kind === 'authorize' && step.route === 'visa'));
    assert.ok(plan.payments.some((payment) => payment.captured_total > payment.authorized_total), 'an over-capture');
    assert.ok(plan.rewards.length > 0 && plan.referrals.some((referral) => referral.referrer_id === referral.referee_id));
  });

  test('a declined payment moves no cash in the model; each user ends with its funds minus what its payments kept', () => {
    const plan = planSimulation(options);
    for (const user of plan.users) {
      const mine = plan.payments.filter((payment) => payment.user_id === user.user_id);
      const kept = mine.reduce((sum, payment) => sum + payment.captured_total - payment.refunded_total, 0);
      assert.equal(user.cash_end, user.topup + options.welcomeCash - kept);
      for (const payment of mine.filter((candidate) => candidate.declined)) assert.equal(payment.authorized_total + payment.captured_total, 0);
    }
  });
});
