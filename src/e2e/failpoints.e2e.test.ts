// Goal: each failpoint does what KOBAN_FAILPOINTS says in a real `koban serve` process, and the product survives it — a ledger killed after its commit (the resend replays it, one effect), a relay killed between publish and mark (published again, delivered once), a consumer killed after its effect and before its ack (redelivered, applied once), and a poison window (retried, dead-lettered, redriven: every event handled once).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';
import { isolatedEnv, type Served, ServedProcesses } from '../cli/served-processes.ts';
import type { Consumer, Delivery, EventBus } from '../contracts/bus/event-bus.ts';
import { PAYMENTS_TOPIC } from '../contracts/events/payments.ts';
import { systemClock } from '../platform/clock.ts';
import { freePort } from '../platform/net.ts';
import { openEventBus } from '../services/bus/clients/open-event-bus.ts';
import { paymentsOutboxSchema } from '../services/payments/store/postgres/postgres-payment-store.ts';

const CONDITION_TIMEOUT_MS = 15_000;
const POLL_INTERVAL_MS = 50;
/** Short, so a crashed consumer's delivery comes back within the test (the default is 30 s). */
const ACK_WAIT_MS = 1_000;
/** The test's own consumer of `payments`, on the bus database: it counts what each event id was delivered. */
const OBSERVER = 'e2e-faults-payments';
/** What must be left of the poison window once points listens: time to dead-letter three events twice-delivered. */
const POISON_WINDOW_OPEN_MS_MIN = 3_000;
const POISON_STARTS_MAX = 3;
const MERCHANT = { id: 'm-faults', name: 'Fault Coffee', category_code: '5814' };

let ledgerDatabase: TestDatabase;
let busDatabase: TestDatabase;
let visaDatabase: TestDatabase;
let pointsDatabase: TestDatabase;
let core: Served;
let ledgerUrl: string;
let busUrl: string;
let observer: EventBus | undefined;
let consumer: Consumer | undefined;
const delivered: Delivery[] = [];
const processes = new ServedProcesses();

before(async () => {
  [ledgerDatabase, busDatabase, visaDatabase, pointsDatabase] = await Promise.all([
    createTestDatabase('e2e_fp_ledger'),
    createTestDatabase('e2e_fp_bus'),
    createTestDatabase('e2e_fp_visa'),
    createTestDatabase('e2e_fp_points'),
  ]);
  const [ledgerPort, busPort] = [await freePort(), await freePort()];
  [ledgerUrl, busUrl] = [`http://127.0.0.1:${ledgerPort}`, `http://127.0.0.1:${busPort}`];
  core = await processes.serve(
    ['ledger', 'bus'],
    isolatedEnv({ KOBAN_BUS: 'postgres', LEDGER_DATABASE_URL: ledgerDatabase.url, BUS_DATABASE_URL: busDatabase.url, LEDGER_PORT: String(ledgerPort), BUS_PORT: String(busPort) }),
  );
  observer = await openEventBus({ adapter: 'postgres', databaseUrl: busDatabase.url, natsUrl: 'nats://127.0.0.1:4222', poolSize: 2, logger: pino({ level: 'silent' }), clock: systemClock });
  await observer.declare({ topics: [PAYMENTS_TOPIC], subscriptions: [{ name: OBSERVER, topic: PAYMENTS_TOPIC }] });
  consumer = await observer.consume(OBSERVER, async (delivery) => {
    delivered.push(delivery);
  });
});

after(async () => {
  processes.killAll();
  await consumer?.stop();
  await observer?.close();
  await Promise.all([ledgerDatabase, busDatabase, visaDatabase, pointsDatabase].map((database) => database?.drop()));
});

