// The points service: turns events from the bus into ledger writes, and
// answers what a user has and was granted. Each event is handled under the
// lock of what it is about (a payment, a purchase, a referral, a user's
// welcome):
//
//   1. ledger writes journaled by an earlier delivery and not yet done are run
//      first (a crash, the ledger down), so no decision starts from a state the
//      ledger has not reached;
//   2. one transaction decides from the stored state: it saves the new state,
//      the grant users read, the cap totals, and journals the ledger writes;
//   3. the journaled writes run, in order, each deleted once the ledger
//      answered. Their ids derive from the payment and the step, so running
//      one twice is a replay.
//
// Intent first, not ledger first: a write made before its state was saved
// could, after a crash, be followed by a decision from the older state under
// the same id with other content (an idempotency conflict), or under another
// id (a double grant). Journaled, every id is used once, with one content.
//
// A handler that throws has the bus retry the event; a poison event (bad
// data) throws `invalid_request` and ends in the subscription's dead letters.
import type { Logger } from 'pino';
import type { CloudEvent } from '../../contracts/events/envelope.ts';
import { parseAccountEvent } from '../../contracts/events/accounts.ts';
import { parsePaymentEvent } from '../../contracts/events/payments.ts';
import { parseReferralEvent } from '../../contracts/events/referrals.ts';
import { parseRewardEvent } from '../../contracts/events/rewards.ts';
import { isLedgerError, type LedgerApi } from '../../contracts/ledger/ledger-api.ts';
import type { Balance } from '../../contracts/ledger/types.ts';
import type { Clock } from '../../platform/clock.ts';
import { decodeCursor, encodeCursor } from '../../platform/cursor.ts';
import { type EarningRules, rulesHaveCaps } from './domain/earning-rules.ts';
import { ledgerIdBase } from './domain/ledger-ids.ts';
import { NEGATIVE_SINCE_SCAN_TRANSACTIONS_MAX } from './domain/limits.ts';
import { type CapTotals, decide, EMPTY_BOOK, evolve, expiresAt, initialSeen, jstMonth, type LedgerCommand, POINTS_BALANCE_TYPE } from './domain/payment-grant.ts';
import type { GrantRow, KeySession, PointsStore } from './store/points-store.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const CASH_BALANCE_TYPE = 'cash';
/** Keys whose unfinished ledger writes are finished at start-up, at most (the rest wait for their next delivery). */
const JOURNALED_KEYS_AT_START_MAX = 1_000;
/** Ledger transactions per page when looking back for negative_since: the ledger's largest page. */
const LEDGER_PAGE_LIMIT_MAX = 200;


/** The totals a decision sees when no rule caps earnings: none are read, so none are locked. */
const NO_CAP_TOTALS: CapTotals = { month_points_others: 0, campaign_points_others: {} };
export type PointsConfig = Readonly<{
  rules: EarningRules;
  /** Days confirmed points stay spendable; 0: they never expire. */
  expiryDays: number;
  /** Points a referrer earns per completed referral; 0: none. */
  referralBonusPoints: number;
  /** Cash (yen) a new account gets, time-limited; 0: none. */
  welcomeCashAmount: number;
  welcomeCashValidDays: number;
}>;

export type PointsSummary = {
  user_id: string;
  available: number;
  pending: number;
  expiring: Balance['expiring'];
  /** When the points balance went below zero, if it is below zero now. */
  negative_since?: string;
};

export type GrantView = Omit<GrantRow, 'seq' | 'user_id'>;
export type GrantPage = { data: GrantView[]; next_cursor: string | null };

export class PointsService {
  readonly #store: PointsStore;
  readonly #ledger: LedgerApi;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #config: PointsConfig;
  /** Whether the rules cap earnings, so a decision must lock the user's totals (rulesHaveCaps). */
  readonly #capsApply: boolean;

  constructor(options: { store: PointsStore; ledger: LedgerApi; clock: Clock; logger: Logger; config: PointsConfig }) {
    this.#store = options.store;
    this.#ledger = options.ledger;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#config = options.config;
    this.#capsApply = rulesHaveCaps(options.config.rules);
  }

  get config(): PointsConfig {
    return this.#config;
  }

