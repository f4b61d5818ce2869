// The ledger as a service: its settings, its database and migrations, its
// routes, its background sweeper (inside LedgerService), `koban audit`, and how
// it starts and stops.
import type { Logger } from 'pino';
import { readSettings, type Setting, type Settings } from '../../platform/config.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import type { ServiceModule } from '../../platform/service-module.ts';
import { REQUEST_BODY_BYTES_MAX } from './domain/limits.ts';
import { registerLedgerRoutes } from './http/routes.ts';
import { LedgerService } from './service.ts';
import { LEDGER_DATABASE, migrateLedger, PostgresLedgerStore } from './store/postgres/postgres-ledger-store.ts';

/** Connections of `koban audit`: one snapshot read. */
const AUDIT_POOL_SIZE = 2;
const BALANCE_TYPE_NAME = '[a-z][a-z0-9_]{0,31}';

export const LEDGER_SETTINGS: readonly Setting[] = [
  {
    key: 'KOBAN_BALANCE_TYPES',
    schema: { type: 'string', pattern: `^${BALANCE_TYPE_NAME}(,${BALANCE_TYPE_NAME})*$`, default: 'cash,points' },
    hint: 'a comma-separated list of lower-case names, e.g. cash,points',
  },
  {
    key: 'KOBAN_SWEEP_INTERVAL_MS',
    schema: { type: 'integer', minimum: 0, maximum: 3600000, default: 1000 },
    hint: 'milliseconds between sweeps of expired holds and lots, 0–3600000 (0: off)',
  },
  {
    key: 'KOBAN_WRITE_BATCHES_IN_FLIGHT',
    schema: { type: 'integer', minimum: 1, maximum: 32, default: 2 },
    hint: 'an integer, 1–32: ledger batches written at once (about the number of CPU cores of the database)',
    formerly: ['KOBAN_WRITE_LANES'],
  },
  { key: 'KOBAN_WRITE_TIMEOUT_MS', schema: { type: 'integer', minimum: 100, maximum: 600000, default: 5000 }, hint: 'milliseconds, 100–600000' },
];

export type LedgerConfig = Readonly<{
  balanceTypes: readonly string[];
  /** How often expired holds and lots are recorded; 0 turns the background sweeper off. */
  sweepIntervalMs: number;
  /**
   * Ledger batches written at once, at most: a second one starts beside the
   * first only when enough operations wait, and batches written together never
   * share an account. More let PostgreSQL use more cores under load, but make
   * smaller batches.
   */
  writeBatchesInFlightMax: number;
  writeTimeoutMs: number;
}>;

/** The ledger's view of the validated settings (or, for tools, of an environment). */
export function ledgerConfig(settings: Settings = readSettings(LEDGER_SETTINGS, process.env)): LedgerConfig {
  return Object.freeze({
    balanceTypes: Object.freeze([...new Set(String(settings.KOBAN_BALANCE_TYPES).split(','))]),
    sweepIntervalMs: settings.KOBAN_SWEEP_INTERVAL_MS as number,
    writeBatchesInFlightMax: settings.KOBAN_WRITE_BATCHES_IN_FLIGHT as number,
    writeTimeoutMs: settings.KOBAN_WRITE_TIMEOUT_MS as number,
  });
}

export const ledgerModule: ServiceModule<LedgerService> = {
  name: 'ledger',
  title: 'Koban ledger',
  description: 'Idempotent balances (cash, points): add, consume, refund, holds, lots with expiry.',
  defaultPort: 3001,
  settings: LEDGER_SETTINGS,
  database: LEDGER_DATABASE,
  bodyLimitBytes: REQUEST_BODY_BYTES_MAX,
  migrate: (pool: Pool, logger: Logger) => migrateLedger(pool, logger),
  async start({ settings, platform, databaseUrl, logger, clock }) {
    const config = ledgerConfig(settings);
    const store = new PostgresLedgerStore(createPool({ url: databaseUrl, size: platform.dbPoolSize, applicationName: 'koban-ledger', logger }));
    const ledger = new LedgerService({
      store,
      clock,
      logger,
      balanceTypes: config.balanceTypes,
      writeTimeoutMs: config.writeTimeoutMs,
      sweepIntervalMs: config.sweepIntervalMs,
      writeBatchesInFlightMax: config.writeBatchesInFlightMax,
    });
    try {
      await ledger.start();
    } catch (error) {
      await store.close();
      throw error;
    }
    return {
      api: ledger,
      registerRoutes: (app) => registerLedgerRoutes(app, ledger),
      async stop() {
        // Writes in flight finish before the pool they use closes.
        try {
          await ledger.close();
        } finally {
          await store.close();
        }
      },
    };
  },
  commands: [
    {
      name: 'audit',
      description:
        'Recompute every balance from the stored transactions and check that each balance type sums to zero; exit 1 on any mismatch. ' +
        'With embedded PostgreSQL it joins the running server, or starts it for the duration.',
      async run({ databaseUrl, logger }) {
        const store = new PostgresLedgerStore(createPool({ url: databaseUrl, size: AUDIT_POOL_SIZE, applicationName: 'koban-audit', logger }));
        try {
          const report = await store.audit();
          console.log(JSON.stringify(report, null, 2));
          console.error(report.ok ? 'audit: OK — every balance matches its transactions and each balance type sums to zero' : 'audit: MISMATCH — see the report above');
          return report.ok ? 0 : 1;
        } finally {
          await store.close();
        }
      },
    },
  ],
};
