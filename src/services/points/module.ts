// The points service as a module: its settings (earning rules file, expiry,
// bonuses), its database (koban_points), the ledger it writes points and
// welcome cash to (in process under `koban start`, LEDGER_URL when alone), the
// bus subscriptions it declares and consumes, its read routes, and how it stops.
import type { Logger } from 'pino';
import type { Consumer, EventBus, SubscriptionSpec } from '../../contracts/bus/event-bus.ts';
import type { CloudEvent } from '../../contracts/events/envelope.ts';
import { KOBAN_TOPICS } from '../../contracts/events/topics.ts';
import type { LedgerApi } from '../../contracts/ledger/ledger-api.ts';
import { ConfigError, type Setting, type Settings } from '../../platform/config.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import type { ServiceContext, ServiceModule } from '../../platform/service-module.ts';
import { openConsumerBus } from '../bus/clients/consumer-bus.ts';
import { LedgerClient } from '../ledger/clients/http-client.ts';
import { InProcessLedgerClient } from '../ledger/clients/in-process.ts';
import { DEFAULT_EARNING_RULES } from './domain/default-rules.ts';
import {
  ACK_WAIT_MS_DEFAULT,
  ACK_WAIT_MS_MAX,
  ACK_WAIT_MS_MIN,
  REFERRAL_BONUS_POINTS_DEFAULT,
  REFERRAL_BONUS_POINTS_MAX,
  VALID_DAYS_MAX,
  WELCOME_CASH_AMOUNT_DEFAULT,
  WELCOME_CASH_AMOUNT_MAX,
  WELCOME_CASH_VALID_DAYS_DEFAULT,
} from './domain/limits.ts';
import { registerPointsRoutes } from './http/routes.ts';
import { loadEarningRulesFile } from './rules-file.ts';
import { type PointsConfig, PointsService } from './service.ts';
import { migratePoints, POINTS_DATABASE, PostgresPointsStore } from './store/postgres/postgres-points-store.ts';

/** Reads only: query strings, no bodies to speak of. */
const POINTS_BODY_BYTES_MAX = 1024;
/** Payment events handled at once: each holds a connection from its payment's lock until its ledger writes are done. */
const PAYMENTS_IN_FLIGHT_MAX = 24;
/** Events of each other source handled at once. */
const OTHER_SOURCES_IN_FLIGHT_MAX = 2;
/** Connections: one per event in flight, plus room for reads. */
const POINTS_POOL_SIZE = PAYMENTS_IN_FLIGHT_MAX + 3 * OTHER_SOURCES_IN_FLIGHT_MAX + 4;
const RETRY_BACKOFF_MAX_MS = 5 * 60 * 1000;

export const POINTS_SETTINGS: readonly Setting[] = [
  {
    key: 'POINTS_EARNING_RULES_FILE',
    schema: { type: 'string', minLength: 1 },
    hint: 'the path of an earning rules file (JSON or YAML, see src/services/points/earning-rules.example.yaml); unset: 0.5 % on every payment',
  },
  {
    key: 'POINTS_EXPIRY_DAYS',
    schema: { type: 'integer', minimum: 0, maximum: VALID_DAYS_MAX, default: 0 },
    hint: `days confirmed points stay spendable, 0–${VALID_DAYS_MAX} (0: they never expire), e.g. 365`,
  },
  {
    key: 'POINTS_REFERRAL_BONUS_POINTS',
    schema: { type: 'integer', minimum: 0, maximum: REFERRAL_BONUS_POINTS_MAX, default: REFERRAL_BONUS_POINTS_DEFAULT },
    hint: `points the referrer earns per completed referral, 0–${REFERRAL_BONUS_POINTS_MAX} (0: none)`,
  },
  {
    key: 'POINTS_WELCOME_CASH_AMOUNT',
    schema: { type: 'integer', minimum: 0, maximum: WELCOME_CASH_AMOUNT_MAX, default: WELCOME_CASH_AMOUNT_DEFAULT },
    hint: `yen of time-limited cash a new account gets, 0–${WELCOME_CASH_AMOUNT_MAX} (0: none)`,
  },
  {
    key: 'POINTS_WELCOME_CASH_VALID_DAYS',
    schema: { type: 'integer', minimum: 1, maximum: VALID_DAYS_MAX, default: WELCOME_CASH_VALID_DAYS_DEFAULT },
    hint: `days the welcome cash stays spendable, 1–${VALID_DAYS_MAX}`,
  },
  {
    key: 'POINTS_MAX_DELIVERIES',
    schema: { type: 'integer', minimum: 1, maximum: 100, default: 5 },
    hint: 'deliveries of an event the points service fails before it becomes a dead letter of its subscription, 1–100',
  },
  {
    key: 'POINTS_RETRY_BACKOFF_INITIAL_MS',
    schema: { type: 'integer', minimum: 10, maximum: 60_000, default: 1000 },
    hint: 'milliseconds before the first retry of an event the points service failed (doubling up to 5 minutes), 10–60000',
  },
  {
    key: 'POINTS_ACK_WAIT_MS',
    schema: { type: 'integer', minimum: ACK_WAIT_MS_MIN, maximum: ACK_WAIT_MS_MAX, default: ACK_WAIT_MS_DEFAULT },
    hint: `milliseconds an event the points service took may stay unacknowledged before it is delivered again (a crashed consumer's events come back after this), ${ACK_WAIT_MS_MIN}–${ACK_WAIT_MS_MAX}`,
  },
];

