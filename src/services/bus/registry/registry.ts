// The bus database's registry of topics and subscriptions, shared by every
// adapter, with migrations of its own (so every process reads the same
// filters and retry policies, whichever broker carries the messages). Its
// dead letters are in dead-letters.ts. One function per statement.
// legacy/0001_bus.sql is the bus's single migration from before the registry
// and each adapter had their own: no migrator reads it any more; it is kept,
// unchanged, so upgrade.int.test.ts can build a database as it made them.
import path from 'node:path';
import type { Logger } from 'pino';
import { KobanError } from '../../../platform/errors.ts';
import { migrate } from '../../../platform/postgres/migrate.ts';
import { createPool, type Pool, withTransaction } from '../../../platform/postgres/pool.ts';
import { pgErrorCode, UNIQUE_VIOLATION } from '../../../platform/postgres/errors.ts';
import type { FilterPolicy } from '../../../contracts/bus/filter-policy.ts';
import type { Subscription } from '../domain/topology.ts';

export const REGISTRY_MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');
/**
 * The registry's name in the migration bookkeeping. Its folder and each
 * adapter's number their migrations on their own in the one bus database.
 */
export const REGISTRY_MIGRATION_COMPONENT = 'bus_registry';

/** Brings the registry's tables up to date; every adapter runs it before its own migrations, which may refer to them. */
export async function migrateRegistry(pool: Pool, logger: Logger): Promise<void> {
  await migrate(pool, REGISTRY_MIGRATIONS_DIR, logger, { component: REGISTRY_MIGRATION_COMPONENT });
}

type SubscriptionRow = {
  name: string;
  topic: string;
  filter: FilterPolicy | null;
  max_deliveries: number;
  ack_wait_ms: number;
  retry_backoff_initial_ms: number;
  retry_backoff_max_ms: number;
};

function toSubscription(row: SubscriptionRow): Subscription {
  return {
    name: row.name,
    topic: row.topic,
    filter: row.filter,
    maxDeliveries: row.max_deliveries,
    ackWaitMs: row.ack_wait_ms,
    retryBackoffInitialMs: row.retry_backoff_initial_ms,
    retryBackoffMaxMs: row.retry_backoff_max_ms,
  };
}

/** Upserts topics and subscriptions in one transaction. A subscription never moves to another topic. */
export async function declareTopology(pool: Pool, topology: { topics: readonly string[]; subscriptions: readonly Subscription[] }): Promise<void> {
  await withTransaction(pool, async (client) => {
    await client.query('INSERT INTO topics (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING', [topology.topics]);
    for (const subscription of topology.subscriptions) {
      const result = await client.query<{ topic: string }>(
        `INSERT INTO subscriptions AS s (name, topic, filter, max_deliveries, ack_wait_ms, retry_backoff_initial_ms, retry_backoff_max_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO UPDATE SET filter = EXCLUDED.filter, max_deliveries = EXCLUDED.max_deliveries, ack_wait_ms = EXCLUDED.ack_wait_ms,
           retry_backoff_initial_ms = EXCLUDED.retry_backoff_initial_ms, retry_backoff_max_ms = EXCLUDED.retry_backoff_max_ms, updated_at = now()
         RETURNING s.topic`,
        [
          subscription.name,
          subscription.topic,
          subscription.filter === null ? null : JSON.stringify(subscription.filter),
          subscription.maxDeliveries,
          subscription.ackWaitMs,
          subscription.retryBackoffInitialMs,
          subscription.retryBackoffMaxMs,
        ],
      );
      const storedTopic = result.rows[0]?.topic;
      if (storedTopic !== subscription.topic) {
        throw new Error(`Subscription ${subscription.name} already exists on topic ${storedTopic}; declare a new subscription instead of moving it`);
      }
    }
  });
}

const SUBSCRIPTION_COLUMNS = 'name, topic, filter, max_deliveries, ack_wait_ms, retry_backoff_initial_ms, retry_backoff_max_ms';

export async function loadSubscriptions(pool: Pool): Promise<Subscription[]> {
  const result = await pool.query<SubscriptionRow>(`SELECT ${SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY name`);
  return result.rows.map(toSubscription);
}

/** The subscription, or `not_found`. */
export async function loadSubscription(pool: Pool, name: string): Promise<Subscription> {
  const result = await pool.query<SubscriptionRow>(`SELECT ${SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = $1`, [name]);
  const row = result.rows[0];
  if (!row) throw new KobanError('not_found', `No subscription named ${name}`, { subscription: name });
  return toSubscription(row);
}

export async function loadTopics(pool: Pool): Promise<string[]> {
  const result = await pool.query<{ name: string }>('SELECT name FROM topics ORDER BY name');
  return result.rows.map((row) => row.name);
}

/** Schema that holds the bus's tables when it shares another service's database. */
export const SHARED_DATABASE_BUS_SCHEMA = 'koban_bus';

/**
 * A URL for the bus inside another database, in a schema of its own (its own
 * tables and its own migration bookkeeping): used when only the ledger's
 * database is configured, as the test harness does.
 */
export async function busSchemaUrl(sharedDatabaseUrl: string, logger: Logger): Promise<string> {
  const url = new URL(sharedDatabaseUrl);
  url.searchParams.set('options', `-c search_path=${SHARED_DATABASE_BUS_SCHEMA}`);
  const pool = createPool({ url: sharedDatabaseUrl, size: 1, applicationName: 'koban-bus-schema', logger });
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${SHARED_DATABASE_BUS_SCHEMA}`).catch((error: unknown) => {
      // Two processes creating it at once: the loser sees a duplicate, which is fine.
      if (pgErrorCode(error) !== '42P06' && pgErrorCode(error) !== UNIQUE_VIOLATION) throw error;
    });
  } finally {
    await pool.end();
  }
  return url.toString();
}
