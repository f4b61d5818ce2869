// Goal: the payment state machine decides the exact ledger writes, state and events for every card message — holds, incrementals, partial/multi/over/forced captures, partial reversals, split refunds, expiry — with ids derived from the payment and message, and refuses what cannot be done with the catalogue error that says why.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isErrorCode } from '../../../platform/errors.ts';
import {
  type Authorization,
  decideAuthorization,
  decideCapture,
  decideExpiry,
  decideForcedCapture,
  decideIncrement,
  decideRefund,
  decideReversal,
  type Payment,
  type RouteRules,
  withHoldDeadline,
  withLapsedStep,
} from './payment.ts';

const NOW = new Date('2026-03-01T00:00:00.000Z');
const DEADLINE = '2026-03-08T00:00:00.000Z';
const rules: RouteRules = { route: 'visa', currency: 'JPY', authorizationAmountMax: 100_000, holdTimeoutMs: 7 * 86_400_000 };
const merchant = { id: 'm', name: 'Shop', category_code: '5411' };
const auth = (overrides: Partial<Authorization> = {}): Authorization => ({ authorization_id: 'A1', user_id: 'u', amount: 1_000, currency: 'JPY', merchant, ...overrides });

function authorized(amount = 1_000): Payment {
  return decideAuthorization(rules, auth({ amount }), { advice: false, now: NOW }).payment;
}

describe('payment.unit: authorization', () => {
  test('approves with a hold derived from the authorization id, lasting the route hold timeout', () => {
    const decision = decideAuthorization(rules, auth(), { advice: false, now: NOW });
    assert.deepEqual(decision.steps, [{ kind: 'hold', transaction_id: 'visa:A1:hold', amount: 1_000, force: false, expires_at: DEADLINE }]);
    assert.equal(decision.payment.status, 'authorized');
    assert.equal(decision.payment.hold_expires_at, DEADLINE);
    assert.deepEqual(decision.events, [{ type: 'payment.authorized', amount: 1_000, extra: { advice: false } }]);
    assert.deepEqual(decision.declinableHold?.decline.answer, { authorization_id: 'A1', approved: false, decline_reason: 'insufficient_balance' });
  });

  test('declines another currency and an amount above the route maximum, with no ledger write', () => {
    const currency = decideAuthorization(rules, auth({ currency: 'USD' }), { advice: false, now: NOW });
    assert.deepEqual([currency.steps, currency.answer], [[], { authorization_id: 'A1', approved: false, decline_reason: 'unsupported_currency' }]);
    const limit = decideAuthorization(rules, auth({ amount: 100_001 }), { advice: false, now: NOW });
    assert.deepEqual([limit.steps, limit.answer.decline_reason, limit.payment.status], [[], 'amount_limit_exceeded', 'declined']);
    assert.equal(decideAuthorization(rules, auth({ amount: 100_000 }), { advice: false, now: NOW }).answer.approved, true, 'the maximum itself is approved');
  });

  test('an advice forces its hold, ignores the amount limit, and is never declinable', () => {
    const decision = decideAuthorization(rules, auth({ amount: 500_000 }), { advice: true, now: NOW });
    assert.deepEqual(decision.steps, [{ kind: 'hold', transaction_id: 'visa:A1:hold', amount: 500_000, force: true, expires_at: DEADLINE }]);
    assert.equal(decision.declinableHold, undefined);
    assert.throws(() => decideAuthorization(rules, auth({ currency: 'USD' }), { advice: true, now: NOW }), (error) => isErrorCode(error, 'unsupported_currency'));
  });

  test('an incremental authorization adds a second hold with the same deadline; a closed payment refuses it', () => {
    const decision = decideIncrement(rules, authorized(), auth({ authorization_id: 'I1', amount: 300, incremental_of: 'A1' }), { advice: false, now: NOW });
    assert.deepEqual(decision.steps, [{ kind: 'hold', transaction_id: 'visa:A1:hold:I1', amount: 300, force: false, expires_at: DEADLINE }]);
    assert.equal(decision.payment.authorized_total, 1_300);
    assert.equal(decision.events[0]!.type, 'payment.authorization_increased');
    const closed = decideCapture(authorized(), { sales_draft_id: 'S1', amount: 1_000, currency: 'JPY', final: true }, NOW).payment;
    assert.throws(() => decideIncrement(rules, closed, auth({ authorization_id: 'I2', incremental_of: 'A1' }), { advice: false, now: NOW }), (error) => isErrorCode(error, 'authorization_closed'));
  });
});

