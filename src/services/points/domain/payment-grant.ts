// The points lifecycle of one card payment, as a pure core (Emmett's
// evolve/decide): `evolve` folds a payment event into what was seen of the
// payment; `decide` turns what was seen into the ledger commands that bring
// the points ledger to where it should be, and the grant as users read it.
//
// Why it converges under any order and any duplicates: what was seen is a
// join of the events — the largest of each running total the events carry
// (authorized_total, captured_total, refunded_total only grow), the set of
// reversals by their network id, flags for expiry and the final capture, and
// the authorization's instant — so folding the same events in any order, any
// number of times, gives the same value. The targets (pending, confirmed,
// clawed back) are functions of that value alone, and `decide` issues only the
// difference between the targets and what the ledger was already told
// (`book`), each step under a new id derived from the payment and its place in
// its stream (`points:<payment_id>:pending:<n>`, `…:confirm:<n>`,
// `…:claw:<n>`). A redelivered event changes nothing, so it issues nothing.
//
// Why confirmed points are a separate add rather than a post of the pending
// add: a post cannot exceed its hold (force is for consumes), is done at most
// once (several captures each confirm), cannot set the lot's expiry at the
// time of capture, and the hold may have lapsed if the capture is late. So the
// pending add is voided and the confirmed points are a posted add (a lot with
// `expires_at` when POINTS_EXPIRY_DAYS > 0).
import type { TransactionRequest } from '../../../contracts/ledger/types.ts';
import type { PaymentEvent, PaymentRoute } from '../../../contracts/events/payments.ts';
import { computePoints, type EarningRules, isEarningRulesError } from './earning-rules.ts';
import { EARNING_AMOUNT_MAX, JST_OFFSET_MS, LEDGER_STEPS_PER_PAYMENT_MAX, PENDING_GRANT_HOLD_MS, REVERSALS_PER_PAYMENT_MAX } from './limits.ts';
import { ledgerIdBase } from './ledger-ids.ts';

export const POINTS_BALANCE_TYPE = 'points';
const DAY_MS = 24 * 60 * 60 * 1000;

/** What was seen of a payment: a join of its events (see the file's comment). */
export type SeenPayment = Readonly<{
  payment_id: string;
  user_id: string;
  route: PaymentRoute;
  mcc: string;
  authorized_total: number;
  captured_total: number;
  refunded_total: number;
  /** Released amounts of partial or full reversals, by the reversal's network message id. */
  reversals: Readonly<Record<string, number>>;
  expired: boolean;
  final_captured: boolean;
  /**
   * The instant the points are computed at (version, campaigns, month): the
   * authorization's, or for a capture with no authorization (forced, authorized
   * total 0) the first capture's. Null until that event is seen: the grant
   * waits for it, because another instant could pick another rule version.
   */
  anchor: Readonly<{ occurred_at: string; by: 'authorization' | 'forced_capture' }> | null;
}>;

/** One ledger step of a stream: its id and its signed amount (a negative confirm or a negative claw gives back). */
export type BookStep = Readonly<{ id: string; amount: number }>;

/** What the ledger was told for this payment. */
export type Book = Readonly<{
  rule_version: string | null;
  /** Pending adds, in order; at most the last is open. */
  holds: readonly Readonly<{ id: string; amount: number; open: boolean }>[];
  confirms: readonly BookStep[];
  claws: readonly BookStep[];
  /** What this payment counts toward the user's caps, and in which JST month. */
  counted: Readonly<{ month: string; points: number; campaigns: Readonly<Record<string, number>> }> | null;
}>;

export type PaymentRecord = Readonly<{ seen: SeenPayment; book: Book }>;

/** A ledger write, complete: running it twice is a replay. */
export type LedgerCommand =
  | Readonly<{ kind: 'submit'; request: TransactionRequest }>
  | Readonly<{ kind: 'void'; transaction_id: string; balance_type: string }>;

export type GrantStatus = 'pending' | 'confirmed' | 'voided' | 'clawed_back';

/** The grant as users read it. */
export type GrantView = Readonly<{ points: number; status: GrantStatus; clawed_back_points: number; rule_version: string | null }>;

/** What the caps need: the user's totals without this payment (the store reads them for the anchor's month). */
export type CapTotals = Readonly<{ month_points_others: number; campaign_points_others: Readonly<Record<string, number>> }>;

export type DecideContext = Readonly<{ rules: EarningRules; now: Date; expiryDays: number; totals: CapTotals }>;

export type Decision = Readonly<{
  record: PaymentRecord;
  commands: readonly LedgerCommand[];
  /** Null while there is nothing to show (no anchor yet). */
  grant: GrantView | null;
}>;

export const EMPTY_BOOK: Book = { rule_version: null, holds: [], confirms: [], claws: [], counted: null };

