// One card route's payment service: takes a network message, decides under
// the payment's lock (domain/payment.ts), moves cash through the LedgerApi,
// then commits the answer, the payment and its events (outbox) in one
// transaction of the route's own database. A resend is answered from what was
// stored. Each decision is journalled (an intent) before its ledger writes: one
// cut short by a crash is finished — its writes replay, their ids being
// derived — before the payment's next message, or by the sweeper.
import type { Logger } from 'pino';
import { isLedgerError, type LedgerApi } from '../../contracts/ledger/ledger-api.ts';
import type { Transaction } from '../../contracts/ledger/types.ts';
import { paymentEvent, type PaymentRoute } from '../../contracts/events/payments.ts';
import type { Clock } from '../../platform/clock.ts';
import { KobanError } from '../../platform/errors.ts';
import { Wakeup } from '../../platform/wakeup.ts';
import {
  type Authorization,
  type Decision,
  decideAdviceOnKnown,
  decideAuthorization,
  decideCapture,
  decideExpiry,
  decideForcedCapture,
  decideIncrement,
  decideRefund,
  decideReversal,
  eventData,
  heldOf,
  type LedgerStep,
  type Payment,
  paymentIdOf,
  type RouteRules,
  withHoldDeadline,
  withLapsedStep,
} from './domain/payment.ts';
import { differingFields } from './domain/messages.ts';
import { EXPIRY_SWEEP_BATCH_SIZE_MAX, INTENT_STALLED_AFTER_MS } from './domain/limits.ts';
import type { Intent, MessageKind, Opened, PaymentEventRow, PaymentSession, PaymentStore, StoredMessage } from './store/payment-store.ts';

export type { MessageKind } from './store/payment-store.ts';

/** The balance type card payments move. */
export const CASH = 'cash';

/** An answer to a network: the body exactly as first sent (a resend gets the same bytes). */
export type Answer = Readonly<{ status: number; body: string; replayed: boolean }>;

export type SalesDraftMessage = Readonly<{
  sales_draft_id: string;
  authorization_id: string;
  user_id: string;
  amount: number;
  currency: string;
  merchant: Authorization['merchant'];
  final: boolean;
}>;

export type ReversalMessage = Readonly<{ reversal_id: string; authorization_id: string; user_id: string; amount?: number | undefined }>;

/** A refund names the sales draft (Visa) or the authorization (QUICPay+). */
export type RefundMessage = Readonly<
  { refund_id: string; user_id: string; amount: number } & ({ sales_draft_id: string; authorization_id?: undefined } | { authorization_id: string; sales_draft_id?: undefined })
>;

export type PaymentView = {
  payment_id: string;
  route: PaymentRoute;
  user_id: string;
  status: Payment['status'];
  authorized_amount: number;
  captured_total: number;
  refunded_total: number;
  held_amount: number;
  ledger_transaction_ids: readonly string[];
  events: PaymentEventRow[];
};

/**
 * How a route's network speaks, where it differs from the domain: the
 * namespace its message ids are unique in (QUICPay+'s transaction numbers
 * span every message type), and the shape of its answers.
 */
export type NetworkDialect = Readonly<{
  /** The key a message's id is unique under, from the domain's kind of message. */
  namespace(kind: MessageKind): string;
  /** The answer's body, from the domain's answer. */
  render(kind: MessageKind, answer: Readonly<Record<string, unknown>>): object;
}>;

/**
 * What publishes the route's outbox to the bus (its relay). Stopped, payments
 * go on and their events wait in the outbox; started again, it publishes them.
 */
export type OutboxPublisher = Readonly<{ start(): void; stop(): Promise<void> }>;

const DOMAIN_DIALECT: NetworkDialect = { namespace: (kind) => kind, render: (_kind, answer) => answer };

export class PaymentService {
  readonly #store: PaymentStore;
  readonly #ledger: LedgerApi;
  readonly #rules: RouteRules;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #sweepIntervalMs: number;
  readonly #dialect: NetworkDialect;
  readonly #publisher: OutboxPublisher | undefined;
  readonly #wakeup = new Wakeup();
  #sweeper: Promise<void> | undefined;
  #stopping = false;

