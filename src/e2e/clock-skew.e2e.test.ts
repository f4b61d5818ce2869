// Goal: KOBAN_CLOCK_SKEW_MS moves a process's clock, and the money state survives a card route whose clock runs behind or ahead of the ledger's within the bound: a capture that reaches the ledger after the hold's deadline by the ledger's clock, but before it by the route's, still settles (forced, as any late capture), the cash is right, the payment is not stuck, and the books balance.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';
import { isolatedEnv, type Served, ServedProcesses } from '../cli/served-processes.ts';
import { freePort } from '../platform/net.ts';

/** The route's hold timeout: short, so the deadline comes within the test. */
const HOLD_TIMEOUT_MS = 4_000;
/** How far the route's clock runs from the ledger's (the ledger and the bus keep the true time). */
const SKEW_MS = 3_000;
const CONDITION_TIMEOUT_MS = 15_000;
const POLL_INTERVAL_MS = 50;
const MERCHANT = { id: 'm-skew', name: 'Skew Coffee', category_code: '5814' };

let ledgerDatabase: TestDatabase;
let busDatabase: TestDatabase;
let visaDatabase: TestDatabase;
let ledgerUrl: string;
let busUrl: string;
const processes = new ServedProcesses();

before(async () => {
  [ledgerDatabase, busDatabase, visaDatabase] = await Promise.all([createTestDatabase('e2e_skew_ledger'), createTestDatabase('e2e_skew_bus'), createTestDatabase('e2e_skew_visa')]);
  const [ledgerPort, busPort] = [await freePort(), await freePort()];
  [ledgerUrl, busUrl] = [`http://127.0.0.1:${ledgerPort}`, `http://127.0.0.1:${busPort}`];
  await processes.serve(
    ['ledger', 'bus'],
    isolatedEnv({ KOBAN_BUS: 'postgres', LEDGER_DATABASE_URL: ledgerDatabase.url, BUS_DATABASE_URL: busDatabase.url, LEDGER_PORT: String(ledgerPort), BUS_PORT: String(busPort) }),
  );
});

after(async () => {
  processes.killAll();
  await Promise.all([ledgerDatabase, busDatabase, visaDatabase].map((database) => database?.drop()));
});

async function serveVisa(skewMs: number): Promise<{ served: Served; url: string }> {
  const port = await freePort();
  const served = await processes.serve(
    ['visa'],
    isolatedEnv({
      VISA_DATABASE_URL: visaDatabase.url,
      VISA_PORT: String(port),
      LEDGER_URL: ledgerUrl,
      BUS_URL: busUrl,
      VISA_HOLD_TIMEOUT_MS: String(HOLD_TIMEOUT_MS),
      VISA_EXPIRY_SWEEP_INTERVAL_MS: '100',
      KOBAN_CLOCK_SKEW_MS: String(skewMs),
    }),
  );
  return { served, url: `http://127.0.0.1:${port}` };
}