/** The first event of a payment starts what was seen. */
export function initialSeen(event: PaymentEvent): SeenPayment {
  const { data } = event;
  return {
    payment_id: data.payment_id,
    user_id: data.user_id,
    route: data.route,
    mcc: data.merchant.category_code,
    authorized_total: 0,
    captured_total: 0,
    refunded_total: 0,
    reversals: {},
    expired: false,
    final_captured: false,
    anchor: null,
  };
}

/** Folds one event in; commutative, associative and idempotent (a join). A declined payment changes nothing. */
export function evolve(seen: SeenPayment, event: PaymentEvent): SeenPayment {
  const { data, type } = event;
  if (type === 'payment.declined') return seen;
  let anchor = seen.anchor;
  const candidate =
    type === 'payment.authorized'
      ? ({ occurred_at: data.occurred_at, by: 'authorization' } as const)
      : type === 'payment.captured' && data.authorized_total === 0 && data.captured_total === data.amount
        ? ({ occurred_at: data.occurred_at, by: 'forced_capture' } as const)
        : null;
  if (candidate !== null) anchor = earlierAnchor(anchor, candidate);
  let reversals = seen.reversals;
  if (type === 'payment.reversed' && !Object.hasOwn(reversals, data.network_message_id)) {
    if (Object.keys(reversals).length >= REVERSALS_PER_PAYMENT_MAX) throw new RangeError(`payment ${data.payment_id} has more than ${REVERSALS_PER_PAYMENT_MAX} reversals`);
    reversals = { ...reversals, [data.network_message_id]: data.amount };
  }
  return {
    ...seen,
    authorized_total: Math.max(seen.authorized_total, data.authorized_total),
    captured_total: Math.max(seen.captured_total, data.captured_total),
    refunded_total: Math.max(seen.refunded_total, data.refunded_total),
    reversals,
    expired: seen.expired || type === 'payment.authorization_expired',
    final_captured: seen.final_captured || (type === 'payment.captured' && data.final === true),
    anchor,
  };
}

/** An authorization's instant wins over a forced capture's; between two of a kind, the earlier (so any order picks the same). */
function earlierAnchor(current: SeenPayment['anchor'], candidate: NonNullable<SeenPayment['anchor']>): SeenPayment['anchor'] {
  if (current === null) return candidate;
  if (current.by !== candidate.by) return current.by === 'authorization' ? current : candidate;
  return Date.parse(candidate.occurred_at) < Date.parse(current.occurred_at) ? candidate : current;
}

/** The JST calendar month (YYYY-MM) of an instant: monthly caps count months in Japan. */
export function jstMonth(instant: string): string {
  const ms = Date.parse(instant);
  if (!Number.isFinite(ms)) throw new RangeError(`not an instant: ${instant}`);
  return new Date(ms + JST_OFFSET_MS).toISOString().slice(0, 7);
}

/** What is still authorized and neither captured nor released. */
export function stillHeld(seen: SeenPayment): number {
  if (seen.expired || seen.final_captured) return 0;
  const reversed = Object.values(seen.reversals).reduce((sum, amount) => sum + amount, 0);
  return Math.max(0, seen.authorized_total - seen.captured_total - reversed);
}

export type Targets = Readonly<{ version: string | null; pending: number; confirmed: number; clawed: number; counted: number; campaigns: Readonly<Record<string, number>> }>;

/**
 * Where the ledger should be. Pending is what the whole (captured + still held)
 * earns minus what the captured part earns, so caps apply once to the whole;
 * the claw-back is floor(confirmed × refunded / captured), so partial refunds
 * add up to exactly the confirmed points when all is refunded.
 */
export function targets(seen: SeenPayment, version: string | null, context: Omit<DecideContext, 'now' | 'expiryDays'>): Targets {
  const none: Targets = { version, pending: 0, confirmed: 0, clawed: 0, counted: 0, campaigns: {} };
  if (seen.anchor === null) return none;
  const earn = (amount: number) => {
    try {
      return computePoints(context.rules, {
        route: seen.route,
        amount: Math.min(amount, EARNING_AMOUNT_MAX),
        mcc: seen.mcc,
        occurred_at: seen.anchor!.occurred_at,
        ...(version === null ? {} : { version }),
        month_points_earned: context.totals.month_points_others,
        campaign_points_earned: context.totals.campaign_points_others,
      });
    } catch (error) {
      // No version in force at the anchor (before the first one): the payment earns nothing. A pinned version gone from the rules is a configuration error and throws.
      if (isEarningRulesError(error, 'no_version_in_force')) return undefined;
      throw error;
    }
  };
  const captured = seen.captured_total;
  const whole = earn(captured + stillHeld(seen));
  if (whole === undefined) return none;
  const confirmed = captured > 0 ? earn(captured)!.points : 0;
  const pending = Math.max(0, whole.points - confirmed);
  const refunded = Math.min(seen.refunded_total, captured);
  const clawed = captured > 0 ? Number((BigInt(confirmed) * BigInt(refunded)) / BigInt(captured)) : 0;
  return { version: whole.version, pending, confirmed, clawed, counted: pending + confirmed, campaigns: whole.campaign_points };
}

