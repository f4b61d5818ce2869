// Goal: with NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED at its default (false), a user's webhook never reaches a non-public address: an endpoint whose host is a loopback, private or link-local address or a localhost name is a 400 naming webhook_url that stores nothing; one stored anyway (before the check, or a name that resolves to loopback) is a dead letter after one attempt with the reason, and its server receives nothing; the HTTP client connects to exactly the address the lookup judged; the operator's global endpoint stays unrestricted.
import assert from 'node:assert/strict';
import type dns from 'node:dns';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { systemClock } from '../../platform/clock.ts';
import type { Resolver } from '../../platform/net-policy.ts';
import type { ChannelMessage } from './channels/channel.ts';
import { WebhookChannel } from './channels/webhook/webhook-channel.ts';
import { paymentEventFor as event } from './testing/payment-events.ts';
import { waitFor, WebhookReceiver } from './testing/webhook-receiver.ts';

const SECRET = 'test-webhook-secret-0123456789';
const WEBHOOK_TIMEOUT_MS = 1_000;
const ATTEMPTS_MAX = 4;
const SCHEMA = 'koban_notifications';
const RULE = 'per-user webhooks may only reach public addresses';

let koban: TestKoban;
let db: pg.Pool;
/** The global endpoint (NOTIFICATIONS_WEBHOOK_URL), on loopback: the operator's own, never restricted. */
let global: WebhookReceiver;
/** Where users try to point their webhooks. */
let internal: WebhookReceiver;
async function webhookDeliveryOf(eventId: string) {
  const result = await db.query<{ delivery_id: string; target: string; user_endpoint: boolean; status: string; attempts: number; last_error: string | null }>(
    `SELECT d.delivery_id, d.target, d.user_endpoint, d.status, d.attempts, d.last_error
     FROM ${SCHEMA}.deliveries d JOIN ${SCHEMA}.notices n ON n.seq = d.notice_seq WHERE n.event_id = $1 AND d.channel = 'webhook'`,
    [eventId],
  );
  return result.rows[0];
}

async function settingsOf(user: string) {
  return (await koban.app.inject({ method: 'GET', url: `/v1/users/${user}/notification-settings` })).json() as { webhook_url: string | null };
}

/** Stores a webhook URL as the PUT would not: as a row written before the check existed. */
async function storeWebhookDirectly(user: string, url: string): Promise<void> {
  await db.query(`INSERT INTO ${SCHEMA}.user_settings (user_id, language, webhook_url, updated_at) VALUES ($1, 'en', $2, now())`, [user, url]);
}

/** Publishes an event for `user` and waits until its webhook delivery is settled (delivered or dead). */
async function settledDeliveryFor(user: string) {
  const published = event(user);
  await koban.bus.publish('payments', published);
  return waitFor(`the webhook delivery of ${published.id} settled`, async () => {
    const row = await webhookDeliveryOf(published.id);
    return row !== undefined && row.status !== 'pending' ? row : undefined;
  });
}

before(async () => {
  global = await WebhookReceiver.start(SECRET);
  internal = await WebhookReceiver.start(SECRET);
  koban = await startTestKoban({
    label: 'notifications_ssrf',
    env: {
      NOTIFICATIONS_WEBHOOK_SECRET: SECRET,
      NOTIFICATIONS_WEBHOOK_URL: global.url(),
      NOTIFICATIONS_WEBHOOK_TIMEOUT_MS: String(WEBHOOK_TIMEOUT_MS),
      NOTIFICATIONS_WEBHOOK_ATTEMPTS_MAX: String(ATTEMPTS_MAX),
      NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS: '20',
    },
  });
  db = new pg.Pool({ connectionString: koban.database.url, max: 2 });
});

after(async () => {
  await db?.end();
  await koban?.stop();
  await koban?.database.drop();
  await global?.close();
  await internal?.close();
});

