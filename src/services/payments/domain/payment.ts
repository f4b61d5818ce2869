// The payment state machine, shared by every card route: pure decisions from
// a payment's state and one network message to the ledger steps to take, the
// answer, the new state and the events. No I/O here: the service runs the
// steps through the LedgerApi and commits the rest in one transaction.
//
// Ledger ids derive from the payment and the message, so re-running a
// decision after a crash (the network resends) replays the same ledger
// writes instead of repeating them.
import type { DeclineReason, Merchant, PaymentEventData, PaymentEventType, PaymentRoute } from '../../../contracts/events/payments.ts';
import { authorizationClosed, exceedsCapturedAmount, exceedsHeldAmount, unsupportedCurrency } from './errors.ts';

export type PaymentStatus = 'authorized' | 'declined' | 'captured' | 'reversed' | 'expired' | 'refunded';

/** A ledger hold still reserving cash for this payment. */
export type OpenHold = Readonly<{ transaction_id: string; amount: number }>;
/** A ledger transaction that took cash for a capture, and how much of it was refunded since. */
export type CaptureDraw = Readonly<{ transaction_id: string; amount: number; refunded: number }>;
export type Capture = Readonly<{ sales_draft_id: string; amount: number; captured_at: string; draws: readonly CaptureDraw[] }>;

export type Payment = Readonly<{
  payment_id: string;
  route: PaymentRoute;
  authorization_id: string;
  user_id: string;
  currency: string;
  merchant: Merchant;
  status: PaymentStatus;
  advice: boolean;
  authorized_total: number;
  captured_total: number;
  refunded_total: number;
  reversed_total: number;
  open_holds: readonly OpenHold[];
  captures: readonly Capture[];
  /** When the open holds lapse (the ledger's hold deadline); null once nothing is held. */
  hold_expires_at: string | null;
  /** Every ledger transaction id this payment wrote, in order. */
  ledger_transaction_ids: readonly string[];
  created_at: string;
}>;

export type LedgerStep =
  | Readonly<{ kind: 'hold'; transaction_id: string; amount: number; force: boolean; expires_at: string }>
  | Readonly<{ kind: 'post'; transaction_id: string; amount: number; force: boolean }>
  | Readonly<{ kind: 'void'; transaction_id: string }>
  | Readonly<{ kind: 'consume'; transaction_id: string; amount: number }>
  | Readonly<{ kind: 'refund'; transaction_id: string; refund_of: string; amount: number }>;

export type PaymentEventDraft = Readonly<{ type: PaymentEventType; amount: number; extra?: Partial<PaymentEventData> }>;

/**
 * What one message does: the ledger steps (run in order), then the payment as
 * it will be stored, the answer's body, and the events. `declinableHold` marks
 * an authorization whose hold may be refused for insufficient balance: that is
 * an answer (a decline), not an error.
 */
export type Decision = Readonly<{
  steps: readonly LedgerStep[];
  payment: Payment;
  events: readonly PaymentEventDraft[];
  answer: Readonly<Record<string, unknown>>;
  declinableHold?: Readonly<{ decline: Decision }>;
}>;

export type RouteRules = Readonly<{
  route: PaymentRoute;
  /** Currencies the wallet holds: JPY. */
  currency: string;
  /** Largest amount one authorization may ask for, in minor units. */
  authorizationAmountMax: number;
  /** How long a hold lasts before it lapses (the authorization expires). */
  holdTimeoutMs: number;
}>;

export type Authorization = Readonly<{
  authorization_id: string;
  user_id: string;
  amount: number;
  currency: string;
  merchant: Merchant;
  incremental_of?: string | undefined;
}>;

export const paymentIdOf = (route: PaymentRoute, authorizationId: string): string => `${route}:${authorizationId}`;

