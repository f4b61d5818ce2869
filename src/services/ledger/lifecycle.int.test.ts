// Goal: shutting down drains what was accepted (every accepted write commits and answers, later ones are refused), and the OpenAPI document describes every ledger route.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { ERROR_CATALOGUE, isErrorCode } from '../../platform/errors.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import { startTestKoban } from '../../../test/support/koban.ts';

const WRITES_IN_FLIGHT = 50;
const WAIT_TIMEOUT_MS = 10_000;
const WAIT_POLL_MS = 10;
/**
 * How soon stop() must return once the last drained request is answered. Well under the process's
 * shutdown grace (15 s), and far under the 72 s a client's kept-alive connection would otherwise hold it.
 */
const STOP_AFTER_LAST_ANSWER_MS_MAX = 5_000;

/** Polls until `check` holds; fails with `what` after WAIT_TIMEOUT_MS. A bounded wait for a named condition, not a sleep. */
async function waitUntil(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + WAIT_TIMEOUT_MS; !(await check()); ) {
    if (Date.now() > deadline) assert.fail(`waited ${WAIT_TIMEOUT_MS} ms for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
  }
}

/** Another session holds the user's account row, so the ledger's writes to it wait in the database. */
async function holdAccountRow(database: TestDatabase, userId: string): Promise<pg.Client> {
  const blocker = new pg.Client({ connectionString: database.url });
  await blocker.connect();
  await blocker.query('BEGIN');
  const locked = await blocker.query(`SELECT 1 FROM accounts WHERE owner_kind = 'user' AND owner_id = $1 FOR UPDATE`, [userId]);
  assert.equal(locked.rowCount, 1, 'the account exists and is held');
  return blocker;
}

/** Sessions of this database waiting on a row lock: the ledger's batch behind the held row. */
async function lockWaiters(observer: pg.Client): Promise<number> {
  const result = await observer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
  return result.rows[0].n as number;
}

describe('shutdown', () => {
  test('the ledger drains: close() refuses new writes at once as unavailable and returns only after every accepted write committed', async () => {
    const database = await createTestDatabase('lifecycle_ledger');
    const koban = await startTestKoban({ label: 'lifecycle', database });
    const write = (transactionId: string) => koban.ledger.submit({ transaction_id: transactionId, type: 'add', user_id: 'drainer', balance_type: 'points', amount: 1 });
    let blocker: pg.Client | undefined;
    try {
      assert.equal((await write('drain-fund')).replayed, false);
      blocker = await holdAccountRow(database, 'drainer');
      const accepted = Array.from({ length: WRITES_IN_FLIGHT }, (_, i) => write(`drain-${i}`));
      // Settled promises are noted as they land, so the assertions below see what had finished when.
      const settled: string[] = [];
      accepted.forEach((promise, i) => promise.then(() => settled.push(`drain-${i}`), (error: unknown) => settled.push(`drain-${i}: ${String(error)}`)));
      await waitUntil(`${WRITES_IN_FLIGHT} writes in progress (now ${koban.ledger.writesInProgress})`, () => koban.ledger.writesInProgress === WRITES_IN_FLIGHT);
      await waitUntil('the ledger waits on the held row', async () => (await lockWaiters(blocker!)) > 0);

      let closed = false;
      const closing = koban.ledger.close().then(() => (closed = true));
      await assert.rejects(write('drain-late'), (error) => isErrorCode(error, 'unavailable'), 'a write after close() is refused');
      await assert.rejects(koban.ledger.post('drain-0', { balance_type: 'points' }), (error) => isErrorCode(error, 'unavailable'), 'so is a post');
      // A round trip to the database: time enough for a close() that does not wait to have returned.
      assert.ok((await lockWaiters(blocker)) > 0, 'the accepted writes still wait on the held row');
      assert.equal(closed, false, 'close() has not returned while accepted writes are uncommitted');
      assert.deepEqual(settled, [], 'no accepted write was answered or dropped while the row was held');
      assert.equal(koban.ledger.writesInProgress, WRITES_IN_FLIGHT);

      await blocker.query('COMMIT');
      const results = await Promise.all(accepted);
      await closing;
      assert.deepEqual(
        results.map((result) => [result.replayed, result.transaction.status]),
        Array(WRITES_IN_FLIGHT).fill([false, 'posted']),
        'every write accepted before close() committed',
      );
      assert.deepEqual(
        results.map((result) => result.transaction.balance_after).sort((a, b) => a - b),
        Array.from({ length: WRITES_IN_FLIGHT }, (_, i) => i + 2),
        'one after another, on top of the funding add',
      );
      assert.equal(koban.ledger.writesInProgress, 0);
    } finally {
      // After a failure above, the row must not stay held: the run would hang instead of failing.
      await blocker?.end().catch(() => undefined);
      await koban.stop();
    }

    const again = await startTestKoban({ label: 'lifecycle', database });
    try {
      const balance = await again.app.inject({ method: 'GET', url: '/v1/users/drainer/balances/points' });
      assert.deepEqual(balance.json(), { user_id: 'drainer', balance_type: 'points', available: 51, posted: 51, pending_debit: 0, pending_credit: 0, expiring: [] }, 'durable');
      assert.equal((await again.app.inject({ method: 'GET', url: '/v1/transactions/drain-late' })).statusCode, 404, 'the refused write left nothing');
    } finally {
      await again.stop();
      await database.drop();
    }
  });

  test('the process drains: requests in flight when stop() is called all commit and answer 201; a request after it is refused', async () => {
    const database = await createTestDatabase('lifecycle_http');
    const koban = await startTestKoban({ label: 'lifecycle', database });
    let blocker: pg.Client | undefined;
    let stopping: Promise<void> | undefined;
    try {
      const url = await koban.app.listen({ host: '127.0.0.1', port: 0 });
      const post = (transactionId: string) =>
        fetch(`${url}/v1/transactions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ transaction_id: transactionId, type: 'add', user_id: 'drainer', balance_type: 'points', amount: 1 }),
        });
      assert.equal((await post('drain-fund')).status, 201);
      blocker = await holdAccountRow(database, 'drainer');
      // A request that fails shows as its error, in the assertion below.
      const inFlight = Array.from({ length: WRITES_IN_FLIGHT }, (_, i) => post(`drain-${i}`).then((response) => response.status, (error: unknown) => String(error)));
      await waitUntil(`${WRITES_IN_FLIGHT} writes reached the ledger (now ${koban.ledger.writesInProgress})`, () => koban.ledger.writesInProgress === WRITES_IN_FLIGHT);
      await waitUntil('the ledger waits on the held row', async () => (await lockWaiters(blocker!)) > 0);

      let stopped = false;
      stopping = koban.stop().then(() => {
        stopped = true;
      });
      // Shutdown is under way once the server stops listening; the writes are still held in the database.
      await waitUntil('the server stops accepting connections', () => !koban.app.server.listening);
      const late = await post('drain-late').then((response) => response.status, (error: unknown) => String(error));
      assert.ok(late === 503 || late.toString().startsWith('TypeError: fetch failed'), `a request after stop() is refused, not served: ${late}`);
      assert.equal(koban.ledger.writesInProgress, WRITES_IN_FLIGHT, 'the accepted writes are still in progress');
      assert.equal(stopped, false, 'stop() waits for them');

      await blocker.query('COMMIT');
      const statuses = await Promise.all(inFlight);
      const answeredAtMs = Date.now();
      assert.deepEqual(statuses, Array(WRITES_IN_FLIGHT).fill(201), 'every write accepted before stop() committed and answered');
      // The client keeps its connections alive, as HTTP clients do: they must not hold the shutdown.
      await stopping;
      const stopMs = Date.now() - answeredAtMs;
      assert.ok(stopMs <= STOP_AFTER_LAST_ANSWER_MS_MAX, `stop() returned ${stopMs} ms after the last answer`);
    } finally {
      // After a failure above, the row must not stay held and the server up: the run would hang instead of failing.
      await blocker?.end().catch(() => undefined);
      await (stopping ?? koban.stop());
    }

    const again = await startTestKoban({ label: 'lifecycle', database });
    try {
      const balance = await again.app.inject({ method: 'GET', url: '/v1/users/drainer/balances/points' });
      assert.deepEqual(balance.json(), { user_id: 'drainer', balance_type: 'points', available: 51, posted: 51, pending_debit: 0, pending_credit: 0, expiring: [] }, 'durable');
      assert.equal((await again.app.inject({ method: 'GET', url: '/v1/transactions/drain-late' })).statusCode, 404, 'the refused request left nothing');
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
        ['/livez', 'get', ['200']],
        ['/readyz', 'get', ['200', '503']],
      ];
      for (const [path, method, statuses] of expected) {
        const operation = document.paths[path]?.[method];
        assert.ok(operation, `${method.toUpperCase()} ${path} is documented`);
        for (const status of statuses) assert.ok(operation.responses[status], `${method.toUpperCase()} ${path} documents ${status}`);
      }
      const bodyRef: string = document.paths['/v1/transactions'].post.requestBody.content['application/json'].schema.$ref;
      const body = document.components.schemas[bodyRef.replace('#/components/schemas/', '')];
      assert.deepEqual(body.required, ['transaction_id', 'type', 'user_id', 'balance_type', 'amount']);
      assert.equal(body.additionalProperties, false);
      assert.deepEqual(document.components.schemas.Error.properties.error.properties.code.enum, Object.keys(ERROR_CATALOGUE), 'every catalogue code, and only those');
    } finally {
      await koban.stop();
      await koban.database.drop();
    }
  });
});