describe('setting a webhook_url', () => {
  test('a host that is a non-public address or a localhost name is a 400 naming webhook_url, and the stored settings stay as they were', async () => {
    const stored = await koban.app.inject({ method: 'PUT', url: '/v1/users/mallory/notification-settings', payload: { language: 'en', webhook_url: 'https://example.com/koban-hook' } });
    assert.equal(stored.statusCode, 200, stored.body);
    const port = new URL(internal.url()).port;
    const refused = [
      internal.url('/x'),
      'http://[::1]/x',
      'http://169.254.169.254/',
      'http://169.254.169.254/latest/meta-data/',
      'http://localhost:1/',
      `http://LocalHost:${port}/x`,
      'http://hooks.localhost/',
      'http://127.1/',
      'http://0x7f000001/',
      'http://0.0.0.0/',
      'http://[::]/',
      'http://[::ffff:127.0.0.1]/',
      'http://[fd00::1]/',
      'http://10.0.0.5/admin',
      'http://172.16.0.1/',
      'https://192.168.1.1/',
      'http://100.64.0.1/',
    ];
    for (const url of refused) {
      const response = await koban.app.inject({ method: 'PUT', url: '/v1/users/mallory/notification-settings', payload: { language: 'ja', webhook_url: url } });
      assert.equal(response.statusCode, 400, `${url}: ${response.body}`);
      const { error } = response.json() as { error: { code: string; retryable: boolean; message: string; details: { field: string; in: string } } };
      assert.equal(error.code, 'invalid_request', url);
      assert.equal(error.retryable, false);
      assert.deepEqual(error.details, { field: 'webhook_url', in: 'body' }, url);
      assert.match(error.message, /^webhook_url must reach a public address, and its host is (the non-public address \S+|a localhost name): /, url);
    }
    assert.deepEqual(await settingsOf('mallory'), { user_id: 'mallory', language: 'en', webhook_url: 'https://example.com/koban-hook' });
    const rows = await db.query(`SELECT language, webhook_url FROM ${SCHEMA}.user_settings WHERE user_id = 'mallory'`);
    assert.deepEqual(rows.rows, [{ language: 'en', webhook_url: 'https://example.com/koban-hook' }]);
    // A host the URL parser refuses could never be sent to either.
    const unparsable = await koban.app.inject({ method: 'PUT', url: '/v1/users/mallory/notification-settings', payload: { language: 'ja', webhook_url: 'http://999.1.1.1/' } });
    assert.equal(unparsable.statusCode, 400, unparsable.body);
    assert.equal(unparsable.json().error.details.field, 'webhook_url');
    // Public addresses and names pass (a name is judged when sending, by what it resolves to).
    for (const url of ['https://8.8.8.8/hook', 'https://[2606:4700::1]/hook', 'https://hooks.example.com/koban']) {
      const response = await koban.app.inject({ method: 'PUT', url: '/v1/users/nina/notification-settings', payload: { language: 'en', webhook_url: url } });
      assert.equal(response.statusCode, 200, `${url}: ${response.body}`);
    }
  });
});

describe('sending', () => {
  test("a user's endpoint stored as a private address is a dead letter after one attempt, naming the address, and receives nothing; a redrive is refused again", async () => {
    const url = internal.url('/literal');
    await storeWebhookDirectly('oscar', url);
    const dead = await settledDeliveryFor('oscar');
    assert.equal(dead.status, 'dead');
    assert.equal(dead.user_endpoint, true);
    assert.equal(dead.attempts, 1, 'refused, not retried');
    assert.equal(dead.last_error, `the endpoint is a private address (127.0.0.1); ${RULE}`);
    const letters = (await koban.app.inject({ method: 'GET', url: '/v1/notifications/dead-letters?limit=200' })).json() as { data: Array<{ delivery_id: string; target: string; last_error: string }> };
    const letter = letters.data.find((entry) => entry.delivery_id === dead.delivery_id);
    assert.deepEqual({ target: letter?.target, last_error: letter?.last_error }, { target: url, last_error: dead.last_error });

    const redrive = await koban.app.inject({ method: 'POST', url: '/v1/notifications/dead-letters/redrive', payload: { ids: [dead.delivery_id] } });
    assert.deepEqual(redrive.json(), { redriven: 1 });
    const again = await waitFor('dead again after the redrive', async () => {
      const row = await webhookDeliveryOf((await db.query<{ event_id: string }>(`SELECT n.event_id FROM ${SCHEMA}.deliveries d JOIN ${SCHEMA}.notices n ON n.seq = d.notice_seq WHERE d.delivery_id = $1`, [dead.delivery_id])).rows[0]!.event_id);
      return row?.status === 'dead' && row.attempts === 1 ? row : undefined;
    });
    assert.equal(again.last_error, dead.last_error);
    assert.equal(internal.requests.filter((request) => request.path === '/literal').length, 0, 'the private endpoint received nothing');
  });

  test("a user's endpoint whose name resolves to loopback is a dead letter after one attempt, naming the address it resolved to, and receives nothing", async () => {
    // `localhost` resolves offline everywhere; the PUT refuses it by name, so it is stored directly, as a name that resolves to a private address only later would be.
    await storeWebhookDirectly('peggy', internal.url('/by-name').replace('127.0.0.1', 'localhost'));
    const dead = await settledDeliveryFor('peggy');
    assert.equal(dead.status, 'dead');
    assert.equal(dead.attempts, 1, 'refused, not retried');
    assert.match(dead.last_error ?? '', /^the endpoint resolves to a private address \((127\.0\.0\.1|::1)\); per-user webhooks may only reach public addresses$/);
    assert.equal(internal.requests.filter((request) => request.path === '/by-name').length, 0, 'the private endpoint received nothing');
  });

  test("the operator's global endpoint on loopback is not restricted", async () => {
    const delivered = await settledDeliveryFor('quentin');
    assert.equal(delivered.status, 'delivered', delivered.last_error ?? '');
    assert.equal(delivered.user_endpoint, false);
    assert.equal(global.of(delivered.delivery_id).length, 1);
  });
});

