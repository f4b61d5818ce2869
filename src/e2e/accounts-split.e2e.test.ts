// Goal: the accounts service runs as a process of its own (`koban serve accounts`, its own database) beside `koban serve bus`, publishing account.created through the bus's HTTP API (BUS_URL) to a consumer of topic `accounts`; it refuses to start without BUS_URL (exit 78, naming it) and exits 0 on SIGTERM.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';
import { type Served, ServedProcesses } from '../cli/served-processes.ts';
import type { Consumer, Delivery, EventBus } from '../contracts/bus/event-bus.ts';
import { ACCOUNTS_TOPIC } from '../contracts/events/accounts.ts';
import { systemClock } from '../platform/clock.ts';
import { freePort } from '../platform/net.ts';
import { openEventBus } from '../services/bus/clients/open-event-bus.ts';
import { ACCOUNTS_OUTBOX_SCHEMA } from '../services/accounts/store/postgres/postgres-account-store.ts';

/** How long the event may take to reach the test's consumer: the relay polls every 20 ms, the bus delivers at once. */
const DELIVERY_TIMEOUT_MS = 15_000;
const POLL_INTERVAL_MS = 50;
const EX_CONFIG = 78;
const SUBSCRIPTION = 'e2e-split-accounts';

let busDatabase: TestDatabase;
let accountsDatabase: TestDatabase;
let inherited: NodeJS.ProcessEnv;
let busUrl: string;
let accountsUrl: string;
let bus: Served | undefined;
let accounts: Served | undefined;
/** The test's view of the bus: the postgres adapter on the bus process's database, so it sees what that process publishes. */
let observer: EventBus | undefined;
let consumer: Consumer | undefined;
const delivered: Delivery[] = [];
/** Every child spawned, so that one failing never leaves another running. */
const processes = new ServedProcesses();
const serve = (name: string, env: NodeJS.ProcessEnv) => processes.serve([name], env);
const stop = (served: Served) => processes.stop(served);

before(async () => {
  [busDatabase, accountsDatabase] = await Promise.all([createTestDatabase('e2e_acc_bus'), createTestDatabase('e2e_acc_accounts')]);
  // Nothing inherited may point a service elsewhere: each gets exactly its own database, and accounts reaches the bus only by URL.
  const { DATABASE_URL: _server, BUS_DATABASE_URL: _b, ACCOUNTS_DATABASE_URL: _a, BUS_URL: _bu, KOBAN_TEST_SERVER_URL: _t, KOBAN_BUS: _k, ...rest } = process.env;
  inherited = { ...rest, LOG_LEVEL: 'info' };
  const [busPort, accountsPort] = [await freePort(), await freePort()];
  [busUrl, accountsUrl] = [busPort, accountsPort].map((port) => `http://127.0.0.1:${port}`) as [string, string];
  bus = await serve('bus', { ...inherited, KOBAN_BUS: 'postgres', BUS_DATABASE_URL: busDatabase.url, BUS_PORT: String(busPort) });
  // Declared before accounts starts, so its first event already has a queue to go to.
  observer = await openEventBus({ adapter: 'postgres', databaseUrl: busDatabase.url, natsUrl: 'nats://127.0.0.1:4222', poolSize: 2, logger: pino({ level: 'silent' }), clock: systemClock });
  await observer.declare({ topics: [ACCOUNTS_TOPIC], subscriptions: [{ name: SUBSCRIPTION, topic: ACCOUNTS_TOPIC }] });
  consumer = await observer.consume(SUBSCRIPTION, async (delivery) => {
    delivered.push(delivery);
  });
  accounts = await serve('accounts', { ...inherited, ACCOUNTS_DATABASE_URL: accountsDatabase.url, ACCOUNTS_PORT: String(accountsPort), BUS_URL: busUrl });
});

after(async () => {
  processes.killAll();
  await consumer?.stop();
  await observer?.close();
  await Promise.all([busDatabase?.drop(), accountsDatabase?.drop()]);
});

