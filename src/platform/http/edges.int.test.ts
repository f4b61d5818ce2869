// Goal: every route of the composed app (ledger, bus, card routes, accounts, points, notifications) answers bad input at the HTTP edge — malformed JSON, repeated and prototype keys, a wrong media type, an oversized body, a 100 KB query string, huge headers, an unknown route, a wrong method, NUL, lone surrogates and over-long values in path parameters — with a catalogue error (bounded message, the field named) that changes nothing in the database.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import { databaseFingerprint as fingerprintOf } from '../../../test/support/fingerprint.ts';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { ERROR_CATALOGUE, type ErrorCode } from '../errors.ts';

/** No message may be longer: a message names the field, it does not repeat the input. */
const MESSAGE_LENGTH_MAX = 300;
/** A run of input this long must never come back in a message. */
const ECHO_PROBE_LENGTH = 150;

type Route = {
  method: 'GET' | 'POST' | 'PUT';
  /** Fastify's template, `:name` for each path parameter. */
  template: string;
  /** A valid value of each path parameter. */
  params: Record<string, string>;
  /** A valid body, for the routes that take one. */
  body?: Record<string, unknown>;
  /** Query parameters, each with a valid value. */
  query?: Record<string, string>;
};

const EDGE_MERCHANT = { id: 'm-1', name: 'Shop', category_code: '5411' };

const ROUTES: Route[] = [
  {
    method: 'POST',
    template: '/v1/transactions',
    params: {},
    body: { transaction_id: 'edge-1', type: 'add', user_id: 'user-1', balance_type: 'points', amount: 5 },
  },
  { method: 'POST', template: '/v1/transactions/:transaction_id/post', params: { transaction_id: 'hold-1' }, body: { balance_type: 'points' } },
  { method: 'POST', template: '/v1/transactions/:transaction_id/void', params: { transaction_id: 'hold-1' }, body: { balance_type: 'points' } },
  { method: 'GET', template: '/v1/transactions/:transaction_id', params: { transaction_id: 'tx-1' } },
  { method: 'GET', template: '/v1/users/:user_id/balances', params: { user_id: 'user-1' } },
  { method: 'GET', template: '/v1/users/:user_id/balances/:balance_type', params: { user_id: 'user-1', balance_type: 'points' } },
  { method: 'GET', template: '/v1/users/:user_id/transactions', params: { user_id: 'user-1' }, query: { balance_type: 'points', limit: '10', cursor: 'abc' } },
  { method: 'GET', template: '/v1/audit', params: {} },
  { method: 'POST', template: '/v1/topics/:topic/events', params: { topic: 'accounts' }, body: { specversion: '1.0', id: 'edge-ev-1', source: '/tests', type: 'koban.edge' } },
  { method: 'GET', template: '/v1/subscriptions', params: {} },
  { method: 'GET', template: '/v1/subscriptions/:name/dead-letters', params: { name: 'nobody' }, query: { limit: '10', cursor: 'abc', state: 'dead' } },
  { method: 'POST', template: '/v1/subscriptions/:name/dead-letters/redrive', params: { name: 'nobody' }, body: { ids: ['ev-1'] } },
  { method: 'POST', template: '/v1/subscriptions/:name/dead-letters/:id/discard', params: { name: 'nobody', id: 'ev-1' } },
  { method: 'POST', template: '/v1/events/batch', params: {}, body: { messages: [{ topic: 'accounts', event: { specversion: '1.0', id: 'edge-ev-2', source: '/tests', type: 'koban.edge' } }] } },
  { method: 'POST', template: '/v1/visa/authorizations', params: {}, body: { authorization_id: 'edge-a1', user_id: 'user-1', amount: 100, currency: 'JPY', merchant: EDGE_MERCHANT } },
  { method: 'POST', template: '/v1/visa/advices', params: {}, body: { authorization_id: 'edge-a2', user_id: 'user-1', amount: 100, currency: 'JPY', merchant: EDGE_MERCHANT } },
  {
    method: 'POST',
    template: '/v1/visa/sales-drafts',
    params: {},
    body: { sales_draft_id: 'edge-s1', authorization_id: 'edge-a1', user_id: 'user-1', amount: 100, currency: 'JPY', merchant: EDGE_MERCHANT },
  },
  { method: 'POST', template: '/v1/visa/reversals', params: {}, body: { reversal_id: 'edge-r1', authorization_id: 'edge-a1', user_id: 'user-1' } },
  { method: 'POST', template: '/v1/visa/refunds', params: {}, body: { refund_id: 'edge-f1', sales_draft_id: 'edge-s1', user_id: 'user-1', amount: 100 } },
  { method: 'GET', template: '/v1/payments/:payment_id', params: { payment_id: 'visa:edge-a1' } },
  {
    method: 'POST',
    template: '/v1/quicpay/messages',
    params: {},
    body: { message_type: 'authorization', transaction_number: 'edge-q1', member_id: 'user-1', amount: 100, merchant: EDGE_MERCHANT },
  },
  { method: 'POST', template: '/v1/users', params: {}, body: { user_id: 'edge-user' } },
  { method: 'GET', template: '/v1/users/:user_id', params: { user_id: 'edge-user' } },
  // `azU` is a cursor the notifications API could return (the keyset cursor of row 5).
  { method: 'GET', template: '/v1/users/:user_id/notices', params: { user_id: 'user-1' }, query: { limit: '10', cursor: 'azU' } },
  { method: 'GET', template: '/v1/users/:user_id/notification-settings', params: { user_id: 'user-1' } },
  { method: 'GET', template: '/v1/users/:user_id/points', params: { user_id: 'user-1' } },
  { method: 'GET', template: '/v1/users/:user_id/point-grants', params: { user_id: 'user-1' }, query: { limit: '10' } },
  { method: 'PUT', template: '/v1/users/:user_id/notification-settings', params: { user_id: 'user-1' }, body: { language: 'en' } },
  { method: 'GET', template: '/v1/notifications/dead-letters', params: {}, query: { limit: '10', cursor: 'azU' } },
  { method: 'POST', template: '/v1/notifications/dead-letters/redrive', params: {}, body: { ids: ['0b5f7c1e-8d2a-4f4e-9c61-3a7d2f1e9b40'] } },
];

