// Goal: the outbox relay on the real PostgreSQL bus sets aside a row whose topic the bus does not know (marked, retried after RELAY_REFUSED_RETRY_MS, never blocking the rows behind it) and parks one whose event id conflicts, and relays sharing one outbox publish each row once.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { CloudEventInput } from '../../contracts/events/envelope.ts';
import type { Delivery, EventBus } from '../../contracts/bus/event-bus.ts';
import { systemClock } from '../../platform/clock.ts';
import { createLogger } from '../../platform/logger.ts';
import { appendToOutbox, migrateOutbox, OUTBOX_SCHEMA, OutboxRelay, outboxBacklog, RELAY_REFUSED_RETRY_MS } from '../../platform/outbox/outbox.ts';
import { createPool, type Pool, withTransaction } from '../../platform/postgres/pool.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import { PostgresEventBus } from './adapters/postgres/postgres-event-bus.ts';

const WAIT_TIMEOUT_MS = 15_000;
const WAIT_POLL_MS = 10;
/** Small batches, so that a refused row shares its batch with good ones and more rows wait behind it. */
const RELAY_BATCH_SIZE = 2;
/** A retry instant this far ahead is not yet due, with room for a slow machine between two steps. */
const NOT_YET_DUE_MS = 10_000;

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
let busDatabase: TestDatabase;
let producerDatabase: TestDatabase;
let bus: PostgresEventBus;
let producer: Pool;

before(async () => {
  busDatabase = await createTestDatabase('outbox_relay_bus');
  producerDatabase = await createTestDatabase('outbox_relay_producer');
  bus = await PostgresEventBus.open({ url: busDatabase.url, poolSize: 4, logger, clock: systemClock, idlePollMs: 50 });
  await migrateOutbox(producerDatabase.url, logger);
  producer = createPool({ url: producerDatabase.url, size: 4, applicationName: 'outbox-relay-test', logger });
});
after(async () => {
  await bus?.close();
  await producer?.end();
  await busDatabase?.drop();
  await producerDatabase?.drop();
});

function event(id: string): CloudEventInput {
  return { specversion: '1.0', id, source: '/koban/tests', type: 'koban.test.happened', data: { id } };
}

/** Commits the events to the outbox in one transaction, in order. */
async function append(messages: Array<{ topic: string; id: string }>): Promise<void> {
  await withTransaction(producer, (client) => appendToOutbox(client, messages.map(({ topic, id }) => ({ topic, event: event(id) })), systemClock));
}

/** A fresh topic with one subscription, and a consumer that records what it receives. */
async function declareAndConsume(): Promise<{ topic: string; received: string[]; stop(): Promise<void> }> {
  const topic = `t-${randomUUID().slice(0, 8)}`;
  await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-all`, topic }] });
  const received: string[] = [];
  const consumer = await bus.consume(`${topic}-all`, async (delivery: Delivery) => {
    received.push(delivery.event.id);
  });
  return { topic, received, stop: () => consumer.stop() };
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + WAIT_TIMEOUT_MS; !(await check()); ) {
    if (Date.now() > deadline) assert.fail(`waited ${WAIT_TIMEOUT_MS} ms for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
  }
}

type RowState = { published: boolean; attempts: number; last_error: string | null; available_at_ms: number };

async function rowState(eventId: string): Promise<RowState> {
  const result = await producer.query<RowState>(
    `SELECT published_at IS NOT NULL AS published, attempts, last_error, (extract(epoch FROM available_at) * 1000)::float8 AS available_at_ms
       FROM ${OUTBOX_SCHEMA}.events WHERE event_id = $1`,
    [eventId],
  );
  assert.equal(result.rowCount, 1, `one outbox row for ${eventId}`);
  return result.rows[0]!;
}

