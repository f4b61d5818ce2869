// Goal: each payment or account event becomes exactly one notice however often it is delivered, listed newest first page by page; a notice reaches a real webhook endpoint signed, once; an endpoint that is down is retried with backoff, then dead-lettered, and a redrive once it is back delivers it once; bad events are dead-lettered by the bus without holding up good ones; bad parameters are a 400 that changes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import type { DeadLetterPage } from '../../contracts/bus/event-bus.ts';
import { accountCreatedEvent } from '../../contracts/events/accounts.ts';
import { NOTIFICATION_SUBSCRIPTIONS, notificationsModule } from './module.ts';
import type { NotificationService, NoticePage } from './service.ts';
import { paymentData, paymentEventFor as event } from './testing/payment-events.ts';
import { waitFor, WebhookReceiver } from './testing/webhook-receiver.ts';

const SECRET = 'test-webhook-secret-0123456789';
/** Small, so that retries and dead letters happen within a test. */
const RETRY_INITIAL_MS = 40;
const ATTEMPTS_MAX = 4;
const WEBHOOK_TIMEOUT_MS = 300;
const SCHEMA = 'koban_notifications';

let koban: TestKoban;
let service: NotificationService;
let db: pg.Pool;
/** The global endpoint (NOTIFICATIONS_WEBHOOK_URL). */
let global: WebhookReceiver;
async function notices(user: string, query = ''): Promise<NoticePage> {
  const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${user}/notices${query}` });
  assert.equal(response.statusCode, 200, response.body);
  return response.json();
}

async function deliveriesOf(eventId: string) {
  const result = await db.query<{ delivery_id: string; channel: string; target: string | null; status: string; attempts: number; last_error: string | null }>(
    `SELECT d.delivery_id, d.channel, d.target, d.status, d.attempts, d.last_error
     FROM ${SCHEMA}.deliveries d JOIN ${SCHEMA}.notices n ON n.seq = d.notice_seq WHERE n.event_id = $1 ORDER BY d.channel`,
    [eventId],
  );
  return result.rows;
}

async function putSettings(user: string, body: unknown) {
  return koban.app.inject({ method: 'PUT', url: `/v1/users/${user}/notification-settings`, payload: body as object });
}

before(async () => {
  global = await WebhookReceiver.start(SECRET);
  koban = await startTestKoban({
    label: 'notifications',
    env: {
      NOTIFICATIONS_WEBHOOK_SECRET: SECRET,
      NOTIFICATIONS_WEBHOOK_URL: global.url(),
      NOTIFICATIONS_WEBHOOK_TIMEOUT_MS: String(WEBHOOK_TIMEOUT_MS),
      NOTIFICATIONS_WEBHOOK_ATTEMPTS_MAX: String(ATTEMPTS_MAX),
      NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS: String(RETRY_INITIAL_MS),
      NOTIFICATIONS_WEBHOOK_RETRY_MAX_MS: '2000',
      NOTIFICATIONS_CONSUMER_MAX_DELIVERIES: '3',
      NOTIFICATIONS_CONSUMER_RETRY_INITIAL_MS: '10',
      // Users' endpoints here are test servers on loopback (notifications.ssrf.int.test.ts keeps the default, false).
      NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED: 'true',
    },
  });
  service = koban.host.api(notificationsModule);
  db = new pg.Pool({ connectionString: koban.database.url, max: 2 });
});

after(async () => {
  await db?.end();
  await koban?.stop();
  await koban?.database.drop();
  await global?.close();
});

describe('from events to notices', () => {
  test('a payment event on the bus becomes one notice, in Japanese by default, and one signed webhook to the global endpoint', async () => {
    const authorized = event('alice');
    await koban.bus.publish('payments', authorized);
    const page = await waitFor('the notice', async () => ((await notices('alice')).data.length > 0 ? notices('alice') : undefined));
    assert.equal(page.data.length, 1);
    const [notice] = page.data;
    assert.deepEqual({ ...notice, notice_id: undefined, created_at: undefined }, {
      notice_id: undefined,
      event_id: authorized.id,
      type: 'payment.authorized',
      title: 'お支払いが承認されました',
      body: 'Koban Coffeeでの3,000円のお支払いが承認されました。',
      language: 'ja',
      created_at: undefined,
    });
    const webhook = (await deliveriesOf(authorized.id)).find((delivery) => delivery.channel === 'webhook')!;
    assert.equal(webhook.target, global.url());
    const [request] = await waitFor('the webhook', () => (global.of(webhook.delivery_id).length > 0 ? global.of(webhook.delivery_id) : undefined));
    assert.equal(request!.signatureValid, true, `signature ${String(request!.headers['koban-signature'])}`);
    assert.equal(request!.headers['content-type'], 'application/json');
    assert.equal(request!.headers['koban-event-id'], authorized.id);
    assert.equal(request!.headers['koban-delivery-attempt'], '1');
    assert.deepEqual(JSON.parse(request!.body), { delivery_id: webhook.delivery_id, type: 'notice.created', notice: { ...notice, user_id: 'alice' } });
    await waitFor('the webhook delivery recorded', async () => (await deliveriesOf(authorized.id)).every((delivery) => delivery.status === 'delivered'));
  });

  test('the same event delivered three times (at once and again) is one notice and one webhook delivery', async () => {
    const captured = event('bob', 'payment.captured');
    const delivery = (attempt: number) => ({ event: captured, subscription: NOTIFICATION_SUBSCRIPTIONS.payments, attempt });
    await Promise.all([service.handle('payments', delivery(1)), service.handle('payments', delivery(2))]);
    await service.handle('payments', delivery(3));
    assert.equal((await notices('bob')).data.length, 1);
    const rows = await deliveriesOf(captured.id);
    assert.deepEqual(rows.map((row) => row.channel), ['log', 'webhook']);
    const webhook = rows[1]!;
    await waitFor('delivered', async () => (await deliveriesOf(captured.id)).every((row) => row.status === 'delivered'));
    // Delivered is final: the row can never be claimed again, so one request is all there will be.
    assert.equal(global.of(webhook.delivery_id).length, 1);
    assert.equal((await deliveriesOf(captured.id))[1]!.attempts, 1);
  });

  test('notices are listed newest first, page by page, without gaps or repeats', async () => {
    const ids: string[] = [];
    for (let index = 0; index < 5; index++) {
      const refunded = event('carol', 'payment.refunded', { amount: 100 * (index + 1) });
      ids.push(refunded.id);
      await service.handle('payments', { event: refunded, subscription: NOTIFICATION_SUBSCRIPTIONS.payments, attempt: 1 });
    }
    const first = await notices('carol', '?limit=2');
    const second = await notices('carol', `?limit=2&cursor=${first.next_cursor}`);
    const third = await notices('carol', `?limit=2&cursor=${second.next_cursor}`);
    assert.deepEqual([first, second, third].map((page) => page.data.length), [2, 2, 1]);
    assert.ok(first.next_cursor !== null && second.next_cursor !== null);
    assert.equal(third.next_cursor, null);
    assert.deepEqual([...first.data, ...second.data, ...third.data].map((notice) => notice.event_id), ids.reverse());
    assert.equal(first.data[0]!.body, 'Koban Coffeeから500円が返金されました。');
    assert.equal((await notices('carol')).data.length, 5, 'the default page holds them all');
    assert.deepEqual(await notices('nobody'), { data: [], next_cursor: null });
  });

  test('a user who chose English gets English notices; a new account gets a welcome', async () => {
    const put = await putSettings('dave', { language: 'en' });
    assert.equal(put.statusCode, 200, put.body);
    assert.deepEqual(put.json(), { user_id: 'dave', language: 'en', webhook_url: null });
    const declined = event('dave', 'payment.declined', { amount: 50_000, decline_reason: 'insufficient_balance' });
    await koban.bus.publish('payments', declined);
    await koban.bus.publish('accounts', accountCreatedEvent({ user_id: 'dave', created_at: '2026-01-01T00:00:00.000Z' }));
    const page = await waitFor('both notices', async () => ((await notices('dave')).data.length === 2 ? notices('dave') : undefined));
    const byType = Object.fromEntries(page.data.map((notice) => [notice.type, notice]));
    assert.equal(byType['payment.declined']!.body, 'Your payment of ¥50,000 at Koban Coffee was declined: insufficient balance.');
    assert.equal(byType['account.created']!.title, 'Welcome to Koban');
    assert.equal(byType['account.created']!.event_id, 'account.created.dave');
    const get = await koban.app.inject({ method: 'GET', url: '/v1/users/dave/notification-settings' });
    assert.deepEqual(get.json(), { user_id: 'dave', language: 'en', webhook_url: null });
    const unset = await koban.app.inject({ method: 'GET', url: '/v1/users/erin/notification-settings' });
    assert.deepEqual(unset.json(), { user_id: 'erin', language: 'ja', webhook_url: null });
  });

  test('a bad event is retried, then dead-lettered by the bus, while good events behind it still become notices', async () => {
    const poison = { ...event('frank', 'payment.captured'), data: { ...paymentData('frank'), amount: -1 } };
    await koban.bus.publish('payments', poison);
    const good = event('frank');
    await koban.bus.publish('payments', good);
    await waitFor('the good notice', async () => (await notices('frank')).data.length === 1);
    const dead = await waitFor('the dead letter', async () => {
      const page: DeadLetterPage = await koban.bus.deadLetters(NOTIFICATION_SUBSCRIPTIONS.payments, { limit: 50 });
      return page.data.find((letter) => letter.id === poison.id);
    });
    assert.equal(dead.attempts, 3);
    assert.match(dead.last_error ?? '', /data\.amount/);
    assert.deepEqual((await notices('frank')).data.map((notice) => notice.event_id), [good.id]);
    // An event of a type notifications do not know is poison too.
    const unknown = { ...event('frank'), type: 'payment.teleported' };
    await koban.bus.publish('payments', unknown);
    await waitFor('the unknown type dead-lettered', async () =>
      (await koban.bus.deadLetters(NOTIFICATION_SUBSCRIPTIONS.payments, { limit: 50 })).data.some((letter) => letter.id === unknown.id && /type/.test(letter.last_error ?? '')),
    );
  });
});

describe('poison on the accounts topic', () => {
  test('an account event with bad data is dead-lettered by the bus naming the field, and a good one behind it still becomes a notice', async () => {
    const poison = { ...accountCreatedEvent({ user_id: 'gina', created_at: '2026-01-01T00:00:00.000Z' }), id: 'account.created.poison', data: { user_id: 'bad user', created_at: '2026-01-01T00:00:00.000Z' } };
    await koban.bus.publish('accounts', poison);
    await koban.bus.publish('accounts', accountCreatedEvent({ user_id: 'gina', created_at: '2026-01-01T00:00:00.000Z' }));
    await waitFor('the good notice', async () => (await notices('gina')).data.length === 1);
    const dead = await waitFor('the dead letter', async () => {
      const page: DeadLetterPage = await koban.bus.deadLetters(NOTIFICATION_SUBSCRIPTIONS.accounts, { limit: 50 });
      return page.data.find((letter) => letter.id === poison.id);
    });
    assert.match(dead.last_error ?? '', /user_id/);
  });
});

describe('webhooks', () => {
  test("a user's own endpoint that is down is retried with backoff, then dead-lettered; redriven once it is back, it is delivered once", async () => {
    const own = await WebhookReceiver.start(SECRET);
    try {
      own.mode = 'unavailable';
      assert.equal((await putSettings('grace', { language: 'ja', webhook_url: own.url('/grace') })).statusCode, 200);
      const authorized = event('grace');
      await koban.bus.publish('payments', authorized);
      const dead = await waitFor('the dead letter', async () => {
        const response = await koban.app.inject({ method: 'GET', url: '/v1/notifications/dead-letters' });
        return (response.json() as { data: Array<Record<string, unknown>> }).data.find((letter) => letter.event_id === authorized.id);
      });
      assert.equal(dead.channel, 'webhook');
      assert.equal(dead.target, own.url('/grace'));
      assert.equal(dead.attempts, ATTEMPTS_MAX);
      assert.equal(dead.last_error, 'HTTP 503 from the endpoint');
      assert.equal(global.requests.filter((request) => request.headers['koban-event-id'] === authorized.id).length, 0, 'the user\'s endpoint replaces the global one');
      const attempts = own.of(String(dead.delivery_id));
      assert.deepEqual(attempts.map((request) => request.headers['koban-delivery-attempt']), ['1', '2', '3', '4']);
      assert.ok(attempts.every((request) => request.signatureValid && request.body === attempts[0]!.body), 'every attempt sends the same body, signed');
      // Equal jitter: the wait after attempt n is at least half of RETRY_INITIAL_MS · 2^(n−1).
      for (let n = 1; n < attempts.length; n++) {
        const gapMs = attempts[n]!.atMs - attempts[n - 1]!.atMs;
        const floorMs = (RETRY_INITIAL_MS * 2 ** (n - 1)) / 2;
        assert.ok(gapMs >= floorMs - 2, `wait after attempt ${n}: ${gapMs.toFixed(1)} ms, at least ${floorMs} expected`);
      }

      // Down hard (connections refused) makes no difference to the dead letter; then it comes back.
      await own.close();
      own.mode = 'ok';
      await own.open();
      const redrive = await koban.app.inject({ method: 'POST', url: '/v1/notifications/dead-letters/redrive', payload: { ids: [dead.delivery_id] } });
      assert.deepEqual(redrive.json(), { redriven: 1 });
      await waitFor('delivered after the redrive', async () => (await deliveriesOf(authorized.id)).find((row) => row.channel === 'webhook')?.status === 'delivered');
      const answered = own.of(String(dead.delivery_id)).filter((request) => request.status === 204);
      assert.equal(answered.length, 1);
      assert.equal(answered[0]!.headers['koban-delivery-attempt'], '1', 'a redrive starts counting again');
      const after = await koban.app.inject({ method: 'GET', url: '/v1/notifications/dead-letters' });
      assert.equal((after.json() as { data: Array<{ event_id: string }> }).data.some((letter) => letter.event_id === authorized.id), false);
      // Nothing is left to redrive: a second redrive changes nothing.
      assert.deepEqual((await koban.app.inject({ method: 'POST', url: '/v1/notifications/dead-letters/redrive', payload: { ids: [dead.delivery_id] } })).json(), { redriven: 0 });
    } finally {
      await own.close();
    }
  });

  test('an endpoint refusing connections, or hanging past the timeout, fails each attempt with the reason', async () => {
    const refusing = await WebhookReceiver.start(SECRET);
    const hanging = await WebhookReceiver.start(SECRET);
    hanging.mode = 'hang';
    await refusing.close();
    try {
      await putSettings('heidi', { language: 'en', webhook_url: refusing.url() });
      await putSettings('ivan', { language: 'en', webhook_url: hanging.url() });
      const [refused, hung] = [event('heidi'), event('ivan')];
      await koban.bus.publish('payments', refused);
      await koban.bus.publish('payments', hung);
      const deadOf = async (eventId: string) => (await deliveriesOf(eventId)).find((row) => row.channel === 'webhook' && row.status === 'dead');
      const refusedDead = await waitFor('refused dead', () => deadOf(refused.id));
      assert.match(refusedDead.last_error ?? '', /ECONNREFUSED/);
      const hungDead = await waitFor('hung dead', () => deadOf(hung.id));
      assert.equal(hungDead.last_error, `no answer within ${WEBHOOK_TIMEOUT_MS} ms`);
      assert.equal(hanging.of(hungDead.delivery_id).length, ATTEMPTS_MAX);
    } finally {
      await hanging.close();
    }
  });
});

describe('private endpoints allowed', () => {
  test('with NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED=true a user may choose an endpoint on loopback, by name or by address, and it receives the notices', async () => {
    const own = await WebhookReceiver.start(SECRET);
    try {
      const port = new URL(own.url()).port;
      for (const [user, url] of [
        ['kate', `http://localhost:${port}/kate`],
        ['liam', `http://[::ffff:127.0.0.1]:${port}/liam`],
      ] as const) {
        const put = await putSettings(user, { language: 'en', webhook_url: url });
        assert.equal(put.statusCode, 200, put.body);
        const authorized = event(user);
        await koban.bus.publish('payments', authorized);
        const delivered = await waitFor(`${user}'s delivery`, async () => (await deliveriesOf(authorized.id)).find((row) => row.channel === 'webhook' && row.status === 'delivered'));
        assert.equal(delivered.target, url);
        assert.equal(own.of(delivered.delivery_id).length, 1, `${url} received it`);
        assert.equal(own.of(delivered.delivery_id)[0]!.path, `/${user}`);
      }
    } finally {
      await own.close();
    }
  });
});