/** A new authorization (no payment yet): hold, or decline. An advice forces the hold and never declines. */
export function decideAuthorization(rules: RouteRules, message: Authorization, options: { advice: boolean; now: Date }): Decision {
  const paymentId = paymentIdOf(rules.route, message.authorization_id);
  const occurred = options.now.toISOString();
  const base: Payment = {
    payment_id: paymentId,
    route: rules.route,
    authorization_id: message.authorization_id,
    user_id: message.user_id,
    currency: message.currency,
    merchant: message.merchant,
    status: 'declined',
    advice: options.advice,
    authorized_total: 0,
    captured_total: 0,
    refunded_total: 0,
    reversed_total: 0,
    open_holds: [],
    captures: [],
    hold_expires_at: null,
    ledger_transaction_ids: [],
    created_at: occurred,
  };
  const decline = (reason: DeclineReason): Decision => ({
    steps: [],
    payment: base,
    events: [{ type: 'payment.declined', amount: message.amount, extra: { decline_reason: reason } }],
    answer: { authorization_id: message.authorization_id, approved: false, decline_reason: reason },
  });
  if (message.currency !== rules.currency) {
    if (options.advice) throw unsupportedCurrency(`the wallet holds ${rules.currency} only`, { field: 'currency', supported: [rules.currency] });
    return decline('unsupported_currency');
  }
  if (!options.advice && message.amount > rules.authorizationAmountMax) return decline('amount_limit_exceeded');
  const hold: OpenHold = { transaction_id: `${paymentId}:hold`, amount: message.amount };
  const expiresAt = new Date(options.now.getTime() + rules.holdTimeoutMs).toISOString();
  const approved: Decision = {
    steps: [{ kind: 'hold', transaction_id: hold.transaction_id, amount: hold.amount, force: options.advice, expires_at: expiresAt }],
    payment: {
      ...base,
      status: 'authorized',
      authorized_total: message.amount,
      open_holds: [hold],
      hold_expires_at: expiresAt,
      ledger_transaction_ids: [hold.transaction_id],
    },
    events: [{ type: 'payment.authorized', amount: message.amount, extra: { advice: options.advice } }],
    answer: { authorization_id: message.authorization_id, approved: true },
  };
  return options.advice ? approved : { ...approved, declinableHold: { decline: decline('insufficient_balance') } };
}

/**
 * An authorization or advice for a payment already known under the same
 * authorization id: what the network resends after our answer was lost is
 * replayed before this; here an advice confirms a decline the network
 * overrode in stand-in (a forced hold), or finds the payment already approved.
 */
export function decideAdviceOnKnown(rules: RouteRules, payment: Payment, message: Authorization, now: Date): Decision {
  if (payment.status !== 'declined') {
    return { steps: [], payment, events: [], answer: { authorization_id: message.authorization_id, approved: true } };
  }
  const fresh = decideAuthorization(rules, message, { advice: true, now });
  return { ...fresh, payment: { ...fresh.payment, created_at: payment.created_at } };
}

/** An incremental authorization (or incremental advice): a second hold linked to the first. */
export function decideIncrement(rules: RouteRules, payment: Payment, message: Authorization, options: { advice: boolean; now: Date }): Decision {
  requireOpen(payment, 'raise');
  const answerBase = { authorization_id: message.authorization_id };
  const decline = (reason: DeclineReason): Decision => ({
    steps: [],
    payment,
    events: [{ type: 'payment.declined', amount: message.amount, extra: { decline_reason: reason } }],
    answer: { ...answerBase, approved: false, decline_reason: reason },
  });
  if (message.currency !== payment.currency) {
    if (options.advice) throw unsupportedCurrency(`the payment is in ${payment.currency}`, { field: 'currency', supported: [payment.currency] });
    return decline('unsupported_currency');
  }
  if (!options.advice && message.amount > rules.authorizationAmountMax) return decline('amount_limit_exceeded');
  const hold: OpenHold = { transaction_id: `${payment.payment_id}:hold:${message.authorization_id}`, amount: message.amount };
  const expiresAt = payment.hold_expires_at ?? new Date(options.now.getTime() + rules.holdTimeoutMs).toISOString();
  const approved: Decision = {
    steps: [{ kind: 'hold', transaction_id: hold.transaction_id, amount: hold.amount, force: options.advice, expires_at: expiresAt }],
    payment: {
      ...payment,
      authorized_total: payment.authorized_total + message.amount,
      open_holds: [...payment.open_holds, hold],
      hold_expires_at: expiresAt,
      ledger_transaction_ids: [...payment.ledger_transaction_ids, hold.transaction_id],
    },
    events: [{ type: 'payment.authorization_increased', amount: message.amount, extra: { advice: options.advice } }],
    answer: { ...answerBase, approved: true },
  };
  return options.advice ? approved : { ...approved, declinableHold: { decline: decline('insufficient_balance') } };
}

export type SalesDraft = Readonly<{ sales_draft_id: string; amount: number; currency: string; final: boolean }>;

/**
 * A capture: posts from the open holds in order; what exceeds them is a forced
 * debit (the last hold posted above its amount, or a forced consume when
 * nothing is held). Final releases what remains; not final keeps it held
 * (a hold can be posted once, so the remainder of a partly posted hold is
 * held again under a new id — forced, as the cash was already reserved).
 */