describe('payment.unit: capture', () => {
  test('a final partial capture posts part of the hold (the ledger releases the rest)', () => {
    const decision = decideCapture(authorized(), { sales_draft_id: 'S1', amount: 600, currency: 'JPY', final: true }, NOW);
    assert.deepEqual(decision.steps, [{ kind: 'post', transaction_id: 'visa:A1:hold', amount: 600, force: false }]);
    assert.deepEqual([decision.payment.captured_total, decision.payment.open_holds, decision.payment.hold_expires_at, decision.payment.reversed_total], [600, [], null, 400]);
    assert.deepEqual(decision.events, [{ type: 'payment.captured', amount: 600, extra: { final: true, forced: false } }]);
  });

  test('a non-final capture holds the remainder again, forced (it was reserved already), under an id from the sales draft', () => {
    const first = decideCapture(authorized(), { sales_draft_id: 'S1', amount: 600, currency: 'JPY', final: false }, NOW);
    assert.deepEqual(first.steps, [
      { kind: 'post', transaction_id: 'visa:A1:hold', amount: 600, force: false },
      { kind: 'hold', transaction_id: 'visa:A1:hold:S1', amount: 400, force: true, expires_at: DEADLINE },
    ]);
    assert.deepEqual(first.payment.open_holds, [{ transaction_id: 'visa:A1:hold:S1', amount: 400 }]);
    const second = decideCapture(first.payment, { sales_draft_id: 'S2', amount: 400, currency: 'JPY', final: true }, NOW);
    assert.deepEqual(second.steps, [{ kind: 'post', transaction_id: 'visa:A1:hold:S1', amount: 400, force: false }]);
    assert.equal(second.payment.captured_total, 1_000);
    assert.equal(second.payment.captures.length, 2);
  });

  test('a capture draws from the authorization and its incremental in order, and a final one voids holds it did not touch', () => {
    const raised = decideIncrement(rules, authorized(), auth({ authorization_id: 'I1', amount: 500, incremental_of: 'A1' }), { advice: false, now: NOW }).payment;
    const both = decideCapture(raised, { sales_draft_id: 'S1', amount: 1_200, currency: 'JPY', final: true }, NOW);
    assert.deepEqual(both.steps, [
      { kind: 'post', transaction_id: 'visa:A1:hold', amount: 1_000, force: false },
      { kind: 'post', transaction_id: 'visa:A1:hold:I1', amount: 200, force: false },
    ]);
    const first = decideCapture(raised, { sales_draft_id: 'S2', amount: 1_000, currency: 'JPY', final: true }, NOW);
    assert.deepEqual(first.steps, [
      { kind: 'post', transaction_id: 'visa:A1:hold', amount: 1_000, force: false },
      { kind: 'void', transaction_id: 'visa:A1:hold:I1' },
    ]);
  });

  test('an over-capture posts the last hold above its amount, forced; with nothing held it is a forced consume', () => {
    const over = decideCapture(authorized(), { sales_draft_id: 'S1', amount: 1_500, currency: 'JPY', final: true }, NOW);
    assert.deepEqual(over.steps, [{ kind: 'post', transaction_id: 'visa:A1:hold', amount: 1_500, force: true }]);
    assert.equal(over.answer.forced, true);
    const again = decideCapture(over.payment, { sales_draft_id: 'S2', amount: 100, currency: 'JPY', final: true }, NOW);
    assert.deepEqual(again.steps, [{ kind: 'consume', transaction_id: 'visa:A1:capture:S2', amount: 100 }]);
    assert.equal(again.payment.captured_total, 1_600);
  });

  test('a sales draft for an authorization never seen creates the payment with a forced consume', () => {
    const decision = decideForcedCapture(rules, { authorization_id: 'A9', user_id: 'u', merchant, sales_draft_id: 'S9', amount: 700, currency: 'JPY', final: true }, NOW);
    assert.deepEqual(decision.steps, [{ kind: 'consume', transaction_id: 'visa:A9:capture:S9', amount: 700 }]);
    assert.deepEqual([decision.payment.payment_id, decision.payment.status, decision.payment.authorized_total, decision.payment.captured_total], ['visa:A9', 'captured', 0, 700]);
    assert.throws(() => decideCapture(authorized(), { sales_draft_id: 'S1', amount: 1, currency: 'USD', final: true }, NOW), (error) => isErrorCode(error, 'unsupported_currency'));
  });
});