describe('failpoints in koban serve processes', () => {
  test('ledger.after_commit=crash: the process dies after the commit, before answering; the resend (to another instance) replays it, one effect', async () => {
    const port = await freePort();
    const crashing = await processes.serve(['ledger'], isolatedEnv({ LEDGER_DATABASE_URL: ledgerDatabase.url, LEDGER_PORT: String(port), KOBAN_FAILPOINTS: 'ledger.after_commit=crash' }));
    const request = { transaction_id: 'fp-ledger-add', type: 'add', user_id: 'u-fp-ledger', balance_type: 'cash', amount: 1_234 };
    await assert.rejects(postJson(`http://127.0.0.1:${port}/v1/transactions`, request), 'the connection drops: no answer');
    await assertCrashed(crashing, 'ledger.after_commit');

    const resent = await postJson(`${ledgerUrl}/v1/transactions`, request);
    assert.equal(resent.status, 200, resent.text);
    assert.equal(resent.replayed, 'true', 'the write had committed: the resend replays it');
    assert.deepEqual(pick(JSON.parse(resent.text), ['transaction_id', 'status', 'amount', 'balance_after']), { transaction_id: 'fp-ledger-add', status: 'posted', amount: 1_234, balance_after: 1_234 });
    const again = await postJson(`${ledgerUrl}/v1/transactions`, request);
    assert.equal(again.text, resent.text, 'every later resend gets the same bytes');
    const balance = (await (await fetch(`${ledgerUrl}/v1/users/u-fp-ledger/balances/cash`)).json()) as { posted: number };
    assert.equal(balance.posted, 1_234, 'one effect');
  });

  test('outbox.after_publish=crash: the relay dies between the bus accepting a batch and marking it; after a restart it publishes again and each consumer gets the event once', async () => {
    await topUp('u-fp-visa', 10_000);
    const port = await freePort();
    const env = (failpoints: string | undefined) =>
      isolatedEnv({ VISA_DATABASE_URL: visaDatabase.url, VISA_PORT: String(port), LEDGER_URL: ledgerUrl, BUS_URL: busUrl, ...(failpoints ? { KOBAN_FAILPOINTS: failpoints } : {}) });
    const crashing = await processes.serve(['visa'], env('outbox.after_publish=crash'));
    const authorization = { authorization_id: 'FPRELAY1', user_id: 'u-fp-visa', amount: 3_000, currency: 'JPY', merchant: MERCHANT };
    // The relay runs beside the request: the answer may or may not leave before the process dies.
    const first = await postJson(`http://127.0.0.1:${port}/v1/visa/authorizations`, authorization).catch(() => undefined);
    await assertCrashed(crashing, 'outbox.after_publish');
    const eventId = 'visa.authorization.FPRELAY1';
    assert.deepEqual(await sql(busDatabase.url, `SELECT count(*)::int AS n FROM messages WHERE event_id = $1`, [eventId]), [{ n: 1 }], 'the bus took the event');
    assert.deepEqual(
      await sql(visaDatabase.url, `SELECT published_at IS NULL AS unmarked FROM ${paymentsOutboxSchema('visa')}.events WHERE event_id = $1`, [eventId]),
      [{ unmarked: true }],
      'the row was never marked: the next relay publishes it again',
    );

    const restarted = await processes.serve(['visa'], env(undefined));
    await until(
      async () => (await sql(visaDatabase.url, `SELECT count(*)::int AS n FROM ${paymentsOutboxSchema('visa')}.events WHERE published_at IS NULL`))[0]!.n === 0,
      () => `the restarted relay did not mark the row:\n${restarted.output().slice(-2000)}`,
    );
    const resent = await postJson(`http://127.0.0.1:${port}/v1/visa/authorizations`, authorization);
    assert.equal(resent.replayed, 'true');
    assert.deepEqual(JSON.parse(resent.text), { authorization_id: 'FPRELAY1', approved: true, available_after: 7_000 });
    if (first !== undefined) assert.equal(resent.text, first.text);
    await until(async () => delivered.some(({ event }) => event.id === eventId), () => `the observer never got ${eventId}`);
    assert.deepEqual(await sql(busDatabase.url, `SELECT count(*)::int AS n FROM messages WHERE event_id = $1`, [eventId]), [{ n: 1 }], 'published twice, stored once');
    await until(async () => (await subscription(OBSERVER)).in_flight === 0, () => 'the observer did not settle');
    assert.equal(delivered.filter(({ event }) => event.id === eventId).length, 1, 'delivered once');
    await processes.stop(restarted);
  });

  test('consumer.after_handle@points-rewards=crash: the grant commits, the process dies before the ack; redelivered after a restart, granted once', async () => {
    const crashing = await servePoints('consumer.after_handle@points-rewards=crash');
    await publishReward('fp-reward-crash', 'u-fp-points', 120);
    await assertCrashed(crashing, 'consumer.after_handle');
    assert.equal((await pointsBalance('u-fp-points')).posted, 120, 'the effect committed before the crash');

    const restarted = await servePoints(undefined);
    await until(async () => {
      const rows = await sql(busDatabase.url, `SELECT d.state, d.attempts FROM deliveries d JOIN messages m ON m.seq = d.message_seq WHERE d.subscription = 'points-rewards' AND m.event_id = $1`, ['fp-reward-crash']);
      return rows[0]?.state === 'acked';
    }, () => `not redelivered and acked:\n${restarted.output().slice(-2000)}`);
    const [row] = await sql(busDatabase.url, `SELECT d.attempts FROM deliveries d JOIN messages m ON m.seq = d.message_seq WHERE d.subscription = 'points-rewards' AND m.event_id = $1`, ['fp-reward-crash']);
    assert.equal(row!.attempts, 2, 'handled twice: before the crash and after it');
    assert.equal((await pointsBalance('u-fp-points')).posted, 120, 'one grant in the ledger');
    const grants = (await (await fetch(`${pointsUrl}/v1/users/u-fp-points/point-grants`)).json()) as { data: Array<{ points: number; status: string }> };
    assert.deepEqual(grants.data.map((grant) => [grant.points, grant.status]), [[120, 'confirmed']]);
    await processes.stop(restarted);
  });

  test('consumer.handle@points-rewards=throw inside a window: deliveries fail and become dead letters; after the window and a redrive every event is handled, none twice', async () => {
    // The window is fixed when the process is spawned; a start slower than it leaves too little of it open, so
    // such a start is stopped and the window widened (the traffic must fall inside it, or nothing is tested).
    let windowMs = 6_000;
    let until_ = 0;
    let points: Served | undefined;
    for (let tries = 0; points === undefined; tries++) {
      assert.ok(tries < POISON_STARTS_MAX, `points never started with ${POISON_WINDOW_OPEN_MS_MIN} ms of its window left`);
      until_ = Date.now() + windowMs;
      const started = await servePoints(`consumer.handle@points-rewards=throw;until=${until_}`, { POINTS_MAX_DELIVERIES: '2', POINTS_RETRY_BACKOFF_INITIAL_MS: '100' });
      if (until_ - Date.now() >= POISON_WINDOW_OPEN_MS_MIN) points = started;
      else {
        await processes.stop(started);
        windowMs *= 2;
      }
    }
    const ids = ['fp-poison-1', 'fp-poison-2', 'fp-poison-3'];
    for (const id of ids) await publishReward(id, 'u-fp-poison', 10);
    await until(async () => (await subscription('points-rewards')).dead_letters === ids.length, () => `not all dead-lettered:\n${points.output().slice(-2000)}`);
    assert.ok(Date.now() < until_, 'dead-lettered inside the window');
    const dead = (await (await fetch(`${busUrl}/v1/subscriptions/points-rewards/dead-letters`)).json()) as { data: Array<{ id: string; attempts: number; last_error: string }> };
    assert.deepEqual(dead.data.map((letter) => [letter.id, letter.attempts]).sort(), ids.map((id) => [id, 2]));
    for (const letter of dead.data) assert.match(letter.last_error, /failpoint consumer.handle@points-rewards threw/);
    assert.equal((await pointsBalance('u-fp-poison')).posted, 0, 'nothing granted while the handler throws');

    // The window closes by the wall clock: wait for it (bounded by its own end), then the same process heals.
    await until(async () => Date.now() >= until_, () => 'the window did not close');
    await publishReward('fp-poison-after', 'u-fp-poison', 5);
    await until(async () => (await pointsBalance('u-fp-poison')).posted === 5, () => 'an event after the window was not handled');
    const redrive = await postJson(`${busUrl}/v1/subscriptions/points-rewards/dead-letters/redrive`, {});
    assert.equal(JSON.parse(redrive.text).redriven, ids.length, redrive.text);
    await until(async () => (await pointsBalance('u-fp-poison')).posted === 35, () => 'redriven events were not all handled');
    await until(async () => {
      const stats = await subscription('points-rewards');
      return stats.depth === 0 && stats.in_flight === 0 && stats.dead_letters === 0;
    }, () => 'points-rewards did not drain');
    assert.equal((await pointsBalance('u-fp-poison')).posted, 35, 'each event granted once');
    const grants = (await (await fetch(`${pointsUrl}/v1/users/u-fp-poison/point-grants`)).json()) as { data: unknown[] };
    assert.equal(grants.data.length, ids.length + 1);
    await processes.stop(points);
  });

  test('SIGTERM: the core process still drains and exits 0 after all that', async () => {
    assert.equal(await processes.stop(core), 0, core.output().slice(-2000));
  });
});

