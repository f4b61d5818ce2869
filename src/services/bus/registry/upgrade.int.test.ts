// Goal: a bus database made by the single 0001_bus.sql (before the registry had migrations of its own) upgrades in place to the same schema as a new one, keeping and serving its rows.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../../../test/support/database.ts';
import { systemClock } from '../../../platform/clock.ts';
import { createLogger } from '../../../platform/logger.ts';
import { createPool, type Pool } from '../../../platform/postgres/pool.ts';
import type { Delivery, EventBus } from '../../../contracts/bus/event-bus.ts';
import { PostgresEventBus } from '../adapters/postgres/postgres-event-bus.ts';
import { waitFor } from '../testing/conformance.ts';
import { listDeadLetters } from './dead-letters.ts';
import { migrateRegistry } from './registry.ts';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const LEGACY_MIGRATION = path.join(import.meta.dirname, 'legacy', '0001_bus.sql');

function event(id: string) {
  return { specversion: '1.0', id, source: '/upgrade-test', type: 'koban.test.happened', time: '2026-01-01T00:00:00.000Z', data: { id } };
}

/** The database as the bus left it before the split: the old bookkeeping table, 0001_bus.sql, and rows in every table. */
async function makeLegacyBusDatabase(pool: Pool): Promise<void> {
  const sql = await fs.readFile(LEGACY_MIGRATION, 'utf8');
  await pool.query(`CREATE TABLE schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  await pool.query(sql);
  await pool.query(`INSERT INTO schema_migrations (version, name, checksum) VALUES (1, 'bus', $1)`, [createHash('sha256').update(sql).digest('hex')]);
  await pool.query(`INSERT INTO topics (name) VALUES ('legacy')`);
  await pool.query(`INSERT INTO subscriptions (name, topic, max_deliveries, ack_wait_ms, retry_backoff_initial_ms, retry_backoff_max_ms)
                    VALUES ('legacy-sub', 'legacy', 5, 2000, 20, 80)`);
  await pool.query(`INSERT INTO messages (topic, event_id, event) VALUES ('legacy', 'waiting-1', $1)`, [JSON.stringify(event('waiting-1'))]);
  await pool.query(`INSERT INTO deliveries (subscription, message_seq) SELECT 'legacy-sub', seq FROM messages WHERE event_id = 'waiting-1'`);
  await pool.query(
    `INSERT INTO nats_dead_letters (subscription, event_id, event, state, attempts, last_error, dead_lettered_at)
     VALUES ('legacy-sub', 'dead-1', $1, 'dead', 5, 'Error: boom', now())`,
    [JSON.stringify(event('dead-1'))],
  );
}

/** Tables, columns, constraints, indexes and sequences of the public schema, as text to compare. */
async function schemaOf(pool: Pool): Promise<string[]> {
  const result = await pool.query<{ line: string }>(
    `SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable
              || ' default=' || coalesce(column_default, '-') || ' identity=' || coalesce(identity_generation, '-') AS line
       FROM information_schema.columns WHERE table_schema = 'public'
     UNION ALL
     SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace
     UNION ALL
     SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
     UNION ALL
     SELECT 'sequence ' || sequencename FROM pg_sequences WHERE schemaname = 'public'
     ORDER BY 1`,
  );
  return result.rows.map((row) => row.line);
}

async function tableNames(pool: Pool): Promise<string[]> {
  const result = await pool.query<{ name: string }>(`SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`);
  return result.rows.map((row) => row.name);
}

describe('bus database from before the registry had its own migrations', () => {
  let legacy: TestDatabase;
  let fresh: TestDatabase;
  let registryOnly: TestDatabase;
  let legacyPool: Pool;
  const buses: EventBus[] = [];
  const pools: Pool[] = [];
  const open = async (url: string) => {
    const bus = await PostgresEventBus.open({ url, poolSize: 2, logger, clock: systemClock, idlePollMs: 50 });
    buses.push(bus);
    return bus;
  };
  const pool = (url: string) => {
    const created = createPool({ url, size: 2, applicationName: 'upgrade-test', logger });
    pools.push(created);
    return created;
  };

  before(async () => {
    [legacy, fresh, registryOnly] = await Promise.all([createTestDatabase('bus_legacy'), createTestDatabase('bus_fresh'), createTestDatabase('bus_registry')]);
    legacyPool = pool(legacy.url);
    await makeLegacyBusDatabase(legacyPool);
  });

  after(async () => {
    for (const bus of buses) await bus.close();
    for (const created of pools) await created.end();
    await Promise.all([legacy, fresh, registryOnly].map((database) => database?.drop()));
  });

  test('the upgraded database has the schema of a new one, and each component records its own first migration', async () => {
    await open(legacy.url);
    await open(fresh.url);
    assert.deepEqual(await schemaOf(legacyPool), await schemaOf(pool(fresh.url)));
    const bookkeeping = await legacyPool.query<{ row: string }>(`SELECT component || ':' || version || ':' || name AS row FROM schema_migrations ORDER BY 1`);
    assert.deepEqual(
      bookkeeping.rows.map((row) => row.row),
      [
        ':1:bus',
        'bus_postgres:1:deliveries',
        'bus_postgres:2:deliveries_retention',
        'bus_registry:1:registry',
        'bus_registry:2:event_fingerprints',
        'bus_registry:3:consumed_events',
        'bus_registry:4:consumed_events_died',
        'bus_registry:5:retention',
      ],
    );
    // Opening again applies nothing and still starts.
    await open(legacy.url);
  });

  test('its subscriptions, waiting deliveries and NATS dead letters are kept and served', async () => {
    const bus = await open(legacy.url);
    const stats = await bus.subscriptions();
    assert.deepEqual(
      stats.map((row) => [row.name, row.depth, row.dead_letters]),
      [['legacy-sub', 1, 0]],
    );
    const deliveries: Delivery[] = [];
    const consumer = await bus.consume('legacy-sub', async (delivery) => {
      deliveries.push(delivery);
    });
    await waitFor(() => deliveries.length === 1);
    await consumer.stop();
    assert.equal(deliveries[0]!.event.id, 'waiting-1');
    // The registry's dead letters are the NATS adapter's old ones, renamed with their rows.
    const page = await listDeadLetters(legacyPool, 'legacy-sub', { limit: 10 });
    assert.deepEqual(
      page.data.map((deadLetter) => [deadLetter.id, deadLetter.attempts, deadLetter.last_error]),
      [['dead-1', 5, 'Error: boom']],
    );
  });

  test('the registry alone (as the NATS adapter migrates it) makes only its own tables', async () => {
    const registryPool = pool(registryOnly.url);
    await migrateRegistry(registryPool, logger);
    assert.deepEqual(await tableNames(registryPool), ['consumed_events', 'dead_letters', 'event_fingerprints', 'schema_migrations', 'subscriptions', 'topics']);
  });
});
