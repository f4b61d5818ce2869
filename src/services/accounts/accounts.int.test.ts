// Goal: opening an account stores it and its one account.created event (the contract's shape) together, once — a repeat or 20 racing creates answer the same bytes and add nothing — reads answer it or 404, the database refuses to change or lose it, and the event reaches a subscriber through the bus.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { Consumer, Delivery } from '../../contracts/bus/event-bus.ts';
import { parseAccountEvent } from '../../contracts/events/accounts.ts';
import { createRootLogger } from '../../platform/logger.ts';
import { createPool } from '../../platform/postgres/pool.ts';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { openAccount } from './domain/account.ts';
import { PostgresAccountStore } from './store/postgres/postgres-account-store.ts';
import { ACCOUNTS_SCHEMA, AccountsHarness } from './testing/harness.ts';

const CREATED_AT = '2026-04-01T09:30:00.123Z';
const RACING_CREATES = 20;
/** How long the relay and the bus may take to deliver one event to a subscriber. */
const DELIVERY_WAIT_MS = 15_000;
const SUBSCRIPTION = 'accounts-test';

const clock = new ManualClock(CREATED_AT);
let koban: TestKoban;
let h: AccountsHarness;
let consumer: Consumer | undefined;
const delivered: Delivery[] = [];

before(async () => {
  koban = await startTestKoban({ label: 'accounts', clock });
  h = new AccountsHarness(koban);
  // Declared before any account exists: a subscription gets the events published after it.
  await koban.bus.declare({ topics: ['accounts'], subscriptions: [{ name: SUBSCRIPTION, topic: 'accounts' }] });
  consumer = await koban.bus.consume(SUBSCRIPTION, async (delivery) => {
    delivered.push(delivery);
  });
});
after(async () => {
  await consumer?.stop();
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

describe('POST /v1/users', () => {
  test('the first create → 201 with the account, and exactly one account.created in the outbox, in the contract\'s shape', async () => {
    const response = await h.create({ user_id: 'alice' });
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.headers['idempotent-replayed'], undefined);
    assert.deepEqual(response.json(), { user_id: 'alice', created_at: CREATED_AT });
    assert.deepEqual(await h.accounts('alice'), [{ user_id: 'alice', created_at: new Date(CREATED_AT) }]);
    const events = await h.events('alice');
    assert.equal(events.length, 1);
    assert.equal(events[0]!.topic, 'accounts');
    assert.equal(events[0]!.event_id, 'account.created.alice');
    assert.deepEqual(events[0]!.event, {
      specversion: '1.0',
      id: 'account.created.alice',
      source: '/koban/accounts',
      type: 'account.created',
      subject: 'alice',
      time: CREATED_AT,
      datacontenttype: 'application/json',
      data: { user_id: 'alice', created_at: CREATED_AT },
    });
    // What a consumer reads it with accepts it.
    assert.deepEqual(parseAccountEvent(events[0]!.event as never), { id: 'account.created.alice', type: 'account.created', data: { user_id: 'alice', created_at: CREATED_AT } });
  });

  test('a repeat, later → 200, Idempotent-Replayed, the same bytes (the first instant), and still one event', async () => {
    const first = await h.create({ user_id: 'bob' });
    assert.equal(first.statusCode, 201, first.body);
    clock.advance(60_000);
    const again = await h.create({ user_id: 'bob' });
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body, first.body);
    assert.equal((await h.events('bob')).length, 1);
    assert.equal((await h.accounts('bob')).length, 1);
  });

  test(`${RACING_CREATES} identical creates at once → one account, one event, identical bodies: one 201 and the rest replays`, async () => {
    const before = await h.footprint();
    const responses = await Promise.all(Array.from({ length: RACING_CREATES }, () => h.create({ user_id: 'carol' })));
    assert.equal(new Set(responses.map((response) => response.body)).size, 1, 'every body the same bytes');
    assert.deepEqual(responses.map((response) => response.statusCode).sort(), [...Array.from({ length: RACING_CREATES - 1 }, () => 200), 201]);
    for (const response of responses) assert.equal(response.headers['idempotent-replayed'], response.statusCode === 200 ? 'true' : undefined);
    assert.equal(responses[0]!.json().user_id, 'carol');
    assert.equal((await h.accounts('carol')).length, 1);
    assert.equal((await h.events('carol')).length, 1);
    assert.deepEqual(await h.footprint(), { accounts: before.accounts + 1, outbox: before.outbox + 1 });
  });
});

