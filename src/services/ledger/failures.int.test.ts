// Goal: when the database is slow or gone, callers get retryable 504/503 with Retry-After, and a retry after recovery has exactly one effect.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { testServerUrl } from '../../../test/support/database.ts';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

const WRITE_TIMEOUT_MS = 300;
let koban: TestKoban;
let databaseName: string;

before(async () => {
  koban = await startTestKoban({ label: 'failures', env: { KOBAN_WRITE_TIMEOUT_MS: String(WRITE_TIMEOUT_MS) } });
  databaseName = new URL(koban.database.url).pathname.slice(1);
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

const post = (payload: Record<string, unknown>) => koban.app.inject({ method: 'POST', url: '/v1/transactions', payload });

describe('a slow database', () => {
  test('a write that cannot commit in time is 504 timeout; once it commits, the retry replays it', async () => {
    assert.equal((await post({ transaction_id: 'slow-fund', type: 'add', user_id: 'sloth', balance_type: 'cash', amount: 100 })).statusCode, 201);
    // Another session holds the account row, so the ledger's write waits on it.
    const blocker = new pg.Client({ connectionString: koban.database.url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`SELECT * FROM accounts WHERE owner_kind = 'user' AND owner_id = 'sloth' FOR UPDATE`);
      const request = { transaction_id: 'slow-buy', type: 'consume', user_id: 'sloth', balance_type: 'cash', amount: 30 };
      const timedOut = await post(request);
      assert.equal(timedOut.statusCode, 504);
      assert.equal(timedOut.json().error.code, 'timeout');
      assert.equal(timedOut.json().error.retryable, true);
      assert.equal(timedOut.headers['retry-after'], '1');
      await blocker.query('COMMIT');
    } finally {
      await blocker.end();
    }
    // The timed-out write was still queued and commits now; the caller's retry replays it.
    // Bounded: a retry that never replays fails below with its last answer.
    let retry = await post({ transaction_id: 'slow-buy', type: 'consume', user_id: 'sloth', balance_type: 'cash', amount: 30 });
    for (let attempt = 0; retry.statusCode !== 200 && attempt < 100; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      retry = await post({ transaction_id: 'slow-buy', type: 'consume', user_id: 'sloth', balance_type: 'cash', amount: 30 });
    }
    assert.equal(retry.statusCode, 200, `the retry never replayed: ${retry.statusCode} ${retry.body}`);
    assert.equal(retry.headers['idempotent-replayed'], 'true');
    assert.equal(retry.json().balance_after, 70);
    const balance = await koban.app.inject({ method: 'GET', url: '/v1/users/sloth/balances/cash' });
    assert.deepEqual(balance.json(), { user_id: 'sloth', balance_type: 'cash', available: 70, posted: 70, pending_debit: 0, pending_credit: 0, expiring: [] }, 'applied once');
  });
});

describe('a database that is gone', () => {
  test('reads and writes are 503 unavailable with Retry-After, and work again once it is back', async () => {
    const admin = new pg.Client({ connectionString: testServerUrl() });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${admin.escapeIdentifier(databaseName)} ALLOW_CONNECTIONS false`);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [databaseName]);

      const read = await koban.app.inject({ method: 'GET', url: '/v1/users/sloth/balances/cash' });
      assert.equal(read.statusCode, 503, read.body);
      assert.equal(read.json().error.code, 'unavailable');
      assert.equal(read.headers['retry-after'], '1');
      const write = await post({ transaction_id: 'gone-1', type: 'add', user_id: 'sloth', balance_type: 'cash', amount: 5 });
      assert.equal(write.statusCode, 503, write.body);
      assert.equal(write.json().error.retryable, true);
    } finally {
      await admin.query(`ALTER DATABASE ${admin.escapeIdentifier(databaseName)} ALLOW_CONNECTIONS true`);
      await admin.end();
    }
    const write = await post({ transaction_id: 'gone-1', type: 'add', user_id: 'sloth', balance_type: 'cash', amount: 5 });
    assert.equal(write.statusCode, 201, 'the failed attempt stored nothing, so the retry creates');
    const balance = await koban.app.inject({ method: 'GET', url: '/v1/users/sloth/balances/cash' });
    assert.deepEqual(balance.json(), { user_id: 'sloth', balance_type: 'cash', available: 75, posted: 75, pending_debit: 0, pending_credit: 0, expiring: [] }, 'applied once');
    assert.equal((await koban.ledger.audit()).ok, true);
  });
});