  constructor(options: {
    store: PaymentStore;
    ledger: LedgerApi;
    rules: RouteRules;
    clock: Clock;
    logger: Logger;
    sweepIntervalMs: number;
    dialect?: NetworkDialect;
    /** Started and stopped with the service; pausePublishing/resumePublishing in between. */
    publisher?: OutboxPublisher;
  }) {
    this.#dialect = options.dialect ?? DOMAIN_DIALECT;
    this.#publisher = options.publisher;
    this.#store = options.store;
    this.#ledger = options.ledger;
    this.#rules = options.rules;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#sweepIntervalMs = options.sweepIntervalMs;
  }

  get route(): PaymentRoute {
    return this.#rules.route;
  }

  /** An authorization, an incremental one (`incremental_of`), or an advice (a stand-in approval: forced, never declined). */
  authorize(message: Authorization, options: { advice: boolean; raw?: object }): Promise<Answer> {
    const kind: MessageKind = options.advice ? 'advice' : 'authorization';
    const paymentId = paymentIdOf(this.route, message.incremental_of ?? message.authorization_id);
    return this.#handle(kind, message.authorization_id, options.raw ?? message, paymentId, message.incremental_of === undefined, (payment, now) => {
      if (message.incremental_of !== undefined) {
        if (payment === undefined) throw unknownPayment(paymentId, 'incremental_of');
        checkUser(payment, message.user_id);
        return decideIncrement(this.#rules, payment, message, { advice: options.advice, now });
      }
      if (payment === undefined) return decideAuthorization(this.#rules, message, { advice: options.advice, now });
      checkUser(payment, message.user_id);
      // The authorization's own id is taken by a forced capture that came first, or an advice follows our answer.
      return decideAdviceOnKnown(this.#rules, payment, message, now);
    });
  }

  /** A sales draft: captures from the hold, or a forced capture when the authorization was never seen. */
  capture(message: SalesDraftMessage, raw?: object): Promise<Answer> {
    const paymentId = paymentIdOf(this.route, message.authorization_id);
    return this.#handle('sales_draft', message.sales_draft_id, raw ?? message, paymentId, false, (payment, now) => {
      if (payment === undefined) return decideForcedCapture(this.#rules, message, now);
      checkUser(payment, message.user_id);
      return decideCapture(payment, message, now);
    });
  }

