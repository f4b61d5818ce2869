// How another service (or the composition root) gets an EventBus: chooses
// and opens the configured adapter. The NATS client is loaded only when the
// nats adapter is chosen, the AWS SDK (and the embedded emulator) only when
// sns-sqs is.
import type { Logger } from 'pino';
import type { Clock } from '../../../platform/clock.ts';
import type { EventBus } from '../../../contracts/bus/event-bus.ts';
import type { Pool } from '../../../platform/postgres/pool.ts';
import { migratePostgresBus, PostgresEventBus } from '../adapters/postgres/postgres-event-bus.ts';
import { checkNatsNamespace } from '../domain/topology.ts';

export type BusAdapter = 'postgres' | 'nats' | 'sns-sqs';

/** Where the sns-sqs adapter finds SNS and SQS: an endpoint (emulator, LocalStack) or AWS itself, in a region. */
export type SnsSqsSettings = { region: string; endpoint?: string; namespace?: string };

export async function openEventBus(options: {
  adapter: BusAdapter;
  /** The bus database: the registry (declarations, and dead letters for nats) and, for postgres, its queue. */
  databaseUrl: string;
  natsUrl: string;
  /** Prefix of the NATS streams and subjects (KOBAN_NATS_NAMESPACE); `koban` when left out. */
  natsNamespace?: string;
  /** Required with sns-sqs. */
  snsSqs?: SnsSqsSettings;
  poolSize: number;
  logger: Logger;
  clock: Clock;
}): Promise<EventBus> {
  const logger = options.logger.child({ component: 'bus', adapter: options.adapter });
  if (options.adapter === 'sns-sqs') {
    const settings = options.snsSqs ?? { region: 'us-east-1' };
    if (settings.namespace !== undefined) checkNatsNamespace(settings.namespace);
    const { SnsSqsEventBus } = await import('../adapters/sns-sqs/sns-sqs-event-bus.ts');
    return SnsSqsEventBus.openConfigured({
      databaseUrl: options.databaseUrl,
      poolSize: options.poolSize,
      logger,
      clock: options.clock,
      region: settings.region,
      ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
      ...(settings.namespace === undefined ? {} : { namespace: settings.namespace }),
    });
  }
  if (options.adapter === 'nats') {
    // A bad namespace is a configuration mistake, not an unreachable server: said before the error below could blame NATS_URL.
    if (options.natsNamespace !== undefined) checkNatsNamespace(options.natsNamespace);
    const { NatsEventBus } = await import('../adapters/nats/nats-event-bus.ts');
    try {
      return await NatsEventBus.open({
        natsUrl: options.natsUrl,
        databaseUrl: options.databaseUrl,
        poolSize: options.poolSize,
        logger,
        clock: options.clock,
        ...(options.natsNamespace === undefined ? {} : { namespace: options.natsNamespace }),
      });
    } catch (error) {
      throw new Error(`The nats event bus could not start with NATS_URL=${options.natsUrl}: start nats-server with JetStream (-js), fix NATS_URL, or set KOBAN_BUS=postgres`, {
        cause: error,
      });
    }
  }
  return PostgresEventBus.open({ url: options.databaseUrl, poolSize: options.poolSize, logger, clock: options.clock });
}

/**
 * Brings a bus database up to date for either adapter (`koban migrate bus`):
 * the registry, and the postgres adapter's queue tables, which stay empty
 * under nats.
 */
export function migrateBusDatabase(pool: Pool, logger: Logger): Promise<void> {
  return migratePostgresBus(pool, logger);
}
