// Goal: the PostgreSQL adapter passes the EventBus conformance suite on a real server.
import { systemClock } from '../../../../platform/clock.ts';
import { createTestDatabase } from '../../../../../test/support/database.ts';
import { runConformance } from '../../testing/conformance.ts';
import { PostgresEventBus } from './postgres-event-bus.ts';

runConformance('postgres', async (logger) => {
  const busDatabase = await createTestDatabase('bus_pg');
  const producerDatabase = await createTestDatabase('bus_pg_producer');
  return {
    producerDatabaseUrl: producerDatabase.url,
    async open(options) {
      let url = busDatabase.url;
      if (options?.via) {
        const parsed = new URL(url);
        const proxy = await options.via({ host: parsed.hostname, port: Number(parsed.port) });
        parsed.port = String(proxy.port);
        url = parsed.toString();
      }
      return PostgresEventBus.open({ url, poolSize: 6, logger, clock: systemClock, idlePollMs: 50 });
    },
    async teardown() {
      await busDatabase.drop();
      await producerDatabase.drop();
    },
  };
});