describe('payment.unit: reversal, refund, expiry', () => {
  test('a partial reversal releases from the latest hold and holds what remains again, forced', () => {
    const raised = decideIncrement(rules, authorized(), auth({ authorization_id: 'I1', amount: 500, incremental_of: 'A1' }), { advice: false, now: NOW }).payment;
    const decision = decideReversal(raised, { reversal_id: 'R1', amount: 700 });
    assert.deepEqual(decision.steps, [
      { kind: 'void', transaction_id: 'visa:A1:hold:I1' },
      { kind: 'void', transaction_id: 'visa:A1:hold' },
      { kind: 'hold', transaction_id: 'visa:A1:hold:R1', amount: 800, force: true, expires_at: DEADLINE },
    ]);
    assert.deepEqual(decision.answer, { reversal_id: 'R1', authorization_id: 'A1', payment_id: 'visa:A1', reversed_amount: 700, held_amount: 800 });
    assert.equal(decision.payment.status, 'authorized');
    const full = decideReversal(decision.payment, { reversal_id: 'R2' });
    assert.deepEqual(full.steps, [{ kind: 'void', transaction_id: 'visa:A1:hold:R1' }]);
    assert.equal(full.payment.status, 'reversed');
    assert.throws(() => decideReversal(full.payment, { reversal_id: 'R3' }), (error) => isErrorCode(error, 'authorization_closed'));
    assert.throws(() => decideReversal(raised, { reversal_id: 'R4', amount: 1_501 }), (error) => isErrorCode(error, 'exceeds_held_amount') && (error.details as { held_amount: number }).held_amount === 1_500);
  });

  test('a refund is split across the ledger transactions that took the cash, up to what remains refundable', () => {
    const raised = decideIncrement(rules, authorized(), auth({ authorization_id: 'I1', amount: 500, incremental_of: 'A1' }), { advice: false, now: NOW }).payment;
    const captured = decideCapture(raised, { sales_draft_id: 'S1', amount: 1_500, currency: 'JPY', final: true }, NOW).payment;
    const first = decideRefund(captured, { refund_id: 'F1', amount: 1_200, sales_draft_id: 'S1' });
    assert.deepEqual(first.steps, [
      { kind: 'refund', transaction_id: 'visa:A1:refund:F1:1', refund_of: 'visa:A1:hold', amount: 1_000 },
      { kind: 'refund', transaction_id: 'visa:A1:refund:F1:2', refund_of: 'visa:A1:hold:I1', amount: 200 },
    ]);
    const second = decideRefund(first.payment, { refund_id: 'F2', amount: 300 });
    assert.deepEqual(second.steps, [{ kind: 'refund', transaction_id: 'visa:A1:refund:F2:1', refund_of: 'visa:A1:hold:I1', amount: 300 }]);
    assert.equal(second.payment.status, 'refunded');
    assert.throws(() => decideRefund(second.payment, { refund_id: 'F3', amount: 1 }), (error) => isErrorCode(error, 'exceeds_captured_amount') && (error.details as { refundable: number }).refundable === 0);
  });

  test('expiry voids every open hold; a payment holding nothing has nothing to expire', () => {
    const decision = decideExpiry(authorized())!;
    assert.deepEqual(decision.steps, [{ kind: 'void', transaction_id: 'visa:A1:hold' }]);
    assert.deepEqual([decision.payment.status, decision.payment.hold_expires_at, decision.events[0]], ['expired', null, { type: 'payment.authorization_expired', amount: 1_000 }]);
    assert.equal(decideExpiry(decision.payment), undefined);
  });
});

