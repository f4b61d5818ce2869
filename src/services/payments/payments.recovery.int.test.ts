// Goal: a payment decision cut short between its ledger writes (the ledger unreachable midway) is finished exactly once — by the payment's next message, or by the sweeper when none comes — with the exact cash and events, nothing doubled.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LedgerApi, TransactionList, WriteResult } from '../../contracts/ledger/ledger-api.ts';
import type { Balance, PostRequest, Transaction, TransactionRequest, VoidRequest } from '../../contracts/ledger/types.ts';
import { KobanError } from '../../platform/errors.ts';
import { createLogger } from '../../platform/logger.ts';
import { createPool } from '../../platform/postgres/pool.ts';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { InProcessLedgerClient } from '../ledger/clients/in-process.ts';
import { INTENT_STALLED_AFTER_MS } from './domain/limits.ts';
import type { Authorization } from './domain/payment.ts';
import { PaymentService } from './service.ts';
import { PostgresPaymentStore } from './store/postgres/postgres-payment-store.ts';
import { event, MERCHANT, PaymentHarness } from './testing/harness.ts';

const START = '2026-03-02T01:00:00.000Z';
/** The route's hold timeout here: an authorization's hold lapses this long after it. */
const HOLD_TIMEOUT_MS = 7 * 24 * 60 * 60 * 1000;
const clock = new ManualClock(START);
let koban: TestKoban;
let h: PaymentHarness;
let store: PostgresPaymentStore;
let ledger: FlakyLedger;
let service: PaymentService;

/** The real ledger, except that one write (the Nth from when it is armed) fails as if the ledger were unreachable. */
class FlakyLedger implements LedgerApi {
  readonly #ledger: LedgerApi;
  #failOnWrite = 0;
  #failAfterWrite = 0;
  #writes = 0;
  constructor(ledger: LedgerApi) {
    this.#ledger = ledger;
  }
  /** The `nth` write from now fails once with `unavailable` before reaching the ledger. */
  failOnce(nth: number): void {
    this.#writes = 0;
    this.#failOnWrite = nth;
  }
  /** The `nth` write from now is applied, but its answer is lost: the caller gets `internal` (a 500 whose outcome it cannot know). */
  failAfterOnce(nth: number): void {
    this.#writes = 0;
    this.#failAfterWrite = nth;
  }
  async #write<T>(run: () => Promise<T>): Promise<T> {
    this.#writes += 1;
    if (this.#writes === this.#failOnWrite) {
      this.#failOnWrite = 0;
      throw new KobanError('unavailable', 'the ledger is unreachable (test)');
    }
    const result = await run();
    if (this.#writes === this.#failAfterWrite) {
      this.#failAfterWrite = 0;
      throw new KobanError('internal', 'the ledger applied the write but its answer was lost (test)');
    }
    return result;
  }
  submit(request: TransactionRequest): Promise<WriteResult> {
    return this.#write(() => this.#ledger.submit(request));
  }
  post(transactionId: string, request: PostRequest): Promise<WriteResult> {
    return this.#write(() => this.#ledger.post(transactionId, request));
  }
  void(transactionId: string, request: VoidRequest): Promise<WriteResult> {
    return this.#write(() => this.#ledger.void(transactionId, request));
  }
  getTransactions(transactionId: string): Promise<Transaction[]> {
    return this.#ledger.getTransactions(transactionId);
  }
  getBalance(userId: string, balanceType: string): Promise<Balance> {
    return this.#ledger.getBalance(userId, balanceType);
  }
  listBalances(userId: string): Promise<Balance[]> {
    return this.#ledger.listBalances(userId);
  }
  listTransactions(userId: string, query?: Parameters<LedgerApi['listTransactions']>[1]): Promise<TransactionList> {
    return this.#ledger.listTransactions(userId, query);
  }
}

