// Composition root: wires configuration, databases, services and HTTP.
// `npm start` runs every service in one process on embedded PostgreSQL; the
// same wiring runs against a real server when a database URL is configured.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { EventBus } from '../contracts/bus/event-bus.ts';
import { registerBusRoutes } from '../services/bus/http/routes.ts';
import { openEventBus } from '../services/bus/clients/open-event-bus.ts';
import { busSchemaUrl } from '../services/bus/registry/registry.ts';
import { KOBAN_TOPOLOGY } from '../services/bus/domain/topology.ts';
import { registerLedgerRoutes } from '../services/ledger/http/routes.ts';
import { REQUEST_BODY_BYTES_MAX } from '../services/ledger/domain/limits.ts';
import { LedgerService } from '../services/ledger/service.ts';
import { LEDGER_DATABASE, PostgresLedgerStore, migrateLedger } from '../services/ledger/store/postgres/postgres-ledger-store.ts';
import { type Clock, systemClock } from '../platform/clock.ts';
import type { Config } from '../platform/config.ts';
import { type EmbeddedServer, startEmbeddedPostgres } from '../platform/postgres/embedded.ts';
import { createPool, databaseUrl, ensureDatabase } from '../platform/postgres/pool.ts';
import { createHttpServer } from '../platform/http/server.ts';

export const BUS_DATABASE = 'koban_bus';
export const KOBAN_VERSION = '0.1.0';

export type Koban = {
  app: FastifyInstance;
  ledger: LedgerService;
  bus: EventBus;
  /** Drains requests and writes, closes pools, stops embedded PostgreSQL. Safe to call twice. */
  close(): Promise<void>;
};

export async function createKoban(config: Config, deps: { logger: Logger; clock?: Clock }): Promise<Koban> {
  const { logger } = deps;
  const clock = deps.clock ?? systemClock;
  const cleanups: Array<() => Promise<void>> = [];
  const close = async () => {
    while (cleanups.length > 0) {
      const cleanup = cleanups.pop()!;
      await cleanup().catch((error: unknown) => logger.error({ err: error }, 'error during shutdown'));
    }
  };

  try {
    let ledgerUrl = config.ledgerDatabaseUrl;
    let busUrl = config.busDatabaseUrl;
    if (ledgerUrl === undefined) {
      const embedded: EmbeddedServer = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPostgresPort, logger });
      cleanups.push(() => embedded.stop());
      await ensureDatabase(embedded.serverUrl, LEDGER_DATABASE);
      ledgerUrl = databaseUrl(embedded.serverUrl, LEDGER_DATABASE);
      if (busUrl === undefined) {
        await ensureDatabase(embedded.serverUrl, BUS_DATABASE);
        busUrl = databaseUrl(embedded.serverUrl, BUS_DATABASE);
      }
    }
    if (busUrl === undefined || busUrl === ledgerUrl) {
      // One database for both (only the ledger's configured, or DATABASE_URL alone): each
      // service's migrations are numbered on their own, so the bus keeps its tables in a schema of their own.
      logger.info('the bus shares the ledger database: it uses schema koban_bus there (set BUS_DATABASE_URL to give it its own)');
      busUrl = await busSchemaUrl(ledgerUrl, logger);
    }

    const ledgerPool = createPool({ url: ledgerUrl, size: config.dbPoolSize, applicationName: 'koban-ledger', logger });
    const ledgerStore = new PostgresLedgerStore(ledgerPool);
    cleanups.push(() => ledgerStore.close());
    await migrateLedger(ledgerPool, logger);
    const ledger = new LedgerService({
      store: ledgerStore,
      clock,
      logger: logger.child({ component: 'ledger' }),
      balanceTypes: config.balanceTypes,
      writeTimeoutMs: config.writeTimeoutMs,
      sweepIntervalMs: config.sweepIntervalMs,
      writeBatchesInFlightMax: config.writeBatchesInFlightMax,
    });
    await ledger.start();
    cleanups.push(() => ledger.close());

    const bus = await openEventBus({ adapter: config.bus, databaseUrl: busUrl, natsUrl: config.natsUrl, poolSize: config.dbPoolSize, logger, clock });
    cleanups.push(() => bus.close());
    await bus.declare(KOBAN_TOPOLOGY);

    const app = await createHttpServer({
      logger,
      bodyLimitBytes: REQUEST_BODY_BYTES_MAX,
      title: 'Koban',
      version: KOBAN_VERSION,
      description: 'Wallet platform: idempotent balances (cash, points) and event-driven point assignment.',
    });
    registerLedgerRoutes(app, ledger);
    registerBusRoutes(app, bus);
    await app.ready();
    cleanups.push(() => app.close());

    return { app, ledger, bus, close };
  } catch (error) {
    await close();
    throw error;
  }
}
