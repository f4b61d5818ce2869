// Goal: the NATS JetStream adapter passes the EventBus conformance suite against the real server at NATS_URL, keeps deployments in separate namespaces apart, and judges repeats of an id alike however late they come (skips when no server is reachable).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { systemClock } from '../../../../platform/clock.ts';
import { isErrorCode } from '../../../../platform/errors.ts';
import { createLogger } from '../../../../platform/logger.ts';
import { createPool, type Pool } from '../../../../platform/postgres/pool.ts';
import { createTestDatabase, type TestDatabase } from '../../../../../test/support/database.ts';
import type { CloudEvent } from '../../../../contracts/events/envelope.ts';
import type { Delivery } from '../../../../contracts/bus/event-bus.ts';
import { openEventBus } from '../../clients/open-event-bus.ts';
import { fingerprint } from '../../domain/publishing.ts';
import { loadTopics } from '../../registry/registry.ts';
import { runConformance, sleep, waitFor } from '../../testing/conformance.ts';
import { NatsEventBus } from './nats-event-bus.ts';

const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const PROBE_TIMEOUT_MS = 1_000;

async function natsUnreachable(): Promise<string | false> {
  try {
    const nc = await connect({ servers: natsUrl, timeout: PROBE_TIMEOUT_MS, maxReconnectAttempts: 0 });
    await nc.close();
    return false;
  } catch (error) {
    return `NATS not reachable at ${natsUrl} (${error instanceof Error ? error.message : String(error)}); start nats-server -js or set NATS_URL`;
  }
}

const skip = await natsUnreachable();
// Streams of this run carry their own prefix, so runs sharing one server never meet.
const namespace = `kobantest-${randomUUID().slice(0, 8)}`;

runConformance(
  'nats',
  async (logger) => {
    const busDatabase = await createTestDatabase('bus_nats');
    const producerDatabase = await createTestDatabase('bus_nats_producer');
    const open = async (url: string) =>
      NatsEventBus.open({ natsUrl: url, databaseUrl: busDatabase.url, poolSize: 4, logger, clock: systemClock, namespace, publishTimeoutMs: 500 });
    const janitor = await open(natsUrl);
    const registry = createPool({ url: busDatabase.url, size: 1, applicationName: 'conformance-registry', logger });
    return {
      producerDatabaseUrl: producerDatabase.url,
      async forgetPublished(topic, id) {
        await registry.query('UPDATE event_fingerprints SET published_at = NULL WHERE topic = $1 AND event_id = $2', [topic, id]);
      },
      async open(options) {
        if (!options?.via) return open(natsUrl);
        const parsed = new URL(natsUrl);
        const proxy = await options.via({ host: parsed.hostname, port: Number(parsed.port || 4222) });
        return open(`nats://127.0.0.1:${proxy.port}`);
      },
      async teardown() {
        const pool = (await import('../../../../platform/postgres/pool.ts')).createPool({ url: busDatabase.url, size: 1, applicationName: 'teardown', logger });
        const topics = await loadTopics(pool).finally(() => pool.end());
        await janitor.deleteStreams(topics);
        await janitor.close();
        await registry.end();
        await busDatabase.drop();
        await producerDatabase.drop();
      },
    };
  },
  { skip },
);

