// What makes a card route a service: its settings, its own database (payments,
// network messages, outbox) and migrations, the ledger and bus it reaches
// (in process under `koban start`, over HTTP at LEDGER_URL and BUS_URL when
// it runs alone), its outbox relay and expiry sweeper, and how it stops.
// Each route's module.ts calls this with its name and its message routes.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { LedgerApi } from '../../contracts/ledger/ledger-api.ts';
import type { PaymentRoute } from '../../contracts/events/payments.ts';
import { ConfigError, envPrefix, type Setting } from '../../platform/config.ts';
import { OutboxRelay } from '../../platform/outbox/outbox.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import { RetentionSweeper } from '../../platform/retention.ts';
import type { ServiceContext, ServiceModule } from '../../platform/service-module.ts';
import { publishingBusFor } from '../bus/clients/publisher-bus.ts';
import { LedgerClient } from '../ledger/clients/http-client.ts';
import { InProcessLedgerClient } from '../ledger/clients/in-process.ts';
import {
  AUTHORIZATION_AMOUNT_MAX_DEFAULT,
  EXPIRY_SWEEP_INTERVAL_MS_DEFAULT,
  HOLD_TIMEOUT_MS_DEFAULT,
  MESSAGE_AMOUNT_MAX,
  PAYMENT_BODY_BYTES_MAX,
  ROUTE_POOL_SIZE_DEFAULT,
  WALLET_CURRENCY,
} from './domain/limits.ts';
import type { RouteRules } from './domain/payment.ts';
import { type NetworkDialect, type OutboxPublisher, PaymentService } from './service.ts';
import type { Clock } from '../../platform/clock.ts';
import { migratePayments, paymentsOutboxSchema, PostgresPaymentStore } from './store/postgres/postgres-payment-store.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

export function routeSettings(route: PaymentRoute): Setting[] {
  const prefix = envPrefix(route);
  return [
    {
      key: `${prefix}AUTHORIZATION_AMOUNT_MAX`,
      schema: { type: 'integer', minimum: 1, maximum: MESSAGE_AMOUNT_MAX, default: AUTHORIZATION_AMOUNT_MAX_DEFAULT },
      hint: `the largest ${route} authorization approved, in yen (above it: declined amount_limit_exceeded), 1–10^15`,
    },
    {
      key: `${prefix}HOLD_TIMEOUT_MS`,
      schema: { type: 'integer', minimum: 1000, maximum: 31 * DAY_MS, default: HOLD_TIMEOUT_MS_DEFAULT },
      hint: `milliseconds a ${route} authorization holds cash before it expires, 1000–${31 * DAY_MS} (default 7 days)`,
    },
    {
      key: `${prefix}DB_POOL_SIZE`,
      schema: { type: 'integer', minimum: 2, maximum: 200, default: ROUTE_POOL_SIZE_DEFAULT },
      hint: `connections to the ${route} database, 2–200: a message holds one while the ledger writes (its payment's lock), so this bounds the messages decided at once`,
    },
    {
      key: `${prefix}EXPIRY_SWEEP_INTERVAL_MS`,
      schema: { type: 'integer', minimum: 0, maximum: 3_600_000, default: EXPIRY_SWEEP_INTERVAL_MS_DEFAULT },
      hint: 'milliseconds between looks for lapsed authorizations, 0–3600000 (0: off)',
    },
  ];
}

export function paymentRouteModule(options: {
  route: PaymentRoute;
  title: string;
  description: string;
  defaultPort: number;
  /** How the route's network differs from the domain (message id namespace, answer shape); the domain's own if absent. */
  dialect?: NetworkDialect;
  registerRoutes(app: FastifyInstance, service: PaymentService, clock: Clock): void;
}): ServiceModule<PaymentService> {
  const { route } = options;
  const prefix = envPrefix(route);
  return {
    name: route,
    title: options.title,
    description: options.description,
    defaultPort: options.defaultPort,
    settings: routeSettings(route),
    peers: [
      { name: 'ledger', why: 'moves cash through the ledger' },
      { name: 'bus', why: 'publishes its payment events through the bus' },
    ],
    database: `koban_${route}`,
    bodyLimitBytes: PAYMENT_BODY_BYTES_MAX,
    migrate: (pool: Pool, logger: Logger) => migratePayments(pool, pool.options.connectionString!, logger, route),
    async start(context) {
      const { settings, platform, databaseUrl, logger, clock } = context;
      const ledger = ledgerFor(context, route);
      const bus = publishingBusFor(context, route, 'its payment events');
      const rules: RouteRules = {
        route,
        currency: WALLET_CURRENCY,
        authorizationAmountMax: settings[`${prefix}AUTHORIZATION_AMOUNT_MAX`] as number,
        holdTimeoutMs: settings[`${prefix}HOLD_TIMEOUT_MS`] as number,
      };
      const pool = createPool({ url: databaseUrl, size: settings[`${prefix}DB_POOL_SIZE`] as number, applicationName: `koban-${route}`, logger });
      const store = new PostgresPaymentStore(pool, clock, route);
      // The relay shares the pool: a few of its connections, never waiting on a payment's lock.
      // A stopped OutboxRelay is done, so publishing resumes with a new one.
      let relay: OutboxRelay | undefined;
      const publisher: OutboxPublisher = {
        start() {
          if (relay !== undefined) return;
          relay = new OutboxRelay({ pool, bus, logger, schema: paymentsOutboxSchema(route) });
          relay.start();
        },
        async stop() {
          const stopping = relay;
          relay = undefined;
          await stopping?.stop();
        },
      };
      const service = new PaymentService({
        store,
        ledger,
        rules,
        clock,
        logger,
        sweepIntervalMs: settings[`${prefix}EXPIRY_SWEEP_INTERVAL_MS`] as number,
        publisher,
        ...(options.dialect ? { dialect: options.dialect } : {}),
      });
      service.start();
      // Published outbox rows go after the retention; payments and network messages are kept (a resend replays its answer).
      const retention = new RetentionSweeper({
        tasks: [{ name: `${route}.outbox`, pruneBatch: (cutoff, rowsMax) => store.prunePublishedEvents(cutoff, rowsMax) }],
        config: platform.retention,
        clock,
        logger,
      });
      retention.start();
      return {
        api: service,
        registerRoutes: (app) => options.registerRoutes(app, service, clock),
        async stop() {
          try {
            await retention.stop();
            await service.close();
          } finally {
            await store.close();
          }
        },
      };
    },
  };
}

function ledgerFor(context: ServiceContext, route: string): LedgerApi {
  const inProcess = context.peer<LedgerApi>('ledger');
  if (inProcess !== undefined) return new InProcessLedgerClient(inProcess);
  const url = context.settings.LEDGER_URL;
  if (typeof url === 'string') return new LedgerClient({ baseUrl: url });
  throw new ConfigError(`${route} moves cash through the ledger: run it in the same process (koban serve ledger ${route}) or set LEDGER_URL to where it runs`);
}