before(async () => {
  // The Visa route of this Koban shares the database (its relay publishes what the service under test writes); its sweeper is off.
  koban = await startTestKoban({ label: 'pay_recovery', clock, env: { VISA_EXPIRY_SWEEP_INTERVAL_MS: '0', QUICPAY_EXPIRY_SWEEP_INTERVAL_MS: '0', KOBAN_SWEEP_INTERVAL_MS: '0' } });
  h = new PaymentHarness(koban);
  const url = new URL(koban.database.url);
  url.searchParams.set('options', '-c search_path=koban_visa');
  const logger = createLogger('silent');
  store = new PostgresPaymentStore(createPool({ url: url.toString(), size: 4, applicationName: 'recovery-test', logger }), clock, 'visa');
  ledger = new FlakyLedger(new InProcessLedgerClient(koban.ledger));
  service = new PaymentService({
    store,
    ledger,
    rules: { route: 'visa', currency: 'JPY', authorizationAmountMax: 1_000_000, holdTimeoutMs: HOLD_TIMEOUT_MS },
    clock,
    logger,
    sweepIntervalMs: 0,
  });
});
after(async () => {
  await service.close();
  await store.close();
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

const authorization = (authorization_id: string, user_id: string, amount: number, extra: Partial<Authorization> = {}): Authorization => ({
  authorization_id,
  user_id,
  amount,
  currency: 'JPY',
  merchant: MERCHANT,
  ...extra,
});
const salesDraft = (sales_draft_id: string, authorization_id: string, user_id: string, amount: number, final: boolean) => ({
  sales_draft_id,
  authorization_id,
  user_id,
  amount,
  currency: 'JPY',
  merchant: MERCHANT,
  final,
});

async function unfinishedIntents(paymentId: string): Promise<number> {
  const result = await h.query<{ n: string }>('SELECT count(*) AS n FROM koban_visa.payment_intents WHERE payment_id = $1', [paymentId]);
  return Number(result.rows[0]!.n);
}

async function ledgerIdsOf(userId: string): Promise<string[]> {
  return (await koban.ledger.listTransactions(userId, { balance_type: 'cash', limit: 200 })).data.map((transaction) => transaction.transaction_id).sort();
}

const isUnavailable = (error: unknown) => error instanceof KobanError && error.code === 'unavailable';

describe('a decision cut short, finished by the next message', () => {
  test('a non-final capture loses its second write (the remainder re-held): the final capture first finishes it, then decides', async () => {
    await h.fund('r-cap', 1000);
    assert.deepEqual(JSON.parse((await service.authorize(authorization('rx-1', 'r-cap', 500), { advice: false })).body), { authorization_id: 'rx-1', approved: true, available_after: 500 });

    ledger.failOnce(2);
    await assert.rejects(service.capture(salesDraft('rx-1-s1', 'rx-1', 'r-cap', 200, false)), isUnavailable);
    // The post went through; the re-hold of the other 300 did not; the payment still reads as before.
    assert.deepEqual(await h.cash('r-cap'), { available: 800, posted: 800, pending_debit: 0 });
    assert.equal(await unfinishedIntents('visa:rx-1'), 1);
    assert.equal((await service.payment('visa:rx-1'))!.captured_total, 0);
    assert.deepEqual((await h.events('visa:rx-1')).map((e) => e.type), ['payment.authorized']);

    const last = await service.capture(salesDraft('rx-1-s2', 'rx-1', 'r-cap', 100, true));
    assert.equal(last.replayed, false);
    assert.deepEqual(JSON.parse(last.body), { sales_draft_id: 'rx-1-s2', authorization_id: 'rx-1', payment_id: 'visa:rx-1', captured_amount: 100, captured_total: 300, held_amount: 0, forced: false });
    assert.equal(await unfinishedIntents('visa:rx-1'), 0);
    assert.deepEqual(await h.cash('r-cap'), { available: 700, posted: 700, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:rx-1'), [
      event('visa', 'authorization', 'rx-1', 'payment.authorized', { amount: 500, authorized_total: 500, advice: false }),
      event('visa', 'sales_draft', 'rx-1-s1', 'payment.captured', { amount: 200, authorized_total: 500, captured_total: 200, final: false, forced: false }),
      event('visa', 'sales_draft', 'rx-1-s2', 'payment.captured', { amount: 100, authorized_total: 500, captured_total: 300, final: true, forced: false }),
    ]);
    assert.deepEqual(await ledgerIdsOf('r-cap'), ['fund-r-cap-1000', 'visa:rx-1:hold', 'visa:rx-1:hold:rx-1-s1']);

    // The network resends the message it got no answer to: the answer of the finished decision.
    const resent = await service.capture(salesDraft('rx-1-s1', 'rx-1', 'r-cap', 200, false));
    assert.equal(resent.replayed, true);
    assert.deepEqual(JSON.parse(resent.body), { sales_draft_id: 'rx-1-s1', authorization_id: 'rx-1', payment_id: 'visa:rx-1', captured_amount: 200, captured_total: 200, held_amount: 300, forced: false });
    assert.deepEqual(await h.cash('r-cap'), { available: 700, posted: 700, pending_debit: 0 });
  });

  test('an authorization whose hold never reached the ledger is finished by its resend: one hold, one event', async () => {
    await h.fund('r-auth', 1000);
    ledger.failOnce(1);
    await assert.rejects(service.authorize(authorization('rx-2', 'r-auth', 300), { advice: false }), isUnavailable);
    assert.deepEqual(await h.cash('r-auth'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.equal(await unfinishedIntents('visa:rx-2'), 1, 'a retryable failure may have reached the ledger: the decision stays to be finished');

    const resent = await service.authorize(authorization('rx-2', 'r-auth', 300), { advice: false });
    assert.deepEqual(JSON.parse(resent.body), { authorization_id: 'rx-2', approved: true, available_after: 700 });
    assert.equal(await unfinishedIntents('visa:rx-2'), 0);
    assert.deepEqual(await h.cash('r-auth'), { available: 700, posted: 1000, pending_debit: 300 });
    assert.deepEqual(await h.events('visa:rx-2'), [event('visa', 'authorization', 'rx-2', 'payment.authorized', { amount: 300, authorized_total: 300, advice: false })]);
  });
});

describe('a decision cut short that no message comes to finish', () => {
  test('the sweeper (finishStalled) finishes it once it has stalled, and only then', async () => {
    clock.set(START);
    await h.fund('r-swp', 1000);
    await service.authorize(authorization('rx-3', 'r-swp', 300), { advice: false });
    await service.authorize(authorization('rx-3-up', 'r-swp', 200, { incremental_of: 'rx-3' }), { advice: false });
    assert.deepEqual(await h.cash('r-swp'), { available: 500, posted: 1000, pending_debit: 500 });

    // A final capture over both holds: the first is posted, the second's post is lost.
    ledger.failOnce(2);
    await assert.rejects(service.capture(salesDraft('rx-3-s', 'rx-3', 'r-swp', 450, true)), isUnavailable);
    assert.deepEqual(await h.cash('r-swp'), { available: 500, posted: 700, pending_debit: 200 });

    assert.equal(await service.finishStalled(), 0, 'too fresh: a message for it may be on its way');
    clock.advance(INTENT_STALLED_AFTER_MS + 1);
    assert.equal(await service.finishStalled(), 1);
    assert.equal(await service.finishStalled(), 0, 'finished once');
    assert.equal(await unfinishedIntents('visa:rx-3'), 0);
    assert.deepEqual(await h.cash('r-swp'), { available: 550, posted: 550, pending_debit: 0 });
    assert.deepEqual(await h.events('visa:rx-3'), [
      event('visa', 'authorization', 'rx-3', 'payment.authorized', { amount: 300, authorized_total: 300, advice: false }),
      event('visa', 'authorization', 'rx-3-up', 'payment.authorization_increased', { amount: 200, authorized_total: 500, advice: false }),
      event('visa', 'sales_draft', 'rx-3-s', 'payment.captured', { amount: 450, authorized_total: 500, captured_total: 450, final: true, forced: false }),
    ]);
    const resent = await service.capture(salesDraft('rx-3-s', 'rx-3', 'r-swp', 450, true));
    assert.equal(resent.replayed, true);
    assert.deepEqual(JSON.parse(resent.body), { sales_draft_id: 'rx-3-s', authorization_id: 'rx-3', payment_id: 'visa:rx-3', captured_amount: 450, captured_total: 450, held_amount: 0, forced: false });
    assert.deepEqual(await h.cash('r-swp'), { available: 550, posted: 550, pending_debit: 0 });
  });
});

describe('a decision cut short, finished after its hold lapsed', () => {
  test('a capture journalled before the deadline and resent after it: the payment expires as of its deadline, the capture is forced — no 500, nothing doubled', async () => {
    clock.set(START);
    await h.fund('r-lap-cap', 1000);
    await service.authorize(authorization('rx-10', 'r-lap-cap', 500), { advice: false });
    ledger.failOnce(1);
    await assert.rejects(service.capture(salesDraft('rx-10-s', 'rx-10', 'r-lap-cap', 200, true)), isUnavailable);
    assert.equal(await unfinishedIntents('visa:rx-10'), 1);

    clock.advance(HOLD_TIMEOUT_MS + 1000);
    const resent = await service.capture(salesDraft('rx-10-s', 'rx-10', 'r-lap-cap', 200, true));
    assert.deepEqual(JSON.parse(resent.body), { sales_draft_id: 'rx-10-s', authorization_id: 'rx-10', payment_id: 'visa:rx-10', captured_amount: 200, captured_total: 200, held_amount: 0, forced: true });
    assert.equal(await unfinishedIntents('visa:rx-10'), 0);
    assert.deepEqual(await h.cash('r-lap-cap'), { available: 800, posted: 800, pending_debit: 0 });
    assert.deepEqual(
      (await h.events('visa:rx-10')).map((e) => e.type),
      ['payment.authorized', 'payment.authorization_expired', 'payment.captured'],
    );
    assert.deepEqual(await ledgerIdsOf('r-lap-cap'), ['fund-r-lap-cap-1000', 'visa:rx-10:capture:rx-10-s', 'visa:rx-10:hold']);
  });

  test('the sweeper meets a capture journalled before the deadline: it drops the decision (nothing moved, never answered) and expires the payment', async () => {
    clock.set(START);
    await h.fund('r-lap-swp', 1000);
    await service.authorize(authorization('rx-11', 'r-lap-swp', 500), { advice: false });
    ledger.failOnce(1);
    await assert.rejects(service.capture(salesDraft('rx-11-s', 'rx-11', 'r-lap-swp', 200, true)), isUnavailable);

    clock.advance(HOLD_TIMEOUT_MS + 1000);
    assert.equal(await service.finishStalled(), 1);
    assert.equal(await unfinishedIntents('visa:rx-11'), 0);
    assert.equal((await service.payment('visa:rx-11'))!.status, 'authorized', 'dropping the decision changes nothing by itself');
    await service.expireDue(); // (other tests' payments lapse at the same deadline)
    assert.equal((await service.payment('visa:rx-11'))!.status, 'expired');
    assert.deepEqual(await h.cash('r-lap-swp'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.deepEqual((await h.events('visa:rx-11')).map((e) => e.type), ['payment.authorized', 'payment.authorization_expired']);
  });

  test('an authorization journalled whose hold never reached the ledger, resent after the deadline: decided afresh (a new deadline), one hold', async () => {
    clock.set(START);
    await h.fund('r-lap-auth', 1000);
    ledger.failOnce(1);
    await assert.rejects(service.authorize(authorization('rx-12', 'r-lap-auth', 300), { advice: false }), isUnavailable);
    assert.equal(await unfinishedIntents('visa:rx-12'), 1);

    clock.advance(HOLD_TIMEOUT_MS + 1000);
    const resent = await service.authorize(authorization('rx-12', 'r-lap-auth', 300), { advice: false });
    assert.deepEqual(JSON.parse(resent.body), { authorization_id: 'rx-12', approved: true, available_after: 700 });
    assert.equal(await unfinishedIntents('visa:rx-12'), 0);
    assert.deepEqual(await h.cash('r-lap-auth'), { available: 700, posted: 1000, pending_debit: 300 });
    const [hold] = await koban.ledger.getTransactions('visa:rx-12:hold');
    assert.equal(hold!.pending_expires_at, new Date(clock.now().getTime() + HOLD_TIMEOUT_MS).toISOString());
    assert.deepEqual(await h.events('visa:rx-12'), [event('visa', 'authorization', 'rx-12', 'payment.authorized', { amount: 300, authorized_total: 300, advice: false })]);
  });

  test('an increment journalled before the deadline and resent after it: the payment expires, the increment is refused as closed (409), not a 500', async () => {
    clock.set(START);
    await h.fund('r-lap-inc', 1000);
    await service.authorize(authorization('rx-13', 'r-lap-inc', 300), { advice: false });
    ledger.failOnce(1);
    await assert.rejects(service.authorize(authorization('rx-13-up', 'r-lap-inc', 200, { incremental_of: 'rx-13' }), { advice: false }), isUnavailable);

    clock.advance(HOLD_TIMEOUT_MS + 1000);
    await assert.rejects(
      service.authorize(authorization('rx-13-up', 'r-lap-inc', 200, { incremental_of: 'rx-13' }), { advice: false }),
      (error: unknown) => error instanceof KobanError && error.code === 'authorization_closed',
    );
    assert.equal(await unfinishedIntents('visa:rx-13'), 0);
    assert.deepEqual(await h.cash('r-lap-inc'), { available: 1000, posted: 1000, pending_debit: 0 });
    assert.deepEqual((await h.events('visa:rx-13')).map((e) => e.type), ['payment.authorized', 'payment.authorization_expired']);
  });
});

describe('a decision cut short between its writes, finished after its hold lapsed', () => {
  test('a final capture over two holds, its second post lost, resent after the deadline: the rest is taken by a forced consume — exact cash, one capture', async () => {
    clock.set(START);
    await h.fund('r-mid-cap', 1000);
    await service.authorize(authorization('rx-20', 'r-mid-cap', 300), { advice: false });
    await service.authorize(authorization('rx-20-up', 'r-mid-cap', 200, { incremental_of: 'rx-20' }), { advice: false });
    ledger.failOnce(2);
    await assert.rejects(service.capture(salesDraft('rx-20-s', 'rx-20', 'r-mid-cap', 450, true)), isUnavailable);
    assert.deepEqual(await h.cash('r-mid-cap'), { available: 500, posted: 700, pending_debit: 200 });

    clock.advance(HOLD_TIMEOUT_MS + 1000);
    const resent = await service.capture(salesDraft('rx-20-s', 'rx-20', 'r-mid-cap', 450, true));
    assert.deepEqual(JSON.parse(resent.body), { sales_draft_id: 'rx-20-s', authorization_id: 'rx-20', payment_id: 'visa:rx-20', captured_amount: 450, captured_total: 450, held_amount: 0, forced: true });
    assert.equal(await unfinishedIntents('visa:rx-20'), 0);
    assert.deepEqual(await h.cash('r-mid-cap'), { available: 550, posted: 550, pending_debit: 0 });
    assert.deepEqual(
      (await h.events('visa:rx-20')).map((e) => e.type),
      ['payment.authorized', 'payment.authorization_increased', 'payment.captured'],
    );
    assert.deepEqual(await ledgerIdsOf('r-mid-cap'), ['fund-r-mid-cap-1000', 'visa:rx-20:hold', 'visa:rx-20:hold:rx-20-up', 'visa:rx-20:hold:rx-20-up:lapsed']);
  });

  test('a non-final capture whose remainder was not yet held again, finished by the sweeper after the deadline: the remainder is released, the capture stands', async () => {
    clock.set(START);
    await h.fund('r-mid-rest', 1000);
    await service.authorize(authorization('rx-21', 'r-mid-rest', 500), { advice: false });
    ledger.failOnce(2);
    await assert.rejects(service.capture(salesDraft('rx-21-s', 'rx-21', 'r-mid-rest', 200, false)), isUnavailable);

    clock.advance(HOLD_TIMEOUT_MS + 1000);
    assert.equal(await service.finishStalled() >= 1, true);
    assert.equal(await unfinishedIntents('visa:rx-21'), 0);
    assert.deepEqual(await h.cash('r-mid-rest'), { available: 800, posted: 800, pending_debit: 0 });
    const payment = (await service.payment('visa:rx-21'))!;
    assert.deepEqual([payment.status, payment.captured_total, payment.reversed_total, payment.open_holds], ['captured', 200, 300, []]);
    assert.deepEqual((await h.events('visa:rx-21')).map((e) => e.type), ['payment.authorized', 'payment.captured', 'payment.authorization_expired']);
    const resent = await service.capture(salesDraft('rx-21-s', 'rx-21', 'r-mid-rest', 200, false));
    assert.deepEqual([resent.replayed, JSON.parse(resent.body).held_amount], [true, 0]);
  });
});

describe('a journal entry lost with a database crash, the hold placed after it', () => {
  test('the authorization decided again by a later clock keeps the hold the ledger has (its deadline), approved once — not an idempotency conflict', async () => {
    clock.set(START);
    await h.fund('r-lost-journal', 1000);
    ledger.failOnce(1);
    await assert.rejects(service.authorize(authorization('rx-15', 'r-lost-journal', 300), { advice: false }), isUnavailable);
    const [{ intent }] = (await h.query<{ intent: { decision: { steps: Array<{ expires_at: string }> } } }>('SELECT intent FROM koban_visa.payment_intents WHERE payment_id = $1', ['visa:rx-15'])).rows as [{ intent: { decision: { steps: Array<{ expires_at: string }> } } }];
    const firstDeadline = intent.decision.steps[0]!.expires_at;
    // The client's retry placed the hold after the server came back; the journal entry (committed without waiting for its flush) did not survive.
    await koban.ledger.submit({ transaction_id: 'visa:rx-15:hold', user_id: 'r-lost-journal', balance_type: 'cash', type: 'consume', amount: 300, pending: true, pending_expires_at: firstDeadline });
    await h.query('DELETE FROM koban_visa.payment_intents WHERE payment_id = $1', ['visa:rx-15']);

    clock.advance(1000);
    const resent = await service.authorize(authorization('rx-15', 'r-lost-journal', 300), { advice: false });
    assert.deepEqual(JSON.parse(resent.body), { authorization_id: 'rx-15', approved: true, available_after: 700 });
    assert.equal((await service.payment('visa:rx-15'))!.hold_expires_at, firstDeadline);
    assert.deepEqual(await h.cash('r-lost-journal'), { available: 700, posted: 1000, pending_debit: 300 });
    assert.deepEqual(await ledgerIdsOf('r-lost-journal'), ['fund-r-lost-journal-1000', 'visa:rx-15:hold']);
    assert.deepEqual(await h.events('visa:rx-15'), [event('visa', 'authorization', 'rx-15', 'payment.authorized', { amount: 300, authorized_total: 300, advice: false })]);
  });
});

describe('a ledger answer lost after the write applied', () => {
  test('an authorization whose hold was placed but answered 500: the decision stays and its resend finishes it (the same hold) — never decided again with another deadline', async () => {
    clock.set(START);
    await h.fund('r-lost', 1000);
    ledger.failAfterOnce(1);
    await assert.rejects(service.authorize(authorization('rx-14', 'r-lost', 300), { advice: false }), (error: unknown) => error instanceof KobanError && error.code === 'internal');
    assert.equal(await unfinishedIntents('visa:rx-14'), 1, 'a 500 may have been applied: the decision stays to be finished');

    clock.advance(1000);
    const resent = await service.authorize(authorization('rx-14', 'r-lost', 300), { advice: false });
    assert.deepEqual(JSON.parse(resent.body), { authorization_id: 'rx-14', approved: true, available_after: 700 });
    assert.equal(await unfinishedIntents('visa:rx-14'), 0);
    assert.deepEqual(await h.cash('r-lost'), { available: 700, posted: 1000, pending_debit: 300 });
    assert.deepEqual(await h.events('visa:rx-14'), [event('visa', 'authorization', 'rx-14', 'payment.authorized', { amount: 300, authorized_total: 300, advice: false })]);
  });
});