export function decideCapture(payment: Payment, draft: SalesDraft, now: Date): Decision {
  if (draft.currency !== payment.currency) throw unsupportedCurrency(`the payment is in ${payment.currency}`, { field: 'currency', supported: [payment.currency] });
  const steps: LedgerStep[] = [];
  const draws: CaptureDraw[] = [];
  const holds = payment.open_holds;
  let remaining = draft.amount;
  let forced = false;
  let index = 0;
  let leftover: OpenHold | undefined;
  for (; index < holds.length && remaining > 0; index += 1) {
    const hold = holds[index]!;
    const last = index === holds.length - 1;
    if (remaining < hold.amount) {
      steps.push({ kind: 'post', transaction_id: hold.transaction_id, amount: remaining, force: false });
      draws.push({ transaction_id: hold.transaction_id, amount: remaining, refunded: 0 });
      leftover = { transaction_id: `${payment.payment_id}:hold:${draft.sales_draft_id}`, amount: hold.amount - remaining };
      remaining = 0;
    } else if (remaining > hold.amount && last) {
      steps.push({ kind: 'post', transaction_id: hold.transaction_id, amount: remaining, force: true });
      draws.push({ transaction_id: hold.transaction_id, amount: remaining, refunded: 0 });
      forced = true;
      remaining = 0;
    } else {
      steps.push({ kind: 'post', transaction_id: hold.transaction_id, amount: hold.amount, force: false });
      draws.push({ transaction_id: hold.transaction_id, amount: hold.amount, refunded: 0 });
      remaining -= hold.amount;
    }
  }
  if (remaining > 0) {
    const id = `${payment.payment_id}:capture:${draft.sales_draft_id}`;
    steps.push({ kind: 'consume', transaction_id: id, amount: remaining });
    draws.push({ transaction_id: id, amount: remaining, refunded: 0 });
    forced = true;
  }
  const untouched = holds.slice(index);
  let openHolds: OpenHold[];
  let released = 0;
  if (draft.final) {
    for (const hold of untouched) steps.push({ kind: 'void', transaction_id: hold.transaction_id });
    released = untouched.reduce((sum, hold) => sum + hold.amount, 0) + (leftover?.amount ?? 0);
    openHolds = [];
  } else {
    openHolds = [...(leftover ? [leftover] : []), ...untouched];
    if (leftover) steps.push({ kind: 'hold', transaction_id: leftover.transaction_id, amount: leftover.amount, force: true, expires_at: payment.hold_expires_at ?? now.toISOString() });
  }
  const capturedTotal = payment.captured_total + draft.amount;
  const ledgerIds = [...payment.ledger_transaction_ids];
  for (const step of steps) if (!ledgerIds.includes(step.transaction_id)) ledgerIds.push(step.transaction_id);
  return {
    steps,
    payment: {
      ...payment,
      status: 'captured',
      captured_total: capturedTotal,
      reversed_total: payment.reversed_total + released,
      open_holds: openHolds,
      captures: [...payment.captures, { sales_draft_id: draft.sales_draft_id, amount: draft.amount, captured_at: now.toISOString(), draws }],
      hold_expires_at: openHolds.length > 0 ? payment.hold_expires_at : null,
      ledger_transaction_ids: ledgerIds,
    },
    events: [{ type: 'payment.captured', amount: draft.amount, extra: { final: draft.final, forced } }],
    answer: {
      sales_draft_id: draft.sales_draft_id,
      authorization_id: payment.authorization_id,
      payment_id: payment.payment_id,
      captured_amount: draft.amount,
      captured_total: capturedTotal,
      held_amount: heldOf(openHolds),
      forced,
    },
  };
}

/** A sales draft for an authorization never seen: the payment is created by its forced capture. */
export function decideForcedCapture(
  rules: RouteRules,
  message: Readonly<{ authorization_id: string; user_id: string; merchant: Merchant }> & SalesDraft,
  now: Date,
): Decision {
  if (message.currency !== rules.currency) throw unsupportedCurrency(`the wallet holds ${rules.currency} only`, { field: 'currency', supported: [rules.currency] });
  const empty: Payment = {
    payment_id: paymentIdOf(rules.route, message.authorization_id),
    route: rules.route,
    authorization_id: message.authorization_id,
    user_id: message.user_id,
    currency: message.currency,
    merchant: message.merchant,
    status: 'authorized',
    advice: false,
    authorized_total: 0,
    captured_total: 0,
    refunded_total: 0,
    reversed_total: 0,
    open_holds: [],
    captures: [],
    hold_expires_at: null,
    ledger_transaction_ids: [],
    created_at: now.toISOString(),
  };
  return decideCapture(empty, { ...message, final: true }, now);
}

