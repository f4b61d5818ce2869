// The event bus as a service: its settings (adapter, NATS), its database (the
// registry: topics, subscriptions, dead letters; queues too with postgres), its
// routes, its delivery loops (inside the adapter), and how it starts and stops.
import type { Logger } from 'pino';
import type { EventBus } from '../../contracts/bus/event-bus.ts';
import type { PlatformConfig, Setting, Settings } from '../../platform/config.ts';
import type { Clock } from '../../platform/clock.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import { RetentionSweeper } from '../../platform/retention.ts';
import { pruneAckedMessages } from './adapters/postgres/postgres-event-bus.ts';
import { pruneHandledClaims } from './adapters/sns-sqs/consumed-events.ts';
import { prunePublishedFingerprints } from './registry/event-fingerprints.ts';
import type { ReadinessCheck, ServiceModule } from '../../platform/service-module.ts';
import { type BusAdapter, migrateBusDatabase, openEventBus } from './clients/open-event-bus.ts';
import { NATS_NAMESPACE_DEFAULT, NATS_NAMESPACE_PATTERN } from './domain/limits.ts';
import { KOBAN_TOPOLOGY } from './domain/topology.ts';
import { registerBusRoutes } from './http/routes.ts';

/** Its database on a server of its own, and its schema in a shared one (as before services had modules). */
const BUS_DATABASE = 'koban_bus';
/** Room for the largest event plus its envelope; the publish route sets its own limit too. */
const BUS_BODY_BYTES_MAX = 16 * 1024;