function urlOf(route: Route, params: Record<string, string> = route.params, query = ''): string {
  return route.template.replace(/:([a-z_]+)/g, (_match, name: string) => params[name]!) + query;
}
const label = (route: Route) => `${route.method} ${route.template}`;

let koban: TestKoban;
let port: number;
let fingerprintBefore: string;

before(async () => {
  koban = await startTestKoban({ label: 'http_edges' });
  const address = new URL(await koban.app.listen({ host: '127.0.0.1', port: 0 }));
  port = Number(address.port);
  fingerprintBefore = await databaseFingerprint();
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

function databaseFingerprint(): Promise<string> {
  return fingerprintOf(koban.database.url);
}

const checkShape = new Ajv({ strict: true }).compile({
  type: 'object',
  additionalProperties: false,
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      additionalProperties: false,
      required: ['code', 'message', 'retryable'],
      properties: {
        code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE) },
        message: { type: 'string', minLength: 1, maxLength: MESSAGE_LENGTH_MAX },
        retryable: { type: 'boolean' },
        details: { type: 'object' },
      },
    },
  },
});

type Answer = { status: number; headers: Record<string, string | string[] | number | undefined>; body: string };
type Expected = { code: ErrorCode; field?: string; in?: string; reason?: string };

/** The answer is the catalogue's shape, status and retryable flag for `expected.code`, names the field, and echoes no long run of `sent`. */
function assertCatalogued(answer: Answer, expected: Expected, sent = ''): Record<string, unknown> {
  const entry = ERROR_CATALOGUE[expected.code];
  assert.equal(answer.status, entry.status, answer.body.slice(0, 500));
  assert.match(String(answer.headers['content-type']), /^application\/json/);
  const body: unknown = JSON.parse(answer.body);
  assert.ok(checkShape(body), `catalogue shape: ${JSON.stringify(checkShape.errors)} in ${answer.body.slice(0, 500)}`);
  const error = (body as { error: { code: string; message: string; retryable: boolean; details?: Record<string, unknown> } }).error;
  assert.equal(error.code, expected.code);
  assert.equal(error.retryable, entry.retryable);
  const details = error.details ?? {};
  if (expected.field !== undefined) assert.equal(details.field, expected.field, answer.body);
  if (expected.in !== undefined) assert.equal(details.in, expected.in, answer.body);
  if (expected.reason !== undefined) assert.equal(details.reason, expected.reason, answer.body);
  for (let start = 0; start + ECHO_PROBE_LENGTH <= sent.length; start += ECHO_PROBE_LENGTH) {
    assert.ok(!answer.body.includes(sent.slice(start, start + ECHO_PROBE_LENGTH)), 'the answer repeats a long run of the input');
  }
  return details;
}