describe('koban serve accounts beside koban serve bus', () => {
  test('a create answers 201 then a replay, and its one account.created crosses to a consumer of `accounts`', async () => {
    const first = await postJson(`${accountsUrl}/v1/users`, { user_id: 'u-split' });
    assert.equal(first.status, 201, first.text);
    const again = await postJson(`${accountsUrl}/v1/users`, { user_id: 'u-split' });
    assert.deepEqual([again.status, again.replayed, again.text], [200, 'true', first.text]);
    const read = await fetch(`${accountsUrl}/v1/users/u-split`);
    assert.equal(await read.text(), first.text);

    // accounts' outbox → its relay → the bus process's HTTP route → the bus database → a consumer of `accounts`.
    const deadline = Date.now() + DELIVERY_TIMEOUT_MS;
    while (delivered.length === 0) {
      assert.ok(Date.now() < deadline, `account.created was not delivered; accounts said:\n${accounts!.output().slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
    assert.deepEqual(
      delivered.map(({ event }) => [event.id, event.type, event.subject, event.data]),
      [['account.created.u-split', 'account.created', 'u-split', { user_id: 'u-split', created_at: JSON.parse(first.text).created_at }]],
    );
    // The relay marks the row after the bus took it, so the consumer may see the event a moment before the mark commits.
    let rows = await outbox(accountsDatabase.url);
    while (rows.unpublished > 0) {
      assert.ok(Date.now() < deadline, `accounts' outbox row was not marked published: ${JSON.stringify(rows)}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
      rows = await outbox(accountsDatabase.url);
    }
    assert.deepEqual(rows, { rows: 1, unpublished: 0 }, "accounts' outbox row is marked published");
  });

  test('accounts has its own database: its table there, none of the bus\'s', async () => {
    assert.deepEqual(await tablesOf(accountsDatabase.url), ['accounts']);
    assert.deepEqual(await tablesOf(busDatabase.url), ['topics']);
  });

  test('SIGTERM: accounts, then the bus, drain and exit 0', async () => {
    assert.equal(await stop(accounts!), 0, accounts!.output().slice(-2000));
    assert.match(accounts!.output(), /"msg":"shutdown complete"/);
    assert.equal(await stop(bus!), 0, bus!.output().slice(-2000));
  });
});

describe('koban serve accounts without the bus', () => {
  let untouched: TestDatabase;
  before(async () => {
    untouched = await createTestDatabase('e2e_acc_refused');
  });
  after(async () => {
    await untouched?.drop();
  });

  test('no bus in process and no BUS_URL: exit 78 with one line naming BUS_URL, before its database is touched', async () => {
    const { code, output } = await processes.runToExit(['accounts'], { ...inherited, ACCOUNTS_DATABASE_URL: untouched.url, ACCOUNTS_PORT: String(await freePort()) });
    assert.equal(code, EX_CONFIG, output);
    const lines = output.trim().split('\n');
    assert.equal(lines.length, 1, `one line, and no migration or other log before it:\n${output}`);
    assert.match(lines[0]!, /accounts publishes account\.created through the bus: set BUS_URL/);
    assert.deepEqual(await tablesOf(untouched.url), [], 'a configuration mistake is found before the database is migrated');
  });
});

async function postJson(url: string, body: object): Promise<{ status: number; text: string; replayed: string | null }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, text: await response.text(), replayed: response.headers.get('idempotent-replayed') };
}

/** The outbox's rows and how many of them are still unpublished. */
async function outbox(url: string): Promise<{ rows: number; unpublished: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ rows: number; unpublished: number }>(
      `SELECT count(*)::int AS rows, count(*) FILTER (WHERE published_at IS NULL)::int AS unpublished FROM ${ACCOUNTS_OUTBOX_SCHEMA}.events`,
    );
    return result.rows[0]!;
  } finally {
    await client.end();
  }
}

/** Which of the services' main tables are in the database's public schema. */
async function tablesOf(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ('accounts', 'topics') ORDER BY 1`,
    );
    return result.rows.map((row) => row.table_name);
  } finally {
    await client.end();
  }
}
