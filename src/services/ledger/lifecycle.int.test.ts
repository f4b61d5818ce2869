// Goal: shutting down drains what was accepted (every accepted write commits and answers), and the OpenAPI document describes every ledger route.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase } from '../../../test/support/database.ts';
import { startTestKoban } from '../../../test/support/koban.ts';

describe('shutdown', () => {
  test('writes in flight when close() is called all commit and answer 201', async () => {
    const database = await createTestDatabase('lifecycle');
    const koban = await startTestKoban({ label: 'lifecycle', database });
    const blocker = new pg.Client({ connectionString: database.url });
    let closing: Promise<void> | undefined;
    try {
      const url = await koban.app.listen({ host: '127.0.0.1', port: 0 });
      const post = (transactionId: string) =>
        fetch(`${url}/v1/transactions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ transaction_id: transactionId, type: 'add', user_id: 'drainer', balance_type: 'points', amount: 1 }),
        });
      assert.equal((await post('drain-fund')).status, 201);
      // Hold the account row so that the writes pile up in flight, then shut down while they wait.
      await blocker.connect();
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM accounts WHERE owner_kind = 'user' AND owner_id = 'drainer' FOR UPDATE`);
      // A request that fails shows as its error, in the assertion below.
      const inFlight = Array.from({ length: 50 }, (_, i) => post(`drain-${i}`).then((response) => response.status, (error: unknown) => String(error)));
      // Shut down once the server has accepted all 50 (they wait behind the held row).
      for (const deadline = Date.now() + 10_000; koban.ledger.writesInProgress < 50; ) {
        assert.ok(Date.now() < deadline, `only ${koban.ledger.writesInProgress} of 50 writes reached the ledger`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      closing = koban.stop();
      await new Promise((resolve) => setTimeout(resolve, 100));
      await blocker.query('COMMIT');
      await blocker.end();
      const statuses = await Promise.all(inFlight);
      await closing;
      assert.deepEqual(statuses, Array(50).fill(201), 'every write accepted before close committed and answered');
    } finally {
      // After a failure above, the row must not stay held and the server up: the run would hang instead of failing.
      // (Ending the connection rolls its transaction back; ending it twice is harmless.)
      await blocker.end().catch(() => undefined);
      await (closing ?? koban.stop());
    }

    const again = await startTestKoban({ label: 'lifecycle', database });
    try {
      const balance = await again.app.inject({ method: 'GET', url: '/v1/users/drainer/balances/points' });
      assert.equal(balance.json().available, 51, 'and is durable');
    } finally {
      await again.stop();
      await database.drop();
    }
  });
});

describe('OpenAPI', () => {
  test('documents every ledger route with its success and error responses', async () => {
    const koban = await startTestKoban({ label: 'openapi' });
    try {
      const response = await koban.app.inject({ method: 'GET', url: '/openapi.json' });
      assert.equal(response.statusCode, 200);
      const document = response.json();
      assert.equal(document.openapi, '3.1.0');
      const expected: Array<[string, string, string[]]> = [
        ['/v1/transactions', 'post', ['200', '201', '400', '409', '415', '422', '503', '504']],
        ['/v1/transactions/{transaction_id}', 'get', ['200', '400', '404']],
        ['/v1/users/{user_id}/balances', 'get', ['200', '400']],
        ['/v1/users/{user_id}/balances/{balance_type}', 'get', ['200', '400']],
        ['/v1/users/{user_id}/transactions', 'get', ['200', '400']],
        ['/v1/audit', 'get', ['200']],
        ['/healthz', 'get', ['200']],
      ];
      for (const [path, method, statuses] of expected) {
        const operation = document.paths[path]?.[method];
        assert.ok(operation, `${method.toUpperCase()} ${path} is documented`);
        for (const status of statuses) assert.ok(operation.responses[status], `${method.toUpperCase()} ${path} documents ${status}`);
      }
      const body = document.paths['/v1/transactions'].post.requestBody.content['application/json'].schema;
      assert.deepEqual(body.required, ['transaction_id', 'type', 'user_id', 'balance_type', 'amount']);
      assert.equal(body.additionalProperties, false);
      assert.deepEqual(document.components.schemas.Error.properties.error.properties.code.enum.length > 5, true);
    } finally {
      await koban.stop();
      await koban.database.drop();
    }
  });
});