async function inject(options: { method: string; url: string; headers?: Record<string, string>; payload?: string }): Promise<Answer> {
  const response = await koban.app.inject(options);
  return { status: response.statusCode, headers: response.headers, body: response.body };
}

/** One request over a real socket, as written (Node's HTTP parser refuses some before Fastify sees them); the answer as the server wrote it. */
function rawRequest(head: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    // The server may close while the request is still being written: what it answered is what counts.
    socket.on('error', (error) => (chunks.length > 0 ? undefined : reject(error)));
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [headText = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = headText.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    });
    socket.end(head);
  });
}

/** The route's body (or, for a route that takes none, a small object) as text, with `prefix` written first inside it: to repeat a key, or add one. */
function bodyWith(route: Route, prefix: string): string {
  return `{${prefix},${JSON.stringify(route.body ?? { anything: 1 }).slice(1)}`;
}

test('the table covers every route the app serves under /v1', async () => {
  const document = (await koban.app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>> };
  const served = Object.entries(document.paths)
    .filter(([path]) => path.startsWith('/v1/'))
    .flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path.replace(/\{([a-z_]+)\}/g, ':$1')}`));
  assert.deepEqual(ROUTES.map(label).sort(), served.sort());
});

describe('every route refuses bad bodies in the catalogue shape', () => {
  for (const route of ROUTES.filter((candidate) => candidate.method !== 'GET')) {
    const url = urlOf(route);
    const json = { 'content-type': 'application/json' };
    const firstKey = Object.keys(route.body ?? {})[0] ?? 'anything';

    test(`${label(route)}: malformed JSON → 400 naming the body`, async () => {
      const payload = `{"a": "${'x'.repeat(400)}", `;
      assertCatalogued(await inject({ method: route.method, url, headers: json, payload }), { code: 'invalid_request', field: 'body', in: 'body', reason: 'invalid_json' }, payload);
    });

    test(`${label(route)}: a repeated key → 400 naming it`, async () => {
      const payload = bodyWith(route, `${JSON.stringify(firstKey)}:7`);
      assertCatalogued(await inject({ method: route.method, url, headers: json, payload }), { code: 'invalid_request', field: firstKey, in: 'body', reason: 'duplicate_key' });
    });

    test(`${label(route)}: a repeated key spelled with an escape, in a nested object → 400 naming it`, async () => {
      const payload = bodyWith(route, '"metadata":{"note":1,"\\u006eote":2}');
      assertCatalogued(await inject({ method: route.method, url, headers: json, payload }), { code: 'invalid_request', field: 'metadata.note', reason: 'duplicate_key' });
    });

    test(`${label(route)}: __proto__ → 400 saying it is valid JSON, refused`, async () => {
      const answer = await inject({ method: route.method, url, headers: json, payload: bodyWith(route, '"__proto__":{"admin":true}') });
      assertCatalogued(answer, { code: 'invalid_request', field: '__proto__', in: 'body', reason: 'forbidden_key' });
      const { message } = JSON.parse(answer.body).error;
      assert.doesNotMatch(message, /not valid JSON/);
      assert.match(message, /valid JSON but refused/);
    });

    test(`${label(route)}: a body that is not JSON (text/plain) → 415`, async () => {
      assertCatalogued(await inject({ method: route.method, url, headers: { 'content-type': 'text/plain' }, payload: JSON.stringify(route.body ?? {}) }), {
        code: 'unsupported_media_type',
        field: 'content-type',
        in: 'header',
      });
    });

    test(`${label(route)}: a 1 MiB body → 413 with the limit`, async () => {
      const payload = JSON.stringify({ ...route.body, padding: 'p'.repeat(1024 * 1024) });
      const details = assertCatalogued(await inject({ method: route.method, url, headers: json, payload }), { code: 'request_too_large', field: 'body' }, payload);
      assert.ok(typeof details.limit_bytes === 'number' && details.limit_bytes < 1024 * 1024, `limit named: ${JSON.stringify(details)}`);
    });
  }
});

describe('every route refuses bad path parameters, naming them, before anything is looked up', () => {
  const bad: Array<[string, string]> = [
    ['NUL', '%00'],
    ['a NUL inside a valid value', 'ok%00ok'],
    ['a lone surrogate (not UTF-8)', '%ED%A0%80'],
    ['a truncated percent-escape', 'ab%E0%A4%A'],
    ['200 characters', 'a'.repeat(200)],
    ['5000 characters (past the router)', 'a'.repeat(5000)],
  ];
  for (const route of ROUTES) {
    for (const name of Object.keys(route.params)) {
      for (const [what, value] of bad) {
        test(`${label(route)}: ${name} with ${what} → 400 naming ${name} in the path`, async () => {
          const url = urlOf(route, { ...route.params, [name]: value });
          const payload = route.body ? JSON.stringify(route.body) : undefined;
          const answer = await inject({ method: route.method, url, ...(payload ? { headers: { 'content-type': 'application/json' }, payload } : {}) });
          assertCatalogued(answer, { code: 'invalid_request', field: name, in: 'path' }, url);
        });
      }
    }
  }
});

describe('every route refuses NUL in its query parameters, naming them', () => {
  for (const route of ROUTES.filter((candidate) => candidate.query)) {
    for (const name of Object.keys(route.query!)) {
      test(`${label(route)}: ?${name}=%00 → 400 naming ${name} in the query`, async () => {
        assertCatalogued(await inject({ method: route.method, url: urlOf(route, route.params, `?${name}=%00`) }), { code: 'invalid_request', field: name, in: 'query' });
      });
    }
  }
});

describe('the HTTP layer answers in the catalogue shape too', () => {
  for (const route of ROUTES) {
    test(`${label(route)}: other methods → 405 with Allow`, async () => {
      // Every method some route takes on this path (a GET brings HEAD).
      const methods = ROUTES.filter((other) => other.template === route.template).map((other) => other.method);
      const expected = [...new Set(methods.flatMap((method) => (method === 'GET' ? ['GET', 'HEAD'] : [method])))].sort();
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((candidate) => !expected.includes(candidate))) {
        const answer = await inject({ method, url: urlOf(route) });
        const details = assertCatalogued(answer, { code: 'method_not_allowed' });
        assert.deepEqual(details.allow, expected);
        assert.equal(answer.headers.allow, expected.join(', '));
      }
    });

    test(`${label(route)}: a 100 KB query string → 431 (over a real socket)`, async () => {
      const query = `?padding=${'q'.repeat(100 * 1024)}`;
      const answer = await rawRequest(`${route.method} ${urlOf(route, route.params, query)} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n`);
      const details = assertCatalogued(answer, { code: 'headers_too_large' }, query);
      assert.equal(typeof details.limit_bytes, 'number');
    });

    test(`${label(route)}: a 64 KB header → 431 (over a real socket)`, async () => {
      const padding = 'h'.repeat(64 * 1024);
      const answer = await rawRequest(`${route.method} ${urlOf(route)} HTTP/1.1\r\nHost: localhost\r\nX-Padding: ${padding}\r\nContent-Length: 0\r\n\r\n`);
      assertCatalogued(answer, { code: 'headers_too_large' }, padding);
    });
  }

  test('unknown routes → 404, the path echoed cut short', async () => {
    for (const [method, url] of [
      ['GET', '/v1/nothing-here'],
      ['POST', '/v1/transactions/tx-1/post/extra'],
      ['GET', `/v1/${'z'.repeat(3000)}`],
      ['DELETE', '/'],
    ] as const) {
      assertCatalogued(await inject({ method, url }), { code: 'not_found' }, url);
    }
  });

  test('a request that is not HTTP → 400 in the catalogue shape (over a real socket)', async () => {
    assertCatalogued(await rawRequest('NOT HTTP AT ALL\r\n\r\n'), { code: 'invalid_request' });
  });
});

describe('nothing was changed by any refused request', () => {
  test('every table of the ledger and the bus is as it was, and the books balance', async () => {
    assert.equal(await databaseFingerprint(), fingerprintBefore);
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test('…and the same routes with valid input are not refused (the tables above refuse for the reason they name)', async () => {
    for (const route of ROUTES) {
      const payload = route.body ? JSON.stringify(route.body) : undefined;
      const answer = await inject({ method: route.method, url: urlOf(route), ...(payload ? { headers: { 'content-type': 'application/json' }, payload } : {}) });
      assert.ok([200, 201, 202, 404, 409].includes(answer.status), `${label(route)}: ${answer.status} ${answer.body.slice(0, 300)}`);
    }
    assert.notEqual(await databaseFingerprint(), fingerprintBefore, 'a valid write does change the database: the fingerprint can tell');
  });
});
