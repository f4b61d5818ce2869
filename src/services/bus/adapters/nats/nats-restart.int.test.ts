// Goal: an event the NATS adapter reports published survives a clean restart of the server (SIGTERM, then
// start on the same store) that happens while publishes are under way: every subscription of its topic
// receives it; and a stream keeps a message exactly until every subscription has acknowledged it (the
// adapter trims it, not the server); a partner's publish while JetStream does not answer is a retryable
// 503, never a 500. Runs its own nats-server (free port, own store); skips when
// nats-server is not installed.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { systemClock } from '../../../../platform/clock.ts';
import { createLogger } from '../../../../platform/logger.ts';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createTestDatabase, type TestDatabase } from '../../../../../test/support/database.ts';
import type { CloudEvent } from '../../../../contracts/events/envelope.ts';
import type { Consumer } from '../../../../contracts/bus/event-bus.ts';
import { natsServerBinary, type OwnNatsServer, startOwnNatsServer } from '../../testing/nats-server.ts';
import { sleep, waitFor } from '../../testing/conformance.ts';
import { createHttpServer } from '../../../../platform/http/server.ts';
import { registerBusRoutes } from '../../http/routes.ts';
import { CONSUMER_RESUME_MS_MAX, NatsEventBus } from './nats-event-bus.ts';

const skip = natsServerBinary() === undefined ? 'nats-server is not installed (on PATH or in /usr/sbin): this test starts and restarts its own' : false;
/** Publishers at once, each sending batches like an outbox relay, so publishes are in flight when the server stops. */
const PUBLISHERS = 6;
const BATCH_SIZE = 25;
/** Events acknowledged before the stop, and again after the start, so both sides of the restart are covered. */
const EVENTS_BEFORE_RESTART_MIN = 500;
const EVENTS_AFTER_RESTART_MIN = 200;
const DOWN_MS = 300;
const DELIVERED_TIMEOUT_MS = 30_000;
/** Beyond the adapter's own bound, for a loaded machine. */
const RESUME_SLACK_MS = 2_500;