describe('a card route whose clock is skewed from the ledger', () => {
  test(`behind by ${SKEW_MS} ms: the hold's deadline (route clock + timeout) passes first at the ledger; a capture between the two deadlines is forced, not stuck`, async () => {
    const visa = await serveVisa(-SKEW_MS);
    await topUp('u-skew-behind', 10_000);
    const authorizedAt = Date.now();
    const authorization = await postJson(`${visa.url}/v1/visa/authorizations`, { authorization_id: 'SKEWB1', user_id: 'u-skew-behind', amount: 3_000, currency: 'JPY', merchant: MERCHANT });
    assert.deepEqual(JSON.parse(authorization.text), { authorization_id: 'SKEWB1', approved: true, available_after: 7_000 });
    const [hold] = (await getJson(`${ledgerUrl}/v1/transactions/visa:SKEWB1:hold`)).data as Array<{ pending_expires_at: string }>;
    const deadline = Date.parse(hold!.pending_expires_at);
    assert.ok(Math.abs(deadline - (authorizedAt - SKEW_MS + HOLD_TIMEOUT_MS)) < 1_000, 'the route stamped the deadline on its own, skewed, clock');

    // Past the deadline by the ledger's clock, well before it by the route's.
    await until(async () => Date.now() >= deadline + 200, () => 'the deadline did not pass');
    assert.equal((await cash('u-skew-behind')).pending_debit, 0, 'the ledger released the hold at its deadline');
    const capture = await postJson(`${visa.url}/v1/visa/sales-drafts`, {
      sales_draft_id: 'SKEWB1-S', authorization_id: 'SKEWB1', user_id: 'u-skew-behind', amount: 2_500, currency: 'JPY', merchant: MERCHANT, final: true,
    });
    assert.equal(capture.status, 200, capture.text);
    assert.equal(JSON.parse(capture.text).captured_total, 2_500);
    assert.deepEqual(await cash('u-skew-behind'), { available: 7_500, posted: 7_500, pending_debit: 0 }, 'captured once, the hold released once');
    const payment = await getJson(`${visa.url}/v1/payments/visa:SKEWB1`);
    assert.deepEqual([payment.captured_total, payment.held_amount], [2_500, 0]);
    await assertAudited();
    await processes.stop(visa.served);
  });

  test(`ahead by ${SKEW_MS} ms: the route lapses the authorization before the ledger's deadline (void, not expiry) and a later capture is forced`, async () => {
    const visa = await serveVisa(SKEW_MS);
    await topUp('u-skew-ahead', 10_000);
    await postJson(`${visa.url}/v1/visa/authorizations`, { authorization_id: 'SKEWA1', user_id: 'u-skew-ahead', amount: 3_000, currency: 'JPY', merchant: MERCHANT });
    await until(async () => (await getJson(`${visa.url}/v1/payments/visa:SKEWA1`)).status === 'expired', () => 'the route did not lapse the authorization');
    const [hold] = (await getJson(`${ledgerUrl}/v1/transactions/visa:SKEWA1:hold`)).data as Array<{ status: string; pending_expires_at: string }>;
    assert.ok(Date.now() < Date.parse(hold!.pending_expires_at), 'released before the ledger would have expired it');
    assert.equal(hold!.status, 'voided');
    assert.deepEqual(await cash('u-skew-ahead'), { available: 10_000, posted: 10_000, pending_debit: 0 });
    const capture = await postJson(`${visa.url}/v1/visa/sales-drafts`, {
      sales_draft_id: 'SKEWA1-S', authorization_id: 'SKEWA1', user_id: 'u-skew-ahead', amount: 2_500, currency: 'JPY', merchant: MERCHANT, final: true,
    });
    assert.equal(capture.status, 200, capture.text);
    assert.deepEqual(await cash('u-skew-ahead'), { available: 7_500, posted: 7_500, pending_debit: 0 });
    await assertAudited();
    await processes.stop(visa.served);
  });
});

async function topUp(userId: string, amount: number): Promise<void> {
  const response = await postJson(`${ledgerUrl}/v1/transactions`, { transaction_id: `skew-topup-${userId}`, type: 'add', user_id: userId, balance_type: 'cash', amount });
  assert.equal(response.status, 201, response.text);
}

async function cash(userId: string): Promise<{ available: number; posted: number; pending_debit: number }> {
  const balance = await getJson(`${ledgerUrl}/v1/users/${userId}/balances/cash`);
  return { available: balance.available as number, posted: balance.posted as number, pending_debit: balance.pending_debit as number };
}

async function assertAudited(): Promise<void> {
  const audit = await getJson(`${ledgerUrl}/v1/audit`);
  assert.equal(audit.ok, true, JSON.stringify(audit));
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const response = await fetch(url);
  assert.equal(response.status, 200, `${url}: ${response.status}`);
  return (await response.json()) as Record<string, unknown>;
}

async function postJson(url: string, body: object): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, text: await response.text() };
}

async function until(condition: () => Promise<boolean>, describe: () => string): Promise<void> {
  const deadline = Date.now() + CONDITION_TIMEOUT_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}
