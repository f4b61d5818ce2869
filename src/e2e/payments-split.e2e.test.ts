// Goal: the Visa route runs as a process of its own (`koban serve visa`, its own database) beside `koban serve ledger bus`, moving cash only through the ledger's HTTP API (LEDGER_URL) and publishing its events through the bus's (BUS_URL) to a consumer of topic `payments`; it refuses to start without either URL (exit 78, naming it) and exits 0 on SIGTERM.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';
import { type Served, ServedProcesses } from '../cli/served-processes.ts';
import type { Consumer, Delivery, EventBus } from '../contracts/bus/event-bus.ts';
import { PAYMENTS_TOPIC } from '../contracts/events/payments.ts';
import { systemClock } from '../platform/clock.ts';
import { freePort } from '../platform/net.ts';
import { paymentsOutboxSchema } from '../services/payments/store/postgres/postgres-payment-store.ts';

const OUTBOX_SCHEMA = paymentsOutboxSchema('visa');
import { openEventBus } from '../services/bus/clients/open-event-bus.ts';
import { LedgerClient } from '../services/ledger/clients/http-client.ts';

/** How long the events may take to reach the test's consumer: the relay polls every 20 ms, the bus delivers at once. */
const DELIVERY_TIMEOUT_MS = 15_000;
const POLL_INTERVAL_MS = 50;
const EX_CONFIG = 78;
/** The test's own subscription on topic `payments`, declared in the bus database the bus process publishes into. */
const SUBSCRIPTION = 'e2e-split-payments';
const MERCHANT = { id: 'm-split', name: 'Split Coffee', category_code: '5814' };

let ledgerDatabase: TestDatabase;
let busDatabase: TestDatabase;
let visaDatabase: TestDatabase;
let inherited: NodeJS.ProcessEnv;
let ledgerUrl: string;
let busUrl: string;
let visaUrl: string;
let core: Served | undefined;
let visa: Served | undefined;
/** The test's view of the bus: the postgres adapter on the bus process's database, so it sees what that process publishes. */
let observer: EventBus | undefined;
let consumer: Consumer | undefined;
const delivered: Delivery[] = [];
/** Every child spawned, so that one failing never leaves another running (and the test hanging). */
const processes = new ServedProcesses();
const serve = (names: string[], env: NodeJS.ProcessEnv) => processes.serve(names, env);
const stop = (served: Served) => processes.stop(served);
const runToExit = (names: string[], env: NodeJS.ProcessEnv) => processes.runToExit(names, env);

before(async () => {
  [ledgerDatabase, busDatabase, visaDatabase] = await Promise.all([createTestDatabase('e2e_pay_ledger'), createTestDatabase('e2e_pay_bus'), createTestDatabase('e2e_pay_visa')]);
  // Nothing inherited may point a service elsewhere: each gets exactly its own database, and visa reaches the others only by URL.
  const { DATABASE_URL: _server, LEDGER_DATABASE_URL: _l, BUS_DATABASE_URL: _b, VISA_DATABASE_URL: _v, LEDGER_URL: _lu, BUS_URL: _bu, KOBAN_TEST_SERVER_URL: _t, KOBAN_BUS: _a, ...rest } = process.env;
  inherited = { ...rest, LOG_LEVEL: 'info' };
  const [ledgerPort, busPort, visaPort] = [await freePort(), await freePort(), await freePort()];
  [ledgerUrl, busUrl, visaUrl] = [ledgerPort, busPort, visaPort].map((port) => `http://127.0.0.1:${port}`) as [string, string, string];
  core = await serve(['ledger', 'bus'], {
    ...inherited,
    KOBAN_BUS: 'postgres',
    LEDGER_DATABASE_URL: ledgerDatabase.url,
    BUS_DATABASE_URL: busDatabase.url,
    LEDGER_PORT: String(ledgerPort),
    BUS_PORT: String(busPort),
  });
  // Declared before visa starts, so the first event already has a queue to go to.
  observer = await openEventBus({ adapter: 'postgres', databaseUrl: busDatabase.url, natsUrl: 'nats://127.0.0.1:4222', poolSize: 2, logger: pino({ level: 'silent' }), clock: systemClock });
  await observer.declare({ topics: [PAYMENTS_TOPIC], subscriptions: [{ name: SUBSCRIPTION, topic: PAYMENTS_TOPIC }] });
  consumer = await observer.consume(SUBSCRIPTION, async (delivery) => {
    delivered.push(delivery);
  });
  visa = await serve(['visa'], { ...inherited, VISA_DATABASE_URL: visaDatabase.url, VISA_PORT: String(visaPort), LEDGER_URL: ledgerUrl, BUS_URL: busUrl });
});