let pointsPort: number | undefined;
let pointsUrl = '';

async function servePoints(failpoints: string | undefined, extra: NodeJS.ProcessEnv = {}): Promise<Served> {
  pointsPort ??= await freePort();
  pointsUrl = `http://127.0.0.1:${pointsPort}`;
  return processes.serve(
    ['points'],
    isolatedEnv({
      POINTS_DATABASE_URL: pointsDatabase.url,
      POINTS_PORT: String(pointsPort),
      BUS_DATABASE_URL: busDatabase.url,
      KOBAN_BUS: 'postgres',
      LEDGER_URL: ledgerUrl,
      POINTS_ACK_WAIT_MS: String(ACK_WAIT_MS),
      POINTS_WELCOME_CASH_AMOUNT: '0',
      ...extra,
      ...(failpoints ? { KOBAN_FAILPOINTS: failpoints } : {}),
    }),
  );
}

/** The process was killed by SIGKILL, and said which failpoint did it on its last line. */
async function assertCrashed(served: Served, name: string): Promise<void> {
  const code = await Promise.race([served.exited, new Promise<'alive'>((resolve) => setTimeout(() => resolve('alive'), CONDITION_TIMEOUT_MS))]);
  assert.equal(code, null, `${served.name} should have been killed:\n${served.output().slice(-2000)}`);
  assert.equal(served.child.signalCode, 'SIGKILL');
  const line = served.output().trim().split('\n').at(-1)!;
  assert.deepEqual(pick(JSON.parse(line), ['msg', 'failpoint', 'action']), { msg: 'failpoint fired', failpoint: name, action: 'crash' });
}

