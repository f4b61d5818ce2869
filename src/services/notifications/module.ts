// The notifications service (`koban serve notifications`): its settings, its
// own database (notices, user settings, deliveries), its subscriptions on the
// bus (notifications-payments, notifications-accounts), its channels (log,
// and webhook when a signing secret is set), the delivery worker, its routes,
// and how it stops.
import type { Logger } from 'pino';
import type { Consumer, Topology } from '../../contracts/bus/event-bus.ts';
import { ConfigError, type Setting, type Settings } from '../../platform/config.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import { RetentionSweeper } from '../../platform/retention.ts';
import type { ServiceModule } from '../../platform/service-module.ts';
import { openConsumerBus } from '../bus/clients/consumer-bus.ts';
import type { NotificationChannel } from './channels/channel.ts';
import { LogChannel } from './channels/log/log-channel.ts';
import { WebhookChannel } from './channels/webhook/webhook-channel.ts';
import { DeliveryWorker } from './delivery-worker.ts';
import type { RetryPolicy } from './domain/delivery.ts';
import {
  CONSUMER_MAX_DELIVERIES_DEFAULT,
  CONSUMER_RETRY_INITIAL_MS_DEFAULT,
  DEFAULT_LANGUAGE,
  DELIVERY_CONCURRENCY_DEFAULT,
  DELIVERY_CONCURRENCY_LIMIT,
  type Language,
  LANGUAGES,
  WEBHOOK_ATTEMPTS_MAX_DEFAULT,
  WEBHOOK_ATTEMPTS_MAX_LIMIT,
  WEBHOOK_RETRY_INITIAL_MS_DEFAULT,
  WEBHOOK_RETRY_MAX_MS_DEFAULT,
  WEBHOOK_SECRET_LENGTH_MIN,
  WEBHOOK_TIMEOUT_MS_DEFAULT,
  WEBHOOK_TIMEOUT_MS_MAX,
  WEBHOOK_URL_LENGTH_MAX,
  WEBHOOK_URL_PATTERN,
} from './domain/limits.ts';
import { NOTIFIED_TOPICS, type NotifiedTopic } from './domain/notice.ts';
import { registerNotificationRoutes } from './http/routes.ts';
import { NotificationService } from './service.ts';
import { migrateNotifications, PostgresNotificationStore } from './store/postgres/postgres-notification-store.ts';

const NOTIFICATIONS_DATABASE = 'koban_notifications';
/** Settings bodies are small; 16 KiB as the ledger's. */
const NOTIFICATIONS_BODY_BYTES_MAX = 16 * 1024;
/** Connections to its own database: the handler's writes, the worker's claims and settles, the reads. */
const NOTIFICATIONS_POOL_SIZE = 8;
const HOUR_MS = 60 * 60 * 1000;

/** The bus subscription of each topic notices are made from. */
export const NOTIFICATION_SUBSCRIPTIONS: Readonly<Record<NotifiedTopic, string>> = {
  payments: 'notifications-payments',
  accounts: 'notifications-accounts',
};