/** The subscriptions the points service owns, one per topic. */
export const POINTS_SUBSCRIPTIONS = {
  payments: 'points-payments',
  rewards: 'points-rewards',
  referrals: 'points-referrals',
  accounts: 'points-accounts',
} as const;

export function pointsConfig(settings: Settings): PointsConfig {
  const file = settings.POINTS_EARNING_RULES_FILE;
  return Object.freeze({
    // A bad file throws EarningRulesFileError, a ConfigError: start-up stops (exit 78) naming the line and field.
    rules: typeof file === 'string' ? loadEarningRulesFile(file) : DEFAULT_EARNING_RULES,
    expiryDays: settings.POINTS_EXPIRY_DAYS as number,
    referralBonusPoints: settings.POINTS_REFERRAL_BONUS_POINTS as number,
    welcomeCashAmount: settings.POINTS_WELCOME_CASH_AMOUNT as number,
    welcomeCashValidDays: settings.POINTS_WELCOME_CASH_VALID_DAYS as number,
  });
}

function subscriptions(settings: Settings): SubscriptionSpec[] {
  const retry = {
    maxDeliveries: settings.POINTS_MAX_DELIVERIES as number,
    retryBackoffInitialMs: settings.POINTS_RETRY_BACKOFF_INITIAL_MS as number,
    retryBackoffMaxMs: RETRY_BACKOFF_MAX_MS,
    ackWaitMs: settings.POINTS_ACK_WAIT_MS as number,
  };
  return [
    // A decline earns nothing: the bus need not deliver it.
    { name: POINTS_SUBSCRIPTIONS.payments, topic: 'payments', filter: { type: [{ 'anything-but': 'payment.declined' }] }, ...retry },
    { name: POINTS_SUBSCRIPTIONS.rewards, topic: 'rewards', ...retry },
    { name: POINTS_SUBSCRIPTIONS.referrals, topic: 'referrals', ...retry },
    { name: POINTS_SUBSCRIPTIONS.accounts, topic: 'accounts', ...retry },
  ];
}

export const pointsModule: ServiceModule<PointsService> = {
  name: 'points',
  title: 'Koban points',
  description: 'Point grants from card payments (pending at authorization, confirmed at capture, clawed back at refund), partner rewards, referrals, and welcome cash.',
  defaultPort: 3006,
  settings: POINTS_SETTINGS,
  peers: [{ name: 'ledger', why: 'grants points and welcome cash through the ledger' }],
  database: POINTS_DATABASE,
  bodyLimitBytes: POINTS_BODY_BYTES_MAX,
  migrate: (pool: Pool, logger: Logger) => migratePoints(pool, logger),
  async start(context) {
    const { settings, databaseUrl, logger, clock } = context;
    const config = pointsConfig(settings);
    const ledger = ledgerFor(context);
    const store = new PostgresPointsStore(createPool({ url: databaseUrl, size: POINTS_POOL_SIZE, applicationName: 'koban-points', logger }), clock);
    const service = new PointsService({ store, ledger, clock, logger, config });
    const consumers: Consumer[] = [];
    let consumerBus: Awaited<ReturnType<typeof openConsumerBus>> | undefined;
    const stopAll = async () => {
      try {
        await Promise.all(consumers.map((consumer) => consumer.stop()));
        await consumerBus?.close();
      } finally {
        await store.close();
      }
    };
    try {
      const finished = await service.finishJournaled();
      if (finished > 0) logger.info({ keys: finished }, 'finished ledger writes left journaled by an earlier run');
      consumerBus = await openConsumerBus(context, 'points');
      const bus: EventBus = consumerBus.bus;
      await bus.declare({ topics: KOBAN_TOPICS, subscriptions: subscriptions(settings) });
      const handlers: Array<[string, (event: CloudEvent) => Promise<void>, number]> = [
        [POINTS_SUBSCRIPTIONS.payments, (event) => service.handlePayment(event), PAYMENTS_IN_FLIGHT_MAX],
        [POINTS_SUBSCRIPTIONS.rewards, (event) => service.handleReward(event), OTHER_SOURCES_IN_FLIGHT_MAX],
        [POINTS_SUBSCRIPTIONS.referrals, (event) => service.handleReferral(event), OTHER_SOURCES_IN_FLIGHT_MAX],
        [POINTS_SUBSCRIPTIONS.accounts, (event) => service.handleAccount(event), OTHER_SOURCES_IN_FLIGHT_MAX],
      ];
      for (const [name, handle, inFlightMax] of handlers) {
        consumers.push(await bus.consume(name, ({ event }) => handle(event), { inFlightMax, batchSizeMax: inFlightMax }));
      }
    } catch (error) {
      await stopAll();
      throw error;
    }
    logger.info({ rule_versions: config.rules.versions.map((version) => version.version) }, 'points service consuming payments, rewards, referrals and accounts');
    return {
      api: service,
      registerRoutes: (app) => registerPointsRoutes(app, service),
      stop: stopAll,
    };
  },
};

function ledgerFor(context: ServiceContext): LedgerApi {
  const inProcess = context.peer<LedgerApi>('ledger');
  if (inProcess !== undefined) return new InProcessLedgerClient(inProcess);
  const url = context.settings.LEDGER_URL;
  if (typeof url === 'string') return new LedgerClient({ baseUrl: url });
  throw new ConfigError('points grants points through the ledger: run it in the same process (koban serve ledger points) or set LEDGER_URL to where it runs');
}
