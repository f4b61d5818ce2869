// Goal: a notifications database from before deliveries recorded whose endpoint they go to upgrades in place: a webhook delivery still to be sent (pending or dead) to its user's own current webhook counts as the user's, every other row as the operator's, and from then on every new delivery must say which it is.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import { createLogger } from '../../platform/logger.ts';
import { migrate } from '../../platform/postgres/migrate.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import { migrateNotifications } from './store/postgres/postgres-notification-store.ts';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const MIGRATIONS = path.join(import.meta.dirname, 'store', 'postgres', 'migrations');
/** The migrations before deliveries had `user_endpoint`. */
const BEFORE = ['0001_notifications.sql', '0002_deliveries_retention.sql'];
const OWN = 'https://alice.example/hook';
const GLOBAL = 'https://operator.example/hook';

let database: TestDatabase;
let pool: Pool;

before(async () => {
  database = await createTestDatabase('notifications_upgrade');
  pool = createPool({ url: database.url, size: 2, applicationName: 'notifications-upgrade-test', logger });
});
after(async () => {
  await pool?.end();
  await database?.drop();
});

test('deliveries from before are marked by whether they go to their user\'s own webhook, and new ones must say', async () => {
  const older = await fs.mkdtemp(path.join(os.tmpdir(), 'koban-notifications-migrations-'));
  try {
    for (const file of BEFORE) await fs.copyFile(path.join(MIGRATIONS, file), path.join(older, file));
    await migrate(pool, older, logger);
  } finally {
    await fs.rm(older, { recursive: true, force: true });
  }
  await pool.query(`INSERT INTO user_settings (user_id, language, webhook_url, updated_at) VALUES ('alice', 'en', $1, now()), ('bob', NULL, NULL, now())`, [OWN]);
  const rows: Array<[label: string, user: string, channel: string, target: string | null, status: string]> = [
    ['alice pending to her own', 'alice', 'webhook', OWN, 'pending'],
    ['alice dead at her own', 'alice', 'webhook', OWN, 'dead'],
    ['alice delivered to her own', 'alice', 'webhook', OWN, 'delivered'],
    ['alice pending to the global one', 'alice', 'webhook', GLOBAL, 'pending'],
    ['alice logged', 'alice', 'log', null, 'pending'],
    ['bob pending to the global one', 'bob', 'webhook', GLOBAL, 'pending'],
  ];
  for (const [label, user, channel, target, status] of rows) {
    await pool.query(
      `WITH notice AS (
         INSERT INTO notices (notice_id, topic, event_id, user_id, type, title, body, language, created_at)
         VALUES ($1, 'payments', $2, $3, 'payment.authorized', 't', 'b', 'en', now()) RETURNING seq)
       INSERT INTO deliveries (delivery_id, notice_seq, channel, target, payload, status, next_attempt_at, created_at)
       SELECT $4, seq, $5, $6, '{}', $7, now(), now() FROM notice`,
      [randomUUID(), label, user, randomUUID(), channel, target, status],
    );
  }

  await migrateNotifications(pool, logger);

  const marked = await pool.query<{ event_id: string; user_endpoint: boolean }>('SELECT n.event_id, d.user_endpoint FROM deliveries d JOIN notices n ON n.seq = d.notice_seq ORDER BY d.seq');
  assert.deepEqual(Object.fromEntries(marked.rows.map((row) => [row.event_id, row.user_endpoint])), {
    'alice pending to her own': true,
    'alice dead at her own': true,
    'alice delivered to her own': false,
    'alice pending to the global one': false,
    'alice logged': false,
    'bob pending to the global one': false,
  });
  await assert.rejects(
    pool.query(`INSERT INTO deliveries (delivery_id, notice_seq, channel, target, payload, next_attempt_at, created_at)
                SELECT $1, min(seq), 'webhook', $2, '{}', now(), now() FROM notices WHERE event_id = 'alice logged'`, [randomUUID(), OWN]),
    /null value in column "user_endpoint"/,
  );
});