export const NOTIFICATIONS_SETTINGS: readonly Setting[] = [
  {
    key: 'NOTIFICATIONS_DEFAULT_LANGUAGE',
    schema: { enum: LANGUAGES, default: DEFAULT_LANGUAGE },
    hint: `the language of notices for users who chose none: ${LANGUAGES.join(' or ')}`,
  },
  {
    key: 'NOTIFICATIONS_WEBHOOK_URL',
    schema: { type: 'string', maxLength: WEBHOOK_URL_LENGTH_MAX, pattern: WEBHOOK_URL_PATTERN },
    hint: "an http(s):// URL every notice is POSTed to unless its user set a webhook of their own (needs NOTIFICATIONS_WEBHOOK_SECRET); unset for none",
  },
  {
    key: 'NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED',
    schema: { type: 'boolean', default: false },
    hint: "true or false: whether a user's own webhook_url may reach loopback, private, link-local and other non-public addresses (false refuses them when set and when sending; the global NOTIFICATIONS_WEBHOOK_URL is never restricted)",
  },
  {
    key: 'NOTIFICATIONS_WEBHOOK_SECRET',
    schema: { type: 'string', minLength: WEBHOOK_SECRET_LENGTH_MIN, maxLength: 512 },
    hint: `the secret webhooks are signed with (HMAC-SHA256, header Koban-Signature), at least ${WEBHOOK_SECRET_LENGTH_MIN} characters; unset, webhooks are off`,
  },
  {
    key: 'NOTIFICATIONS_WEBHOOK_TIMEOUT_MS',
    schema: { type: 'integer', minimum: 100, maximum: WEBHOOK_TIMEOUT_MS_MAX, default: WEBHOOK_TIMEOUT_MS_DEFAULT },
    hint: `milliseconds a webhook endpoint has to answer before the attempt counts as failed, 100–${WEBHOOK_TIMEOUT_MS_MAX}`,
  },
  {
    key: 'NOTIFICATIONS_WEBHOOK_ATTEMPTS_MAX',
    schema: { type: 'integer', minimum: 1, maximum: WEBHOOK_ATTEMPTS_MAX_LIMIT, default: WEBHOOK_ATTEMPTS_MAX_DEFAULT },
    hint: `attempts (the first included) before a webhook delivery becomes a dead letter, 1–${WEBHOOK_ATTEMPTS_MAX_LIMIT}`,
  },
  {
    key: 'NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS',
    schema: { type: 'integer', minimum: 1, maximum: HOUR_MS, default: WEBHOOK_RETRY_INITIAL_MS_DEFAULT },
    hint: `milliseconds before the first retry of a failed webhook, doubling per attempt with jitter, 1–${HOUR_MS}`,
  },
  {
    key: 'NOTIFICATIONS_WEBHOOK_RETRY_MAX_MS',
    schema: { type: 'integer', minimum: 1, maximum: 24 * HOUR_MS, default: WEBHOOK_RETRY_MAX_MS_DEFAULT },
    hint: `the longest wait between webhook attempts, in milliseconds, 1–${24 * HOUR_MS} (at least NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS)`,
  },
  {
    key: 'NOTIFICATIONS_DELIVERY_CONCURRENCY',
    schema: { type: 'integer', minimum: 1, maximum: DELIVERY_CONCURRENCY_LIMIT, default: DELIVERY_CONCURRENCY_DEFAULT },
    hint: `deliveries sent at once, 1–${DELIVERY_CONCURRENCY_LIMIT}: an endpoint that hangs holds one of them until its timeout`,
  },
  {
    key: 'NOTIFICATIONS_CONSUMER_MAX_DELIVERIES',
    schema: { type: 'integer', minimum: 1, maximum: 100, default: CONSUMER_MAX_DELIVERIES_DEFAULT },
    hint: 'deliveries of an event that keeps failing (bad data) before the bus dead-letters it in the notifications subscriptions, 1–100',
  },
  {
    key: 'NOTIFICATIONS_CONSUMER_RETRY_INITIAL_MS',
    schema: { type: 'integer', minimum: 1, maximum: HOUR_MS, default: CONSUMER_RETRY_INITIAL_MS_DEFAULT },
    hint: `milliseconds before the bus redelivers an event the notifications handler failed, doubling per attempt, 1–${HOUR_MS}`,
  },
];

type NotificationsConfig = Readonly<{
  defaultLanguage: Language;
  webhookUrl: string | undefined;
  userWebhookPrivateAllowed: boolean;
  webhookSecret: string | undefined;
  webhookTimeoutMs: number;
  retry: RetryPolicy;
  concurrency: number;
  consumerMaxDeliveries: number;
  consumerRetryInitialMs: number;
}>;

export function notificationsConfig(settings: Settings): NotificationsConfig {
  const config: NotificationsConfig = {
    defaultLanguage: settings.NOTIFICATIONS_DEFAULT_LANGUAGE as Language,
    webhookUrl: settings.NOTIFICATIONS_WEBHOOK_URL as string | undefined,
    userWebhookPrivateAllowed: settings.NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED as boolean,
    webhookSecret: settings.NOTIFICATIONS_WEBHOOK_SECRET as string | undefined,
    webhookTimeoutMs: settings.NOTIFICATIONS_WEBHOOK_TIMEOUT_MS as number,
    retry: {
      attemptsMax: settings.NOTIFICATIONS_WEBHOOK_ATTEMPTS_MAX as number,
      retryInitialMs: settings.NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS as number,
      retryMaxMs: settings.NOTIFICATIONS_WEBHOOK_RETRY_MAX_MS as number,
    },
    concurrency: settings.NOTIFICATIONS_DELIVERY_CONCURRENCY as number,
    consumerMaxDeliveries: settings.NOTIFICATIONS_CONSUMER_MAX_DELIVERIES as number,
    consumerRetryInitialMs: settings.NOTIFICATIONS_CONSUMER_RETRY_INITIAL_MS as number,
  };
  const problems: string[] = [];
  if (config.webhookUrl !== undefined && config.webhookSecret === undefined) {
    problems.push('  NOTIFICATIONS_WEBHOOK_URL is set but NOTIFICATIONS_WEBHOOK_SECRET is not: set the secret webhooks are signed with, or unset the URL');
  }
  if (config.retry.retryMaxMs < config.retry.retryInitialMs) {
    problems.push(`  NOTIFICATIONS_WEBHOOK_RETRY_MAX_MS=${config.retry.retryMaxMs} is below NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS=${config.retry.retryInitialMs}: raise it`);
  }
  if (problems.length > 0) throw new ConfigError(`Invalid configuration:\n${problems.join('\n')}`);
  return Object.freeze(config);
}