describe('GET /v1/users/{user_id}', () => {
  test('an account → 200 with what the create answered', async () => {
    const created = await h.create({ user_id: 'dave' });
    const read = await h.get('dave');
    assert.equal(read.statusCode, 200, read.body);
    assert.equal(read.body, created.body);
  });

  test('no such account → 404 not_found naming user_id, and the read creates nothing', async () => {
    const before = await h.footprint();
    const response = await h.get('nobody');
    assert.equal(response.statusCode, 404, response.body);
    assert.deepEqual(response.json().error, { code: 'not_found', message: 'No account for user nobody', retryable: false, details: { field: 'user_id' } });
    assert.deepEqual(await h.footprint(), before);
  });
});

describe('the account and its event commit together', () => {
  test('an event the outbox refuses rolls the account back too: no account without its event', async () => {
    const url = new URL(koban.database.url);
    url.searchParams.set('options', `-c search_path=${ACCOUNTS_SCHEMA}`);
    const store = new PostgresAccountStore(createPool({ url: url.toString(), size: 1, applicationName: 'accounts-test', logger: createRootLogger('silent') }), clock);
    try {
      const { account, event } = openAccount('erin', clock.now());
      // An id the envelope refuses: the outbox write fails after the account's insert, inside the same transaction.
      await assert.rejects(store.open(account, { ...event, id: 'not an id' }), { code: 'invalid_request' });
      assert.deepEqual(await h.accounts('erin'), []);
      assert.deepEqual(await h.events('erin'), []);
      // And the same account with its own event opens normally afterwards.
      assert.equal((await store.open(account, event)).created, true);
      assert.equal((await h.events('erin')).length, 1);
      // A create that lost the race (no account when it looked, one when it inserted) writes nothing and answers the first.
      const later = openAccount('erin', new Date(clock.now().getTime() + 1_000));
      assert.deepEqual(await store.open(later.account, later.event), { account, created: false });
      assert.equal((await h.events('erin')).length, 1);
    } finally {
      await store.close();
    }
  });

  test('the database refuses to change or delete an account', async () => {
    await h.create({ user_id: 'frank' });
    const client = new pg.Client({ connectionString: koban.database.url });
    await client.connect();
    try {
      for (const statement of [
        `UPDATE ${ACCOUNTS_SCHEMA}.accounts SET created_at = now() WHERE user_id = 'frank'`,
        `DELETE FROM ${ACCOUNTS_SCHEMA}.accounts WHERE user_id = 'frank'`,
        `TRUNCATE ${ACCOUNTS_SCHEMA}.accounts`,
      ]) {
        await assert.rejects(client.query(statement), /accounts are append-only/, statement);
      }
    } finally {
      await client.end();
    }
    assert.equal((await h.accounts('frank')).length, 1);
  });
});

describe('through the bus', () => {
  test('account.created reaches a subscriber of topic accounts, and the outbox marks it published', async () => {
    const response = await h.create({ user_id: 'grace' });
    assert.equal(response.statusCode, 201, response.body);
    await h.create({ user_id: 'grace' });
    const deadline = Date.now() + DELIVERY_WAIT_MS;
    while (!delivered.some((delivery) => delivery.event.id === 'account.created.grace')) {
      assert.ok(Date.now() < deadline, `account.created.grace was not delivered within ${DELIVERY_WAIT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const delivery = delivered.find((candidate) => candidate.event.id === 'account.created.grace')!;
    assert.equal(delivery.subscription, SUBSCRIPTION);
    assert.deepEqual(parseAccountEvent(delivery.event).data, { user_id: 'grace', created_at: response.json().created_at });
    // The relay marks the row after the bus took it, so a subscriber may see the event a moment before the mark commits.
    let events = await h.events('grace');
    while (events.length === 1 && events[0]!.published_at === null) {
      assert.ok(Date.now() < deadline, `the outbox did not mark account.created.grace published within ${DELIVERY_WAIT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      events = await h.events('grace');
    }
    assert.equal(events.length, 1);
    assert.ok(events[0]!.published_at instanceof Date, 'the relay marked it published');
  });
});
