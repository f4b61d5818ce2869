// Goal: a ledger failure after a decision committed loses nothing and doubles nothing — the journaled writes run before the next decision for that payment (a redelivery or another event), and a permanent refusal throws a message naming the ledger transaction.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import type { CloudEvent } from '../../contracts/events/envelope.ts';
import type { LedgerApi } from '../../contracts/ledger/ledger-api.ts';
import { KobanError } from '../../platform/errors.ts';
import { createRootLogger } from '../../platform/logger.ts';
import { createPool } from '../../platform/postgres/pool.ts';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { DEFAULT_EARNING_RULES } from './domain/default-rules.ts';
import { PointsService } from './service.ts';
import { PostgresPointsStore } from './store/postgres/postgres-points-store.ts';
import { paymentEvents } from './testing/payment-script.ts';

let koban: TestKoban;
let db: pg.Pool;
let service: PointsService;
let store: PostgresPointsStore;
/** The next ledger writes, in order: true fails that one (as the ledger being down would); when empty, writes go through. */
let plan: boolean[] = [];
let failure: () => KobanError = () => new KobanError('unavailable', 'the ledger is down (test)');
const fails = () => plan.shift() === true;

before(async () => {
  koban = await startTestKoban({ label: 'points_recovery', env: { KOBAN_SWEEP_INTERVAL_MS: '0' } });
  // The points tables of the test Koban (schema koban_points of the shared database), driven by a service of the test's own with a ledger that can fail.
  const url = new URL(koban.database.url);
  url.searchParams.set('options', '-c search_path=koban_points');
  db = new pg.Pool({ connectionString: url.toString(), max: 2 });
  const logger = createRootLogger('silent');
  store = new PostgresPointsStore(createPool({ url: url.toString(), size: 4, applicationName: 'points-recovery-test', logger }), { now: () => new Date() });
  const real = koban.ledger as LedgerApi;
  const flaky: LedgerApi = {
    submit: (request) => (fails() ? Promise.reject(failure()) : real.submit(request)),
    post: (id, request) => real.post(id, request),
    void: (id, request) => (fails() ? Promise.reject(failure()) : real.void(id, request)),
    getTransactions: (id) => real.getTransactions(id),
    getBalance: (user, type) => real.getBalance(user, type),
    listBalances: (user) => real.listBalances(user),
    listTransactions: (user, query) => real.listTransactions(user, query),
  };
  service = new PointsService({
    store,
    ledger: flaky,
    clock: { now: () => new Date() },
    logger,
    config: { rules: DEFAULT_EARNING_RULES, expiryDays: 0, referralBonusPoints: 500, welcomeCashAmount: 500, welcomeCashValidDays: 30 },
  });
});
after(async () => {
  await store?.close();
  await db?.end();
  await koban?.stop();
  await koban?.database.drop();
});

const journaled = async (key: string) => Number((await db.query('SELECT count(*) AS n FROM point_commands WHERE key = $1', [key])).rows[0].n);
const balance = async (user: string) => {
  const { available, pending_credit } = await koban.ledger.getBalance(user, 'points');
  return { available, pending_credit };
};

test('the ledger down after the decision: the redelivery runs the journaled write, once', async () => {
  const [authorized] = paymentEvents({ payment_id: 'visa:rec-1', user_id: 'u-rec1', start: '2026-04-01T03:00:00.000Z' }, [{ kind: 'authorize', amount: 10_000 }]) as [CloudEvent];
  plan = [true];
  await assert.rejects(service.handlePayment(authorized), (error: unknown) => error instanceof KobanError && error.code === 'unavailable');
  assert.equal(await journaled('payment:visa:rec-1'), 1, 'the decision is kept, its write journaled');
  assert.deepEqual(await balance('u-rec1'), { available: 0, pending_credit: 0 });
  await service.handlePayment(authorized);
  assert.equal(await journaled('payment:visa:rec-1'), 0);
  assert.deepEqual(await balance('u-rec1'), { available: 0, pending_credit: 50 });
  await service.handlePayment(authorized);
  assert.deepEqual(await balance('u-rec1'), { available: 0, pending_credit: 50 }, 'a third delivery changes nothing');
});

test('the ledger down midway through a decision: the next event for the payment finishes it first, then decides', async () => {
  const events = paymentEvents({ payment_id: 'visa:rec-2', user_id: 'u-rec2', start: '2026-04-01T03:00:00.000Z' }, [
    { kind: 'authorize', amount: 10_000 },
    { kind: 'increase', amount: 10_000 },
    { kind: 'capture', amount: 20_000, final: true },
  ]);
  await service.handlePayment(events[0]!);
  // The increase voids pending:1, then adds pending:2: the void goes through, the add fails.
  plan = [false, true];
  await assert.rejects(service.handlePayment(events[1]!), (error: unknown) => error instanceof KobanError && error.code === 'unavailable');
  assert.equal(await journaled('payment:visa:rec-2'), 1, 'the add is still journaled');
  assert.deepEqual(await balance('u-rec2'), { available: 0, pending_credit: 0 }, 'the void went through');
  // Whatever was left journaled runs before the capture decides; the end is exact.
  await service.handlePayment(events[2]!);
  await service.handlePayment(events[1]!);
  assert.equal(await journaled('payment:visa:rec-2'), 0);
  assert.deepEqual(await balance('u-rec2'), { available: 100, pending_credit: 0 });
});

test('a permanent refusal throws naming the ledger transaction and the code, and keeps the write journaled', async () => {
  const [authorized] = paymentEvents({ payment_id: 'visa:rec-3', user_id: 'u-rec3', start: '2026-04-01T03:00:00.000Z' }, [{ kind: 'authorize', amount: 10_000 }]) as [CloudEvent];
  plan = [true];
  failure = () => new KobanError('invalid_request', 'balance_type is not one of the configured types', { field: 'balance_type' });
  await assert.rejects(service.handlePayment(authorized), /the ledger refused submit points:visa:rec-3:pending:1: invalid_request: balance_type/);
  assert.equal(await journaled('payment:visa:rec-3'), 1);
  failure = () => new KobanError('unavailable', 'the ledger is down (test)');
  await service.handlePayment(authorized);
  assert.deepEqual(await balance('u-rec3'), { available: 0, pending_credit: 50 }, 'once fixed, the redelivery finishes it');
});

test('writes left journaled (the event dead-lettered, say) are finished at start-up, without the event', async () => {
  const [authorized] = paymentEvents({ payment_id: 'visa:rec-4', user_id: 'u-rec4', start: '2026-04-01T03:00:00.000Z' }, [{ kind: 'authorize', amount: 10_000 }]) as [CloudEvent];
  plan = [true];
  await assert.rejects(service.handlePayment(authorized));
  assert.equal(await journaled('payment:visa:rec-4'), 1);
  assert.ok((await service.finishJournaled()) >= 1);
  assert.equal(await journaled('payment:visa:rec-4'), 0);
  assert.deepEqual(await balance('u-rec4'), { available: 0, pending_credit: 50 });
  assert.equal(await service.finishJournaled(), 0, 'nothing is left');
});