/** Its subscriptions: one per topic, with the retry policy its settings give. */
export function notificationsTopology(config: Pick<NotificationsConfig, 'consumerMaxDeliveries' | 'consumerRetryInitialMs'>): Topology {
  return {
    topics: NOTIFIED_TOPICS,
    subscriptions: NOTIFIED_TOPICS.map((topic) => ({
      name: NOTIFICATION_SUBSCRIPTIONS[topic],
      topic,
      maxDeliveries: config.consumerMaxDeliveries,
      retryBackoffInitialMs: config.consumerRetryInitialMs,
      retryBackoffMaxMs: Math.max(config.consumerRetryInitialMs, 5 * 60 * 1000),
    })),
  };
}

export const notificationsModule: ServiceModule<NotificationService> = {
  name: 'notifications',
  title: 'Koban notifications',
  description: 'One notice per payment or account event, in the user\'s language, delivered to a log and to signed webhooks with retries and dead letters.',
  defaultPort: 3007,
  settings: NOTIFICATIONS_SETTINGS,
  database: NOTIFICATIONS_DATABASE,
  bodyLimitBytes: NOTIFICATIONS_BODY_BYTES_MAX,
  migrate: (pool: Pool, logger: Logger) => migrateNotifications(pool, logger),
  async start(context) {
    const { settings, platform, databaseUrl, logger, clock } = context;
    const config = notificationsConfig(settings);
    const pool = createPool({ url: databaseUrl, size: NOTIFICATIONS_POOL_SIZE, applicationName: 'koban-notifications', logger });
    const store = new PostgresNotificationStore(pool);
    const webhook =
      config.webhookSecret === undefined
        ? undefined
        : new WebhookChannel({ secret: config.webhookSecret, timeoutMs: config.webhookTimeoutMs, userPrivateAllowed: config.userWebhookPrivateAllowed, clock });
    const channels: NotificationChannel[] = [new LogChannel(logger), ...(webhook === undefined ? [] : [webhook])];
    const worker = new DeliveryWorker({ store, channels, policy: config.retry, attemptTimeoutMs: config.webhookTimeoutMs, concurrency: config.concurrency, clock, logger });
    const service = new NotificationService({
      store,
      worker,
      clock,
      logger,
      defaultLanguage: config.defaultLanguage,
      globalWebhookUrl: config.webhookUrl,
      userWebhookPrivateAllowed: config.userWebhookPrivateAllowed,
    });
    const consumers: Consumer[] = [];
    let bus: Awaited<ReturnType<typeof openConsumerBus>> | undefined;
    const stopConsuming = async () => {
      await Promise.all(consumers.splice(0).map((consumer) => consumer.stop()));
      await bus?.close();
    };
    try {
      bus = await openConsumerBus(context, 'notifications');
      await bus.bus.declare(notificationsTopology(config));
      for (const topic of NOTIFIED_TOPICS) {
        consumers.push(await bus.bus.consume(NOTIFICATION_SUBSCRIPTIONS[topic], (delivery) => service.handle(topic, delivery)));
      }
      worker.start();
    } catch (error) {
      await stopConsuming().catch(() => undefined);
      await webhook?.close();
      await store.close();
      throw error;
    }
    logger.info(
      { webhooks: config.webhookSecret !== undefined, global_webhook: config.webhookUrl !== undefined, user_webhook_private_allowed: config.userWebhookPrivateAllowed },
      'notifications consuming',
    );
    // Delivered deliveries go after the retention; notices, settings, pending and dead deliveries are kept.
    const retention = new RetentionSweeper({
      tasks: [{ name: 'notifications.deliveries', pruneBatch: (cutoff, rowsMax) => store.pruneDelivered(cutoff, rowsMax) }],
      config: platform.retention,
      clock,
      logger,
    });
    retention.start();
    return {
      api: service,
      registerRoutes: (app) => registerNotificationRoutes(app, service),
      async stop() {
        try {
          await retention.stop();
          await stopConsuming();
          await worker.stop();
        } finally {
          await webhook?.close();
          await store.close();
        }
      },
    };
  },
};
