// Goal: the bus prunes only what retention allows — acknowledged messages with
// their deliveries, handled claims, published fingerprints, once older than
// the retention — never a pending, leased, dead or discarded delivery, an
// unhandled or dead claim or an unacknowledged fingerprint, however old; and a
// duplicate inside the window is still a duplicate.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import { validateEvent } from '../../contracts/events/envelope.ts';
import { systemClock } from '../../platform/clock.ts';
import { createLogger } from '../../platform/logger.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import { pruneInBatches } from '../../platform/retention.ts';
import { PostgresEventBus, pruneAckedMessages } from './adapters/postgres/postgres-event-bus.ts';
import { pruneHandledClaims } from './adapters/sns-sqs/consumed-events.ts';
import { prunePublishedFingerprints } from './registry/event-fingerprints.ts';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const DAY_MS = 86_400_000;
const RETENTION_DAYS = 7;
const cutoff = () => new Date(Date.now() - RETENTION_DAYS * DAY_MS);

type DeliveryState = 'pending' | 'leased' | 'acked' | 'dead' | 'discarded';

function event(id: string) {
  return validateEvent({ specversion: '1.0', source: '/koban/tests', type: 'koban.test.happened', subject: 'user-1', id, data: { n: 1 } }, systemClock);
}

describe('bus retention', { concurrency: false }, () => {
  let database: TestDatabase;
  let bus: PostgresEventBus;
  let pool: Pool;

  before(async () => {
    database = await createTestDatabase('bus_retention');
    bus = await PostgresEventBus.open({ url: database.url, poolSize: 4, logger, clock: systemClock });
    await bus.declare({ topics: ['orders', 'quiet'], subscriptions: [{ name: 'orders-a', topic: 'orders' }, { name: 'orders-b', topic: 'orders' }] });
    pool = createPool({ url: database.url, size: 2, applicationName: 'bus-retention-test', logger });
  });

  after(async () => {
    await pool?.end();
    await bus?.close();
    await database?.drop();
  });

  /** Publishes `id` on orders, `ageDays` old, then puts its deliveries (orders-a, orders-b) in these states, as old. */
  async function message(id: string, ageDays: number, stateA: DeliveryState, stateB: DeliveryState): Promise<void> {
    assert.deepEqual(await bus.publishBatch([{ topic: 'orders', event: event(id) }]), ['published']);
    await pool.query(`UPDATE messages SET published_at = now() - make_interval(days => $2::int) WHERE topic = 'orders' AND event_id = $1`, [id, ageDays]);
    for (const [subscription, state] of [['orders-a', stateA], ['orders-b', stateB]] as const) {
      await pool.query(
        `UPDATE deliveries d
            SET state = CASE WHEN $3::text = 'leased' THEN 'pending' ELSE $3::text END,
                leased_until = CASE WHEN $3::text = 'leased' THEN now() + interval '1 hour' END,
                acked_at = CASE WHEN $3::text = 'acked' THEN now() - make_interval(days => $4::int) END,
                dead_lettered_at = CASE WHEN $3::text IN ('dead', 'discarded') THEN now() - make_interval(days => $4::int) END
           FROM messages m WHERE m.seq = d.message_seq AND m.topic = 'orders' AND m.event_id = $1 AND d.subscription = $2`,
        [id, subscription, state, ageDays],
      );
    }
  }

  async function messageIds(): Promise<string[]> {
    const result = await pool.query<{ event_id: string }>(`SELECT event_id FROM messages WHERE topic = 'orders' ORDER BY event_id`);
    return result.rows.map((row) => row.event_id);
  }

  test('an old message goes with its deliveries only when every delivery is acked; pending, leased, dead and discarded stay however old', async () => {
    await pool.query(`DELETE FROM deliveries; DELETE FROM messages`);
    await message('old-acked', 8, 'acked', 'acked');
    await message('young-acked', 1, 'acked', 'acked');
    await message('old-pending', 30, 'acked', 'pending');
    await message('old-leased', 30, 'leased', 'acked');
    await message('old-dead', 30, 'dead', 'acked');
    await message('old-discarded', 30, 'acked', 'discarded');
    // Published long ago, but acked by one subscription only yesterday: not older than the retention yet.
    await message('old-acked-lately', 30, 'acked', 'acked');
    await pool.query(`UPDATE deliveries d SET acked_at = now() - interval '1 day' FROM messages m WHERE m.seq = d.message_seq AND m.event_id = 'old-acked-lately' AND d.subscription = 'orders-b'`);

    assert.equal(await pruneAckedMessages(pool, cutoff(), 1_000), 1);
    assert.deepEqual(await messageIds(), ['old-acked-lately', 'old-dead', 'old-discarded', 'old-leased', 'old-pending', 'young-acked']);
    const orphans = await pool.query(`SELECT count(*)::int AS n FROM deliveries d WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.seq = d.message_seq)`);
    assert.equal(orphans.rows[0].n, 0);
    const kept = await pool.query(`SELECT count(*)::int AS n FROM deliveries`);
    assert.equal(kept.rows[0].n, 12, 'every delivery of the six messages kept');

    // Dead letters are still listed and redriven from the kept rows.
    const dead = await bus.deadLetters('orders-a', { limit: 10 });
    assert.deepEqual(dead.data.map((letter) => letter.id), ['old-dead']);
    assert.equal((await bus.redrive('orders-a', ['old-dead'])).redriven, 1);
    await pool.query(`DELETE FROM deliveries; DELETE FROM messages`);
  });

  test('2,500 old messages with a batch of 1,000: all go, no statement deleting more than 1,000', async () => {
    await pool.query(`DELETE FROM deliveries; DELETE FROM messages`);
    await pool.query(
      `WITH m AS (
         INSERT INTO messages (topic, event_id, event, published_at)
         SELECT 'orders', 'bulk-' || i, '{}'::json, now() - interval '8 days' - i * interval '1 second' FROM generate_series(1, 2500) i
         RETURNING seq)
       INSERT INTO deliveries (subscription, message_seq, state, acked_at)
       SELECT s, m.seq, 'acked', now() - interval '8 days' FROM m, unnest(ARRAY['orders-a', 'orders-b']) s`,
    );
    await message('young', 1, 'acked', 'acked');
    const batches: number[] = [];
    const total = await pruneInBatches(
      {
        name: 'bus.messages',
        pruneBatch: async (at, rowsMax) => {
          const deleted = await pruneAckedMessages(pool, at, rowsMax);
          batches.push(deleted);
          return deleted;
        },
      },
      cutoff(),
      1_000,
    );
    assert.equal(total, 2_500);
    assert.deepEqual(batches, [1_000, 1_000, 500]);
    assert.deepEqual(await messageIds(), ['young']);
    await pool.query(`DELETE FROM deliveries; DELETE FROM messages`);
  });

  test('a repeat inside the window is a duplicate; after its message was pruned, the same id is published as new', async () => {
    assert.deepEqual(await bus.publishBatch([{ topic: 'quiet', event: event('repeat-me') }]), ['published']);
    assert.equal(await pruneAckedMessages(pool, cutoff(), 1_000), 0, 'a message of today is kept');
    assert.deepEqual(await bus.publishBatch([{ topic: 'quiet', event: event('repeat-me') }]), ['duplicate']);
    await pool.query(`UPDATE messages SET published_at = now() - interval '8 days' WHERE event_id = 'repeat-me'`);
    assert.equal(await pruneAckedMessages(pool, cutoff(), 1_000), 1, 'a message no subscription received goes too');
    assert.deepEqual(await bus.publishBatch([{ topic: 'quiet', event: event('repeat-me') }]), ['published']);
    await pool.query(`DELETE FROM deliveries; DELETE FROM messages`);
  });

  test('claims: handled ones older than the retention go; unhandled, dead or recently handled stay', async () => {
    await pool.query(
      `INSERT INTO consumed_events (subscription, event_id, message_id, claimed_at, handled_at, died_at) VALUES
         ('orders-a', 'handled-old', 'm1', now() - interval '9 days', now() - interval '8 days', NULL),
         ('orders-a', 'handled-young', 'm2', now() - interval '2 days', now() - interval '1 day', NULL),
         ('orders-a', 'handled-late', 'm3', now() - interval '30 days', now() - interval '1 day', NULL),
         ('orders-a', 'unhandled-old', 'm4', now() - interval '30 days', NULL, NULL),
         ('orders-a', 'dead-old', 'm5', now() - interval '30 days', NULL, now() - interval '29 days')`,
    );
    assert.equal(await pruneHandledClaims(pool, cutoff(), 1_000), 1);
    const left = await pool.query<{ event_id: string }>('SELECT event_id FROM consumed_events ORDER BY event_id');
    assert.deepEqual(left.rows.map((row) => row.event_id), ['dead-old', 'handled-late', 'handled-young', 'unhandled-old']);
  });

  test('fingerprints: published ones older than the retention go; never-acknowledged or recent ones stay', async () => {
    await pool.query(
      `INSERT INTO event_fingerprints (topic, event_id, fingerprint, claimed_at, published_at) VALUES
         ('orders', 'published-old', '{}', now() - interval '9 days', now() - interval '9 days'),
         ('orders', 'published-young', '{}', now() - interval '1 day', now() - interval '1 day'),
         ('orders', 'unpublished-old', '{}', now() - interval '30 days', NULL)`,
    );
    assert.equal(await prunePublishedFingerprints(pool, cutoff(), 1_000), 1);
    const left = await pool.query<{ event_id: string }>('SELECT event_id FROM event_fingerprints ORDER BY event_id');
    assert.deepEqual(left.rows.map((row) => row.event_id), ['published-young', 'unpublished-old']);
  });
});