describe('bad requests', () => {
  const invalid = async (request: { method: 'GET' | 'PUT' | 'POST'; url: string; payload?: unknown }, field: string) => {
    const response = await koban.app.inject({ method: request.method, url: request.url, ...(request.payload === undefined ? {} : { payload: request.payload as object }) });
    assert.equal(response.statusCode, 400, `${request.method} ${request.url}: ${response.body}`);
    const { error } = response.json() as { error: { code: string; retryable: boolean; details: { field: string } } };
    assert.equal(error.code, 'invalid_request');
    assert.equal(error.retryable, false);
    assert.equal(error.details.field, field, response.body);
  };

  test('bad path and query parameters of the notices list are a 400 naming the parameter', async () => {
    await invalid({ method: 'GET', url: '/v1/users/a%20b/notices' }, 'user_id');
    await invalid({ method: 'GET', url: `/v1/users/${'x'.repeat(129)}/notices` }, 'user_id');
    await invalid({ method: 'GET', url: '/v1/users/alice/notices?limit=0' }, 'limit');
    await invalid({ method: 'GET', url: '/v1/users/alice/notices?limit=101' }, 'limit');
    await invalid({ method: 'GET', url: '/v1/users/alice/notices?limit=ten' }, 'limit');
    await invalid({ method: 'GET', url: '/v1/users/alice/notices?cursor=!!' }, 'cursor');
    // Well-formed, but not a cursor this API returned.
    await invalid({ method: 'GET', url: '/v1/users/alice/notices?cursor=bm90LWEtY3Vyc29y' }, 'cursor');
    await invalid({ method: 'GET', url: '/v1/users/alice/notices?sort=asc' }, 'sort');
    await invalid({ method: 'GET', url: '/v1/notifications/dead-letters?limit=201' }, 'limit');
    // Past double range: not a limit of Infinity handed to the database.
    await invalid({ method: 'GET', url: '/v1/users/alice/notices?limit=1e400' }, 'limit');
    await invalid({ method: 'GET', url: '/v1/notifications/dead-letters?limit=Infinity' }, 'limit');
  });

  test('bad settings and redrive bodies are a 400 that changes nothing', async () => {
    assert.equal((await putSettings('judy', { language: 'en' })).statusCode, 200);
    await invalid({ method: 'PUT', url: '/v1/users/judy/notification-settings', payload: { language: 'fr' } }, 'language');
    await invalid({ method: 'PUT', url: '/v1/users/judy/notification-settings', payload: {} }, 'language');
    await invalid({ method: 'PUT', url: '/v1/users/judy/notification-settings', payload: { language: 'ja', webhook_url: 'ftp://example.com/x' } }, 'webhook_url');
    await invalid({ method: 'PUT', url: '/v1/users/judy/notification-settings', payload: { language: 'ja', webhook_url: `https://example.com/${'x'.repeat(2100)}` } }, 'webhook_url');
    await invalid({ method: 'PUT', url: '/v1/users/judy/notification-settings', payload: { language: 'ja', email: 'judy@example.com' } }, 'email');
    const stored = await koban.app.inject({ method: 'GET', url: '/v1/users/judy/notification-settings' });
    assert.deepEqual(stored.json(), { user_id: 'judy', language: 'en', webhook_url: null });
    await invalid({ method: 'POST', url: '/v1/notifications/dead-letters/redrive', payload: { ids: ['not-a-uuid'] } }, 'ids.0');
    await invalid({ method: 'POST', url: '/v1/notifications/dead-letters/redrive', payload: { ids: [] } }, 'ids');
    // JSON null is a body, and not an object: not the absent body that means "all".
    const nullBody = await koban.app.inject({ method: 'POST', url: '/v1/notifications/dead-letters/redrive', headers: { 'content-type': 'application/json' }, payload: 'null' });
    assert.equal(nullBody.statusCode, 400, nullBody.body);
    assert.equal(nullBody.json().error.details.field, 'body');
  });
});
