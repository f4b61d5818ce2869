// Goal: authorizations arriving together never spend the same cash twice — exactly as many approved as the cash covers, the rest declined, the balance never below zero — and one message sent many times at once has one effect and one answer.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { ALL_OUTBOXES, type Json, MERCHANT, PaymentHarness } from './testing/harness.ts';

const AUTHORIZATIONS = 100;
const COVERED = 50;
const AMOUNT = 1_000;
const SAME_MESSAGE_SENDS = 20;
const clock = new ManualClock('2026-03-02T01:00:00.000Z');
let koban: TestKoban;
let h: PaymentHarness;

before(async () => {
  koban = await startTestKoban({ label: 'pay_concurrency', clock, env: { VISA_EXPIRY_SWEEP_INTERVAL_MS: '0', QUICPAY_EXPIRY_SWEEP_INTERVAL_MS: '0', KOBAN_SWEEP_INTERVAL_MS: '0' } });
  h = new PaymentHarness(koban);
});
after(async () => {
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

const authorize = (authorization_id: string, user_id: string, amount: number) => h.visa('authorizations', { authorization_id, user_id, amount, currency: 'JPY', merchant: MERCHANT });

async function eventTypeCounts(subjectPrefix: string): Promise<Record<string, number>> {
  const result = await h.query<{ type: string; n: string }>(`SELECT event->>'type' AS type, count(*) AS n FROM ${ALL_OUTBOXES} WHERE event->>'subject' LIKE $1 GROUP BY 1 ORDER BY 1`, [`${subjectPrefix}%`]);
  return Object.fromEntries(result.rows.map((row) => [row.type, Number(row.n)]));
}

describe('100 authorizations at once for cash that covers 50', () => {
  test('exactly 50 approved, 50 declined insufficient_balance, available 0, 50 + 50 events, the books balance', async () => {
    await h.fund('c-many', COVERED * AMOUNT);
    const responses = await Promise.all(Array.from({ length: AUTHORIZATIONS }, (_, index) => authorize(`cm-${index}`, 'c-many', AMOUNT)));
    const bodies = responses.map((response) => {
      assert.equal(response.statusCode, 200, response.body);
      return response.json() as Json;
    });
    const approved = bodies.filter((body) => body.approved === true);
    const declined = bodies.filter((body) => body.approved === false);
    assert.equal(approved.length, COVERED);
    assert.equal(declined.length, AUTHORIZATIONS - COVERED);
    assert.ok(declined.every((body) => body.decline_reason === 'insufficient_balance'));
    // Each approval saw what was left after it: every figure from 49,000 down to 0 exactly once.
    assert.deepEqual(
      approved.map((body) => body.available_after as number).sort((a, b) => b - a),
      Array.from({ length: COVERED }, (_, index) => (COVERED - 1 - index) * AMOUNT),
    );
    assert.deepEqual(await h.cash('c-many'), { available: 0, posted: COVERED * AMOUNT, pending_debit: COVERED * AMOUNT });
    assert.deepEqual(await eventTypeCounts('visa:cm-'), { 'payment.authorized': COVERED, 'payment.declined': AUTHORIZATIONS - COVERED });
    const audit = await koban.app.inject({ method: 'GET', url: '/v1/audit' });
    assert.equal(audit.json().ok, true, audit.body);
  });
});

describe('one authorization sent 20 times at once', () => {
  test('one hold, one event, 20 identical bodies: one first answer and 19 replays', async () => {
    await h.fund('c-same', 10 * AMOUNT);
    const responses = await Promise.all(Array.from({ length: SAME_MESSAGE_SENDS }, () => authorize('cs-1', 'c-same', AMOUNT)));
    assert.ok(responses.every((response) => response.statusCode === 200));
    assert.equal(new Set(responses.map((response) => response.body)).size, 1, 'every body the same bytes');
    assert.deepEqual(responses[0]!.json(), { authorization_id: 'cs-1', approved: true, available_after: 9 * AMOUNT });
    assert.deepEqual(
      responses.map((response) => response.headers['idempotent-replayed']).sort(),
      ['false', ...Array.from({ length: SAME_MESSAGE_SENDS - 1 }, () => 'true')],
    );
    assert.deepEqual(await h.cash('c-same'), { available: 9 * AMOUNT, posted: 10 * AMOUNT, pending_debit: AMOUNT });
    assert.deepEqual(await eventTypeCounts('visa:cs-1'), { 'payment.authorized': 1 });
    const stored = await h.query<{ n: string }>(`SELECT count(*) AS n FROM koban_visa.network_messages WHERE message_id = 'cs-1'`);
    assert.equal(Number(stored.rows[0]!.n), 1);
  });
});

describe('ten sales drafts of one authorization at once', () => {
  test('each decides from the one before it (the payment lock passes only with the outcome committed): all captured, totals exact, no lock left', async () => {
    const CAPTURES = 10;
    const CAPTURE_AMOUNT = 100;
    await h.fund('c-multi', 10 * AMOUNT);
    const authorization = await authorize('cc-1', 'c-multi', 5 * AMOUNT);
    assert.equal(authorization.json().approved, true, authorization.body);
    const responses = await Promise.all(
      Array.from({ length: CAPTURES }, (_, index) =>
        h.visa('sales-drafts', { sales_draft_id: `cc-1-sd-${index}`, authorization_id: 'cc-1', user_id: 'c-multi', amount: CAPTURE_AMOUNT, currency: 'JPY', merchant: MERCHANT, final: false }),
      ),
    );
    for (const response of responses) assert.equal(response.statusCode, 200, response.body);
    // A capture that decided from a state its predecessor had not yet committed would lose that capture's update.
    const payment = await koban.app.inject({ method: 'GET', url: '/v1/payments/visa:cc-1' });
    assert.equal(payment.statusCode, 200, payment.body);
    assert.equal(payment.json().captured_total, CAPTURES * CAPTURE_AMOUNT);
    assert.equal(payment.json().status, 'captured');
    assert.deepEqual(await h.cash('c-multi'), { available: 5 * AMOUNT, posted: 10 * AMOUNT - CAPTURES * CAPTURE_AMOUNT, pending_debit: 5 * AMOUNT - CAPTURES * CAPTURE_AMOUNT });
    assert.deepEqual(await eventTypeCounts('visa:cc-1'), { 'payment.authorized': 1, 'payment.captured': CAPTURES });
    // Every capture's answer came after its outcome committed and its lock went with that commit.
    const locks = await h.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND a.application_name = 'koban-visa'`,
    );
    assert.equal(Number(locks.rows[0]!.n), 0);
  });
});
