// Goal: the bus HTTP API publishes, reports and works dead letters as the contract says, and refuses bad input with a 400 naming the field while storing nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTestDatabase, type TestDatabase } from '../../../../test/support/database.ts';
import { systemClock } from '../../../platform/clock.ts';
import { createHttpServer } from '../../../platform/http/server.ts';
import { createLogger } from '../../../platform/logger.ts';
import type { EventBus } from '../../../contracts/bus/event-bus.ts';
import { EVENT_BYTES_MAX } from '../../../contracts/events/limits.ts';
import { PostgresEventBus } from '../adapters/postgres/postgres-event-bus.ts';
import { waitFor } from '../testing/conformance.ts';
import { registerBusRoutes } from './routes.ts';

const event = (id: string, extra: Record<string, unknown> = {}) => ({
  specversion: '1.0',
  id,
  source: 'https://partner.example/rewards',
  type: 'koban.reward.earned',
  subject: 'user-7',
  data: { points: 30 },
  ...extra,
});

describe('bus HTTP API', () => {
  let database: TestDatabase;
  let bus: EventBus;
  let app: FastifyInstance;

  before(async () => {
    database = await createTestDatabase('bus_http');
    const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
    bus = await PostgresEventBus.open({ url: database.url, poolSize: 4, logger, clock: systemClock, idlePollMs: 50 });
    await bus.declare({
      topics: ['rewards', 'payments'],
      subscriptions: [
        { name: 'reward-points', topic: 'rewards' },
        { name: 'fragile', topic: 'payments', maxDeliveries: 1, retryBackoffInitialMs: 10, retryBackoffMaxMs: 20 },
      ],
    });
    app = await createHttpServer({ logger, bodyLimitBytes: 16 * 1024, title: 'test', version: '0', description: 'test' });
    registerBusRoutes(app, bus);
    await app.ready();
  });

  after(async () => {
    await app?.close();
    await bus?.close();
    await database?.drop();
  });

  const publish = (payload: unknown, options: { topic?: string; contentType?: string; raw?: string } = {}) =>
    app.inject({
      method: 'POST',
      url: `/v1/topics/${options.topic ?? 'rewards'}/events`,
      headers: { 'content-type': options.contentType ?? 'application/json' },
      payload: options.raw ?? JSON.stringify(payload),
    });

  const depthOf = async (name: string) => {
    const response = await app.inject({ method: 'GET', url: '/v1/subscriptions' });
    return (response.json().data as { name: string; depth: number }[]).find((entry) => entry.name === name)?.depth;
  };

  test('publish answers 202 with the id; an identical repeat is accepted once, a different one is 409 naming the fields', async () => {
    const first = await publish(event('partner-1'));
    assert.equal(first.statusCode, 202);
    assert.deepEqual(first.json(), { id: 'partner-1', duplicate: false });
    // The same event, its keys in another order and laid out with whitespace: a duplicate.
    const again = await publish(undefined, { raw: '{ "data" : { "points" : 30 },\n  "subject": "user-7", "type": "koban.reward.earned",\n  "source": "https://partner.example/rewards", "id": "partner-1", "specversion": "1.0" }' });
    assert.equal(again.statusCode, 202, again.body);
    assert.deepEqual(again.json(), { id: 'partner-1', duplicate: true });
    const different = await publish(event('partner-1', { data: { points: 999 }, subject: 'user-8' }));
    assert.equal(different.statusCode, 409, different.body);
    assert.deepEqual(different.json().error, {
      code: 'idempotency_conflict',
      message: 'Event partner-1 was already published on topic rewards with different data, subject',
      retryable: false,
      details: { topic: 'rewards', id: 'partner-1', fields: ['data', 'subject'] },
    });
    const structured = await publish(event('partner-2'), { contentType: 'application/cloudevents+json' });
    assert.equal(structured.statusCode, 202, structured.body);
    assert.equal(await depthOf('reward-points'), 2, 'partner-1 once, partner-2 once');
  });

  test('text PostgreSQL cannot store is 400 naming the field, as JSON escapes or raw, and nothing is stored', async () => {
    const before = await depthOf('reward-points');
    const body = (id: string, extra: string) => `{"specversion":"1.0","id":"${id}","source":"/p","type":"koban.reward.earned"${extra}}`;
    const cases: Array<[string, string]> = [
      [body('nul-1', ',"subject":"user\\u0000"'), 'subject'],
      [body('nul-2', ',"type":"\\u0000"'), 'type'],
      [body('nul-3', ',"campaign":"spring\\u0000"'), 'campaign'],
      [body('nul-4', ',"data":{"note":"a\\u0000b"}'), 'data.note'],
      [body('nul-5', ',"data":{"k\\u0000":1}'), 'data'],
      [body('nul-6', ',"data":[{"deep":{"x":["ok","\\u0000"]}}]'), 'data.0.deep.x.1'],
      [body('sur-1', ',"subject":"\\ud800"'), 'subject'],
      [body('sur-2', ',"tracestate":"a=\\udfff"'), 'tracestate'],
      [body('sur-3', ',"data":{"\\udbff":"x"}'), 'data'],
      [body('sur-4', ',"data":"\\ude00\\ud83d"'), 'data'],
      [body('raw-nul', ',"subject":"user' + '\u0000' + '"'), 'body'],
    ];
    for (const [raw, field] of cases) {
      const response = await publish(undefined, { raw });
      assert.equal(response.statusCode, 400, `${raw}: ${response.body.slice(0, 200)}`);
      assert.equal(response.json().error.code, 'invalid_request');
      assert.equal(response.json().error.details.field, field, `${raw}: ${response.body.slice(0, 300)}`);
    }
    assert.equal(await depthOf('reward-points'), before, 'nothing was stored');
    // A well-formed surrogate pair is text like any other.
    assert.equal((await publish(undefined, { raw: body('pair-1', ',"subject":"\\ud83c\\udf89"') })).statusCode, 202);
  });

  test('an unknown topic is 404 not_found', async () => {
    const response = await publish(event('lost-1'), { topic: 'no-such-topic' });
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'not_found');
  });

  test('bad events are 400 invalid_request naming the field, and nothing is stored', async () => {
    const before = await depthOf('reward-points');
    const cases: { payload?: unknown; raw?: string; contentType?: string; field: string }[] = [
      { raw: '{"specversion": "1.0", ', field: 'body' },
      { raw: '', field: 'body' },
      { payload: [event('arr')], field: 'body' },
      { payload: { ...event('x1'), specversion: 1 }, field: 'specversion' },
      { payload: { ...event('x2'), id: 12 }, field: 'id' },
      { payload: { ...event('x3'), id: 'has spaces' }, field: 'id' },
      { payload: { ...event('x4'), time: 'tomorrow' }, field: 'time' },
      { payload: { ...event('x5'), traceparent: 'nope' }, field: 'traceparent' },
      { payload: { ...event('x6'), Points: '30' }, field: 'Points' },
      { payload: { ...event('x7'), points: 30 }, field: 'points' },
      { payload: (({ source: _s, ...rest }) => rest)(event('x8')), field: 'source' },
      { payload: { ...event('x10'), data: 'x'.repeat(EVENT_BYTES_MAX - 50) }, field: 'data' },
    ];
    for (const entry of cases) {
      const response = await publish(entry.payload, { ...(entry.raw === undefined ? {} : { raw: entry.raw }) });
      assert.equal(response.statusCode, 400, `${entry.field}: ${response.body.slice(0, 200)}`);
      const body = response.json();
      assert.equal(body.error.code, 'invalid_request');
      assert.equal(body.error.details.field, entry.field, response.body.slice(0, 300));
    }
    const tooLarge = await publish({ ...event('x9'), data: 'x'.repeat(EVENT_BYTES_MAX + 2_000) });
    assert.equal(tooLarge.statusCode, 413, tooLarge.body.slice(0, 200));
    assert.equal(tooLarge.json().error.code, 'request_too_large');
    const wrongType = await publish(event('x11'), { contentType: 'text/plain' });
    assert.equal(wrongType.statusCode, 415);
    assert.equal(await depthOf('reward-points'), before, 'nothing was stored');
  });

  test('GET /v1/subscriptions lists every subscription with its figures', async () => {
    const response = await app.inject({ method: 'GET', url: '/v1/subscriptions' });
    assert.equal(response.statusCode, 200);
    const data = response.json().data as Record<string, unknown>[];
    assert.deepEqual(data.map((entry) => entry.name), ['fragile', 'reward-points']);
    assert.deepEqual(Object.keys(data[1]!).sort(), ['dead_letters', 'depth', 'filter', 'in_flight', 'name', 'oldest_age_ms', 'topic']);
    assert.equal(data[1]!.topic, 'rewards');
    assert.equal(data[1]!.filter, null);
  });

  test('dead letters: list with paging, redrive chosen ids or all, discard', async () => {
    let healthy = false;
    const handled: string[] = [];
    const consumer = await bus.consume('fragile', async (delivery) => {
      if (!healthy) throw new Error('card network timeout');
      handled.push(delivery.event.id);
    });
    for (const id of ['dl-1', 'dl-2', 'dl-3']) assert.equal((await publish(event(id), { topic: 'payments' })).statusCode, 202);
    await waitFor(async () => (await bus.deadLetters('fragile', { limit: 10 })).data.length === 3);

    const page1 = await app.inject({ method: 'GET', url: '/v1/subscriptions/fragile/dead-letters?limit=2' });
    assert.equal(page1.statusCode, 200);
    const body1 = page1.json();
    assert.deepEqual(body1.data.map((letter: { id: string }) => letter.id), ['dl-1', 'dl-2']);
    assert.equal(body1.data[0].attempts, 1);
    assert.match(body1.data[0].last_error, /card network timeout/);
    assert.equal(body1.data[0].event.id, 'dl-1');
    assert.ok(Date.parse(body1.data[0].dead_lettered_at));
    assert.equal(typeof body1.next_cursor, 'string');
    const page2 = await app.inject({ method: 'GET', url: `/v1/subscriptions/fragile/dead-letters?limit=2&cursor=${body1.next_cursor}` });
    assert.deepEqual(page2.json().data.map((letter: { id: string }) => letter.id), ['dl-3']);
    assert.equal(page2.json().next_cursor, null);

    for (const [url, field] of [
      ['/v1/subscriptions/fragile/dead-letters?limit=0', 'limit'],
      ['/v1/subscriptions/fragile/dead-letters?limit=ten', 'limit'],
      ['/v1/subscriptions/fragile/dead-letters?cursor=bogus', 'cursor'],
      ['/v1/subscriptions/fragile/dead-letters?colour=red', 'colour'],
    ] as const) {
      const response = await app.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 400, url);
      assert.equal(response.json().error.details.field, field, url);
    }
    assert.equal((await app.inject({ method: 'GET', url: '/v1/subscriptions/nobody/dead-letters' })).statusCode, 404);

    const redrive = (payload: unknown, name = 'fragile') =>
      app.inject({ method: 'POST', url: `/v1/subscriptions/${name}/dead-letters/redrive`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
    for (const [payload, field] of [
      [{ ids: [] }, 'ids'],
      [{ ids: 'dl-1' }, 'ids'],
      [{ ids: [1] }, 'ids.0'],
      [{ ids: ['dl-1'], all: true }, 'all'],
      // JSON null is a body, and not an object: not the absent body that means "all".
      [null, 'body'],
    ] as const) {
      const response = await redrive(payload);
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
      assert.equal(response.json().error.details.field, field, response.body);
    }
    assert.equal((await redrive({}, 'nobody')).statusCode, 404);
    assert.equal((await bus.deadLetters('fragile', { limit: 10 })).data.length, 3, 'bad redrives changed nothing');

    const discard = await app.inject({ method: 'POST', url: '/v1/subscriptions/fragile/dead-letters/dl-3/discard' });
    assert.equal(discard.statusCode, 200);
    assert.equal(discard.json().id, 'dl-3');
    assert.ok(discard.json().discarded_at);
    assert.equal((await app.inject({ method: 'POST', url: '/v1/subscriptions/fragile/dead-letters/dl-404/discard' })).statusCode, 404);
    const discarded = await app.inject({ method: 'GET', url: '/v1/subscriptions/fragile/dead-letters?state=discarded' });
    assert.deepEqual(discarded.json().data.map((letter: { id: string }) => letter.id), ['dl-3']);

    healthy = true;
    const chosen = await redrive({ ids: ['dl-2'] });
    assert.equal(chosen.statusCode, 200);
    assert.deepEqual(chosen.json(), { redriven: 1 });
    await waitFor(() => handled.includes('dl-2'));
    const rest = await app.inject({ method: 'POST', url: '/v1/subscriptions/fragile/dead-letters/redrive' });
    assert.equal(rest.statusCode, 200, rest.body);
    assert.deepEqual(rest.json(), { redriven: 1 });
    await waitFor(() => handled.includes('dl-1'));
    assert.deepEqual(handled.sort(), ['dl-1', 'dl-2'], 'the discarded one stayed out');
    await consumer.stop();
  });
});
