// Goal: with one database for every service (DATABASE_URL alone), each card route still has an outbox of its own: its events are written to, and published from, its own schema only; retention prunes its published rows without losing when they were published.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { MERCHANT, PaymentHarness } from './testing/harness.ts';
import { paymentsOutboxSchema, PostgresPaymentStore } from './store/postgres/postgres-payment-store.ts';
import { createPool } from '../../platform/postgres/pool.ts';
import { createLogger } from '../../platform/logger.ts';
import { systemClock } from '../../platform/clock.ts';

let koban: TestKoban;
let h: PaymentHarness;

before(async () => {
  koban = await startTestKoban({ label: 'pay_outboxes' });
  h = new PaymentHarness(koban);
  await koban.ledger.submit({ transaction_id: 'ob-cash', type: 'add', user_id: 'ob-user', balance_type: 'cash', amount: 10_000 });
});
after(async () => {
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

test('a Visa and a QUICPay+ authorization land in their own route\'s outbox, and each is published from there', async () => {
  assert.equal((await h.send('/v1/visa/authorizations', { authorization_id: 'ob-v1', user_id: 'ob-user', amount: 100, currency: 'JPY', merchant: MERCHANT })).statusCode, 200);
  assert.equal((await h.send('/v1/quicpay/messages', { message_type: 'authorization', transaction_number: 'ob-q1', member_id: 'ob-user', amount: 100, merchant: MERCHANT })).statusCode, 200);
  const subjects = async (route: 'visa' | 'quicpay') =>
    (await h.query<{ subject: string }>(`SELECT event->>'subject' AS subject FROM ${paymentsOutboxSchema(route)}.events ORDER BY seq`)).rows.map((row) => row.subject);
  assert.deepEqual(await subjects('visa'), ['visa:ob-v1']);
  assert.deepEqual(await subjects('quicpay'), ['quicpay:ob-q1']);
  await h.untilPublished('visa:ob-v1');
  await h.untilPublished('quicpay:ob-q1');
});

test('a payment still says when its events were published after retention pruned their outbox rows; unpublished rows stay', async () => {
  assert.equal((await h.send('/v1/visa/authorizations', { authorization_id: 'ob-v2', user_id: 'ob-user', amount: 100, currency: 'JPY', merchant: MERCHANT })).statusCode, 200);
  await h.untilPublished('visa:ob-v2');
  const before = (await h.getPayment('visa:ob-v2')).json().events as Array<{ id: string; published_at: string | null }>;
  assert.equal(before.length, 1);
  assert.notEqual(before[0]!.published_at, null);
  const outbox = paymentsOutboxSchema('visa');
  // Made old by moving the cutoff past it: the row was published, so it may go; an unpublished row never does.
  await h.query(`INSERT INTO ${outbox}.events (topic, event_id, event, available_at) VALUES ('payments', 'ob-parked', '{"subject":"visa:ob-v2"}', 'infinity')`);
  const url = new URL(koban.database.url);
  url.searchParams.set('options', '-c search_path=koban_visa');
  const pool = createPool({ url: url.toString(), size: 1, applicationName: 'retention-test', logger: createLogger('silent') });
  try {
    const store = new PostgresPaymentStore(pool, systemClock, 'visa');
    const cutoff = new Date(Date.now() + 60_000);
    assert.equal(await store.prunePublishedEvents(cutoff, 1_000), 2, 'ob-v1 and ob-v2, each published');
    assert.equal(await store.prunePublishedEvents(cutoff, 1_000), 0);
  } finally {
    await pool.end();
  }
  const left = await h.query<{ event_id: string }>(`SELECT event_id FROM ${outbox}.events ORDER BY seq`);
  assert.deepEqual(left.rows.map((row) => row.event_id), ['ob-parked']);
  const after = (await h.getPayment('visa:ob-v2')).json().events as Array<{ id: string; published_at: string | null }>;
  assert.deepEqual(after, before);
});