async function topUp(userId: string, amount: number): Promise<void> {
  const response = await postJson(`${ledgerUrl}/v1/transactions`, { transaction_id: `fp-topup-${userId}`, type: 'add', user_id: userId, balance_type: 'cash', amount });
  assert.equal(response.status, 201, response.text);
}

async function publishReward(id: string, userId: string, points: number): Promise<void> {
  const response = await postJson(`${busUrl}/v1/topics/rewards/events`, {
    specversion: '1.0',
    id,
    source: 'partner/fp',
    type: 'reward.purchase_confirmed',
    subject: userId,
    data: { user_id: userId, purchase_id: id, points },
  });
  assert.equal(response.status, 202, response.text);
}

async function pointsBalance(userId: string): Promise<{ posted: number }> {
  const response = await fetch(`${ledgerUrl}/v1/users/${userId}/balances/points`);
  return (await response.json()) as { posted: number };
}

async function subscription(name: string): Promise<{ depth: number; in_flight: number; dead_letters: number }> {
  const stats = (await (await fetch(`${busUrl}/v1/subscriptions`)).json()) as { data: Array<{ name: string; depth: number; in_flight: number; dead_letters: number }> };
  return stats.data.find((candidate) => candidate.name === name)!;
}

async function postJson(url: string, body: object): Promise<{ status: number; text: string; replayed: string | null }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, text: await response.text(), replayed: response.headers.get('idempotent-replayed') };
}

function pick(object: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((key) => [key, object[key]]));
}

async function until(condition: () => Promise<boolean>, describe: () => string): Promise<void> {
  const deadline = Date.now() + CONDITION_TIMEOUT_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

async function sql(url: string, text: string, values: unknown[] = []): Promise<Array<Record<string, unknown> & { n?: number }>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows;
  } finally {
    await client.end();
  }
}