describe('the webhook channel connects to the address its lookup judged', () => {
  const message = (target: string, userEndpoint: boolean): ChannelMessage => ({
    delivery_id: '00000000-0000-4000-8000-000000000001',
    event_id: 'visa.ssrf.channel',
    user_id: 'rupert',
    target,
    user_endpoint: userEndpoint,
    payload: '{}',
    attempt: 1,
  });
  /** `hooks.koban.test` (a reserved name no real resolver answers) resolves to these addresses, and nothing else does. */
  const resolverTo = (addresses: dns.LookupAddress[], asked: string[]): Resolver => (hostname, _options, callback) => {
    asked.push(hostname);
    if (hostname === 'hooks.koban.test') queueMicrotask(() => callback(null, addresses));
    else queueMicrotask(() => callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []));
  };

  test('a name that resolves to loopback, alone or beside a public address, is refused before any connection, permanently', async () => {
    const receiver = await WebhookReceiver.start(SECRET);
    const target = receiver.url('/pinned').replace('127.0.0.1', 'hooks.koban.test');
    try {
      for (const addresses of [[{ address: '127.0.0.1', family: 4 }], [{ address: '93.184.216.34', family: 4 }, { address: '127.0.0.1', family: 4 }]]) {
        const asked: string[] = [];
        const channel = new WebhookChannel({ secret: SECRET, timeoutMs: WEBHOOK_TIMEOUT_MS, userPrivateAllowed: false, clock: systemClock, resolve: resolverTo(addresses, asked) });
        try {
          const result = await channel.deliver(message(target, true), new AbortController().signal);
          assert.deepEqual(result, { ok: false, error: `the endpoint resolves to a private address (127.0.0.1); ${RULE}`, permanent: true });
          assert.deepEqual(asked, ['hooks.koban.test'], 'resolved once, by the connection');
        } finally {
          await channel.close();
        }
      }
      assert.equal(receiver.requests.length, 0);
    } finally {
      await receiver.close();
    }
  });

  test('with private addresses allowed, the same name reaches the address the lookup gave (no other resolver knows it), and the global endpoint is never judged', async () => {
    const receiver = await WebhookReceiver.start(SECRET);
    const target = receiver.url('/pinned').replace('127.0.0.1', 'hooks.koban.test');
    const asked: string[] = [];
    const allowing = new WebhookChannel({ secret: SECRET, timeoutMs: WEBHOOK_TIMEOUT_MS, userPrivateAllowed: true, clock: systemClock, resolve: resolverTo([{ address: '127.0.0.1', family: 4 }], asked) });
    const restricting = new WebhookChannel({ secret: SECRET, timeoutMs: WEBHOOK_TIMEOUT_MS, userPrivateAllowed: false, clock: systemClock, resolve: resolverTo([], asked) });
    try {
      assert.deepEqual(await allowing.deliver(message(target, true), new AbortController().signal), { ok: true });
      assert.deepEqual(asked, ['hooks.koban.test']);
      assert.equal(receiver.requests.length, 1);
      assert.equal(receiver.requests[0]!.headers.host, new URL(target).host, 'the request names the host it was sent to');
      assert.equal(receiver.requests[0]!.signatureValid, true);
      // The operator's endpoint, a loopback literal, with users' endpoints restricted.
      assert.deepEqual(await restricting.deliver(message(receiver.url('/global'), false), new AbortController().signal), { ok: true });
      assert.equal(receiver.requests.length, 2);
    } finally {
      await allowing.close();
      await restricting.close();
      await receiver.close();
    }
  });
});