/** The ledger commands that take the book to the targets, and the book after them. */
export function decide(record: PaymentRecord, context: DecideContext): Decision {
  const { seen, book } = record;
  const target = targets(seen, book.rule_version, context);
  if (seen.anchor === null) return { record, commands: [], grant: null };
  const base = ledgerIdBase(`points:${seen.payment_id}`);
  const commands: LedgerCommand[] = [];
  const user_id = seen.user_id;
  const metadata = { payment_id: seen.payment_id, ...(target.version === null ? {} : { rule_version: target.version }) };

  let holds = [...book.holds];
  const open = holds.find((hold) => hold.open);
  if ((open?.amount ?? 0) !== target.pending) {
    if (open !== undefined) {
      commands.push({ kind: 'void', transaction_id: open.id, balance_type: POINTS_BALANCE_TYPE });
      holds = holds.map((hold) => (hold === open ? { ...hold, open: false } : hold));
    }
    if (target.pending > 0) {
      const id = stepId(base, 'pending', holds.length);
      commands.push({
        kind: 'submit',
        request: {
          transaction_id: id,
          type: 'add',
          user_id,
          balance_type: POINTS_BALANCE_TYPE,
          amount: target.pending,
          pending: true,
          pending_expires_at: new Date(context.now.getTime() + PENDING_GRANT_HOLD_MS).toISOString(),
          description: 'points to be earned by a card payment',
          metadata,
        },
      });
      holds.push({ id, amount: target.pending, open: true });
    }
  }

  const confirms = [...book.confirms];
  const confirmedSoFar = sum(confirms);
  if (target.confirmed !== confirmedSoFar) {
    const id = stepId(base, 'confirm', confirms.length);
    const delta = target.confirmed - confirmedSoFar;
    commands.push(delta > 0 ? credit(id, user_id, delta, context, 'points earned by a card payment', metadata, true) : debit(id, user_id, -delta, 'points of a card payment recomputed lower', metadata));
    confirms.push({ id, amount: delta });
  }

  const claws = [...book.claws];
  const clawedSoFar = sum(claws);
  if (target.clawed !== clawedSoFar) {
    const id = stepId(base, 'claw', claws.length);
    const delta = target.clawed - clawedSoFar;
    commands.push(delta > 0 ? debit(id, user_id, delta, 'points clawed back: the payment was refunded', metadata) : credit(id, user_id, -delta, context, 'clawed-back points given back', metadata, false));
    claws.push({ id, amount: delta });
  }

  const month = jstMonth(seen.anchor.occurred_at);
  const nextBook: Book = {
    rule_version: target.version,
    holds,
    confirms,
    claws,
    counted: { month, points: target.counted, campaigns: target.campaigns },
  };
  return { record: { seen, book: nextBook }, commands, grant: view(seen, target) };
}

function view(seen: SeenPayment, target: Targets): GrantView {
  const captured = seen.captured_total > 0;
  const status: GrantStatus = captured ? (seen.refunded_total >= seen.captured_total ? 'clawed_back' : 'confirmed') : stillHeld(seen) > 0 ? 'pending' : 'voided';
  return { points: captured ? target.confirmed : target.pending, status, clawed_back_points: target.clawed, rule_version: target.version };
}

function stepId(base: string, stream: 'pending' | 'confirm' | 'claw', taken: number): string {
  if (taken >= LEDGER_STEPS_PER_PAYMENT_MAX) throw new RangeError(`${base}: more than ${LEDGER_STEPS_PER_PAYMENT_MAX} ${stream} steps; this is a bug`);
  return `${base}:${stream}:${taken + 1}`;
}

function credit(id: string, user_id: string, amount: number, context: DecideContext, description: string, metadata: Record<string, unknown>, expires: boolean): LedgerCommand {
  return {
    kind: 'submit',
    request: {
      transaction_id: id,
      type: 'add',
      user_id,
      balance_type: POINTS_BALANCE_TYPE,
      amount,
      ...(expires ? expiresAt(context) : {}),
      description,
      metadata,
    },
  };
}

/** A forced debit: claw-backs take points already spent, leaving a debt the next credits repay. */
function debit(id: string, user_id: string, amount: number, description: string, metadata: Record<string, unknown>): LedgerCommand {
  return { kind: 'submit', request: { transaction_id: id, type: 'consume', user_id, balance_type: POINTS_BALANCE_TYPE, amount, force: true, description, metadata } };
}

/** `expires_at` of confirmed points, from the decision's instant: none when POINTS_EXPIRY_DAYS is 0. */
export function expiresAt(context: { now: Date; expiryDays: number }): { expires_at?: string } {
  return context.expiryDays > 0 ? { expires_at: new Date(context.now.getTime() + context.expiryDays * DAY_MS).toISOString() } : {};
}

function sum(steps: readonly BookStep[]): number {
  return steps.reduce((total, step) => total + step.amount, 0);
}