export const BUS_SETTINGS: readonly Setting[] = [
  {
    key: 'KOBAN_BUS',
    schema: { enum: ['postgres', 'nats', 'sns-sqs'], default: 'postgres' },
    hint: 'postgres (the default, on the bus database), nats (JetStream at NATS_URL) or sns-sqs (AWS SNS and SQS, or an emulator)',
  },
  {
    key: 'NATS_URL',
    schema: { type: 'string', pattern: '^(nats|tls)://[^\\s]+$', default: 'nats://127.0.0.1:4222' },
    hint: 'a nats:// URL of a server with JetStream enabled, e.g. nats://127.0.0.1:4222',
  },
  {
    key: 'KOBAN_NATS_NAMESPACE',
    schema: { type: 'string', pattern: NATS_NAMESPACE_PATTERN, default: NATS_NAMESPACE_DEFAULT },
    hint: 'a name of 1–32 lower-case letters, digits or -, starting with a letter, that no other deployment on the same NATS server uses (it prefixes stream names and subjects)',
  },
  { key: 'AWS_REGION', schema: { type: 'string', pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$', default: 'us-east-1' }, hint: 'an AWS region such as us-east-1 or ap-northeast-1' },
  {
    key: 'KOBAN_SNS_SQS_ENDPOINT',
    schema: { type: 'string', pattern: '^https?://[^\\s]+$' },
    hint: 'the http(s):// URL of an SNS+SQS emulator or LocalStack; leave unset for AWS (credentials from the SDK\'s default chain)',
  },
  {
    key: 'KOBAN_SNS_SQS_NAMESPACE',
    schema: { type: 'string', pattern: NATS_NAMESPACE_PATTERN, default: NATS_NAMESPACE_DEFAULT },
    hint: 'a name of 1–32 lower-case letters, digits or -, starting with a letter, that no other deployment in the same AWS account and region uses (it prefixes topic and queue names)',
  },
];

export type BusConfig = Readonly<{
  /** Event bus adapter: postgres (default, on the bus database) or nats (JetStream at natsUrl). */
  adapter: BusAdapter;
  natsUrl: string;
  /** Prefix of this deployment's streams and subjects, so deployments sharing a NATS server never meet. */
  natsNamespace: string;
  /** sns-sqs: the region, an emulator's endpoint if any, and the prefix of topic and queue names. */
  snsSqs: Readonly<{ region: string; endpoint?: string; namespace: string }>;
}>;

export function busConfig(settings: Settings): BusConfig {
  const endpoint = settings.KOBAN_SNS_SQS_ENDPOINT as string | undefined;
  return Object.freeze({
    adapter: settings.KOBAN_BUS as BusAdapter,
    natsUrl: settings.NATS_URL as string,
    natsNamespace: settings.KOBAN_NATS_NAMESPACE as string,
    snsSqs: Object.freeze({ region: settings.AWS_REGION as string, namespace: settings.KOBAN_SNS_SQS_NAMESPACE as string, ...(endpoint === undefined ? {} : { endpoint }) }),
  });
}

export const busModule: ServiceModule<EventBus> = {
  name: 'bus',
  title: 'Koban event bus',
  description: 'Topics, filtered subscriptions, retries and dead letters (postgres, NATS JetStream, or SNS+SQS).',
  defaultPort: 3002,
  settings: BUS_SETTINGS,
  database: BUS_DATABASE,
  bodyLimitBytes: BUS_BODY_BYTES_MAX,
  migrate: (pool: Pool, logger: Logger) => migrateBusDatabase(pool, logger),
  async start({ settings, platform, databaseUrl, logger, clock }) {
    const config = busConfig(settings);
    const bus = await openEventBus({
      adapter: config.adapter,
      databaseUrl,
      natsUrl: config.natsUrl,
      natsNamespace: config.natsNamespace,
      snsSqs: config.snsSqs,
      poolSize: platform.dbPoolSize,
      logger,
      clock,
    });
    try {
      await bus.declare(KOBAN_TOPOLOGY);
    } catch (error) {
      await bus.close();
      throw error;
    }
    logger.info({ adapter: bus.adapter }, `event bus open on ${bus.adapter}`);
    const retention = busRetention(databaseUrl, platform, logger, clock);
    const broker =
      config.adapter === 'nats'
        ? await natsReadiness(config.natsUrl).catch(async (error: unknown) => {
            await retention.stop();
            await bus.close();
            throw error;
          })
        : undefined;
    return {
      api: bus,
      registerRoutes: (app) => registerBusRoutes(app, bus),
      readiness: broker ? [broker.check] : bus.ping ? [{ name: 'broker', check: (signal: AbortSignal) => bus.ping!(signal) }] : [],
      async stop() {
        try {
          await retention.stop();
          await bus.close();
        } finally {
          await broker?.close();
        }
      },
    };
  },
};

/**
 * The bus prunes its own database, whatever the adapter (the postgres queue's
 * tables are empty under the others): acknowledged messages with their
 * deliveries, handled claims, published fingerprints. Declarations and dead
 * letters are kept. One connection of its own, so pruning never takes one a
 * publish or a claim waits for.
 */
function busRetention(databaseUrl: string, platform: PlatformConfig, logger: Logger, clock: Clock): { stop(): Promise<void> } {
  const pool = createPool({ url: databaseUrl, size: 1, applicationName: 'koban-bus-retention', logger });
  const sweeper = new RetentionSweeper({
    tasks: [
      { name: 'bus.messages', pruneBatch: (cutoff, rowsMax) => pruneAckedMessages(pool, cutoff, rowsMax) },
      { name: 'bus.consumed_events', pruneBatch: (cutoff, rowsMax) => pruneHandledClaims(pool, cutoff, rowsMax) },
      { name: 'bus.event_fingerprints', pruneBatch: (cutoff, rowsMax) => prunePublishedFingerprints(pool, cutoff, rowsMax) },
    ],
    config: platform.retention,
    clock,
    logger,
  });
  sweeper.start();
  return {
    async stop() {
      try {
        await sweeper.stop();
      } finally {
        await pool.end();
      }
    },
  };
}

/**
 * The broker answers: a round trip to NATS and to JetStream on a connection of
 * the check's own (the bus's connections are its adapter's). It reconnects
 * forever; while NATS is away the check fails.
 */
async function natsReadiness(natsUrl: string): Promise<{ check: ReadinessCheck; close(): Promise<void> }> {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: natsUrl, name: 'koban-bus-readiness', maxReconnectAttempts: -1 });
  return {
    check: {
      name: 'broker',
      async check() {
        await nc.flush();
        await (await jetstreamManager(nc)).getAccountInfo();
      },
    },
    close: () => nc.close(),
  };
}
