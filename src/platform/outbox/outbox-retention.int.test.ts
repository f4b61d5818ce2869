// Goal: the outbox's retention deletes only rows published longer ago than the
// retention, never an unpublished one however old, at most one batch per
// statement; the sweeper measures "ago" by the injected clock.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import type { Clock } from '../clock.ts';
import { createLogger } from '../logger.ts';
import { createPool, type Pool } from '../postgres/pool.ts';
import { RetentionSweeper } from '../retention.ts';
import { migrateOutbox, OUTBOX_SCHEMA, outboxBacklog, pruneOutbox } from './outbox.ts';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const DAY_MS = 86_400_000;
const NOW = new Date('2030-03-10T00:00:00Z');
const clock: Clock = { now: () => NOW };

describe('outbox retention', { concurrency: false }, () => {
  let database: TestDatabase;
  let pool: Pool;

  before(async () => {
    database = await createTestDatabase('outbox_retention');
    await migrateOutbox(database.url, logger);
    pool = createPool({ url: database.url, size: 2, applicationName: 'outbox-retention-test', logger });
  });
  after(async () => {
    await pool?.end();
    await database?.drop();
  });
  beforeEach(async () => {
    await pool.query(`TRUNCATE ${OUTBOX_SCHEMA}.events`);
  });

  /** `count` rows, published `publishedDaysAgo` before NOW (null: never published), created a day before that. */
  async function rows(prefix: string, count: number, publishedDaysAgo: number | null): Promise<void> {
    await pool.query(
      `INSERT INTO ${OUTBOX_SCHEMA}.events (topic, event_id, event, created_at, published_at)
       SELECT 'orders', $1 || i, '{}'::json, $2::timestamptz - make_interval(days => coalesce($3::int, 0) + 1), $2::timestamptz - make_interval(days => $3::int)
         FROM generate_series(1, $4::int) i`,
      [prefix, NOW, publishedDaysAgo, count],
    );
  }

  async function ids(): Promise<string[]> {
    const result = await pool.query<{ event_id: string }>(`SELECT event_id FROM ${OUTBOX_SCHEMA}.events ORDER BY event_id`);
    return result.rows.map((row) => row.event_id);
  }

  test('published rows older than the retention go; younger ones and unpublished ones, however old, stay', async () => {
    await rows('old-', 2, 8);
    await rows('young-', 1, 6);
    await rows('unpublished-', 1, null);
    await pool.query(`UPDATE ${OUTBOX_SCHEMA}.events SET created_at = $1::timestamptz - interval '400 days' WHERE event_id LIKE 'unpublished-%'`, [NOW]);
    const sweeper = new RetentionSweeper({ tasks: [{ name: 'outbox', pruneBatch: (cutoff, rowsMax) => pruneOutbox(pool, cutoff, rowsMax) }], config: { retentionMs: 7 * DAY_MS, intervalMs: 0 }, clock, logger });
    assert.deepEqual(await sweeper.runOnce(), { outbox: 2 });
    assert.deepEqual(await ids(), ['unpublished-1', 'young-1']);
    assert.equal(await outboxBacklog(pool), 1, 'the unpublished row still waits for the relay');
    assert.deepEqual(await sweeper.runOnce(), { outbox: 0 });
  });

  test('2,500 old rows with a batch of 1,000: all go in three statements, none deleting more than 1,000', async () => {
    await rows('bulk-', 2_500, 30);
    await rows('young-', 3, 1);
    const batches: number[] = [];
    const sweeper = new RetentionSweeper({
      tasks: [
        {
          name: 'outbox',
          pruneBatch: async (cutoff, rowsMax) => {
            const deleted = await pruneOutbox(pool, cutoff, rowsMax);
            batches.push(deleted);
            return deleted;
          },
        },
      ],
      config: { retentionMs: 7 * DAY_MS, intervalMs: 0 },
      clock,
      logger,
      rowsMax: 1_000,
    });
    assert.deepEqual(await sweeper.runOnce(), { outbox: 2_500 });
    assert.deepEqual(batches, [1_000, 1_000, 500]);
    assert.deepEqual(await ids(), ['young-1', 'young-2', 'young-3']);
  });

  test('a failing task is reported and the next one still runs', async () => {
    await rows('old-', 1, 8);
    const sweeper = new RetentionSweeper({
      tasks: [
        { name: 'broken', pruneBatch: () => Promise.reject(new Error('relation does not exist')) },
        { name: 'outbox', pruneBatch: (cutoff, rowsMax) => pruneOutbox(pool, cutoff, rowsMax) },
      ],
      config: { retentionMs: 7 * DAY_MS, intervalMs: 0 },
      clock,
      logger,
    });
    assert.deepEqual(await sweeper.runOnce(), { outbox: 1 });
  });
});