/** A reversal: releases all (no amount) or part of what is still held, the latest holds first. */
export function decideReversal(payment: Payment, message: Readonly<{ reversal_id: string; amount?: number | undefined }>): Decision {
  requireOpen(payment, 'reverse');
  const held = heldOf(payment.open_holds);
  const amount = message.amount ?? held;
  if (amount > held) throw exceedsHeldAmount(`the reversal asks to release ${amount} but ${held} is held`, { field: 'amount', held_amount: held });
  const steps: LedgerStep[] = [];
  const kept = [...payment.open_holds];
  let toRelease = amount;
  while (toRelease > 0) {
    const hold = kept.pop()!;
    steps.push({ kind: 'void', transaction_id: hold.transaction_id });
    if (hold.amount > toRelease) {
      const rest: OpenHold = { transaction_id: `${payment.payment_id}:hold:${message.reversal_id}`, amount: hold.amount - toRelease };
      steps.push({ kind: 'hold', transaction_id: rest.transaction_id, amount: rest.amount, force: true, expires_at: payment.hold_expires_at! });
      kept.push(rest);
      toRelease = 0;
    } else {
      toRelease -= hold.amount;
    }
  }
  const ledgerIds = [...payment.ledger_transaction_ids];
  for (const step of steps) if (!ledgerIds.includes(step.transaction_id)) ledgerIds.push(step.transaction_id);
  const closed = kept.length === 0;
  return {
    steps,
    payment: {
      ...payment,
      status: closed && payment.captured_total === 0 ? 'reversed' : payment.status,
      reversed_total: payment.reversed_total + amount,
      open_holds: kept,
      hold_expires_at: closed ? null : payment.hold_expires_at,
      ledger_transaction_ids: ledgerIds,
    },
    events: [{ type: 'payment.reversed', amount }],
    answer: { reversal_id: message.reversal_id, authorization_id: payment.authorization_id, payment_id: payment.payment_id, reversed_amount: amount, held_amount: heldOf(kept) },
  };
}

/**
 * A refund of captured cash, from one sales draft (Visa names it) or from the
 * payment's captures in order (QUICPay names the authorization); each ledger
 * transaction that took the cash gets a refund of its own share.
 */
export function decideRefund(payment: Payment, message: Readonly<{ refund_id: string; amount: number; sales_draft_id?: string | undefined }>): Decision {
  const captures = message.sales_draft_id === undefined ? payment.captures : payment.captures.filter((capture) => capture.sales_draft_id === message.sales_draft_id);
  const refundable = captures.reduce((sum, capture) => sum + capture.draws.reduce((inner, draw) => inner + draw.amount - draw.refunded, 0), 0);
  if (message.amount > refundable) {
    throw exceedsCapturedAmount(`the refund asks for ${message.amount} but ${refundable} of what was captured remains refundable`, { field: 'amount', refundable });
  }
  const steps: LedgerStep[] = [];
  let remaining = message.amount;
  let part = 0;
  const updated = payment.captures.map((capture) => {
    if (!captures.includes(capture) || remaining === 0) return capture;
    const draws = capture.draws.map((draw) => {
      const share = Math.min(remaining, draw.amount - draw.refunded);
      if (share === 0) return draw;
      remaining -= share;
      part += 1;
      steps.push({ kind: 'refund', transaction_id: `${payment.payment_id}:refund:${message.refund_id}:${part}`, refund_of: draw.transaction_id, amount: share });
      return { ...draw, refunded: draw.refunded + share };
    });
    return { ...capture, draws };
  });
  const refundedTotal = payment.refunded_total + message.amount;
  return {
    steps,
    payment: {
      ...payment,
      status: refundedTotal === payment.captured_total && payment.open_holds.length === 0 ? 'refunded' : payment.status,
      refunded_total: refundedTotal,
      captures: updated,
      ledger_transaction_ids: [...payment.ledger_transaction_ids, ...steps.map((step) => step.transaction_id)],
    },
    events: [{ type: 'payment.refunded', amount: message.amount }],
    answer: {
      refund_id: message.refund_id,
      payment_id: payment.payment_id,
      ...(message.sales_draft_id === undefined ? {} : { sales_draft_id: message.sales_draft_id }),
      refunded_amount: message.amount,
      refunded_total: refundedTotal,
    },
  };
}

/** The hold deadline passed with cash still held: release it all. */
export function decideExpiry(payment: Payment): Decision | undefined {
  if (payment.open_holds.length === 0) return undefined;
  const held = heldOf(payment.open_holds);
  return {
    steps: payment.open_holds.map((hold) => ({ kind: 'void', transaction_id: hold.transaction_id })),
    payment: {
      ...payment,
      status: payment.captured_total === 0 ? 'expired' : payment.status,
      reversed_total: payment.reversed_total + held,
      open_holds: [],
      hold_expires_at: null,
    },
    events: [{ type: 'payment.authorization_expired', amount: held }],
    answer: {},
  };
}

