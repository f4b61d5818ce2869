// Test-only: card payments as the routes publish them — each step's event with
// the running totals after it, in the order the payment service produces them
// — and what the points of such a payment must end as, by simple arithmetic
// (the default rules: 0.5 %), independent of the service's code.
import fc from 'fast-check';
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import { paymentEvent, type PaymentEventType, type PaymentRoute } from '../../../contracts/events/payments.ts';

export type Step =
  | { kind: 'authorize'; amount: number }
  | { kind: 'increase'; amount: number }
  | { kind: 'capture'; amount: number; final: boolean }
  | { kind: 'reverse'; amount: number }
  | { kind: 'expire' }
  | { kind: 'refund'; amount: number };

export type PaymentFacts = { payment_id: string; user_id: string; route?: PaymentRoute; mcc?: string; start: string };

/** The events of a payment, in production order, with the totals after each; steps that are impossible at their point (a reversal of nothing) are dropped. */
export function paymentEvents(facts: PaymentFacts, steps: readonly Step[]): CloudEvent[] {
  const events: CloudEvent[] = [];
  let authorized = 0;
  let captured = 0;
  let refunded = 0;
  let held = 0;
  let open = false;
  let n = 0;
  const emit = (type: PaymentEventType, amount: number, extra: { final?: boolean; forced?: boolean } = {}) => {
    n += 1;
    const time = new Date(Date.parse(facts.start) + n * 1000).toISOString();
    const event = paymentEvent({
      id: `${facts.payment_id}:${n}`,
      type,
      time,
      data: {
        payment_id: facts.payment_id,
        route: facts.route ?? 'visa',
        user_id: facts.user_id,
        amount,
        authorized_total: authorized,
        captured_total: captured,
        refunded_total: refunded,
        currency: 'JPY',
        merchant: { id: 'shop-1', name: 'Corner Shop', category_code: facts.mcc ?? '5411' },
        occurred_at: time,
        network_message_id: `m${n}`,
        ...extra,
      },
    });
    events.push(event as CloudEvent);
  };
  for (const step of steps) {
    switch (step.kind) {
      case 'authorize':
        if (authorized > 0 || captured > 0) break;
        authorized = step.amount;
        held = step.amount;
        open = true;
        emit('payment.authorized', step.amount);
        break;
      case 'increase':
        if (!open) break;
        authorized += step.amount;
        held += step.amount;
        emit('payment.authorization_increased', step.amount);
        break;
      case 'capture': {
        if (authorized === 0 && captured === 0) {
          // A sales draft with no authorization seen: a forced capture that creates the payment and closes it.
          captured = step.amount;
          emit('payment.captured', step.amount, { final: true, forced: true });
          break;
        }
        const forced = step.amount > held;
        captured += step.amount;
        held = step.final ? 0 : Math.max(0, held - step.amount);
        if (held === 0) open = false;
        emit('payment.captured', step.amount, { final: step.final, forced });
        break;
      }
      case 'reverse': {
        if (!open || held === 0) break;
        const amount = Math.min(step.amount, held);
        held -= amount;
        if (held === 0) open = false;
        emit('payment.reversed', amount);
        break;
      }
      case 'expire':
        if (!open || held === 0) break;
        emit('payment.authorization_expired', held);
        held = 0;
        open = false;
        break;
      case 'refund': {
        const amount = Math.min(step.amount, captured - refunded);
        if (amount === 0) break;
        refunded += amount;
        emit('payment.refunded', amount);
        break;
      }
    }
  }
  return events;
}

/** What a payment's points must end as under the default rules (0.5 %, floored), from its last totals. */
export function expectedPoints(events: readonly CloudEvent[]): { available: number; pending: number; status: string | null; clawed: number } {
  type Data = { authorized_total: number; captured_total: number; refunded_total: number; amount: number; final?: boolean };
  let authorized = 0;
  let captured = 0;
  let refunded = 0;
  let reversed = 0;
  let closed = false;
  let anchored = false;
  for (const event of events) {
    const data = event.data as Data;
    authorized = Math.max(authorized, data.authorized_total);
    captured = Math.max(captured, data.captured_total);
    refunded = Math.max(refunded, data.refunded_total);
    if (event.type === 'payment.reversed') reversed += data.amount;
    if (event.type === 'payment.authorization_expired' || (event.type === 'payment.captured' && data.final === true)) closed = true;
    if (event.type === 'payment.authorized' || (event.type === 'payment.captured' && data.authorized_total === 0 && data.captured_total === data.amount)) anchored = true;
  }
  if (!anchored) return { available: 0, pending: 0, status: null, clawed: 0 };
  const held = closed ? 0 : Math.max(0, authorized - captured - reversed);
  const points = (amount: number) => Math.floor((amount * 50) / 10_000);
  const confirmed = points(captured);
  const pending = points(captured + held) - confirmed;
  const clawed = captured === 0 ? 0 : Math.floor((confirmed * refunded) / captured);
  const status = captured > 0 ? (refunded >= captured ? 'clawed_back' : 'confirmed') : held > 0 ? 'pending' : 'voided';
  return { available: confirmed - clawed, pending, status, clawed };
}

const amount = fc.integer({ min: 1, max: 200_000 });

/** A payment's steps: usually an authorization first, sometimes a capture with none (forced). */
export const stepsArbitrary: fc.Arbitrary<Step[]> = fc
  .tuple(
    fc.oneof(
      { weight: 5, arbitrary: amount.map((value): Step => ({ kind: 'authorize', amount: value })) },
      { weight: 1, arbitrary: amount.map((value): Step => ({ kind: 'capture', amount: value, final: true })) },
    ),
    fc.array(
      fc.oneof(
        amount.map((value): Step => ({ kind: 'increase', amount: value })),
        fc.record({ amount, final: fc.boolean() }).map(({ amount: value, final }): Step => ({ kind: 'capture', amount: value, final })),
        amount.map((value): Step => ({ kind: 'reverse', amount: value })),
        fc.constant<Step>({ kind: 'expire' }),
        amount.map((value): Step => ({ kind: 'refund', amount: value })),
      ),
      { maxLength: 8 },
    ),
  )
  .map(([first, rest]) => [first, ...rest]);

/** A delivery order: the events shuffled, some delivered more than once. */
export function deliveries(events: readonly CloudEvent[]): fc.Arbitrary<CloudEvent[]> {
  return fc
    .tuple(fc.shuffledSubarray([...events], { minLength: events.length, maxLength: events.length }), fc.array(fc.nat({ max: Math.max(0, events.length - 1) }), { maxLength: 4 }))
    .chain(([shuffled, repeats]) => {
      const withRepeats = [...shuffled, ...(events.length === 0 ? [] : repeats.map((index) => events[index]!))];
      return fc.shuffledSubarray(withRepeats, { minLength: withRepeats.length, maxLength: withRepeats.length });
    });
}
