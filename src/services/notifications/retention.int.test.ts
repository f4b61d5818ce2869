// Goal: notifications' retention deletes only deliveries delivered longer ago
// than the retention — never a pending or dead one, never a notice — and a
// redelivered event whose delivery was pruned is still not delivered again.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import { createLogger } from '../../platform/logger.ts';
import { createPool, type Pool } from '../../platform/postgres/pool.ts';
import type { Notice } from './domain/notice.ts';
import { migrateNotifications, PostgresNotificationStore } from './store/postgres/postgres-notification-store.ts';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const DAY_MS = 86_400_000;
let database: TestDatabase;
let pool: Pool;
let store: PostgresNotificationStore;

before(async () => {
  database = await createTestDatabase('notifications_retention');
  pool = createPool({ url: database.url, size: 2, applicationName: 'notifications-retention-test', logger });
  await migrateNotifications(pool, logger);
  store = new PostgresNotificationStore(pool);
});
after(async () => {
  await store?.close();
  await database?.drop();
});

function notice(eventId: string): Notice {
  return { notice_id: randomUUID(), topic: 'payments', event_id: eventId, user_id: 'u1', type: 'payment.captured', title: 't', body: 'b', language: 'ja', created_at: new Date().toISOString() };
}

/** A notice with one log delivery, put in `status`, settled `daysAgo`. */
async function deliveryIn(eventId: string, status: 'pending' | 'delivered' | 'dead', daysAgo: number): Promise<void> {
  assert.equal(await store.recordNotice(notice(eventId), [{ delivery_id: randomUUID(), channel: 'log', target: null, user_endpoint: false, payload: '{}' }]), true);
  await pool.query(
    `UPDATE deliveries d SET status = $2,
            delivered_at = CASE WHEN $2 = 'delivered' THEN now() - make_interval(days => $3::int) END,
            dead_lettered_at = CASE WHEN $2 = 'dead' THEN now() - make_interval(days => $3::int) END,
            created_at = now() - make_interval(days => $3::int + 1)
       FROM notices n WHERE n.seq = d.notice_seq AND n.event_id = $1`,
    [eventId, status, daysAgo],
  );
}

test('delivered deliveries older than the retention go; younger, pending and dead ones stay, and every notice stays', async () => {
  await deliveryIn('delivered-old', 'delivered', 8);
  await deliveryIn('delivered-young', 'delivered', 6);
  await deliveryIn('pending-old', 'pending', 30);
  await deliveryIn('dead-old', 'dead', 30);
  const cutoff = new Date(Date.now() - 7 * DAY_MS);
  assert.equal(await store.pruneDelivered(cutoff, 1_000), 1);
  assert.equal(await store.pruneDelivered(cutoff, 1_000), 0);
  const left = await pool.query<{ event_id: string }>('SELECT n.event_id FROM deliveries d JOIN notices n ON n.seq = d.notice_seq ORDER BY n.event_id');
  assert.deepEqual(left.rows.map((row) => row.event_id), ['dead-old', 'delivered-young', 'pending-old']);
  const notices = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM notices');
  assert.equal(notices.rows[0]!.n, 4);
  assert.deepEqual((await store.deadLetters(undefined, 10)).map((letter) => letter.event_id), ['dead-old']);

  // The bus delivers the pruned event again: its notice is found, no delivery is planned again.
  assert.equal(await store.recordNotice(notice('delivered-old'), [{ delivery_id: randomUUID(), channel: 'log', target: null, user_endpoint: false, payload: '{}' }]), false);
  const again = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM deliveries d JOIN notices n ON n.seq = d.notice_seq WHERE n.event_id = 'delivered-old'`);
  assert.equal(again.rows[0]!.n, 0);
});
