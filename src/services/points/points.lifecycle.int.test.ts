// Goal: card payment events move a user's points in the real ledger exactly — pending at authorization, raised, confirmed from the captured total, voided, clawed back in proportion as a forced debit that later grants repay — under any arrival order and redelivery, and a real Visa payment reaches the points service through the bus.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { CloudEvent } from '../../contracts/events/envelope.ts';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { PointsHarness } from './testing/harness.ts';
import { deliveries, expectedPoints, paymentEvents, type Step, stepsArbitrary } from './testing/payment-script.ts';

const START = '2026-04-01T03:00:00.000Z';
/** Random payments pushed through the real service in the property test: each is a handful of ledger writes, so a few keep the file fast. */
const PROPERTY_PAYMENTS = 12;
const EVENTUALLY_TIMEOUT_MS = 15_000;

let koban: TestKoban;
let h: PointsHarness;

before(async () => {
  koban = await startTestKoban({ label: 'points_lifecycle', env: { POINTS_RETRY_BACKOFF_INITIAL_MS: '10', KOBAN_SWEEP_INTERVAL_MS: '0' } });
  h = new PointsHarness(koban);
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

async function deliver(events: readonly CloudEvent[]): Promise<void> {
  for (const event of events) await h.publish('payments', event);
  await h.settle();
}

const payment = (name: string, steps: Step[]) => paymentEvents({ payment_id: `visa:${name}`, user_id: `u-${name}`, start: START }, steps);

async function grantOf(user: string) {
  const { data } = await h.grants(user);
  assert.equal(data.length, 1, JSON.stringify(data));
  const { points, status, clawed_back_points, rule_version } = data[0]!;
  return { points, status, clawed_back_points, rule_version };
}

describe('each step moves the points ledger exactly', () => {
  test('authorization: pending points; incremental authorization: raised', async () => {
    const events = payment('p1', [{ kind: 'authorize', amount: 12_345 }, { kind: 'increase', amount: 7_655 }]);
    await deliver([events[0]!]);
    assert.deepEqual(await h.balance('u-p1'), { available: 0, pending_credit: 61 });
    assert.deepEqual(await grantOf('u-p1'), { points: 61, status: 'pending', clawed_back_points: 0, rule_version: 'default' });
    await deliver([events[1]!]);
    assert.deepEqual(await h.balance('u-p1'), { available: 0, pending_credit: 100 });
    const transactions = await koban.ledger.getTransactions('points:visa:p1:pending:1');
    assert.equal(transactions[0]!.status, 'voided', 'the first pending add was replaced');
  });

  test('multi-capture with over-capture: confirmed from the captured total, nothing left pending after the final one', async () => {
    const events = payment('p2', [
      { kind: 'authorize', amount: 10_000 },
      { kind: 'capture', amount: 4_000, final: false },
      { kind: 'capture', amount: 8_000, final: true },
    ]);
    await deliver(events.slice(0, 2));
    assert.deepEqual(await h.balance('u-p2'), { available: 20, pending_credit: 30 });
    await deliver(events.slice(2));
    assert.deepEqual(await h.balance('u-p2'), { available: 60, pending_credit: 0 });
    assert.deepEqual(await grantOf('u-p2'), { points: 60, status: 'confirmed', clawed_back_points: 0, rule_version: 'default' });
  });

  test('under-capture confirms what was captured', async () => {
    await deliver(payment('p3', [{ kind: 'authorize', amount: 10_000 }, { kind: 'capture', amount: 6_000, final: true }]));
    assert.deepEqual(await h.balance('u-p3'), { available: 30, pending_credit: 0 });
  });

  test('partial reversal lowers the pending points; full reversal and expiry void them', async () => {
    const partial = payment('p4', [{ kind: 'authorize', amount: 10_000 }, { kind: 'reverse', amount: 4_000 }, { kind: 'reverse', amount: 6_000 }]);
    await deliver(partial.slice(0, 2));
    assert.deepEqual(await h.balance('u-p4'), { available: 0, pending_credit: 30 });
    await deliver(partial.slice(2));
    assert.deepEqual(await h.balance('u-p4'), { available: 0, pending_credit: 0 });
    assert.deepEqual(await grantOf('u-p4'), { points: 0, status: 'voided', clawed_back_points: 0, rule_version: 'default' });
    await deliver(payment('p5', [{ kind: 'authorize', amount: 10_000 }, { kind: 'expire' }]));
    assert.deepEqual(await h.balance('u-p5'), { available: 0, pending_credit: 0 });
    assert.equal((await grantOf('u-p5')).status, 'voided');
  });

  test('partial refunds claw back in proportion and sum to the whole; the grant shows it', async () => {
    const events = payment('p6', [
      { kind: 'authorize', amount: 10_001 },
      { kind: 'capture', amount: 10_001, final: true },
      { kind: 'refund', amount: 3_333 },
      { kind: 'refund', amount: 6_668 },
    ]);
    await deliver(events.slice(0, 3));
    assert.deepEqual(await h.balance('u-p6'), { available: 34, pending_credit: 0 });
    assert.deepEqual(await grantOf('u-p6'), { points: 50, status: 'confirmed', clawed_back_points: 16, rule_version: 'default' });
    await deliver(events.slice(3));
    assert.deepEqual(await h.balance('u-p6'), { available: 0, pending_credit: 0 });
    assert.deepEqual(await grantOf('u-p6'), { points: 50, status: 'clawed_back', clawed_back_points: 50, rule_version: 'default' });
    const claw = await koban.ledger.getTransactions('points:visa:p6:claw:1');
    assert.deepEqual({ type: claw[0]!.type, force: claw[0]!.force, amount: claw[0]!.amount }, { type: 'consume', force: true, amount: 16 });
  });

  test('a claw-back of points already spent leaves the balance negative, with negative_since; the next grant repays the debt first', async () => {
    await deliver(payment('n1', [{ kind: 'authorize', amount: 100_000 }, { kind: 'capture', amount: 100_000, final: true }]));
    await koban.ledger.submit({ transaction_id: 'spend-n1', type: 'consume', user_id: 'u-n1', balance_type: 'points', amount: 400 });
    const refund = paymentEvents({ payment_id: 'visa:n1', user_id: 'u-n1', start: START }, [
      { kind: 'authorize', amount: 100_000 },
      { kind: 'capture', amount: 100_000, final: true },
      { kind: 'refund', amount: 100_000 },
    ]);
    await deliver(refund.slice(2));
    const negative = await h.points('u-n1');
    assert.equal(negative.available, -400);
    assert.equal(typeof negative.negative_since, 'string', JSON.stringify(negative));
    const claw = await koban.ledger.getTransactions('points:visa:n1:claw:1');
    assert.equal(negative.negative_since, claw[0]!.created_at, 'negative since the claw-back');
    await deliver(paymentEvents({ payment_id: 'visa:n2', user_id: 'u-n1', start: START }, [{ kind: 'authorize', amount: 200_000 }, { kind: 'capture', amount: 200_000, final: true }]));
    const repaid = await h.points('u-n1');
    assert.deepEqual({ available: repaid.available, negative_since: repaid.negative_since }, { available: 600, negative_since: undefined });
  });
});

describe('order and duplicates', () => {
  test('capture before authorization, refund before capture, reversal before authorization: recorded, then converged', async () => {
    const captured = payment('o1', [{ kind: 'authorize', amount: 10_000 }, { kind: 'capture', amount: 10_000, final: true }, { kind: 'refund', amount: 5_000 }]);
    await deliver([captured[2]!, captured[1]!]);
    assert.deepEqual(await h.balance('u-o1'), { available: 0, pending_credit: 0 }, 'nothing before the authorization');
    assert.deepEqual((await h.grants('u-o1')).data, []);
    await deliver([captured[0]!, captured[0]!]);
    assert.deepEqual(await h.balance('u-o1'), { available: 25, pending_credit: 0 });
    const reversed = payment('o2', [{ kind: 'authorize', amount: 10_000 }, { kind: 'reverse', amount: 10_000 }]);
    await deliver([reversed[1]!, reversed[0]!]);
    assert.deepEqual(await h.balance('u-o2'), { available: 0, pending_credit: 0 });
    assert.equal((await grantOf('u-o2')).status, 'voided');
    const dead = await koban.bus.deadLetters('points-payments', { limit: 10 });
    assert.deepEqual(dead.data, [], 'nothing dead-lettered for arriving early');
  });

  test(`property: ${PROPERTY_PAYMENTS} random payments, shuffled and duplicated, end where simple arithmetic says`, async () => {
    const samples = fc.sample(
      stepsArbitrary.chain((steps) => {
        const events = paymentEvents({ payment_id: 'x', user_id: 'x', start: START }, steps);
        return fc.tuple(fc.constant(steps), deliveries(events));
      }),
      { numRuns: PROPERTY_PAYMENTS, seed: 20_260_401 },
    );
    const cases = samples.map(([steps], index) => {
      const events = paymentEvents({ payment_id: `visa:prop${index}`, user_id: `u-prop${index}`, start: START }, steps);
      return { user: `u-prop${index}`, events, expected: expectedPoints(events) };
    });
    // The same delivery order the sample drew, applied to each payment's own events (ids differ per payment).
    const orders = samples.map(([, order], index) => order.map((event) => cases[index]!.events[Number(event.id.split(':').at(-1)) - 1]!));
    const interleaved: CloudEvent[] = [];
    for (let round = 0; orders.some((order) => round < order.length); round += 1) for (const order of orders) if (round < order.length) interleaved.push(order[round]!);
    await deliver(interleaved);
    for (const { user, expected } of cases) {
      assert.deepEqual(await h.balance(user), { available: expected.available, pending_credit: expected.pending }, user);
      const { data } = await h.grants(user);
      assert.equal(data[0]?.status ?? null, expected.status, user);
    }
  });
});

describe('through a real card route', () => {
  test('a Visa authorization and capture, published by the route’s outbox, earn pending then confirmed points', async () => {
    await koban.ledger.submit({ transaction_id: 'fund-visa-real', type: 'add', user_id: 'u-real', balance_type: 'cash', amount: 50_000 });
    const merchant = { id: 'shop-1', name: 'Corner Shop', category_code: '5411' };
    const authorized = await koban.app.inject({ method: 'POST', url: '/v1/visa/authorizations', payload: { authorization_id: 'real-1', user_id: 'u-real', amount: 12_345, currency: 'JPY', merchant } });
    assert.equal(authorized.statusCode, 200, authorized.body);
    await eventually(async () => assert.deepEqual(await h.balance('u-real'), { available: 0, pending_credit: 61 }));
    const captured = await koban.app.inject({
      method: 'POST',
      url: '/v1/visa/sales-drafts',
      payload: { sales_draft_id: 'sd-real-1', authorization_id: 'real-1', user_id: 'u-real', amount: 12_345, currency: 'JPY', merchant, final: true },
    });
    assert.equal(captured.statusCode, 200, captured.body);
    await eventually(async () => assert.deepEqual(await h.balance('u-real'), { available: 61, pending_credit: 0 }));
  });
});

/** Retries `check` until it passes or the deadline: for effects that cross the outbox relay, which a test does not drive. */
async function eventually(check: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + EVENTUALLY_TIMEOUT_MS;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
