// Goal: the HTTP LedgerApi retries what can be retried (submit, post, void, reads), with the same ids, and the ledger still applies it once; it honours Retry-After, does not retry what cannot help, and turns every failure into the catalogue's error.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../../test/support/koban.ts';
import { isLedgerError } from '../../../contracts/ledger/ledger-api.ts';
import { CLIENT_RETRY_AFTER_MAX_MS, LedgerClient } from './http-client.ts';

let koban: TestKoban;
let kobanUrl: string;

type Failure = { status: number; headers: Record<string, string>; body: string };
const UNAVAILABLE: Failure = {
  status: 503,
  headers: { 'content-type': 'application/json', 'retry-after': '0' },
  body: JSON.stringify({ error: { code: 'unavailable', message: 'proxy says no', retryable: true } }),
};

/**
 * A real HTTP proxy in front of Koban that misbehaves on purpose: it answers
 * `failWith` (503 unless told) to the first `failFirst` requests, and for the
 * next `dropAfterForward` requests forwards them but drops the connection
 * instead of the response.
 */
async function flakyProxy(plan: { failFirst: number; dropAfterForward: number; failWith?: Failure }) {
  const bodies: string[] = [];
  const urls: string[] = [];
  const server = http.createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString();
    bodies.push(body);
    urls.push(`${request.method} ${request.url}`);
    if (plan.failFirst > 0) {
      plan.failFirst--;
      const failure = plan.failWith ?? UNAVAILABLE;
      response.writeHead(failure.status, failure.headers);
      response.end(failure.body);
      return;
    }
    const forwarded = await fetch(`${kobanUrl}${request.url}`, { method: request.method!, headers: { 'content-type': 'application/json' }, ...(body ? { body } : {}) });
    if (plan.dropAfterForward > 0) {
      plan.dropAfterForward--;
      request.socket.destroy();
      return;
    }
    const headers: Record<string, string> = {};
    forwarded.headers.forEach((value, key) => (headers[key] = value));
    delete headers['content-length'];
    delete headers['transfer-encoding'];
    response.writeHead(forwarded.status, headers);
    response.end(await forwarded.text());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    urls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

before(async () => {
  koban = await startTestKoban({ label: 'client' });
  kobanUrl = await koban.app.listen({ host: '127.0.0.1', port: 0 });
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

describe('LedgerClient', () => {
  test('retries 503s and lost responses with the same transaction id; one effect', async () => {
    const proxy = await flakyProxy({ failFirst: 2, dropAfterForward: 1 });
    try {
      const client = new LedgerClient({ baseUrl: proxy.url, backoffBaseMs: 1 });
      const result = await client.submit({ transaction_id: 'flaky-1', type: 'add', user_id: 'kai', balance_type: 'points', amount: 90 });
      assert.equal(proxy.bodies.length, 4, 'two 503s, one lost response, one success');
      assert.equal(new Set(proxy.bodies).size, 1, 'every attempt sent the same request');
      assert.equal(result.replayed, true, 'the lost attempt had committed, so the last one is a replay');
      assert.equal(result.transaction.amount, 90);
      const direct = new LedgerClient({ baseUrl: kobanUrl });
      assert.equal((await direct.getBalance('kai', 'points')).available, 90);
      assert.equal((await direct.listTransactions('kai')).data.length, 1);
    } finally {
      await proxy.close();
    }
  });

  test('gives up after attemptsMax with the last retryable error', async () => {
    const proxy = await flakyProxy({ failFirst: 10, dropAfterForward: 0 });
    try {
      const client = new LedgerClient({ baseUrl: proxy.url, backoffBaseMs: 1, attemptsMax: 3 });
      await assert.rejects(
        client.submit({ transaction_id: 'flaky-2', type: 'add', user_id: 'kai', balance_type: 'points', amount: 1 }),
        (error: unknown) => isLedgerError(error, 'unavailable') && error.status === 503 && error.retryable,
      );
      assert.equal(proxy.bodies.length, 3);
    } finally {
      await proxy.close();
    }
  });

  test('does not retry errors that retrying cannot fix, and surfaces their details', async () => {
    const proxy = await flakyProxy({ failFirst: 0, dropAfterForward: 0 });
    try {
      const client = new LedgerClient({ baseUrl: proxy.url, backoffBaseMs: 1 });
      await assert.rejects(
        client.submit({ transaction_id: 'broke-1', type: 'consume', user_id: 'lee', balance_type: 'cash', amount: 5 }),
        (error: unknown) => isLedgerError(error, 'insufficient_balance') && error.status === 422 && error.details?.available === 0,
      );
      await assert.rejects(client.getTransactions('never'), (error: unknown) => isLedgerError(error, 'not_found'));
      assert.equal(proxy.bodies.length, 2, 'one attempt each');
    } finally {
      await proxy.close();
    }
  });

  test('a refused connection is a retryable unavailable after every attempt: nothing was sent', async () => {
    // A port that was just free: nothing listens there.
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const client = new LedgerClient({ baseUrl: `http://127.0.0.1:${port}`, backoffBaseMs: 1, attemptsMax: 2 });
    await assert.rejects(client.listBalances('x'), (error: unknown) => isLedgerError(error, 'unavailable') && error.retryable && error.details?.transport === 'ECONNREFUSED');
  });

  test('post and void are retried with the same hold id through 503s and lost responses, and take effect once', async () => {
    const direct = new LedgerClient({ baseUrl: kobanUrl });
    await direct.submit({ transaction_id: 'fund-h', type: 'add', user_id: 'hana', balance_type: 'cash', amount: 1000 });
    await direct.submit({ transaction_id: 'hold-p', type: 'consume', user_id: 'hana', balance_type: 'cash', amount: 400, pending: true });
    await direct.submit({ transaction_id: 'hold-v', type: 'consume', user_id: 'hana', balance_type: 'cash', amount: 100, pending: true });
    assert.equal((await direct.getBalance('hana', 'cash')).available, 500);

    const postProxy = await flakyProxy({ failFirst: 1, dropAfterForward: 1 });
    try {
      const client = new LedgerClient({ baseUrl: postProxy.url, backoffBaseMs: 1 });
      const posted = await client.post('hold-p', { balance_type: 'cash', amount: 250 });
      assert.deepEqual(postProxy.urls, Array(3).fill('POST /v1/transactions/hold-p/post'), 'one 503, one lost answer, one replay');
      assert.equal(new Set(postProxy.bodies).size, 1);
      assert.equal(posted.replayed, true, 'the lost attempt had posted it');
      assert.equal(posted.transaction.posted_amount, 250);
    } finally {
      await postProxy.close();
    }

    const voidProxy = await flakyProxy({ failFirst: 2, dropAfterForward: 0 });
    try {
      const client = new LedgerClient({ baseUrl: voidProxy.url, backoffBaseMs: 1 });
      const voided = await client.void('hold-v', { balance_type: 'cash' });
      assert.equal(voidProxy.urls.length, 3);
      assert.equal(voided.replayed, false, 'only the third attempt reached the ledger');
      assert.equal(voided.transaction.status, 'voided');
      await assert.rejects(client.post('hold-v', { balance_type: 'cash' }), (error: unknown) => isLedgerError(error, 'pending_already_voided') && error.status === 409);
    } finally {
      await voidProxy.close();
    }
    const balance = await direct.getBalance('hana', 'cash');
    assert.equal(balance.available, 1000 - 250, 'the post took 250 once, the void released its 100, the post released the other 150');
    assert.equal(balance.pending_debit, 0);
  });

  test('waits as long as Retry-After says (seconds or a date), at most CLIENT_RETRY_AFTER_MAX_MS', async () => {
    const waits = async (retryAfter: string) => {
      const proxy = await flakyProxy({ failFirst: 1, dropAfterForward: 0, failWith: { ...UNAVAILABLE, headers: { ...UNAVAILABLE.headers, 'retry-after': retryAfter } } });
      const slept: number[] = [];
      try {
        const client = new LedgerClient({ baseUrl: proxy.url, sleep: async (ms) => void slept.push(ms) });
        await client.listBalances('kai');
        return slept;
      } finally {
        await proxy.close();
      }
    };
    assert.deepEqual(await waits('2'), [2000]);
    assert.deepEqual(await waits('86400'), [CLIENT_RETRY_AFTER_MAX_MS]);
    const [fromDate] = await waits(new Date(Date.now() + 10_000).toUTCString());
    assert.ok(fromDate !== undefined && fromDate > 8_000 && fromDate <= 10_000, `about 10 s from an HTTP date, got ${fromDate}`);
  });

  test('an answer that is not the ledger\'s is judged by its status: 502 retried as unavailable, 500 not retried', async () => {
    const gateway = await flakyProxy({ failFirst: 1, dropAfterForward: 0, failWith: { status: 502, headers: { 'content-type': 'text/html' }, body: '<h1>Bad Gateway</h1>' } });
    try {
      const balances = await new LedgerClient({ baseUrl: gateway.url, backoffBaseMs: 1 }).listBalances('kai');
      assert.equal(balances.length, 2);
      assert.equal(gateway.urls.length, 2);
    } finally {
      await gateway.close();
    }
    const broken = await flakyProxy({ failFirst: 5, dropAfterForward: 0, failWith: { status: 500, headers: { 'content-type': 'application/json' }, body: '{"error":{"code":"disk_on_fire","message":"?"}}' } });
    try {
      await assert.rejects(new LedgerClient({ baseUrl: broken.url, backoffBaseMs: 1 }).listBalances('kai'), (error: unknown) =>
        isLedgerError(error, 'internal') && error.details?.http_status === 500 && error.details?.received_code === 'disk_on_fire' && !error.retryable,
      );
      assert.equal(broken.urls.length, 1);
    } finally {
      await broken.close();
    }
  });

  test('a request that cannot be JSON is refused before sending, not retried as a network error', async () => {
    const proxy = await flakyProxy({ failFirst: 0, dropAfterForward: 0 });
    try {
      const client = new LedgerClient({ baseUrl: proxy.url, backoffBaseMs: 1 });
      const request = { transaction_id: 'big-1', type: 'add', user_id: 'kai', balance_type: 'points', amount: 1, metadata: { n: 10n } };
      await assert.rejects(client.submit(request as never), (error: unknown) => isLedgerError(error, 'invalid_request') && error.details?.field === 'body');
      assert.equal(proxy.urls.length, 0);
    } finally {
      await proxy.close();
    }
  });

  test('no answer within requestTimeoutMs is a retryable timeout: the request may have been applied', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const client = new LedgerClient({ baseUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, requestTimeoutMs: 50, attemptsMax: 2, backoffBaseMs: 1 });
      await assert.rejects(client.getBalance('kai', 'points'), (error: unknown) => isLedgerError(error, 'timeout') && error.retryable && error.details?.transport === 'TimeoutError');
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
