// Goal: the NATS JetStream adapter passes the EventBus conformance suite against the real server at NATS_URL (skips when none is reachable).
import { randomUUID } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { systemClock } from '../../../../platform/clock.ts';
import { createTestDatabase } from '../../../../../test/support/database.ts';
import { loadTopics } from '../../registry/registry.ts';
import { runConformance } from '../../testing/conformance.ts';
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
const namespace = `kobantest_${randomUUID().slice(0, 8)}`;

runConformance(
  'nats',
  async (logger) => {
    const busDatabase = await createTestDatabase('bus_nats');
    const producerDatabase = await createTestDatabase('bus_nats_producer');
    const open = async (url: string) =>
      NatsEventBus.open({ natsUrl: url, databaseUrl: busDatabase.url, poolSize: 4, logger, clock: systemClock, namespace, publishTimeoutMs: 500 });
    const janitor = await open(natsUrl);
    return {
      producerDatabaseUrl: producerDatabase.url,
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
        await busDatabase.drop();
        await producerDatabase.drop();
      },
    };
  },
  { skip },
);