describe('NATS adapter beyond the conformance suite', { skip, concurrency: false }, () => {
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const databases: TestDatabase[] = [];
  const buses: NatsEventBus[] = [];
  const pools: Pool[] = [];
  /** Streams to delete afterwards, by bus. */
  const topicsOf = new Map<NatsEventBus, string[]>();

  async function openBus(options: { namespace: string; duplicateWindowMs?: number }): Promise<{ bus: NatsEventBus; pool: Pool }> {
    const database = await createTestDatabase('bus_nats_more');
    databases.push(database);
    const bus = await NatsEventBus.open({ natsUrl, databaseUrl: database.url, poolSize: 2, logger, clock: systemClock, publishTimeoutMs: 500, ...options });
    buses.push(bus);
    const pool = createPool({ url: database.url, size: 1, applicationName: 'nats-more', logger });
    pools.push(pool);
    return { bus, pool };
  }

  async function declareOne(bus: NatsEventBus, topic: string): Promise<{ received: Delivery[]; stop(): Promise<void> }> {
    await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-all`, topic, ackWaitMs: 2_000 }] });
    topicsOf.set(bus, [...(topicsOf.get(bus) ?? []), topic]);
    const received: Delivery[] = [];
    const consumer = await bus.consume(`${topic}-all`, async (delivery) => {
      received.push(delivery);
    });
    return { received, stop: () => consumer.stop() };
  }

  const event = (id: string, data: unknown) => ({ specversion: '1.0', id, source: '/koban/tests', type: 'koban.test.happened', data });

  after(async () => {
    for (const bus of buses) {
      await bus.deleteStreams(topicsOf.get(bus) ?? []);
      await bus.close();
    }
    for (const pool of pools) await pool.end();
    for (const database of databases) await database.drop();
  });

  test('two deployments in two namespaces on one server never see each other\'s events, even on the same topic and subscription names', async () => {
    const suffix = randomUUID().slice(0, 8);
    const a = await openBus({ namespace: `ns-a-${suffix}` });
    const b = await openBus({ namespace: `ns-b-${suffix}` });
    const topic = `shared-${suffix}`;
    const [seenA, seenB] = [await declareOne(a.bus, topic), await declareOne(b.bus, topic)];
    // The same id in each: two deployments' ids are their own, neither a duplicate nor a conflict of the other's.
    assert.deepEqual(await a.bus.publish(topic, event('same-id', { from: 'a' })), { id: 'same-id', duplicate: false });
    assert.deepEqual(await b.bus.publish(topic, event('same-id', { from: 'b' })), { id: 'same-id', duplicate: false });
    await a.bus.publish(topic, event('only-a', { from: 'a' }));
    await waitFor(() => seenA.received.length >= 2 && seenB.received.length >= 1);
    await sleep(200);
    assert.deepEqual(seenA.received.map((delivery) => [delivery.event.id, delivery.event.data]).sort(), [['only-a', { from: 'a' }], ['same-id', { from: 'a' }]]);
    assert.deepEqual(seenB.received.map((delivery) => [delivery.event.id, delivery.event.data]), [['same-id', { from: 'b' }]]);
    // Each namespace has its own stream on the server.
    const nc = await connect({ servers: natsUrl });
    try {
      const jsm = await jetstreamManager(nc);
      for (const ns of [`ns-a-${suffix}`, `ns-b-${suffix}`]) {
        const info = await jsm.streams.info(`${ns}_${topic}`);
        assert.deepEqual(info.config.subjects, [`${ns}.${topic}.>`]);
      }
    } finally {
      await nc.close();
    }
    await Promise.all([seenA.stop(), seenB.stop()]);
  });

  test('a namespace that could collide or that the server would refuse stops start-up before anything is opened', async () => {
    for (const bad of ['', 'Koban', 'a_b', 'a.b', 'a b', '-a', 'x'.repeat(33), 'a\u0000']) {
      await assert.rejects(
        NatsEventBus.open({ natsUrl, databaseUrl: 'postgres://nobody@127.0.0.1:1/none', poolSize: 1, logger, clock: systemClock, namespace: bad }),
        /KOBAN_NATS_NAMESPACE .* must match/,
        JSON.stringify(bad),
      );
      await assert.rejects(
        openEventBus({ adapter: 'nats', natsUrl, natsNamespace: bad, databaseUrl: 'postgres://nobody@127.0.0.1:1/none', poolSize: 1, logger, clock: systemClock }),
        /KOBAN_NATS_NAMESPACE .* must match/,
        `openEventBus ${JSON.stringify(bad)}`,
      );
    }
  });

  test('past the stream\'s duplicate window, the registry still tells an identical repeat (a duplicate) from a different one (a conflict)', async () => {
    const DUPLICATE_WINDOW_MS = 200;
    const { bus } = await openBus({ namespace: `ns-w-${randomUUID().slice(0, 8)}`, duplicateWindowMs: DUPLICATE_WINDOW_MS });
    const topic = `window-${randomUUID().slice(0, 8)}`;
    const seen = await declareOne(bus, topic);
    assert.deepEqual(await bus.publish(topic, event('late-1', { n: 1 })), { id: 'late-1', duplicate: false });
    await waitFor(() => seen.received.length === 1);
    // Waiting out the server's window, which the stream was created with: after it, JetStream alone would take a copy.
    await sleep(DUPLICATE_WINDOW_MS * 5);
    assert.deepEqual(await bus.publish(topic, event('late-1', { n: 1 })), { id: 'late-1', duplicate: true });
    await assert.rejects(bus.publish(topic, event('late-1', { n: 2 })), (error) => isErrorCode(error, 'idempotency_conflict') && String(error.details?.fields) === 'data');
    await sleep(200);
    assert.deepEqual(seen.received.map((delivery) => delivery.event.id), ['late-1'], 'delivered once');
    await seen.stop();
  });

  test('an id claimed by a publish that never reached the stream is published by its identical repeat, once; a different one is a conflict', async () => {
    const { bus, pool } = await openBus({ namespace: `ns-c-${randomUUID().slice(0, 8)}` });
    const topic = `claimed-${randomUUID().slice(0, 8)}`;
    const seen = await declareOne(bus, topic);
    // What a publish that crashed between its claim and the broker leaves: a claim, never marked published.
    const lost = { ...event('lost-1', { n: 1 }), time: '2026-04-01T09:00:00.000Z' } as CloudEvent;
    await pool.query('INSERT INTO event_fingerprints (topic, event_id, fingerprint) VALUES ($1, $2, $3)', [topic, 'lost-1', JSON.stringify(fingerprint(lost))]);
    await assert.rejects(bus.publish(topic, event('lost-1', { n: 2 })), (error) => isErrorCode(error, 'idempotency_conflict'));
    assert.deepEqual(await bus.publish(topic, event('lost-1', { n: 1 })), { id: 'lost-1', duplicate: false }, 'the retry publishes it');
    const marked = await pool.query<{ published: boolean }>('SELECT published_at IS NOT NULL AS published FROM event_fingerprints WHERE event_id = $1', ['lost-1']);
    assert.equal(marked.rows[0]?.published, true);
    assert.deepEqual(await bus.publish(topic, event('lost-1', { n: 1 })), { id: 'lost-1', duplicate: true });
    await waitFor(() => seen.received.length >= 1);
    await sleep(200);
    assert.deepEqual(seen.received.map((delivery) => [delivery.event.id, delivery.event.data]), [['lost-1', { n: 1 }]], 'delivered once');
    await seen.stop();
  });
});
