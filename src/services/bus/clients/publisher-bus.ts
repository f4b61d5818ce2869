// How a producing service (a card route, accounts) reaches the bus its outbox
// relay publishes through: the bus's own EventBus when both run in one
// process, else the bus service over HTTP at BUS_URL. Consuming is another
// matter (consumer-bus.ts): it needs the bus's database, not its HTTP API.
import type { EventBus } from '../../../contracts/bus/event-bus.ts';
import { ConfigError } from '../../../platform/config.ts';
import type { ServiceContext } from '../../../platform/service-module.ts';
import { BusClient } from './http-client.ts';

export type PublishingBus = Pick<EventBus, 'publishBatch'>;

/** `service` and `what` (e.g. `its payment events`) only word the error when neither way is open. */
export function publishingBusFor(context: ServiceContext, service: string, what = 'its events'): PublishingBus {
  const inProcess = context.peer<EventBus>('bus');
  if (inProcess !== undefined) return inProcess;
  const url = context.settings.BUS_URL;
  if (typeof url === 'string') return new BusClient({ baseUrl: url });
  throw new ConfigError(`${service} publishes ${what} through the bus: run it in the same process (koban serve bus ${service}) or set BUS_URL to where it runs`);
}
