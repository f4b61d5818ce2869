// Goal: `koban serve ledger` and `koban serve bus` run as two OS processes, each on its own port and database on a real PostgreSQL (and NATS JetStream when it answers), serve the ledger through LedgerClient and the bus through its HTTP API, log under their own names, and exit 0 on SIGTERM.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';
import { type Served as ServedProcess, ServedProcesses } from '../cli/served-processes.ts';
import { freePort } from '../platform/net.ts';
import { LedgerClient } from '../services/ledger/clients/http-client.ts';

const NATS_HOST = '127.0.0.1';
const NATS_PORT = 4222;
const NATS_PROBE_TIMEOUT_MS = 1_000;

type Served = ServedProcess & { baseUrl: string };

let ledgerDatabase: TestDatabase;
let busDatabase: TestDatabase;
let adapter: 'nats' | 'postgres';
let ledger: Served | undefined;
let bus: Served | undefined;
/** Every child spawned, so that one failing to start never leaves the other running (and the test hanging). */
const processes = new ServedProcesses();

before(async () => {
  ledgerDatabase = await createTestDatabase('e2e_ledger');
  busDatabase = await createTestDatabase('e2e_bus');
  adapter = (await answers(NATS_HOST, NATS_PORT)) ? 'nats' : 'postgres';
  if (adapter === 'postgres') console.log(`# NATS does not answer on ${NATS_HOST}:${NATS_PORT}: the bus runs on its postgres adapter instead`);
  // Nothing inherited may point a service elsewhere: each gets exactly its own database.
  const { DATABASE_URL: _server, LEDGER_DATABASE_URL: _ledger, BUS_DATABASE_URL: _bus, KOBAN_TEST_SERVER_URL: _test, ...inherited } = process.env;
  const env = {
    ...inherited,
    LOG_LEVEL: 'info',
    KOBAN_BUS: adapter,
    NATS_URL: `nats://${NATS_HOST}:${NATS_PORT}`,
    LEDGER_DATABASE_URL: ledgerDatabase.url,
    BUS_DATABASE_URL: busDatabase.url,
    LEDGER_PORT: String(await freePort()),
    BUS_PORT: String(await freePort()),
  };
  [ledger, bus] = await Promise.all([serve('ledger', env, env.LEDGER_PORT), serve('bus', env, env.BUS_PORT)]);
});

after(async () => {
  processes.killAll();
  await ledgerDatabase?.drop();
  await busDatabase?.drop();
});

describe('koban serve ledger + koban serve bus, two processes', () => {
  test('the ledger answers through LedgerClient: add, consume, hold, balance', async () => {
    const client = new LedgerClient({ baseUrl: ledger!.baseUrl });
    const added = await client.submit({ transaction_id: 'serve-add', type: 'add', user_id: 'u-serve', balance_type: 'cash', amount: 1_000 });
    assert.equal(added.transaction.balance_after, 1_000);
    const consumed = await client.submit({ transaction_id: 'serve-use', type: 'consume', user_id: 'u-serve', balance_type: 'cash', amount: 250 });
    assert.equal(consumed.transaction.balance_after, 750);
    const held = await client.submit({ transaction_id: 'serve-hold', type: 'consume', user_id: 'u-serve', balance_type: 'cash', amount: 100, pending: true });
    assert.equal(held.transaction.status, 'pending');
    const balance = await client.getBalance('u-serve', 'cash');
    assert.equal(balance.posted, 750);
    assert.equal(balance.pending_debit, 100);
    assert.equal(balance.available, 650);
    const replay = await client.submit({ transaction_id: 'serve-use', type: 'consume', user_id: 'u-serve', balance_type: 'cash', amount: 250 });
    assert.equal(replay.replayed, true);
  });

  test('the bus answers its HTTP API: publish to a topic, list subscriptions', async () => {
    // JetStream keeps ids for its duplicate window across runs: each run publishes a new one.
    const id = `serve-${randomUUID()}`;
    const published = await fetch(`${bus!.baseUrl}/v1/topics/accounts/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({ specversion: '1.0', id, source: '/e2e', type: 'koban.account.created', data: { user_id: 'u-serve' } }),
    });
    assert.equal(published.status, 202, await published.clone().text());
    assert.deepEqual(await published.json(), { id, duplicate: false });
    const again = await fetch(`${bus!.baseUrl}/v1/topics/accounts/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ specversion: '1.0', id, source: '/e2e', type: 'koban.account.created', data: { user_id: 'u-serve' } }),
    });
    assert.deepEqual(await again.json(), { id, duplicate: true });
    const subscriptions = await fetch(`${bus!.baseUrl}/v1/subscriptions`);
    assert.equal(subscriptions.status, 200);
    assert.deepEqual(await subscriptions.json(), { data: [] });
  });

  test('each process serves its own service only, from its own database', async () => {
    assert.equal((await fetch(`${ledger!.baseUrl}/v1/subscriptions`)).status, 404, 'the ledger process has no bus routes');
    assert.equal((await fetch(`${bus!.baseUrl}/v1/users/u-serve/balances`)).status, 404, 'the bus process has no ledger routes');
    assert.deepEqual(await tablesOf(ledgerDatabase.url, ['transactions', 'topics']), ['transactions']);
    assert.deepEqual(await tablesOf(busDatabase.url, ['transactions', 'topics']), ['topics']);
    assert.match(bus!.output(), new RegExp(`"msg":"event bus open on ${adapter}"`), `the bus runs on ${adapter}`);
  });

  test('SIGTERM: both drain and exit 0; every log line names its service', async () => {
    const [ledgerCode, busCode] = await Promise.all([stop(ledger!), stop(bus!)]);
    assert.equal(ledgerCode, 0, ledger!.output().slice(-2000));
    assert.equal(busCode, 0, bus!.output().slice(-2000));
    for (const served of [ledger!, bus!]) {
      const lines = served.output().split('\n').filter((line) => line.startsWith('{'));
      assert.ok(lines.some((line) => line.includes('"msg":"shutdown complete"')), `${served.name} logged its shutdown`);
      for (const line of lines) {
        assert.equal((JSON.parse(line) as { service?: string }).service, served.name, line);
        assert.equal(line.split('"service":').length, 2, `one service name per line: ${line}`);
      }
    }
  });
});

async function serve(name: string, env: NodeJS.ProcessEnv, port: string): Promise<Served> {
  return { ...(await processes.serve([name], env)), baseUrl: `http://127.0.0.1:${port}` };
}

function stop(served: Served): Promise<number | null> {
  return processes.stop(served);
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

function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: NATS_PROBE_TIMEOUT_MS });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}
