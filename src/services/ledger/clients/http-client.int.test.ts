// Goal: the typed client retries what can be retried, with the same transaction id, and the ledger still applies it once; it does not retry what cannot help.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../../test/support/koban.ts';
import { LedgerClient, isLedgerClientError } from './http-client.ts';

let koban: TestKoban;
let kobanUrl: string;

/**
 * A real HTTP proxy in front of Koban that misbehaves on purpose: it answers
 * 503 to the first `failFirst` requests, and for the next `dropAfterForward`
 * requests forwards them but drops the connection instead of the response.
 */
async function flakyProxy(plan: { failFirst: number; dropAfterForward: number }) {
  const bodies: string[] = [];
  const server = http.createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString();
    bodies.push(body);
    if (plan.failFirst > 0) {
      plan.failFirst--;
      response.writeHead(503, { 'content-type': 'application/json', 'retry-after': '0' });
      response.end(JSON.stringify({ error: { code: 'unavailable', message: 'proxy says no', retryable: true } }));
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
      const result = await client.postTransaction({ transaction_id: 'flaky-1', type: 'add', user_id: 'kai', balance_type: 'points', amount: 90 });
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
        client.postTransaction({ transaction_id: 'flaky-2', type: 'add', user_id: 'kai', balance_type: 'points', amount: 1 }),
        (error: unknown) => isLedgerClientError(error, 'unavailable') && error.status === 503 && error.retryable,
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
        client.postTransaction({ transaction_id: 'broke-1', type: 'consume', user_id: 'lee', balance_type: 'cash', amount: 5 }),
        (error: unknown) => isLedgerClientError(error, 'insufficient_balance') && error.status === 422 && error.details?.available === 0,
      );
      await assert.rejects(client.getTransaction('never'), (error: unknown) => isLedgerClientError(error, 'not_found'));
      assert.equal(proxy.bodies.length, 2, 'one attempt each');
    } finally {
      await proxy.close();
    }
  });

  test('an unreachable ledger is a retryable network error after every attempt', async () => {
    const client = new LedgerClient({ baseUrl: 'http://127.0.0.1:1', backoffBaseMs: 1, attemptsMax: 2 });
    await assert.rejects(client.listBalances('x'), (error: unknown) => isLedgerClientError(error, 'unavailable') && error.retryable && error.details?.transport === 'ECONNREFUSED');
  });
});
