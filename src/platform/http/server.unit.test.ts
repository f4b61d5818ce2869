// Goal: the HTTP shell's own answers are in the catalogue shape: 503 while closing (the request in flight still completes), what Node's parser refuses (408, 431, not HTTP), and 405 for every other method of a known path.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { InternalErrorException, InvalidParameterException, ThrottledException } from '@aws-sdk/client-sns';
import { SQSServiceException } from '@aws-sdk/client-sqs';
import { jserrors } from '@nats-io/jetstream/internal';
import { ERROR_CATALOGUE } from '../errors.ts';
import { RouteTable } from './route-table.ts';
import { createHttpServer } from './server.ts';

async function newServer(): Promise<FastifyInstance> {
  return createHttpServer({ logger: pino({ level: 'silent' }), bodyLimitBytes: 1024, title: 't', version: '0', description: 't' });
}

/** Collects what a handler writes to a socket that is not one. */
class CapturingSocket extends Duplex {
  written = '';
  readonly errors: Error[] = [];
  constructor() {
    super();
    // The handler destroys the socket with the parser's error, as Node's own handler does.
    this.on('error', (error) => this.errors.push(error));
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.written += chunk.toString();
    done();
  }
  override _read(): void {}
}

function catalogueBody(raw: string): { status: number; headers: string; error: { code: string; message: string; retryable: boolean; details?: Record<string, unknown> } } {
  const [head = '', body = ''] = raw.split('\r\n\r\n');
  return { status: Number(head.split(' ')[1]), headers: head, error: JSON.parse(body).error };
}

describe("Node's parser errors", () => {
  let app: FastifyInstance;
  before(async () => {
    app = await newServer();
    await app.ready();
  });
  after(() => app.close());

  for (const [code, expected] of [
    ['ERR_HTTP_REQUEST_TIMEOUT', 'request_timeout'],
    ['HPE_HEADER_OVERFLOW', 'headers_too_large'],
    ['HPE_INVALID_METHOD', 'invalid_request'],
  ] as const) {
    test(`${code} → ${ERROR_CATALOGUE[expected].status} ${expected}, and the connection is closed`, async () => {
      const socket = new CapturingSocket();
      app.server.emit('clientError', Object.assign(new Error(code), { code }), socket);
      const answer = catalogueBody(socket.written);
      assert.equal(answer.status, ERROR_CATALOGUE[expected].status);
      assert.equal(answer.error.code, expected);
      assert.equal(answer.error.retryable, false);
      assert.match(answer.headers, /\r\nConnection: close/);
      assert.match(answer.headers, /\r\nContent-Type: application\/json/);
      assert.ok(socket.destroyed);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(socket.errors.map((error) => (error as Error & { code?: string }).code), [code]);
    });
  }

  test('a connection the client reset gets nothing', () => {
    const socket = new CapturingSocket();
    app.server.emit('clientError', Object.assign(new Error('reset'), { code: 'ECONNRESET' }), socket);
    assert.equal(socket.written, '');
  });
});

describe('405 for a known path with another method', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await newServer();
    app.get('/things/:id', async () => ({}));
    app.post('/things/:id', async () => ({}));
    app.post('/other', async () => ({}));
    await app.ready();
  });
  after(() => app.close());

  test('every other method, HEAD and OPTIONS included, is told the methods the path takes', async () => {
    for (const method of ['PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const) {
      const response = await app.inject({ method, url: '/things/a%20b?x=1' });
      assert.equal(response.statusCode, 405, `${method}: ${response.body}`);
      assert.equal(response.headers.allow, 'GET, HEAD, POST');
      assert.deepEqual(response.json().error, {
        code: 'method_not_allowed',
        message: `${method} is not accepted here; use GET, HEAD, POST`,
        retryable: false,
        details: { allow: ['GET', 'HEAD', 'POST'] },
      });
    }
    assert.equal((await app.inject({ method: 'GET', url: '/other' })).headers.allow, 'POST');
  });

  test('a path no route takes is still 404', async () => {
    for (const url of ['/things', '/things/a/b', '/things/', '/nothing']) {
      const response = await app.inject({ method: 'DELETE', url });
      assert.equal(response.statusCode, 404, `${url}: ${response.body}`);
      assert.equal(response.json().error.code, 'not_found');
    }
  });
});

describe('path and query numbers', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await newServer();
    app.get(
      '/pages/:page',
      {
        schema: {
          params: { type: 'object', properties: { page: { type: 'integer', minimum: 1, maximum: 1000 } } },
          querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 } } },
        },
      },
      async (request) => ({ params: request.params, query: request.query }),
    );
    await app.ready();
  });
  after(() => app.close());

  // Ajv coerces these to ±Infinity and then skips its bounds, which assume a finite number.
  for (const [url, field, where] of [
    ['/pages/1?limit=1e400', 'limit', 'query'],
    ['/pages/1?limit=Infinity', 'limit', 'query'],
    ['/pages/1?limit=-Infinity', 'limit', 'query'],
    ['/pages/1e400?limit=5', 'page', 'path'],
  ] as const) {
    test(`${url}: a number past double range is 400 naming ${field}, not passed on as Infinity`, async () => {
      const response = await app.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 400, response.body);
      const { error } = response.json();
      assert.equal(error.code, 'invalid_request');
      assert.equal(error.details.field, field);
      assert.equal(error.details.in, where);
    });
  }

  test('finite numbers are still coerced and bounded', async () => {
    assert.deepEqual((await app.inject({ method: 'GET', url: '/pages/7?limit=1e1' })).json(), { params: { page: 7 }, query: { limit: 10 } });
    assert.deepEqual((await app.inject({ method: 'GET', url: '/pages/7' })).json(), { params: { page: 7 }, query: { limit: 20 } });
    assert.equal((await app.inject({ method: 'GET', url: '/pages/7?limit=1e3' })).statusCode, 400);
  });
});

