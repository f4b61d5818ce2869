// How a consuming service (points, notifications) reaches the broker. In the
// same process as the bus it uses the bus's own EventBus. Run alone, it opens
// the configured adapter itself — the bus database holds the subscriptions,
// dead letters and (postgres) the queues a consumer claims from, so a consumer
// process needs that database as a NATS consumer needs NATS: BUS_DATABASE_URL,
// or the bus's schema of DATABASE_URL. Publishing stays with the bus service
// (BusClient at BUS_URL); consuming is not done over HTTP.
import type { EventBus } from '../../../contracts/bus/event-bus.ts';
import { ConfigError } from '../../../platform/config.ts';
import type { ServiceContext } from '../../../platform/service-module.ts';
import { schemaUrl } from '../../../platform/service-host.ts';
import { SHARED_DATABASE_BUS_SCHEMA } from '../registry/registry.ts';
import { busConfig } from '../module.ts';
import { openEventBus } from './open-event-bus.ts';

/** Connections a consumer process keeps to the bus database (its claims, acks, dead letters). */
export const CONSUMER_BUS_POOL_SIZE_DEFAULT = 8;

export type ConsumerBus = Readonly<{
  bus: EventBus;
  /** Closes what this service opened; the in-process bus is the bus service's to close. */
  close(): Promise<void>;
}>;

export async function openConsumerBus(context: ServiceContext, consumer: string, options: { poolSize?: number } = {}): Promise<ConsumerBus> {
  const inProcess = context.peer<EventBus>('bus');
  if (inProcess !== undefined) return { bus: inProcess, close: async () => {} };
  const { settings, logger, clock } = context;
  const own = settings.BUS_DATABASE_URL;
  const shared = settings.DATABASE_URL;
  let databaseUrl: string;
  if (typeof own === 'string') databaseUrl = own;
  else if (typeof shared === 'string') databaseUrl = await schemaUrl(shared, SHARED_DATABASE_BUS_SCHEMA, logger);
  else {
    throw new ConfigError(
      `${consumer} consumes events from the bus: run it in the same process (koban serve bus ${consumer}), or set BUS_DATABASE_URL to the bus's database (its subscriptions and dead letters) with the same KOBAN_BUS as the bus`,
    );
  }
  const config = busConfig(settings);
  const bus = await openEventBus({
    adapter: config.adapter,
    databaseUrl,
    natsUrl: config.natsUrl,
    natsNamespace: config.natsNamespace,
    snsSqs: config.snsSqs,
    poolSize: options.poolSize ?? CONSUMER_BUS_POOL_SIZE_DEFAULT,
    logger,
    clock,
  });
  return { bus, close: () => bus.close() };
}