after(async () => {
  processes.killAll();
  await consumer?.stop();
  await observer?.close();
  await Promise.all([ledgerDatabase?.drop(), busDatabase?.drop(), visaDatabase?.drop()]);
});

describe('koban serve visa beside koban serve ledger bus', () => {
  test('an authorization and its sales draft: approved, cash held then posted in the ledger, both events delivered on `payments`', async () => {
    const ledger = new LedgerClient({ baseUrl: ledgerUrl });
    const topUp = await fetch(`${ledgerUrl}/v1/transactions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ transaction_id: 'split-topup', type: 'add', user_id: 'u-split', balance_type: 'cash', amount: 10_000 }),
    });
    assert.equal(topUp.status, 201, await topUp.clone().text());

    const authorization = await postJson(`${visaUrl}/v1/visa/authorizations`, {
      authorization_id: 'SPLITA1',
      user_id: 'u-split',
      amount: 3_000,
      currency: 'JPY',
      merchant: MERCHANT,
    });
    assert.equal(authorization.status, 200, authorization.text);
    assert.equal(authorization.replayed, 'false');
    assert.deepEqual(JSON.parse(authorization.text), { authorization_id: 'SPLITA1', approved: true, available_after: 7_000 });
    const held = await ledger.getBalance('u-split', 'cash');
    assert.deepEqual([held.posted, held.pending_debit, held.available], [10_000, 3_000, 7_000], 'the hold is in the ledger process');
    const [hold] = await ledger.getTransactions('visa:SPLITA1:hold');
    assert.equal(hold?.status, 'pending');

    const salesDraft = await postJson(`${visaUrl}/v1/visa/sales-drafts`, {
      sales_draft_id: 'SPLITS1',
      authorization_id: 'SPLITA1',
      user_id: 'u-split',
      amount: 3_000,
      currency: 'JPY',
      merchant: MERCHANT,
      final: true,
    });
    assert.equal(salesDraft.status, 200, salesDraft.text);
    assert.equal(JSON.parse(salesDraft.text).captured_total, 3_000);
    const posted = await ledger.getBalance('u-split', 'cash');
    assert.deepEqual([posted.posted, posted.pending_debit, posted.available], [7_000, 0, 7_000], 'the hold is posted in the ledger process');
    const [capture] = await ledger.getTransactions('visa:SPLITA1:hold');
    assert.deepEqual([capture?.status, capture?.posted_amount], ['posted', 3_000]);

    // The events crossed two processes: visa's outbox → its relay → the bus process's HTTP route → the bus database → a consumer of `payments`.
    await until(() => delivered.length >= 2, DELIVERY_TIMEOUT_MS, () => `delivered ${delivered.length} of 2 events; visa said:\n${visa!.output().slice(-2000)}`);
    assert.deepEqual(
      delivered.map(({ event }) => [event.id, event.type, event.subject, (event.data as { amount: number }).amount]).sort(),
      [
        ['visa.authorization.SPLITA1', 'payment.authorized', 'visa:SPLITA1', 3_000],
        ['visa.sales_draft.SPLITS1', 'payment.captured', 'visa:SPLITA1', 3_000],
      ],
    );
    // The relay marks rows after the bus took them, so the consumer may see the events a moment before the mark commits.
    await until(async () => (await unpublished(visaDatabase.url)).unpublished === 0, DELIVERY_TIMEOUT_MS, () => "visa's outbox rows were not marked published");
    assert.deepEqual(await unpublished(visaDatabase.url), { rows: 2, unpublished: 0 }, "visa's outbox rows are marked published");
    const stats = (await (await fetch(`${busUrl}/v1/subscriptions`)).json()) as { data: Array<{ name: string; depth: number; in_flight: number; dead_letters: number }> };
    const ours = stats.data.find((subscription) => subscription.name === SUBSCRIPTION);
    assert.deepEqual([ours?.depth, ours?.in_flight, ours?.dead_letters], [0, 0, 0], 'the bus process reports the subscription drained');
  });

  test('visa has its own database: no ledger or bus tables in it, no payment tables in theirs', async () => {
    assert.deepEqual(await tablesOf(visaDatabase.url, ['payments', 'transactions', 'topics']), ['payments']);
    assert.deepEqual(await tablesOf(ledgerDatabase.url, ['payments', 'transactions', 'topics']), ['transactions']);
    assert.deepEqual(await tablesOf(busDatabase.url, ['payments', 'transactions', 'topics']), ['topics']);
    assert.equal((await fetch(`${visaUrl}/v1/users/u-split/balances`)).status, 404, 'the visa process serves no ledger routes');
  });

  test('SIGTERM: visa, then ledger and bus, drain and exit 0', async () => {
    assert.equal(await stop(visa!), 0, visa!.output().slice(-2000));
    assert.match(visa!.output(), /"msg":"shutdown complete"/);
    assert.equal(await stop(core!), 0, core!.output().slice(-2000));
  });
});

describe('koban serve visa without its peers', () => {
  let untouched: TestDatabase;
  before(async () => {
    untouched = await createTestDatabase('e2e_pay_refused');
  });
  after(async () => {
    await untouched?.drop();
  });

  /** Runs `koban serve visa` with these URLs; it must refuse with one line, before touching its database. */
  async function refused(urls: Record<string, string>): Promise<string> {
    const { code, output } = await runToExit(['visa'], { ...inherited, VISA_DATABASE_URL: untouched.url, VISA_PORT: String(await freePort()), ...urls });
    assert.equal(code, EX_CONFIG, output);
    const lines = output.trim().split('\n');
    assert.equal(lines.length, 1, `one line, and no migration or other log before it:\n${output}`);
    assert.deepEqual(await tablesOf(untouched.url, ['payments']), [], 'a configuration mistake is found before the database is migrated');
    return lines[0]!;
  }

  test('no ledger in process and no LEDGER_URL: exit 78 with one line naming LEDGER_URL', async () => {
    const line = await refused({ BUS_URL: 'http://127.0.0.1:9' });
    assert.match(line, /LEDGER_URL/);
    assert.doesNotMatch(line, /BUS_URL/, 'only what is missing is named');
  });

  test('no bus in process and no BUS_URL: exit 78 with one line naming BUS_URL', async () => {
    const line = await refused({ LEDGER_URL: 'http://127.0.0.1:9' });
    assert.match(line, /BUS_URL/);
    assert.doesNotMatch(line, /LEDGER_URL/, 'only what is missing is named');
  });

  test('neither: both named at once, in one line', async () => {
    const line = await refused({});
    assert.match(line, /LEDGER_URL/);
    assert.match(line, /BUS_URL/);
  });
});

async function postJson(url: string, body: object): Promise<{ status: number; text: string; replayed: string | null }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, text: await response.text(), replayed: response.headers.get('idempotent-replayed') };
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

/** The outbox's rows and how many of them are still unpublished. */
async function unpublished(url: string): Promise<{ rows: number; unpublished: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ rows: number; unpublished: number }>(
      `SELECT count(*)::int AS rows, count(*) FILTER (WHERE published_at IS NULL)::int AS unpublished FROM ${OUTBOX_SCHEMA}.events`,
    );
    return result.rows[0]!;
  } finally {
    await client.end();
  }
}

/** Which of `names` are tables in the database's public schema. */
async function tablesOf(url: string, names: string[]): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ANY($1) ORDER BY table_name`,
      [names],
    );
    return result.rows.map((row) => row.table_name);
  } finally {
    await client.end();
  }
}