async function unpublished(eventIds: readonly string[]): Promise<number> {
  const result = await producer.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${OUTBOX_SCHEMA}.events WHERE event_id = ANY($1) AND published_at IS NULL`, [eventIds]);
  return result.rows[0]!.n;
}

/** The database's clock, which the relay's `now()` reads: the bounds of a relay round. */
async function databaseNowMs(): Promise<number> {
  const result = await producer.query<{ ms: number }>(`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`);
  return result.rows[0]!.ms;
}

/**
 * Stands in for time passing: puts the row's retry instant `inMs` after the
 * database's now (not relative to its old value, so a slow machine between
 * two steps cannot make a row due early).
 */
async function setRetryIn(eventId: string, inMs: number): Promise<void> {
  await producer.query(`UPDATE ${OUTBOX_SCHEMA}.events SET available_at = clock_timestamp() + $2 * interval '1 millisecond' WHERE event_id = $1`, [eventId, inMs]);
}

/** Runs one relay round; returns how many rows it handled and the database clock around it. */
async function relayRound(relay: OutboxRelay): Promise<{ handled: number; startMs: number; endMs: number }> {
  const startMs = await databaseNowMs();
  const handled = await relay.relayOnce();
  return { handled, startMs, endMs: await databaseNowMs() };
}

describe('a row whose topic the bus does not know', () => {
  test('is marked and set aside for RELAY_REFUSED_RETRY_MS while the rows behind it are published; once due it is tried again, and published once the topic exists', async () => {
    const known = await declareAndConsume();
    const unknownTopic = `not-declared-${randomUUID().slice(0, 8)}`;
    const good = Array.from({ length: 5 }, (_, index) => `good-${index}`);
    // The refused row comes first: every good row is behind it.
    await append([{ topic: unknownTopic, id: 'refused-1' }, ...good.map((id) => ({ topic: known.topic, id }))]);
    const relay = new OutboxRelay({ pool: producer, bus, logger, batchSizeMax: RELAY_BATCH_SIZE });

    const first = await relayRound(relay);
    assert.equal(first.handled, 2, 'the refused row and good-0 shared the first batch');
    const refused = await rowState('refused-1');
    assert.deepEqual({ published: refused.published, attempts: refused.attempts, last_error: refused.last_error }, { published: false, attempts: 1, last_error: `unknown topic ${unknownTopic}` });
    assert.ok(
      refused.available_at_ms >= first.startMs + RELAY_REFUSED_RETRY_MS && refused.available_at_ms <= first.endMs + RELAY_REFUSED_RETRY_MS,
      `retried ${RELAY_REFUSED_RETRY_MS} ms after the refusal: available_at is ${refused.available_at_ms - first.startMs} ms after the round began`,
    );
    const neighbour = await rowState('good-0');
    assert.deepEqual({ published: neighbour.published, attempts: neighbour.attempts, last_error: neighbour.last_error }, { published: true, attempts: 1, last_error: null }, 'good-0, in the same batch, is published');

    // The rows behind it go out, batch after batch, and the refused row does not come back meanwhile.
    assert.deepEqual([(await relayRound(relay)).handled, (await relayRound(relay)).handled, (await relayRound(relay)).handled], [2, 2, 0]);
    assert.equal(await outboxBacklog(producer), 1, 'only the refused row is left');
    await waitUntil(`every good event delivered (got ${known.received.join(', ')})`, () => known.received.length >= good.length);
    assert.deepEqual([...known.received].sort(), good);
    assert.equal((await rowState('refused-1')).attempts, 1, 'not tried again before its time');

    // Still short of its retry instant: left alone.
    await setRetryIn('refused-1', NOT_YET_DUE_MS);
    assert.equal(await relay.relayOnce(), 0, 'not due before the retry instant');
    // At its retry instant it is tried again; the topic is still unknown, so it is set aside again.
    await setRetryIn('refused-1', 0);
    const second = await relayRound(relay);
    assert.equal(second.handled, 1, 'tried again once due');
    const again = await rowState('refused-1');
    assert.deepEqual({ published: again.published, attempts: again.attempts }, { published: false, attempts: 2 });
    assert.ok(again.available_at_ms >= second.startMs + RELAY_REFUSED_RETRY_MS, 'and set aside for another full interval');

    // Once the topic is declared, the next due attempt publishes it.
    await bus.declare({ topics: [unknownTopic], subscriptions: [{ name: `${unknownTopic}-all`, topic: unknownTopic }] });
    const late: string[] = [];
    const lateConsumer = await bus.consume(`${unknownTopic}-all`, async (delivery) => {
      late.push(delivery.event.id);
    });
    await setRetryIn('refused-1', 0);
    assert.equal(await relay.relayOnce(), 1);
    const published = await rowState('refused-1');
    assert.deepEqual({ published: published.published, attempts: published.attempts }, { published: true, attempts: 3 });
    assert.equal(await outboxBacklog(producer), 0);
    await waitUntil('the once-refused event delivered', () => late.length >= 1);
    assert.deepEqual(late, ['refused-1']);
    await lateConsumer.stop();
    await known.stop();
  });

  test('does not stall a running relay: it neither backs off nor stops, and every good row is delivered', async () => {
    const known = await declareAndConsume();
    const unknownTopic = `not-declared-${randomUUID().slice(0, 8)}`;
    const good = Array.from({ length: 20 }, (_, index) => `running-${String(index).padStart(2, '0')}`);
    await append([{ topic: unknownTopic, id: 'running-refused' }, ...good.slice(0, 10).map((id) => ({ topic: known.topic, id }))]);
    const relay = new OutboxRelay({ pool: producer, bus, logger, batchSizeMax: RELAY_BATCH_SIZE, idlePollMs: 20 });
    relay.start();
    try {
      // Rows committed while the refused one waits go out too.
      await append(good.slice(10).map((id) => ({ topic: known.topic, id })));
      await waitUntil(`all ${good.length} good events delivered (got ${known.received.length})`, () => known.received.length >= good.length);
      await waitUntil('the good rows marked published', async () => (await unpublished(good)) === 0);
      assert.equal(await outboxBacklog(producer), 1, 'only the refused row is left');
      assert.deepEqual([...known.received].sort(), good);
      assert.equal(relay.failures, 0, 'a refusal is not a bus failure: no backoff');
      const refused = await rowState('running-refused');
      assert.deepEqual({ published: refused.published, attempts: refused.attempts }, { published: false, attempts: 1 }, 'set aside once, not retried in a loop');
    } finally {
      await relay.stop();
      await known.stop();
      // Later tests count the backlog: the set-aside row must not outlive this one.
      await producer.query(`DELETE FROM ${OUTBOX_SCHEMA}.events WHERE event_id = 'running-refused'`);
    }
  });
});

describe('a row whose event id the bus already holds with different content', () => {
  test('is set aside for good with its error while the rows behind it are published; an identical repeat is simply marked', async () => {
    const known = await declareAndConsume();
    // Published straight to the bus earlier (by another producer, or by hand).
    await bus.publish(known.topic, event('taken-1'));
    await bus.publish(known.topic, event('taken-2'));
    await withTransaction(producer, (client) =>
      appendToOutbox(
        client,
        [
          { topic: known.topic, event: { ...event('taken-1'), data: { id: 'taken-1', amount: 500 }, subject: 'user-9' } },
          { topic: known.topic, event: event('taken-2') },
          { topic: known.topic, event: event('fresh-1') },
          { topic: known.topic, event: event('fresh-2') },
        ],
        systemClock,
      ),
    );
    const relay = new OutboxRelay({ pool: producer, bus, logger, batchSizeMax: RELAY_BATCH_SIZE });
    assert.equal(await relay.relayOnce(), 2, 'the conflicting row and taken-2 shared the first batch');
    const conflicting = await rowState('taken-1');
    assert.deepEqual(
      { published: conflicting.published, attempts: conflicting.attempts, last_error: conflicting.last_error, available_at_ms: conflicting.available_at_ms },
      {
        published: false,
        attempts: 1,
        last_error: `idempotency_conflict: event taken-1 was already published on topic ${known.topic} with different data, subject`,
        available_at_ms: Number.POSITIVE_INFINITY,
      },
    );
    assert.deepEqual(await rowState('taken-2').then((row) => [row.published, row.last_error]), [true, null], 'an identical repeat is done');
    assert.deepEqual([await relay.relayOnce(), await relay.relayOnce()], [2, 0], 'the rows behind it go out, and it is not tried again');
    assert.equal(relay.failures, 0, 'a conflict is not a bus failure: no backoff');
    await waitUntil(`four events delivered (got ${known.received.join(', ')})`, () => known.received.length >= 4);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual([...known.received].sort(), ['fresh-1', 'fresh-2', 'taken-1', 'taken-2'], 'each delivered once, taken-1 as first published');
    await known.stop();
    // Later tests count the backlog: the set-aside row must not outlive this one.
    await producer.query(`DELETE FROM ${OUTBOX_SCHEMA}.events WHERE event_id = 'taken-1'`);
  });
});

describe('relays sharing one outbox', () => {
  test('two relays running at once publish every row exactly once between them', async () => {
    const known = await declareAndConsume();
    const ids = Array.from({ length: 60 }, (_, index) => `shared-${String(index).padStart(2, '0')}`);
    // Counts what each relay hands to the bus: the bus would absorb a duplicate, so deliveries alone would not show one.
    const published = new Map<string, number>();
    const batchesPerRelay = [0, 0];
    const counting = (relayIndex: number): Pick<EventBus, 'publishBatch'> => ({
      publishBatch: async (messages) => {
        batchesPerRelay[relayIndex]! += 1;
        for (const message of messages) published.set(message.event.id, (published.get(message.event.id) ?? 0) + 1);
        // Hold the claimed rows a little, so the two relays' claims overlap in time.
        await new Promise((resolve) => setTimeout(resolve, 5));
        return bus.publishBatch(messages);
      },
    });
    const relays = [0, 1].map((relayIndex) => new OutboxRelay({ pool: producer, bus: counting(relayIndex), logger, batchSizeMax: 4, idlePollMs: 5 }));
    for (const relay of relays) relay.start();
    try {
      for (let index = 0; index < ids.length; index += 6) await append(ids.slice(index, index + 6).map((id) => ({ topic: known.topic, id })));
      // (The outbox also holds the earlier tests' refused rows: count only this test's.)
      await waitUntil(`all ${ids.length} rows marked published`, async () => (await unpublished(ids)) === 0);
    } finally {
      for (const relay of relays) await relay.stop();
    }
    assert.deepEqual([...published.keys()].sort(), ids);
    const repeated = [...published].filter(([, count]) => count !== 1);
    assert.deepEqual(repeated, [], 'no row was handed to the bus twice');
    assert.ok(batchesPerRelay.every((batches) => batches > 0), `both relays took part, so their claims competed: ${batchesPerRelay.join(' and ')} batches`);
    await waitUntil(`every event delivered (got ${known.received.length})`, () => known.received.length >= ids.length);
    assert.deepEqual([...known.received].sort(), ids);
    await known.stop();
  });
});

describe('stopping a relay', () => {
  test('finishes the batch in progress and takes no more: later rows wait for the next relay', async () => {
    const known = await declareAndConsume();
    let releasePublish!: () => void;
    const publishReleased = new Promise<void>((resolve) => (releasePublish = resolve));
    let publishCalls = 0;
    const gated: Pick<EventBus, 'publishBatch'> = {
      publishBatch: async (messages) => {
        publishCalls++;
        await publishReleased;
        return bus.publishBatch(messages);
      },
    };
    const inProgress = ['stop-0', 'stop-1', 'stop-2'];
    const later = ['stop-3', 'stop-4'];
    await append(inProgress.map((id) => ({ topic: known.topic, id })));
    const relay = new OutboxRelay({ pool: producer, bus: gated, logger, idlePollMs: 5 });
    relay.start();
    try {
      await waitUntil('the relay is publishing a batch', () => publishCalls === 1);
      let stopped = false;
      const stopping = relay.stop().then(() => (stopped = true));
      await append(later.map((id) => ({ topic: known.topic, id })));
      assert.equal(stopped, false, 'stop() waits for the batch in progress');
      releasePublish();
      await stopping;
    } finally {
      // After a failure above, the held batch must end, or its open transaction would hang the run.
      releasePublish();
      await relay.stop();
    }
    assert.equal(publishCalls, 1, 'no batch after stop()');
    assert.equal(await unpublished(inProgress), 0, 'the batch in progress was marked');
    assert.equal(await unpublished(later), later.length, 'later rows stay in the outbox');

    const next = new OutboxRelay({ pool: producer, bus, logger });
    assert.equal(await next.relayOnce(), later.length, 'the next relay publishes them');
    await waitUntil(`all five delivered (got ${known.received.length})`, () => known.received.length >= 5);
    assert.deepEqual([...known.received].sort(), [...inProgress, ...later]);
    await known.stop();
  });
});