describe('NATS adapter across a clean restart of its server', { skip }, () => {
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  let server: OwnNatsServer | undefined;
  let database: TestDatabase | undefined;
  let bus: NatsEventBus | undefined;
  // Whether the server's next start enables JetStream.
  let jetStream = true;

  before(async () => {
    server = await startOwnNatsServer({ storePrefix: 'koban-test-nats-', jetStream: () => jetStream });
    database = await createTestDatabase('bus_nats_restart');
    bus = await NatsEventBus.open({ natsUrl: server.url, databaseUrl: database.url, poolSize: 8, logger, clock: systemClock, namespace: 'restart', publishTimeoutMs: 500 });
  });

  after(async () => {
    await bus?.close();
    await server?.stop();
    await database?.drop();
  });

  test('every event acknowledged while the server stops and starts again reaches every subscription', async () => {
    assert.ok(bus && server);
    const topic = `payments-${randomUUID().slice(0, 8)}`;
    const subscriptions = ['points', 'notifications'];
    await bus.declare({ topics: [topic], subscriptions: subscriptions.map((name) => ({ name, topic, ackWaitMs: 2_000 })) });
    const received = new Map(subscriptions.map((name) => [name, new Set<string>()]));
    const consumers: Consumer[] = [];
    for (const name of subscriptions) {
      consumers.push(await bus.consume(name, async ({ event }) => void received.get(name)!.add(event.id)));
    }

    const acknowledged = new Set<string>();
    let stopping = false;
    const publisher = async (worker: number) => {
      for (let batch = 0; !stopping; batch++) {
        const events = Array.from({ length: BATCH_SIZE }, (_, n): CloudEvent => ({
          specversion: '1.0',
          id: `w${worker}-b${batch}-${n}`,
          source: '/koban/tests',
          type: 'koban.test.happened',
          time: new Date().toISOString(),
          data: { worker, batch, n },
        }) as CloudEvent);
        // As the outbox relay does: the same batch again until the bus accepts it.
        for (;;) {
          try {
            const statuses = await bus!.publishBatch(events.map((event) => ({ topic, event })));
            for (const status of statuses) assert.ok(status === 'published' || status === 'duplicate', JSON.stringify(status));
            for (const event of events) acknowledged.add(event.id);
            break;
          } catch {
            await sleep(50);
          }
        }
      }
    };
    const publishers = Array.from({ length: PUBLISHERS }, (_, worker) => publisher(worker));

    await waitFor(() => acknowledged.size >= EVENTS_BEFORE_RESTART_MIN, DELIVERED_TIMEOUT_MS);
    await server!.restart(DOWN_MS);
    const atRestart = acknowledged.size;
    await waitFor(() => acknowledged.size >= atRestart + EVENTS_AFTER_RESTART_MIN, DELIVERED_TIMEOUT_MS);
    stopping = true;
    await Promise.all(publishers);

    const missing = () => subscriptions.flatMap((name) => [...acknowledged].filter((id) => !received.get(name)!.has(id)).map((id) => `${name}:${id}`));
    const deadline = Date.now() + DELIVERED_TIMEOUT_MS;
    while (missing().length > 0 && Date.now() < deadline) await sleep(100);
    const lost = missing();
    assert.deepEqual(lost.slice(0, 10), [], `${lost.length} deliveries of ${acknowledged.size} acknowledged events never came (first 10 shown)`);
    await Promise.all(consumers.map((consumer) => consumer.stop()));
  });

  test('a delivery that failed and waits out its retry delay when the server restarts is delivered again after it, trims meanwhile', async () => {
    assert.ok(bus && server);
    const topic = `retry-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-points`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, ackWaitMs: 2_000, maxDeliveries: 5, retryBackoffInitialMs: 1_500, retryBackoffMaxMs: 1_500 }] });
    const attempts: number[] = [];
    let failed = false;
    const consumer = await bus.consume(name, async ({ event, attempt }) => {
      if (event.id !== 'r1') return;
      attempts.push(attempt);
      if (attempt === 1) {
        failed = true;
        throw new Error('the first delivery fails (a database restart under way)');
      }
    });
    try {
      await bus.publishBatch([{ topic, event: { specversion: '1.0', id: 'r1', source: '/koban/tests', type: 'koban.test.happened', time: new Date().toISOString(), data: {} } as CloudEvent }]);
      await waitFor(() => failed);
      // Inside the retry delay: the server restarts, and the adapter trims as it does every few seconds.
      await server.restart(DOWN_MS);
      await bus.trimAcknowledged().catch(() => undefined);
      await waitFor(() => attempts.length >= 2, DELIVERED_TIMEOUT_MS);
      assert.equal(attempts[1], 2);
    } finally {
      await consumer.stop();
    }
  });

  test('a trim deletes what every subscription acknowledged and keeps what one of them has not', async () => {
    assert.ok(bus && server);
    const topic = `trim-${randomUUID().slice(0, 8)}`;
    await bus.declare({ topics: [topic], subscriptions: ['a', 'b'].map((name) => ({ name: `${topic}-${name}`, topic, ackWaitMs: 2_000 })) });
    const seen = { a: new Set<string>(), b: new Set<string>() };
    const consume = (name: 'a' | 'b') => bus!.consume(`${topic}-${name}`, async ({ event }) => void seen[name].add(event.id));
    const publish = (ids: string[]) =>
      bus!.publishBatch(ids.map((id) => ({ topic, event: { specversion: '1.0', id, source: '/koban/tests', type: 'koban.test.happened', time: new Date().toISOString(), data: {} } as CloudEvent })));
    const nc = await connect({ servers: server.url });
    const storedMessages = async () => (await (await jetstreamManager(nc)).streams.info(bus!.streamName(topic))).state.messages;
    try {
      const a = await consume('a');
      let b = await consume('b');
      await publish(['t1', 't2', 't3']);
      await waitFor(() => seen.a.size === 3 && seen.b.size === 3);
      // Acknowledgements are sent without waiting for an answer: wait until the floors have moved, then trim.
      await waitFor(async () => {
        await bus!.trimAcknowledged();
        return (await storedMessages()) === 0;
      });
      await b.stop();
      await publish(['t4', 't5']);
      await waitFor(() => seen.a.size === 5);
      await bus.trimAcknowledged();
      assert.equal(await storedMessages(), 2, 'kept for the subscription that has not acknowledged them');
      b = await consume('b');
      await waitFor(() => seen.b.size === 5);
      await waitFor(async () => {
        await bus!.trimAcknowledged();
        return (await storedMessages()) === 0;
      });
      await Promise.all([a.stop(), b.stop()]);
    } finally {
      await nc.close();
    }
  });

  test('a publish over HTTP while JetStream does not answer is 503 unavailable with Retry-After; the resend once it answers is accepted and delivered once', async () => {
    assert.ok(bus && server);
    const topic = `rewards-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-points`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, ackWaitMs: 2_000 }] });
    const delivered: string[] = [];
    const consumer = await bus.consume(name, async ({ event }) => void delivered.push(event.id));
    const app = await createHttpServer({ logger, bodyLimitBytes: 16 * 1024, title: 'test', version: '0', description: 'test' });
    registerBusRoutes(app, bus);
    await app.ready();
    const event = (id: string) => ({ specversion: '1.0', id, source: 'https://partner.example/rewards', type: 'koban.reward.earned', data: { points: 30 } });
    const publish = (id: string) => app.inject({ method: 'POST', url: `/v1/topics/${topic}/events`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(event(id)) });
    try {
      jetStream = false;
      await server.restart(0);
      // Connected again, to a server whose JetStream answers nothing ("no responders").
      await waitFor(async () => {
        const probe = await bus!.publishBatch([{ topic, event: event(`probe-${randomUUID()}`) as CloudEvent }]).then(() => undefined, (error: unknown) => error);
        return probe instanceof Error && probe.name === 'JetStreamNotEnabled';
      }, DELIVERED_TIMEOUT_MS);
      const refused = await publish('e1');
      assert.equal(refused.statusCode, 503, refused.body);
      assert.equal(refused.json().error.code, 'unavailable');
      assert.ok(refused.json().error.retryable);
      assert.ok(refused.headers['retry-after'], 'Retry-After tells the partner when to resend');

      jetStream = true;
      await server.restart(0);
      // The partner resends until accepted; every answer before that is the same retryable refusal.
      const accepted = await waitFor(async () => {
        const answer = await publish('e1');
        if (answer.statusCode !== 202) assert.equal(answer.json().error.code, 'unavailable', answer.body);
        return answer.statusCode === 202 ? answer : undefined;
      }, DELIVERED_TIMEOUT_MS);
      assert.equal(accepted.json().id, 'e1');
      assert.equal((await publish('e2')).statusCode, 202);
      // The consumer, whose check of itself failed while JetStream was away, tries again soon — not half a minute later.
      // The stream keeps order: a second copy of e1 would arrive before e2.
      await waitFor(() => delivered.includes('e2'), CONSUMER_RESUME_MS_MAX + RESUME_SLACK_MS);
      assert.deepEqual(delivered.filter((id) => !id.startsWith('probe-')), ['e1', 'e2']);
    } finally {
      jetStream = true;
      await consumer.stop();
      await app.close();
    }
  });
});
