// Goal: a full Koban app serves the bus: the design's topics exist from the start, publish and stats work, and the API is in OpenAPI.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, testServerUrl } from '../../../../test/support/database.ts';
import { startTestKoban, type TestKoban } from '../../../../test/support/koban.ts';
import { KOBAN_TOPICS } from '../../../contracts/events/topics.ts';

describe('bus wired into the app', () => {
  let koban: TestKoban;

  before(async () => {
    koban = await startTestKoban({ label: 'bus_wiring' });
  });

  after(async () => {
    await koban?.stop();
    await koban?.database.drop();
  });

  test('the topics the design names accept events from the start; others are 404', async () => {
    for (const topic of KOBAN_TOPICS) {
      const response = await koban.app.inject({
        method: 'POST',
        url: `/v1/topics/${topic}/events`,
        payload: { specversion: '1.0', id: `${topic}-1`, source: '/tests', type: `koban.${topic}.tested` },
      });
      assert.equal(response.statusCode, 202, `${topic}: ${response.body}`);
      assert.deepEqual(response.json(), { id: `${topic}-1`, duplicate: false });
    }
    const unknown = await koban.app.inject({ method: 'POST', url: '/v1/topics/orders/events', payload: { specversion: '1.0', id: 'o-1', source: '/tests', type: 't' } });
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json().error.code, 'not_found');
  });

  test('the subscriptions are those its consumers declared (points, notifications), none of the bus\'s own', async () => {
    const response = await koban.app.inject({ method: 'GET', url: '/v1/subscriptions' });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(
      response.json().data.map((subscription: { name: string; topic: string }) => `${subscription.name} on ${subscription.topic}`),
      ['notifications-accounts on accounts', 'notifications-payments on payments', 'points-accounts on accounts', 'points-payments on payments', 'points-referrals on referrals', 'points-rewards on rewards'],
    );
    assert.equal(koban.bus.adapter, 'postgres');
  });

  test('OpenAPI documents every bus route', async () => {
    const document = (await koban.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const expected: Array<[string, string, string[]]> = [
      ['/v1/topics/{topic}/events', 'post', ['202', '400', '404', '415']],
      ['/v1/subscriptions', 'get', ['200']],
      ['/v1/subscriptions/{name}/dead-letters', 'get', ['200', '400', '404']],
      ['/v1/subscriptions/{name}/dead-letters/redrive', 'post', ['200', '400', '404']],
      ['/v1/subscriptions/{name}/dead-letters/{id}/discard', 'post', ['200', '400', '404']],
    ];
    for (const [path, method, statuses] of expected) {
      const operation = document.paths[path]?.[method];
      assert.ok(operation, `${method.toUpperCase()} ${path} is documented`);
      for (const status of statuses) assert.ok(operation.responses[status], `${method.toUpperCase()} ${path} documents ${status}`);
    }
  });
});

describe('one database for everything (DATABASE_URL alone)', () => {
  test('ledger and bus start side by side, and a bus whose database is gone answers 503, retryable', async () => {
    const database = await createTestDatabase('shared_url');
    // LEDGER_DATABASE_URL empty means unset: both services fall back to DATABASE_URL.
    const koban = await startTestKoban({ label: 'shared_url', database, env: { LEDGER_DATABASE_URL: '', DATABASE_URL: database.url } });
    try {
      const add = await koban.app.inject({ method: 'POST', url: '/v1/transactions', payload: { transaction_id: 'one-db', type: 'add', user_id: 'u', balance_type: 'points', amount: 1 } });
      assert.equal(add.statusCode, 201, add.body);
      const published = await koban.app.inject({ method: 'POST', url: '/v1/topics/accounts/events', payload: { specversion: '1.0', id: 'a-1', source: '/tests', type: 't' } });
      assert.equal(published.statusCode, 202, published.body);

      const databaseName = new URL(database.url).pathname.slice(1);
      const admin = new pg.Client({ connectionString: testServerUrl() });
      await admin.connect();
      try {
        await admin.query(`ALTER DATABASE ${admin.escapeIdentifier(databaseName)} ALLOW_CONNECTIONS false`);
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [databaseName]);
        const refused = await koban.app.inject({ method: 'POST', url: '/v1/topics/accounts/events', payload: { specversion: '1.0', id: 'a-2', source: '/tests', type: 't' } });
        assert.equal(refused.statusCode, 503, refused.body);
        assert.equal(refused.json().error.code, 'unavailable');
        assert.equal(refused.json().error.retryable, true);
        assert.equal(refused.headers['retry-after'], '1');
      } finally {
        await admin.query(`ALTER DATABASE ${admin.escapeIdentifier(databaseName)} ALLOW_CONNECTIONS true`);
        await admin.end();
      }
      const retried = await koban.app.inject({ method: 'POST', url: '/v1/topics/accounts/events', payload: { specversion: '1.0', id: 'a-2', source: '/tests', type: 't' } });
      assert.equal(retried.statusCode, 202, retried.body);
      assert.equal(retried.json().duplicate, false, 'the refused publish stored nothing');
    } finally {
      await koban.stop();
      await database.drop();
    }
  });
});