/**
 * A decision whose hold lapsed at the ledger midway — step `index` refused
 * after earlier ones ran, the decision finished after the payment's deadline
 * (a crash between its writes): what is done stays done, and the rest follows
 * what the ledger did at the deadline, which released the hold. A post from
 * the lapsed hold becomes a forced consume of the same amount (the capture
 * still takes its cash); a remainder to be held again under that deadline is
 * released instead (reversed, and said so by an expiry event). Ids derive from
 * the step's, so finishing it again replays.
 */
export function withLapsedStep(decision: Decision, index: number): Decision {
  const step = decision.steps[index];
  if (step === undefined) throw new Error(`no step ${index} in this decision`);
  const steps = [...decision.steps];
  const payment = decision.payment;
  if (step.kind === 'post') {
    const consume: LedgerStep = { kind: 'consume', transaction_id: `${step.transaction_id}:lapsed`, amount: step.amount };
    steps[index] = consume;
    const captures = payment.captures.map((capture, at) =>
      at !== payment.captures.length - 1
        ? capture
        : { ...capture, draws: capture.draws.map((draw) => (draw.transaction_id === step.transaction_id ? { ...draw, transaction_id: consume.transaction_id } : draw)) },
    );
    return {
      ...decision,
      steps,
      payment: { ...payment, captures, ledger_transaction_ids: [...payment.ledger_transaction_ids, consume.transaction_id] },
      events: decision.events.map((event) => (event.type === 'payment.captured' ? { ...event, extra: { ...event.extra, forced: true } } : event)),
      answer: 'forced' in decision.answer ? { ...decision.answer, forced: true } : decision.answer,
    };
  }
  if (step.kind === 'hold') {
    steps.splice(index, 1);
    const openHolds = payment.open_holds.filter((hold) => hold.transaction_id !== step.transaction_id);
    return {
      ...decision,
      steps,
      payment: {
        ...payment,
        open_holds: openHolds,
        reversed_total: payment.reversed_total + step.amount,
        hold_expires_at: openHolds.length > 0 ? payment.hold_expires_at : null,
        ledger_transaction_ids: payment.ledger_transaction_ids.filter((id) => id !== step.transaction_id),
      },
      events: [...decision.events, { type: 'payment.authorization_expired', amount: step.amount }],
      answer: 'held_amount' in decision.answer ? { ...decision.answer, held_amount: heldOf(openHolds) } : decision.answer,
    };
  }
  throw new Error(`a ${step.kind} step cannot lapse`);
}

/**
 * A decision whose hold (step `index`) the ledger already has under another
 * deadline: an earlier decision about the same message placed it, then its
 * journal entry was lost (a database crash before the entry reached disk, the
 * ledger's write retried after it) and the message was decided again by a
 * later clock. The hold is that message's own; the ledger's deadline stands.
 */
export function withHoldDeadline(decision: Decision, index: number, deadline: string): Decision {
  const step = decision.steps[index];
  if (step?.kind !== 'hold') throw new Error(`step ${index} of this decision is not a hold`);
  const steps = [...decision.steps];
  steps[index] = { ...step, expires_at: deadline };
  const payment = decision.payment.hold_expires_at === step.expires_at ? { ...decision.payment, hold_expires_at: deadline } : decision.payment;
  return { ...decision, steps, payment };
}

export function heldOf(holds: readonly OpenHold[]): number {
  return holds.reduce((sum, hold) => sum + hold.amount, 0);
}

function requireOpen(payment: Payment, what: string): void {
  if (payment.open_holds.length > 0) return;
  const why = payment.status === 'declined' ? 'was declined' : 'holds nothing any more (captured in full, reversed or expired)';
  throw authorizationClosed(`cannot ${what} payment ${payment.payment_id}: it ${why}`, { payment_id: payment.payment_id, status: payment.status });
}

/** The `data` of a payment event, from the payment after the change. */
export function eventData(payment: Payment, draft: PaymentEventDraft, message: Readonly<{ id: string; occurredAt: string }>): PaymentEventData {
  return {
    payment_id: payment.payment_id,
    route: payment.route,
    user_id: payment.user_id,
    amount: draft.amount,
    authorized_total: payment.authorized_total,
    captured_total: payment.captured_total,
    refunded_total: payment.refunded_total,
    currency: payment.currency,
    merchant: payment.merchant,
    occurred_at: message.occurredAt,
    network_message_id: message.id,
    ...draft.extra,
  };
}