  reverse(message: ReversalMessage, raw?: object): Promise<Answer> {
    const paymentId = paymentIdOf(this.route, message.authorization_id);
    return this.#handle('reversal', message.reversal_id, raw ?? message, paymentId, false, (payment) => {
      if (payment === undefined) throw unknownPayment(paymentId, 'authorization_id');
      checkUser(payment, message.user_id);
      return decideReversal(payment, message);
    });
  }

  async refund(message: RefundMessage, raw?: object): Promise<Answer> {
    let paymentId: string;
    if (message.sales_draft_id !== undefined) {
      const found = await this.#store.paymentOfMessage(this.#dialect.namespace('sales_draft'), message.sales_draft_id);
      if (found === undefined) throw new KobanError('not_found', `no sales draft ${message.sales_draft_id} on ${this.route}`, { field: 'sales_draft_id' });
      paymentId = found;
    } else {
      paymentId = paymentIdOf(this.route, message.authorization_id);
    }
    return this.#handle('refund', message.refund_id, raw ?? message, paymentId, false, (payment) => {
      if (payment === undefined) throw unknownPayment(paymentId, 'authorization_id');
      checkUser(payment, message.user_id);
      return decideRefund(payment, message);
    });
  }

  /**
   * The stored answer to a message, if its id was seen (a conflicting reuse
   * throws): for a network whose message means something different depending
   * on the payment's state, so a resend is answered before the state is read.
   */
  async storedAnswer(kind: MessageKind, messageId: string, raw: object): Promise<Answer | undefined> {
    const prior = await this.#store.storedMessage(this.#dialect.namespace(kind), messageId);
    return prior === undefined ? undefined : replayOf(prior, messageId, raw);
  }

  /** The payment as stored, or undefined (read without its lock: a snapshot). */
  payment(paymentId: string): Promise<Payment | undefined> {
    return this.#store.payment(paymentId);
  }

  async view(paymentId: string): Promise<PaymentView> {
    const found = await this.#store.read(paymentId);
    if (found === undefined) throw unknownPayment(paymentId, 'payment_id');
    const { payment, events } = found;
    return {
      payment_id: payment.payment_id,
      route: payment.route,
      user_id: payment.user_id,
      status: payment.status,
      authorized_amount: payment.authorized_total,
      captured_total: payment.captured_total,
      refunded_total: payment.refunded_total,
      held_amount: heldOf(payment.open_holds),
      ledger_transaction_ids: payment.ledger_transaction_ids,
      events,
    };
  }

  /** Releases the holds of every authorization past its deadline; returns how many expired. */
  async expireDue(): Promise<number> {
    let expired = 0;
    for (;;) {
      const now = this.#clock.now();
      const due = await this.#store.expiredHolds(now, EXPIRY_SWEEP_BATCH_SIZE_MAX);
      for (const paymentId of due) {
        await this.#store.withPayment(async (session) => {
          const payment = await this.#settled(session, paymentId, await session.open(paymentId, paymentId));
          if (payment !== undefined && (await this.#expireIfDue(session, payment, now)) !== payment) expired += 1;
        });
      }
      if (due.length < EXPIRY_SWEEP_BATCH_SIZE_MAX) return expired;
    }
  }

  /** Finishes decisions cut short (a crash between the ledger and the commit) that no message has come to finish. */
  async finishStalled(): Promise<number> {
    const stalled = await this.#store.stalledIntents(new Date(this.#clock.now().getTime() - INTENT_STALLED_AFTER_MS), EXPIRY_SWEEP_BATCH_SIZE_MAX);
    for (const paymentId of stalled) await this.#store.withPayment(async (session) => this.#settled(session, paymentId, await session.open(paymentId, paymentId)));
    return stalled.length;
  }

  /**
   * Stops publishing (after the batch in flight): approvals go on, their
   * events wait in the outbox. In process only (no route exposes it): the
   * test that proves approvals never wait on the bus uses it.
   */
  async pausePublishing(): Promise<void> {
    await this.#publisher?.stop();
  }

  /** Publishes again, the events that waited first. */
  resumePublishing(): void {
    if (!this.#stopping) this.#publisher?.start();
  }

  start(): void {
    this.#publisher?.start();
    if (this.#sweepIntervalMs === 0 || this.#sweeper !== undefined) return;
    this.#sweeper = (async () => {
      while (!this.#stopping) {
        await this.finishStalled().catch((error: unknown) => this.#logger.warn({ err: error }, 'finishing interrupted payment decisions failed; will retry'));
        await this.expireDue().catch((error: unknown) => this.#logger.warn({ err: error }, 'expiring lapsed authorizations failed; will retry'));
        await this.#wakeup.sleep(this.#sweepIntervalMs);
      }
    })();
  }

  async close(): Promise<void> {
    this.#stopping = true;
    this.#wakeup.wake();
    await this.#sweeper;
    await this.#publisher?.stop();
  }

  /** The payment once every journalled decision about it is finished (usually none: then as opened). */
  async #settled(session: PaymentSession, paymentId: string, opened: Opened): Promise<Payment | undefined> {
    if (opened.intents.length === 0) return opened.payment;
    for (const open of opened.intents) {
      this.#logger.info({ paymentId, kind: open.intent.kind, messageId: open.intent.message_id }, 'finishing a payment decision that was cut short');
      try {
        await this.#finish(session, open.intent, open.seq);
      } catch (error) {
        // Refused before anything moved (#finish dropped it): its message was never answered, so the network's
        // resend is decided afresh — typically a hold that lapsed while the decision waited. Nothing to carry on.
        if (!refusedBeforeMoving(error)) throw error;
        this.#logger.info({ paymentId, kind: open.intent.kind, messageId: open.intent.message_id, err: error }, 'the ledger refused a payment decision cut short; dropped it');
      }
    }
    return session.payment(paymentId);
  }

  /** A hold past its deadline is released before anything else happens to the payment (a late capture is then forced). */
  async #expireIfDue(session: PaymentSession, payment: Payment, now: Date): Promise<Payment> {
    if (payment.hold_expires_at === null || payment.open_holds.length === 0 || new Date(payment.hold_expires_at) > now) return payment;
    const decision = decideExpiry(payment);
    if (decision === undefined) return payment;
    await this.#decide(session, { kind: 'expiry', message_id: payment.authorization_id, request: null, occurred_at: payment.hold_expires_at, decision });
    return decision.payment;
  }

  async #handle(
    kind: MessageKind,
    messageId: string,
    request: object,
    paymentId: string,
    /** A message that would create its payment: its decision from no payment is journalled as the lock is taken (openFresh). */
    createsPayment: boolean,
    decide: (payment: Payment | undefined, now: Date) => Decision,
  ): Promise<Answer> {
    const namespace = this.#dialect.namespace(kind);
    return this.#store.withPayment(async (session) => {
      const message = { namespace, id: messageId };
      const fresh = createsPayment ? this.#freshIntent(kind, messageId, request, decide) : undefined;
      let opened: Opened;
      if (fresh === undefined) {
        opened = await session.open(paymentId, paymentId, message);
      } else {
        const opening = await session.openFresh(paymentId, paymentId, message, fresh);
        if ('journalled' in opening) return { status: 200, body: await this.#finish(session, fresh, opening.journalled, { endsSession: true }), replayed: false };
        opened = opening;
      }
      let payment = await this.#settled(session, paymentId, opened);
      // A decision just finished may have been this very message's.
      const prior = opened.intents.length === 0 ? opened.message : await session.message(namespace, messageId);
      if (prior !== undefined) return replayOf(prior, messageId, request);
      const now = this.#clock.now();
      if (payment !== undefined) payment = await this.#expireIfDue(session, payment, now);
      const intent = (current: Payment | undefined): Intent => ({ kind, message_id: messageId, request, occurred_at: now.toISOString(), decision: decide(current, now) });
      try {
        return { status: 200, body: await this.#decide(session, intent(payment), { endsSession: true }), replayed: false };
      } catch (error) {
        // The ledger keeps its holds' deadlines on its own clock: when it says a hold lapsed that this route's
        // clock (behind it, or a moment earlier) still counted as held, nothing moved and the decision was
        // abandoned; the ledger's word stands — the payment expires as of its deadline, and the message is
        // decided again on what is left (a capture is then forced, as any late one).
        if (payment === undefined || payment.hold_expires_at === null || !holdLapsed(error)) throw error;
        this.#logger.info({ paymentId, deadline: payment.hold_expires_at }, "the ledger let the hold lapse before this route's clock reached its deadline; expiring it first");
        const expired = await this.#expireIfDue(session, payment, new Date(payment.hold_expires_at));
        return { status: 200, body: await this.#decide(session, intent(expired), { endsSession: true }), replayed: false };
      }
    });
  }

  /**
   * The intent of a message that would create its payment, decided now as if it had none, when it moves cash
   * (a decline is only recorded: nothing to journal). Undefined otherwise, or when the decision refuses the
   * message: the ordinary path then decides it again under the lock and answers that refusal.
   */
  #freshIntent(kind: MessageKind, messageId: string, request: object, decide: (payment: undefined, now: Date) => Decision): Intent | undefined {
    const now = this.#clock.now();
    let decision: Decision;
    try {
      decision = decide(undefined, now);
    } catch {
      return undefined;
    }
    return decision.steps.length === 0 ? undefined : { kind, message_id: messageId, request, occurred_at: now.toISOString(), decision };
  }

  /** Journals a decision that moves cash, then carries it out; returns the answer's body. */
  async #decide(session: PaymentSession, intent: Intent, options: { endsSession: boolean } = { endsSession: false }): Promise<string> {
    const seq = intent.decision.steps.length > 0 ? await session.recordIntent(intent.decision.payment.payment_id, intent) : undefined;
    return this.#finish(session, intent, seq, options);
  }

  /**
   * Runs a decision's ledger writes (replays, if they ran before) and commits its outcome. `endsSession`: the
   * message's own decision, the session's last step — its commit lets the payment's lock go.
   */
  async #finish(session: PaymentSession, intent: Intent, seq: number | undefined, options: { endsSession: boolean } = { endsSession: false }): Promise<string> {
    let decision = intent.decision;
    let results: Transaction[] = [];
    try {
      for (let index = 0; index < decision.steps.length; index += 1) {
        try {
          results.push(await this.#step(decision.steps[index]!, decision.payment.user_id));
        } catch (error) {
          const step = decision.steps[index]!;
          if (step.kind === 'hold') {
            const deadline = await this.#deadlineOfOwnHold(step.transaction_id, error);
            // (Once: a deadline already taken from the ledger that conflicts again is not this case.)
            if (deadline !== undefined && deadline !== step.expires_at) {
              this.#logger.warn({ paymentId: decision.payment.payment_id, kind: intent.kind, messageId: intent.message_id, deadline }, 'the ledger holds this decision\'s hold under an earlier deadline (a lost journal entry); keeping it');
              decision = withHoldDeadline(decision, index, deadline);
              index -= 1;
              continue;
            }
          }
          // Midway, the ledger let the hold lapse (finished after the deadline): what ran stays, the rest follows the lapse.
          if (results.length === 0 || !holdLapsed(error)) throw error;
          this.#logger.warn({ paymentId: decision.payment.payment_id, kind: intent.kind, messageId: intent.message_id }, 'a hold lapsed midway through a payment decision; finishing it as lapsed');
          decision = withLapsedStep(decision, index);
          index -= 1;
        }
      }
    } catch (error) {
      if (results.length === 0 && decision.declinableHold !== undefined && isLedgerError(error, 'insufficient_balance')) {
        decision = decision.declinableHold.decline;
      } else {
        // Refused before anything moved, for good: nothing to finish later. Otherwise (a write done, or an outcome
        // unknown: a timeout, a 500) the intent stays, to be finished — its writes replay.
        if (results.length === 0 && refusedBeforeMoving(error) && seq !== undefined) await session.abandonIntent(seq);
        throw error;
      }
    }
    const answer = { ...decision.answer };
    const hold = results[0];
    if (answer.approved === true && hold !== undefined && decision.steps[0]?.kind === 'hold') answer.available_after = hold.balance_after;
    const body = intent.kind === 'expiry' ? '' : JSON.stringify(this.#dialect.render(intent.kind, answer));
    await session.commit({
      ...(intent.kind === 'expiry'
        ? {}
        : { message: { kind: this.#dialect.namespace(intent.kind), id: intent.message_id, request: intent.request, response: body, status_code: 200 } }),
      payment: decision.payment,
      events: this.#events(decision, intent.kind, intent.message_id, intent.occurred_at),
      intentSeq: seq,
      endsSession: options.endsSession,
    });
    return body;
  }

  #events(decision: Decision, kind: MessageKind | 'expiry', messageId: string, occurredAt: string) {
    return decision.events.map((draft, index) => ({
      type: draft.type,
      occurred_at: occurredAt,
      event: paymentEvent({
        // One event per message (the index only guards a future second one): its id says which message caused it.
        id: `${this.route}.${kind}.${messageId}${index === 0 ? '' : `.${index}`}`,
        type: draft.type,
        time: occurredAt,
        data: eventData(decision.payment, draft, { id: messageId, occurredAt }),
      }),
    }));
  }

  /** One ledger write; each is idempotent on its id, so a re-run after a crash replays what was done. */
  async #step(step: LedgerStep, userId: string): Promise<Transaction> {
    try {
      return await this.#ledgerWrite(step, userId);
    } catch (error) {
      // Retryable failures reach the network as they are (it resends); a hold refused for the balance is a decline; a forced
      // debit past the largest debt (or a refund past the largest balance) the wallet keeps is the ledger's limit, answered
      // as the ledger's 422; a 5xx (its outcome unknown) stays what it is. Any other refusal is a bug here, not the network's mistake.
      if (!isLedgerError(error) || error.retryable || error.status >= 500 || error.code === 'insufficient_balance' || error.code === 'balance_limit_exceeded') throw error;
      const field = error.details?.['field'];
      throw new KobanError(
        'internal',
        `the ledger refused ${step.kind} ${step.transaction_id}: ${error.code}`,
        { ledger_error: error.code, ...(typeof field === 'string' ? { ledger_field: field } : {}) },
        { cause: error },
      );
    }
  }

  /**
   * The deadline the ledger keeps a hold under, when the hold was refused as an idempotency conflict on its
   * deadline alone: the same hold, of the same message, placed by an earlier decision whose journal was lost.
   */
  async #deadlineOfOwnHold(transactionId: string, error: unknown): Promise<string | undefined> {
    if (ledgerRefusal(error)?.code !== 'idempotency_conflict') return undefined;
    const fields = ((error as KobanError).cause as KobanError | undefined)?.details?.['fields'];
    if (!Array.isArray(fields) || fields.length !== 1 || fields[0] !== 'pending_expires_at') return undefined;
    const [existing] = await this.#ledger.getTransactions(transactionId);
    return existing?.pending_expires_at ?? undefined;
  }

  async #ledgerWrite(step: LedgerStep, userId: string): Promise<Transaction> {
    const base = { transaction_id: step.transaction_id, user_id: userId, balance_type: CASH };
    switch (step.kind) {
      case 'hold':
        return (
          await this.#ledger.submit({
            ...base,
            type: 'consume',
            amount: step.amount,
            pending: true,
            pending_expires_at: step.expires_at,
            ...(step.force ? { force: true } : {}),
          })
        ).transaction;
      case 'post':
        return (await this.#ledger.post(step.transaction_id, { balance_type: CASH, amount: step.amount, ...(step.force ? { force: true } : {}) })).transaction;
      case 'consume':
        return (await this.#ledger.submit({ ...base, type: 'consume', amount: step.amount, force: true })).transaction;
      case 'refund':
        return (await this.#ledger.submit({ ...base, type: 'refund', amount: step.amount, refund_of: step.refund_of })).transaction;
      case 'void':
        try {
          return (await this.#ledger.void(step.transaction_id, { balance_type: CASH })).transaction;
        } catch (error) {
          // The ledger let the hold lapse at the same deadline first: released either way.
          if (!isLedgerError(error, 'pending_expired')) throw error;
          const [transaction] = await this.#ledger.getTransactions(step.transaction_id);
          return transaction!;
        }
    }
  }
}

/** The ledger's refusal behind a step's `internal` error (see #step), if that is what it is, and the field it named. */
function ledgerRefusal(error: unknown): { code: string; field: unknown } | undefined {
  if (!(error instanceof KobanError) || error.code !== 'internal') return undefined;
  const details = error.details as { ledger_error?: unknown; ledger_field?: unknown } | undefined;
  return typeof details?.ledger_error === 'string' ? { code: details.ledger_error, field: details.ledger_field } : undefined;
}

/**
 * The ledger said no and stored nothing: a refusal it answered (a 4xx), never
 * a 5xx, timeout or lost connection, whose write may have been applied.
 */
function refusedBeforeMoving(error: unknown): boolean {
  if (ledgerRefusal(error) !== undefined) return true;
  return error instanceof KobanError && !error.retryable && error.status < 500;
}

/**
 * The ledger's clock passed the payment's hold deadline: a post or void of a
 * hold is `pending_expired`; a hold placed under that deadline (an increment,
 * a remainder held again, a decision finished late) is refused as not in the
 * future — the ledger's only `pending_expires_at` refusal a route's deadline,
 * always within the ledger's horizon, can meet.
 */
function holdLapsed(error: unknown): boolean {
  const refusal = ledgerRefusal(error);
  return refusal?.code === 'pending_expired' || (refusal?.code === 'invalid_request' && refusal.field === 'pending_expires_at');
}

/** A resend gets the stored answer; the same id with other content is a conflict naming the fields. */
function replayOf(prior: StoredMessage, messageId: string, request: object): Answer {
  const fields = differingFields(prior.request, request);
  if (fields.length > 0) throw new KobanError('idempotency_conflict', `message ${messageId} was already received with different ${fields.join(', ')}`, { fields });
  return { status: prior.status_code, body: prior.response, replayed: true };
}

function unknownPayment(paymentId: string, field: string): KobanError {
  return new KobanError('not_found', `no payment ${paymentId}`, { field, payment_id: paymentId });
}

function checkUser(payment: Payment, userId: string): void {
  if (payment.user_id !== userId) {
    throw new KobanError('invalid_request', `payment ${payment.payment_id} belongs to another user`, { field: 'user_id', payment_id: payment.payment_id });
  }
}