describe('payment.unit: a hold lapsing midway through a decision', () => {
  test('a post from the lapsed hold becomes a forced consume of the same amount, under an id derived from the hold, drawn for refunds', () => {
    const increased = decideIncrement(rules, authorized(300), auth({ authorization_id: 'I1', amount: 200, incremental_of: 'A1' }), { advice: false, now: NOW }).payment;
    const capture = decideCapture(increased, { sales_draft_id: 'S1', amount: 450, currency: 'JPY', final: true }, NOW);
    const lapsed = withLapsedStep(capture, 1);
    assert.deepEqual(lapsed.steps, [
      { kind: 'post', transaction_id: 'visa:A1:hold', amount: 300, force: false },
      { kind: 'consume', transaction_id: 'visa:A1:hold:I1:lapsed', amount: 150 },
    ]);
    assert.deepEqual(lapsed.payment.captures[0]!.draws, [
      { transaction_id: 'visa:A1:hold', amount: 300, refunded: 0 },
      { transaction_id: 'visa:A1:hold:I1:lapsed', amount: 150, refunded: 0 },
    ]);
    assert.equal(lapsed.payment.captured_total, 450);
    assert.equal(lapsed.answer.forced, true);
    assert.deepEqual(lapsed.events, [{ type: 'payment.captured', amount: 450, extra: { final: true, forced: true } }]);
    assert.deepEqual(decideRefund(lapsed.payment, { refund_id: 'R1', amount: 450, sales_draft_id: 'S1' }).steps.map((step) => step.kind === 'refund' && step.refund_of), ['visa:A1:hold', 'visa:A1:hold:I1:lapsed']);
    assert.deepEqual(withLapsedStep(capture, 1), lapsed, 'the same lapse, the same ids: finishing it again replays');
  });

  test('a remainder to be held again under the deadline is released instead: reversed, and an expiry event says how much', () => {
    const capture = decideCapture(authorized(500), { sales_draft_id: 'S1', amount: 200, currency: 'JPY', final: false }, NOW);
    assert.equal(capture.steps[1]!.kind, 'hold');
    const lapsed = withLapsedStep(capture, 1);
    assert.deepEqual(lapsed.steps, [{ kind: 'post', transaction_id: 'visa:A1:hold', amount: 200, force: false }]);
    assert.deepEqual([lapsed.payment.open_holds, lapsed.payment.hold_expires_at, lapsed.payment.reversed_total, lapsed.payment.captured_total], [[], null, 300, 200]);
    assert.equal(lapsed.payment.ledger_transaction_ids.includes('visa:A1:hold:S1'), false);
    assert.equal(lapsed.answer.held_amount, 0);
    assert.deepEqual(lapsed.events.map((event) => [event.type, event.amount]), [['payment.captured', 200], ['payment.authorization_expired', 300]]);

    const reversal = decideReversal(authorized(500), { reversal_id: 'V1', amount: 100 });
    const released = withLapsedStep(reversal, 1);
    assert.deepEqual(released.steps, [{ kind: 'void', transaction_id: 'visa:A1:hold' }]);
    assert.deepEqual([released.payment.open_holds, released.payment.reversed_total, released.answer.held_amount], [[], 500, 0]);
    assert.throws(() => withLapsedStep(reversal, 0), /a void step cannot lapse/);
  });
});

describe('payment.unit: a hold the ledger already keeps under an earlier deadline', () => {
  test('the decision takes the ledger deadline for the step and the payment; anything but a hold step is refused', () => {
    const decision = decideAuthorization(rules, auth(), { advice: false, now: NOW });
    const earlier = '2026-03-07T23:59:59.000Z';
    const kept = withHoldDeadline(decision, 0, earlier);
    assert.deepEqual(kept.steps, [{ kind: 'hold', transaction_id: 'visa:A1:hold', amount: 1_000, force: false, expires_at: earlier }]);
    assert.equal(kept.payment.hold_expires_at, earlier);
    assert.deepEqual(kept.declinableHold, decision.declinableHold);
    const reversal = decideReversal(authorized(500), { reversal_id: 'V1', amount: 100 });
    assert.throws(() => withHoldDeadline(reversal, 0, earlier), /not a hold/);
  });
});