  /** A payment event: folds it into what was seen of the payment, and moves the points ledger to match. */
  async handlePayment(event: CloudEvent): Promise<void> {
    const parsed = parsePaymentEvent(event);
    if (parsed.type === 'payment.declined') return;
    const { payment_id, user_id } = parsed.data;
    const key = `payment:${payment_id}`;
    await this.#store.withKey(
      key,
      async (session) => {
        await this.#runJournal(session);
        const stored = session.payment;
        const record = stored ?? { seen: initialSeen(parsed), book: EMPTY_BOOK };
        const seen = evolve(record.seen, parsed);
        // Nothing new (a redelivery, or an event that adds nothing): nothing to decide, so a pinned version stays pinned.
        if (stored !== undefined && JSON.stringify(seen) === JSON.stringify(record.seen)) return;
        if (seen.anchor === null) {
          await session.saveDecision({ key, payment: { payment_id, user_id, record: { seen, book: record.book } }, commands: [] });
          return;
        }
        const anchor = seen.anchor;
        const decideWith = (totals: CapTotals) => {
          const decision = decide({ seen, book: record.book }, { rules: this.#config.rules, now: this.#clock.now(), expiryDays: this.#config.expiryDays, totals });
          return {
            key,
            payment: { payment_id, user_id: seen.user_id, record: decision.record },
            ...(decision.grant === null ? {} : { grant: { grant_id: key, user_id: seen.user_id, source: 'payment' as const, reference: payment_id, ...decision.grant } }),
            recount: { user_id: seen.user_id, before: record.book.counted, after: decision.record.book.counted },
            commands: decision.commands,
          };
        };
        if (this.#capsApply) {
          // A cap depends on the user's other payments: their totals stay locked from the read to the write.
          await session.transaction(async (tx) => {
            const totals = await tx.capTotals(seen.user_id, jstMonth(anchor.occurred_at), record.book.counted);
            await tx.saveDecision(decideWith(totals));
          });
        } else {
          await session.saveDecision(decideWith(NO_CAP_TOTALS));
        }
        await this.#runJournal(session);
      },
      { paymentId: payment_id },
    );
  }

  /** A partner's confirmed purchase: its points, once per purchase id. */
  async handleReward(event: CloudEvent): Promise<void> {
    const { data } = parseRewardEvent(event);
    const key = `reward:${data.purchase_id}`;
    await this.#grantOnce(key, { user_id: data.user_id, source: 'reward', reference: data.purchase_id, points: data.points }, event.id);
  }

  /**
   * A completed referral: the referrer's bonus, once per referral; a
   * self-referral earns nothing (recorded, acknowledged). Only the referrer
   * earns: the referee's reward is the welcome cash every new account gets.
   */
  async handleReferral(event: CloudEvent): Promise<void> {
    const { data } = parseReferralEvent(event);
    const key = `referral:${data.referral_id}`;
    if (data.referrer_id === data.referee_id) {
      await this.#store.withKey(key, (session) =>
        session.transaction(async (tx) => {
          const repeat = await tx.recordSkipped('referral', data.referral_id, data.referrer_id, 'self_referral');
          if (!repeat) this.#logger.info({ referral_id: data.referral_id, user_id: data.referrer_id }, 'self-referral earns nothing');
        }),
      );
      return;
    }
    if (this.#config.referralBonusPoints === 0) return;
    await this.#grantOnce(key, { user_id: data.referrer_id, source: 'referral', reference: data.referral_id, points: this.#config.referralBonusPoints }, event.id);
  }

  /** A new account: its time-limited welcome cash, once per user. */
  async handleAccount(event: CloudEvent): Promise<void> {
    const { data } = parseAccountEvent(event);
    const amount = this.#config.welcomeCashAmount;
    if (amount === 0) return;
    const key = `welcome:${data.user_id}`;
    await this.#store.withKey(key, async (session) => {
      await this.#runJournal(session);
      await session.transaction(async (tx) => {
        const expires_at = new Date(this.#clock.now().getTime() + this.#config.welcomeCashValidDays * DAY_MS).toISOString();
        if (await tx.recordWelcome(data.user_id, amount, expires_at)) return;
        await tx.addCommands(key, [
          {
            kind: 'submit',
            request: {
              transaction_id: ledgerIdBase(key),
              type: 'add',
              user_id: data.user_id,
              balance_type: CASH_BALANCE_TYPE,
              amount,
              expires_at,
              description: 'welcome balance',
              metadata: { event_id: event.id },
            },
          },
        ]);
      });
      await this.#runJournal(session);
    });
  }

  /**
   * Finishes decisions whose ledger writes a crash or an outage left journaled
   * (a later delivery for the same key would too, but a dead-lettered event
   * has none until it is redriven). Returns how many keys were finished; one
   * that still fails is logged and left for the next delivery or start.
   */
  async finishJournaled(): Promise<number> {
    let finished = 0;
    for (const key of await this.#store.journaledKeys(JOURNALED_KEYS_AT_START_MAX)) {
      try {
        await this.#store.withKey(key, (session) => this.#runJournal(session));
        finished += 1;
      } catch (error) {
        this.#logger.warn({ err: error, key }, `journaled ledger writes of ${key} could not be finished yet`);
      }
    }
    return finished;
  }

