// The accounts service (`koban serve accounts`): user accounts in a database of
// its own, each announced by `account.created` through its outbox (a schema of
// its own) and the bus — in process under `koban start`, at BUS_URL alone.
import type { Logger } from 'pino';
import { OutboxRelay, pruneOutbox } from '../../platform/outbox/outbox.ts';
import { RetentionSweeper } from '../../platform/retention.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import type { ServiceModule } from '../../platform/service-module.ts';
import { publishingBusFor } from '../bus/clients/publisher-bus.ts';
import { ACCOUNT_BODY_BYTES_MAX } from './domain/limits.ts';
import { registerAccountRoutes } from './http/routes.ts';
import { AccountsService } from './service.ts';
import { ACCOUNTS_OUTBOX_SCHEMA, migrateAccounts, PostgresAccountStore } from './store/postgres/postgres-account-store.ts';

export const accountsModule: ServiceModule<AccountsService> = {
  name: 'accounts',
  title: 'Koban accounts',
  description: 'User accounts: opening one publishes `account.created` (through its outbox) for the services that welcome a new user.',
  defaultPort: 3005,
  settings: [],
  peers: [{ name: 'bus', why: 'publishes account.created through the bus' }],
  database: 'koban_accounts',
  bodyLimitBytes: ACCOUNT_BODY_BYTES_MAX,
  migrate: (pool: Pool, logger: Logger) => migrateAccounts(pool, pool.options.connectionString!, logger),
  async start(context) {
    const { platform, databaseUrl, logger, clock } = context;
    const bus = publishingBusFor(context, 'accounts', 'account.created');
    const pool = createPool({ url: databaseUrl, size: platform.dbPoolSize, applicationName: 'koban-accounts', logger });
    const store = new PostgresAccountStore(pool, clock);
    // The relay shares the pool: one connection while it publishes a batch.
    const relay = new OutboxRelay({ pool, bus, logger, schema: ACCOUNTS_OUTBOX_SCHEMA });
    relay.start();
    // Published outbox rows go after the retention; accounts are kept for good.
    const retention = new RetentionSweeper({
      tasks: [{ name: 'accounts.outbox', pruneBatch: (cutoff, rowsMax) => pruneOutbox(pool, cutoff, rowsMax, ACCOUNTS_OUTBOX_SCHEMA) }],
      config: platform.retention,
      clock,
      logger,
    });
    retention.start();
    const service = new AccountsService({ store, clock });
    return {
      api: service,
      registerRoutes: (app) => registerAccountRoutes(app, service),
      async stop() {
        // Rows the relay has not published stay in the outbox for the next start.
        try {
          await retention.stop();
          await relay.stop();
        } finally {
          await store.close();
        }
      },
    };
  },
};
