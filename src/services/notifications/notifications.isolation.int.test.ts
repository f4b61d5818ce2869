// Goal: a webhook endpoint that hangs never slows the event consumer — with every delivery slot held by a request that has not been answered, events published meanwhile all become notices while that request is still open; once the endpoint recovers, every delivery waiting behind it goes out.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import type { CloudEvent } from '../../contracts/events/envelope.ts';
import { paymentEvent } from '../../contracts/events/payments.ts';
import { waitFor, WebhookReceiver } from './testing/webhook-receiver.ts';

const SECRET = 'test-webhook-secret-0123456789';
/** Long enough that every event below becomes a notice before the hanging request times out, on a slow machine too. */
const WEBHOOK_TIMEOUT_MS = 10_000;
const EVENTS = 20;

let koban: TestKoban;
let endpoint: WebhookReceiver;

function authorized(index: number): CloudEvent {
  return paymentEvent({
    id: `visa.isolation.${index}`,
    type: 'payment.authorized',
    time: '2026-01-02T03:04:05.000Z',
    data: {
      payment_id: `visa:ISO${index}`,
      route: 'visa',
      user_id: 'slow-user',
      amount: 1_000 + index,
      authorized_total: 1_000 + index,
      captured_total: 0,
      refunded_total: 0,
      currency: 'JPY',
      merchant: { id: 'm-1', name: 'Slow Shop', category_code: '5411' },
      occurred_at: '2026-01-02T03:04:05.000Z',
      network_message_id: `ISO${index}`,
    },
  }) as CloudEvent;
}

async function noticeCount(): Promise<number> {
  const response = await koban.app.inject({ method: 'GET', url: '/v1/users/slow-user/notices?limit=100' });
  return (response.json() as { data: unknown[] }).data.length;
}

before(async () => {
  endpoint = await WebhookReceiver.start(SECRET);
  endpoint.mode = 'hang';
  koban = await startTestKoban({
    label: 'notifications_isolation',
    env: {
      NOTIFICATIONS_WEBHOOK_SECRET: SECRET,
      NOTIFICATIONS_WEBHOOK_URL: endpoint.url(),
      NOTIFICATIONS_WEBHOOK_TIMEOUT_MS: String(WEBHOOK_TIMEOUT_MS),
      // One slot: the hanging request holds the whole worker.
      NOTIFICATIONS_DELIVERY_CONCURRENCY: '1',
      NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS: '10',
    },
  });
});

after(async () => {
  await koban?.stop();
  await koban?.database.drop();
  await endpoint?.close();
});

test('events keep becoming notices while the webhook endpoint hangs', async () => {
  await koban.bus.publish('payments', authorized(0));
  await waitFor('the first webhook request, hanging', () => endpoint.hanging === 1);
  const hungAtMs = performance.now();
  for (let index = 1; index <= EVENTS; index++) await koban.bus.publish('payments', authorized(index));
  await waitFor('every notice', async () => (await noticeCount()) === EVENTS + 1, WEBHOOK_TIMEOUT_MS);
  const elapsedMs = performance.now() - hungAtMs;
  // The measure: all those notices were made while the one delivery slot was still held.
  assert.equal(endpoint.hanging, 1, 'the first request is still unanswered');
  assert.equal(endpoint.requests.length, 1, 'no other delivery went out meanwhile: the worker was blocked, the consumer was not');
  assert.ok(elapsedMs < WEBHOOK_TIMEOUT_MS, `${EVENTS} notices in ${elapsedMs.toFixed(0)} ms`);

  // The endpoint recovers and drops the hung request (a failed attempt, retried); everything waiting goes out.
  endpoint.mode = 'ok';
  endpoint.dropHanging();
  await waitFor('every webhook answered', () => new Set(endpoint.requests.filter((request) => request.status === 204).map((request) => request.headers['koban-event-id'])).size === EVENTS + 1, 3 * WEBHOOK_TIMEOUT_MS);
});