  async summary(userId: string): Promise<PointsSummary> {
    const balance = await this.#ledger.getBalance(userId, POINTS_BALANCE_TYPE);
    const summary: PointsSummary = { user_id: userId, available: balance.available, pending: balance.pending_credit, expiring: balance.expiring };
    if (balance.available < 0) summary.negative_since = await this.#negativeSince(userId);
    return summary;
  }

  async grants(userId: string, query: { limit: number; cursor?: string | undefined }): Promise<GrantPage> {
    const beforeSeq = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    // One more than asked: whether a next page exists without a second query.
    const rows = await this.#store.grants(userId, { limit: query.limit + 1, beforeSeq });
    const page = rows.slice(0, query.limit);
    return {
      data: page.map(({ seq: _seq, user_id: _user, ...grant }) => grant),
      next_cursor: rows.length > query.limit ? encodeCursor(page.at(-1)!.seq) : null,
    };
  }

  async #grantOnce(key: string, grant: { user_id: string; source: 'reward' | 'referral'; reference: string; points: number }, eventId: string): Promise<void> {
    await this.#store.withKey(key, async (session) => {
      await this.#runJournal(session);
      await session.transaction(async (tx) => {
        const existing = await tx.grant(key);
        if (existing !== undefined) {
          if (existing.user_id !== grant.user_id || existing.points !== grant.points) {
            // Once per reference: the first wins; a later event that disagrees is reported, not granted.
            this.#logger.warn({ grant_id: key, event_id: eventId, granted: { user_id: existing.user_id, points: existing.points }, asked: grant }, `${key} was already granted with other figures; ignored`);
          }
          return;
        }
        await tx.saveGrant({ grant_id: key, ...grant, status: 'confirmed', clawed_back_points: 0, rule_version: null });
        await tx.addCommands(key, [
          {
            kind: 'submit',
            request: {
              transaction_id: ledgerIdBase(`points:${key}`),
              type: 'add',
              user_id: grant.user_id,
              balance_type: POINTS_BALANCE_TYPE,
              amount: grant.points,
              ...expiresAt({ now: this.#clock.now(), expiryDays: this.#config.expiryDays }),
              description: grant.source === 'reward' ? 'points of a partner purchase' : 'referral bonus',
              metadata: { event_id: eventId },
            },
          },
        ]);
      });
      await this.#runJournal(session);
    });
  }

  /** Runs the key's journaled ledger writes in order; the first that fails stops the rest and throws (the bus retries the event). */
  async #runJournal(session: KeySession): Promise<void> {
    for (const { seq, command } of await session.journaled()) {
      await this.#run(command);
      await session.done(seq);
    }
  }

  async #run(command: LedgerCommand): Promise<void> {
    try {
      if (command.kind === 'submit') await this.#ledger.submit(command.request);
      else await this.#ledger.void(command.transaction_id, { balance_type: command.balance_type });
    } catch (error) {
      // A pending grant the ledger already let lapse, or voided by an earlier run, is released: what the void wanted.
      if (command.kind === 'void' && (isLedgerError(error, 'pending_expired') || isLedgerError(error, 'pending_already_voided'))) return;
      if (isLedgerError(error) && error.retryable) throw error;
      const id = command.kind === 'submit' ? command.request.transaction_id : command.transaction_id;
      const why = isLedgerError(error) ? `${error.code}: ${error.message}` : String(error);
      // Anything else is a refusal no retry can change: a bug or a configuration error (say, no points balance type). Named, so the dead letter says what to fix.
      throw new Error(`the ledger refused ${command.kind} ${id}: ${why}`, { cause: error });
    }
  }

  /** When the newest run of negative balances began, from the ledger's history; bounded, so a very long debt reports the oldest instant looked at. */
  async #negativeSince(userId: string): Promise<string> {
    let since: string | undefined;
    let cursor: string | undefined;
    let looked = 0;
    while (looked < NEGATIVE_SINCE_SCAN_TRANSACTIONS_MAX) {
      const page = await this.#ledger.listTransactions(userId, { balance_type: POINTS_BALANCE_TYPE, limit: LEDGER_PAGE_LIMIT_MAX, cursor });
      for (const transaction of page.data) {
        looked += 1;
        if (transaction.balance_after >= 0) return since ?? transaction.created_at;
        since = transaction.created_at;
      }
      if (page.next_cursor === null) break;
      cursor = page.next_cursor;
    }
    return since ?? this.#clock.now().toISOString();
  }
}