describe('a broker that fails', () => {
  let app: FastifyInstance;
  let thrown: unknown;
  before(async () => {
    app = await newServer();
    app.post('/publish', async () => {
      throw thrown;
    });
    await app.ready();
  });
  after(() => app.close());

  // The brokers' own error classes, as their clients throw them: each means "try again later", never a bug of ours.
  for (const [label, error] of [
    ['NATS: JetStream answers no one (a server recovering its streams)', () => new jserrors.JetStreamNotEnabled('jetstream is not enabled')],
    ['SNS: the service failed (5xx)', () => new InternalErrorException({ message: 'database is locked', $metadata: { httpStatusCode: 500 } })],
    ['SQS: the service failed (5xx)', () => new SQSServiceException({ name: 'InternalFailure', $fault: 'server', message: 'database is locked', $metadata: { httpStatusCode: 500 } })],
    ['SNS: throttled', () => new ThrottledException({ message: 'Rate exceeded', $metadata: { httpStatusCode: 400 } })],
  ] as const) {
    test(`${label} → 503 unavailable, retryable, with Retry-After`, async () => {
      thrown = error();
      const response = await app.inject({ method: 'POST', url: '/publish' });
      assert.equal(response.statusCode, 503, response.body);
      assert.equal(response.json().error.code, 'unavailable');
      assert.match(response.json().error.message, /broker/);
      assert.equal(response.json().error.retryable, true);
      assert.ok(response.headers['retry-after']);
    });
  }

  test('a broker refusing what we sent (a client fault) is still a 500: a bug of ours, not a reason to resend', async () => {
    thrown = new InvalidParameterException({ message: 'Invalid parameter: TopicArn', $metadata: { httpStatusCode: 400 } });
    const response = await app.inject({ method: 'POST', url: '/publish' });
    assert.equal(response.statusCode, 500, response.body);
    assert.equal(response.json().error.code, 'internal');
  });
});

describe('closing', () => {
  test('a request that arrives while the server closes is 503 unavailable, retryable, in the catalogue shape; the one in flight completes', async () => {
    const app = await newServer();
    let entered!: () => void;
    const inFlight = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    app.get('/slow', async () => {
      entered();
      await released;
      return { done: true };
    });
    app.get('/fast', async () => ({ fast: true }));
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    const port = Number(url.port);

    const exchange = (socket: net.Socket) =>
      new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (chunk) => (text += chunk.toString()));
        socket.on('close', () => resolve(text));
      });
    const slow = net.connect(port, '127.0.0.1');
    const slowAnswer = exchange(slow);
    slow.write('GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
    await inFlight;
    // A second connection with its request under way (so not idle, not closed with the idle ones) when close() begins.
    const late = net.connect(port, '127.0.0.1');
    const lateAnswer = exchange(late);
    await new Promise<void>((resolve) => late.write('GET /fast HTTP/1.1\r\nHost: t\r\n', () => resolve()));

    const closed = app.close();
    try {
      // close() stops listening once its preClose hooks have run; from then on the shell refuses.
      while (app.server.listening) await new Promise((resolve) => setImmediate(resolve));
      late.end('Connection: close\r\n\r\n');
      const refused = catalogueBody(await lateAnswer);
      assert.equal(refused.status, 503);
      assert.deepEqual(refused.error, { code: 'unavailable', message: 'The server is shutting down; retry shortly', retryable: true });
      assert.match(refused.headers, /\r\nretry-after: 1\r\n/i);
    } finally {
      release();
    }
    assert.match(await slowAnswer, /^HTTP\/1.1 200[\s\S]*\{"done":true\}$/);
    await closed;
  });
});

describe('RouteTable', () => {
  const table = new RouteTable();
  table.add('GET', '/v1/users/:user_id/balances/:balance_type');
  table.add(['GET', 'HEAD'], '/v1/users/:user_id/balances');
  table.add('POST', '/v1/users/:user_id/balances');
  table.add('GET', '/docs/*');

  test('methods by path: parameters match any non-empty segment, a query is ignored, wildcards take the rest', () => {
    assert.deepEqual(table.methodsFor('/v1/users/u-1/balances?x=1'), ['GET', 'HEAD', 'POST']);
    assert.deepEqual(table.methodsFor('/v1/users/%00/balances/points'), ['GET']);
    assert.deepEqual(table.methodsFor('/docs/static/index.html'), ['GET']);
    assert.deepEqual(table.methodsFor('/v1/users//balances'), []);
    assert.deepEqual(table.methodsFor('/v1/users/u-1/balances/points/extra'), []);
    assert.deepEqual(table.methodsFor('/v1/%75sers/u-1/balances'), ['GET', 'HEAD', 'POST'], 'a static segment is compared decoded');
  });

  test('parameters of the route a method and path match, as sent', () => {
    assert.deepEqual(table.parametersOf('get', '/v1/users/a%ZZ/balances/points'), { user_id: 'a%ZZ', balance_type: 'points' });
    assert.equal(table.parametersOf('DELETE', '/v1/users/u/balances'), undefined);
  });
});
