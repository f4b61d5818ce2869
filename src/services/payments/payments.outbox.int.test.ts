// Goal: with one database for every service (DATABASE_URL alone), each card route still has an outbox of its own: its events are written to, and published from, its own schema only.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { MERCHANT, PaymentHarness } from './testing/harness.ts';
import { paymentsOutboxSchema } from './store/postgres/postgres-payment-store.ts';

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
