// Goal: the OpenAPI document can generate a client, and every answer Koban gives — successes, replays, each error status — matches the schema, headers and error codes the document declares for that operation.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import pg from 'pg';
import type { Consumer } from '../contracts/bus/event-bus.ts';
import { accountsModule } from '../services/accounts/module.ts';
import { testServerUrl } from '../../test/support/database.ts';
import { startTestKoban, type TestKoban } from '../../test/support/koban.ts';
import type { CloudEvent } from '../contracts/events/envelope.ts';
import { paymentEvent } from '../contracts/events/payments.ts';
import { notificationsModule } from '../services/notifications/module.ts';

type Operation = { operationId?: string; requestBody?: { content: Record<string, { schema: unknown }> }; responses: Record<string, Response> };
type Response = { description: string; headers?: Record<string, unknown>; content?: Record<string, { schema: unknown }> };
type OpenApi = { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, unknown> } };

/** How long a dead letter may take to appear (one failed delivery, no retries). */
const DEAD_LETTER_WAIT_MS = 15_000;
const SUBSCRIPTION = 'openapi-failing';

describe('the OpenAPI document', () => {
  let koban: TestKoban;
  let document: OpenApi;
  let ajv: Ajv2020;
  let consumer: Consumer | undefined;
  const operations = new Map<string, { path: string; method: string; operation: Operation; pattern: RegExp }>();
  const exercised = new Map<string, Set<string>>();

  before(async () => {
    koban = await startTestKoban({ label: 'openapi' });
    const response = await koban.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    document = response.json();
    // OpenAPI 3.1 schemas are JSON Schema 2020-12; the document is registered whole so that its local $refs resolve.
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema(document, 'openapi.json');
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const pattern = new RegExp(`^${path.replace(/\{[^}]+\}/g, '[^/?]+')}(\\?.*)?$`);
        operations.set(operation.operationId ?? `${method} ${path}`, { path, method, operation, pattern });
      }
    }
    await koban.bus.declare({ topics: ['rewards'], subscriptions: [{ name: SUBSCRIPTION, topic: 'rewards', maxDeliveries: 1, filter: { openapi: ['fail'] } }] });
    consumer = await koban.bus.consume(SUBSCRIPTION, async () => {
      throw new Error('this consumer always fails');
    });
  });

  after(async () => {
    await consumer?.stop();
    await koban?.stop();
    await koban?.database.drop();
  });

  /** Sends a request to the operation named, and checks the answer against what the document declares for it. */
  async function call(operationId: string, request: { method: 'GET' | 'POST' | 'PUT'; url: string; payload?: unknown; headers?: Record<string, string> }, expectedStatus: number) {
    const entry = operations.get(operationId);
    assert.ok(entry, `operation ${operationId} is documented`);
    assert.equal(request.method.toLowerCase(), entry.method, `${operationId} is a ${entry.method.toUpperCase()}`);
    assert.match(request.url, entry.pattern, `${request.url} is ${operationId}'s path ${entry.path}`);
    const payload = typeof request.payload === 'string' || request.payload === undefined ? request.payload : JSON.stringify(request.payload);
    const response = await koban.app.inject({
      method: request.method,
      url: request.url,
      ...(payload === undefined ? {} : { payload, headers: { 'content-type': 'application/json', ...request.headers } }),
    });
    const label = `${request.method} ${request.url} → ${response.statusCode} ${response.body}`;
    assert.equal(response.statusCode, expectedStatus, label);
    const declared = entry.operation.responses[String(response.statusCode)];
    assert.ok(declared, `${operationId} documents status ${response.statusCode}: ${label}`);
    const pointer = ['paths', entry.path, entry.method, 'responses', String(response.statusCode), 'content', 'application/json', 'schema']
      .map((part) => part.replaceAll('~', '~0').replaceAll('/', '~1'))
      .join('/');
    const validate = ajv.getSchema(`openapi.json#/${pointer}`);
    assert.ok(validate, `${operationId} ${response.statusCode} has a JSON schema`);
    assert.ok(validate(response.json()), `${label}\ndoes not match its schema: ${ajv.errorsText(validate.errors)}`);
    for (const header of Object.keys(declared.headers ?? {})) {
      // Idempotent-Replayed is declared on the 200 of a write, which only a replay answers.
      assert.ok(response.headers[header.toLowerCase()] !== undefined, `${label}\nlacks the documented header ${header}`);
    }
    exercised.set(operationId, (exercised.get(operationId) ?? new Set()).add(String(response.statusCode)));
    return response;
  }

  test('names every operation, request and response, and describes every response', () => {
    const ids = [...operations.values()].map(({ operation }) => operation.operationId);
    assert.ok(ids.every((id) => typeof id === 'string'), `every operation has an operationId: ${JSON.stringify([...operations.keys()])}`);
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
    for (const [id, { operation }] of operations) {
      for (const [type, media] of Object.entries(operation.requestBody?.content ?? {})) {
        assert.match(JSON.stringify(media.schema), /^\{"\$ref":"#\/components\/schemas\/\w+"\}$/, `${id}'s ${type} body is a named schema`);
      }
      for (const [status, response] of Object.entries(operation.responses)) {
        assert.notEqual(response.description, 'Default Response', `${id} ${status} is described`);
        const schema = JSON.stringify(response.content?.['application/json']?.schema);
        assert.match(schema, /"\$ref":"#\/components\/schemas\/\w+"/, `${id} ${status}'s body is a named schema: ${schema}`);
        if (Number(status) >= 400) {
          const codes = (response.content!['application/json']!.schema as { allOf: Array<{ properties?: { error: { properties: { code: { enum: string[] } } } } }> }).allOf[1]!.properties!.error.properties.code.enum;
          assert.ok(codes.length > 0 && codes.every((code) => response.description.includes(`\`${code}\``)), `${id} ${status} lists its codes ${codes} in its description`);
        }
        if (status === '503' || status === '504') assert.ok(response.headers?.['Retry-After'], `${id} ${status} documents Retry-After`);
      }
    }
    const publish = operations.get('publishEvent')!.operation;
    assert.deepEqual(Object.keys(publish.requestBody!.content), ['application/json', 'application/cloudevents+json']);
    assert.ok(operations.get('submitTransaction')!.operation.responses['200']!.headers?.['Idempotent-Replayed'], 'a replay documents Idempotent-Replayed');
    const error = document.components.schemas.Error as { properties: { error: { properties: { details: { properties: Record<string, unknown> } } } } };
    assert.ok(Object.keys(error.properties.error.properties.details.properties).length > 5, 'details is typed');
  });

  test('the ledger answers as documented', async () => {
    const add = { transaction_id: 'oa-add', type: 'add', user_id: 'oa', balance_type: 'points', amount: 500, description: 'welcome', metadata: { campaign: 'x' } };
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: add }, 201);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: add }, 200);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: { ...add, amount: 5 } }, 409);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: { ...add, transaction_id: 'oa-bad', amount: 2.5 } }, 400);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: 'amount=5', headers: { 'content-type': 'text/plain' } }, 415);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: { transaction_id: 'oa-much', type: 'consume', user_id: 'oa', balance_type: 'points', amount: 10_000 } }, 422);
    const lot = { transaction_id: 'oa-lot', type: 'add', user_id: 'oa', balance_type: 'points', amount: 50, expires_at: '2030-06-30T15:00:00Z' };
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: lot }, 201);
    const consume = { transaction_id: 'oa-use', type: 'consume', user_id: 'oa', balance_type: 'points', amount: 60 };
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: consume }, 201);
    const refund = { transaction_id: 'oa-refund', type: 'refund', refund_of: 'oa-use', user_id: 'oa', balance_type: 'points', amount: 20 };
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: refund }, 201);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: { ...refund, transaction_id: 'oa-refund-2', amount: 100 } }, 422);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: { ...refund, transaction_id: 'oa-refund-3', refund_of: 'nothing' } }, 404);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: { ...refund, transaction_id: 'oa-refund-4', refund_of: 'oa-add' } }, 422);

    const hold = { transaction_id: 'oa-hold', type: 'consume', user_id: 'oa', balance_type: 'points', amount: 100, pending: true, pending_expires_at: '2030-01-01T00:00:00Z' };
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: hold }, 201);
    await call('postHold', { method: 'POST', url: '/v1/transactions/oa-hold/post', payload: { balance_type: 'points', amount: 1000 } }, 422);
    await call('postHold', { method: 'POST', url: '/v1/transactions/oa-hold/post', payload: { balance_type: 'points', amount: 80 } }, 201);
    await call('postHold', { method: 'POST', url: '/v1/transactions/oa-hold/post', payload: { balance_type: 'points', amount: 80 } }, 200);
    await call('postHold', { method: 'POST', url: '/v1/transactions/oa-hold/post', payload: { balance_type: 'points', amount: 70 } }, 409);
    await call('voidHold', { method: 'POST', url: '/v1/transactions/oa-hold/void', payload: { balance_type: 'points' } }, 409);
    await call('postHold', { method: 'POST', url: '/v1/transactions/oa-add/post', payload: { balance_type: 'points' } }, 409);
    await call('postHold', { method: 'POST', url: '/v1/transactions/oa-none/post', payload: { balance_type: 'points' } }, 404);
    await call('postHold', { method: 'POST', url: '/v1/transactions/oa-hold/post', payload: { balance_type: 'gold' } }, 400);
    await call('submitTransaction', { method: 'POST', url: '/v1/transactions', payload: { ...hold, transaction_id: 'oa-hold-2' } }, 201);
    await call('voidHold', { method: 'POST', url: '/v1/transactions/oa-hold-2/void', payload: { balance_type: 'points' } }, 201);
    await call('voidHold', { method: 'POST', url: '/v1/transactions/oa-hold-2/void', payload: { balance_type: 'points' } }, 200);
    await call('postHold', { method: 'POST', url: '/v1/transactions/oa-hold-2/post', payload: { balance_type: 'points' } }, 409);
    await call('voidHold', { method: 'POST', url: '/v1/transactions/oa-none/void', payload: { balance_type: 'points' } }, 404);
    await call('voidHold', { method: 'POST', url: '/v1/transactions/oa-hold-2/void', payload: '{}', headers: { 'content-type': 'text/plain' } }, 415);

    await call('getTransactions', { method: 'GET', url: '/v1/transactions/oa-use' }, 200);
    await call('getTransactions', { method: 'GET', url: '/v1/transactions/oa-none' }, 404);
    await call('getTransactions', { method: 'GET', url: '/v1/transactions/a%20b' }, 400);
    await call('listBalances', { method: 'GET', url: '/v1/users/oa/balances' }, 200);
    await call('listBalances', { method: 'GET', url: '/v1/users/a%20b/balances' }, 400);
    await call('getBalance', { method: 'GET', url: '/v1/users/oa/balances/points' }, 200);
    await call('getBalance', { method: 'GET', url: '/v1/users/oa/balances/gold' }, 400);
    const page = await call('listTransactions', { method: 'GET', url: '/v1/users/oa/transactions?limit=1' }, 200);
    await call('listTransactions', { method: 'GET', url: `/v1/users/oa/transactions?limit=100&cursor=${page.json().next_cursor}` }, 200);
    await call('listTransactions', { method: 'GET', url: '/v1/users/oa/transactions?cursor=AAAA' }, 400);
    await call('listTransactions', { method: 'GET', url: '/v1/users/oa/transactions?limit=0' }, 400);
    await call('audit', { method: 'GET', url: '/v1/audit' }, 200);
    await call('getLiveness', { method: 'GET', url: '/livez' }, 200);
    await call('getReadiness', { method: 'GET', url: '/readyz' }, 200);
  });

  test('the bus answers as documented', async () => {
    const event = { specversion: '1.0', id: 'oa-1', source: 'partner/shop-42', type: 'shopping.reward.earned', subject: 'alice', data: { points: 120 }, tier: 'gold' };
    await call('publishEvent', { method: 'POST', url: '/v1/topics/rewards/events', payload: event }, 202);
    await call('publishEvent', { method: 'POST', url: '/v1/topics/rewards/events', payload: event }, 202);
    await call('publishEvent', { method: 'POST', url: '/v1/topics/rewards/events', payload: { ...event, id: 'oa-2' }, headers: { 'content-type': 'application/cloudevents+json' } }, 202);
    await call('publishEvent', { method: 'POST', url: '/v1/topics/nowhere/events', payload: event }, 404);
    await call('publishEvent', { method: 'POST', url: '/v1/topics/rewards/events', payload: { ...event, specversion: '0.3' } }, 400);
    await call('publishEvent', { method: 'POST', url: '/v1/topics/rewards/events', payload: '{}', headers: { 'content-type': 'text/plain' } }, 415);

    await call('publishEvent', { method: 'POST', url: '/v1/topics/rewards/events', payload: { ...event, id: 'oa-fail-1', openapi: 'fail' } }, 202);
    await call('publishEvent', { method: 'POST', url: '/v1/topics/rewards/events', payload: { ...event, id: 'oa-fail-2', openapi: 'fail' } }, 202);
    const deadline = Date.now() + DEAD_LETTER_WAIT_MS;
    while ((await koban.bus.deadLetters(SUBSCRIPTION, { limit: 10 })).data.length < 2) {
      assert.ok(Date.now() < deadline, 'both events were dead-lettered');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await call('listSubscriptions', { method: 'GET', url: '/v1/subscriptions' }, 200);
    const letters = await call('listDeadLetters', { method: 'GET', url: `/v1/subscriptions/${SUBSCRIPTION}/dead-letters?limit=1` }, 200);
    assert.equal(letters.json().data.length, 1);
    await call('listDeadLetters', { method: 'GET', url: '/v1/subscriptions/nobody/dead-letters' }, 404);
    await call('listDeadLetters', { method: 'GET', url: `/v1/subscriptions/${SUBSCRIPTION}/dead-letters?state=gone` }, 400);
    await call('discardDeadLetter', { method: 'POST', url: `/v1/subscriptions/${SUBSCRIPTION}/dead-letters/oa-fail-1/discard` }, 200);
    await call('discardDeadLetter', { method: 'POST', url: `/v1/subscriptions/${SUBSCRIPTION}/dead-letters/oa-none/discard` }, 404);
    await call('listDeadLetters', { method: 'GET', url: `/v1/subscriptions/${SUBSCRIPTION}/dead-letters?state=discarded` }, 200);
    await call('redriveDeadLetters', { method: 'POST', url: `/v1/subscriptions/${SUBSCRIPTION}/dead-letters/redrive`, payload: { ids: ['oa-fail-2'] } }, 200);
    await call('redriveDeadLetters', { method: 'POST', url: `/v1/subscriptions/${SUBSCRIPTION}/dead-letters/redrive`, payload: { ids: [] } }, 400);
    await call('redriveDeadLetters', { method: 'POST', url: '/v1/subscriptions/nobody/dead-letters/redrive', payload: {} }, 404);
    await call('redriveDeadLetters', { method: 'POST', url: `/v1/subscriptions/${SUBSCRIPTION}/dead-letters/redrive`, payload: 'x', headers: { 'content-type': 'text/plain' } }, 415);
  });

  test('the card routes answer as documented', async () => {
    await koban.ledger.submit({ transaction_id: 'oa-cash', type: 'add', user_id: 'oa-card', balance_type: 'cash', amount: 50_000 });
    const merchant = { id: 'm-1', name: 'Corner shop', category_code: '5411' };
    const authorization = { authorization_id: 'oa-a1', user_id: 'oa-card', amount: 1_000, currency: 'JPY', merchant };
    await call('authorizeVisa', { method: 'POST', url: '/v1/visa/authorizations', payload: authorization }, 200);
    await call('authorizeVisa', { method: 'POST', url: '/v1/visa/authorizations', payload: authorization }, 200);
    await call('authorizeVisa', { method: 'POST', url: '/v1/visa/authorizations', payload: { ...authorization, amount: 2 } }, 409);
    await call('authorizeVisa', { method: 'POST', url: '/v1/visa/authorizations', payload: { ...authorization, amount: 1.5 } }, 400);
    await call('authorizeVisa', { method: 'POST', url: '/v1/visa/authorizations', payload: { ...authorization, authorization_id: 'oa-i1', incremental_of: 'oa-none' } }, 404);
    await call('recordVisaAdvice', { method: 'POST', url: '/v1/visa/advices', payload: { ...authorization, authorization_id: 'oa-a2' } }, 200);
    await call('recordVisaAdvice', { method: 'POST', url: '/v1/visa/advices', payload: { ...authorization, authorization_id: 'oa-a2' } }, 200);
    await call('recordVisaAdvice', { method: 'POST', url: '/v1/visa/advices', payload: { ...authorization, authorization_id: 'oa-a3', currency: 'USD' } }, 422);
    const draft = { sales_draft_id: 'oa-s1', authorization_id: 'oa-a1', user_id: 'oa-card', amount: 1_000, currency: 'JPY', merchant };
    await call('captureVisaSalesDraft', { method: 'POST', url: '/v1/visa/sales-drafts', payload: draft }, 200);
    await call('captureVisaSalesDraft', { method: 'POST', url: '/v1/visa/sales-drafts', payload: draft }, 200);
    await call('captureVisaSalesDraft', { method: 'POST', url: '/v1/visa/sales-drafts', payload: { ...draft, sales_draft_id: 'oa-s9', currency: 'EUR' } }, 422);
    await call('authorizeVisa', { method: 'POST', url: '/v1/visa/authorizations', payload: { ...authorization, authorization_id: 'oa-i2', incremental_of: 'oa-a1' } }, 409);
    const reversal = { reversal_id: 'oa-r1', authorization_id: 'oa-a2', user_id: 'oa-card' };
    await call('reverseVisaAuthorization', { method: 'POST', url: '/v1/visa/reversals', payload: { ...reversal, amount: 5_000 } }, 422);
    await call('reverseVisaAuthorization', { method: 'POST', url: '/v1/visa/reversals', payload: reversal }, 200);
    await call('reverseVisaAuthorization', { method: 'POST', url: '/v1/visa/reversals', payload: reversal }, 200);
    await call('reverseVisaAuthorization', { method: 'POST', url: '/v1/visa/reversals', payload: { ...reversal, reversal_id: 'oa-r2' } }, 409);
    await call('reverseVisaAuthorization', { method: 'POST', url: '/v1/visa/reversals', payload: { ...reversal, reversal_id: 'oa-r3', authorization_id: 'oa-none' } }, 404);
    const refund = { refund_id: 'oa-f1', sales_draft_id: 'oa-s1', user_id: 'oa-card', amount: 400 };
    await call('refundVisaSalesDraft', { method: 'POST', url: '/v1/visa/refunds', payload: refund }, 200);
    await call('refundVisaSalesDraft', { method: 'POST', url: '/v1/visa/refunds', payload: refund }, 200);
    await call('refundVisaSalesDraft', { method: 'POST', url: '/v1/visa/refunds', payload: { ...refund, refund_id: 'oa-f2', amount: 601 } }, 422);
    await call('refundVisaSalesDraft', { method: 'POST', url: '/v1/visa/refunds', payload: { ...refund, refund_id: 'oa-f3', sales_draft_id: 'oa-none' } }, 404);
    await call('refundVisaSalesDraft', { method: 'POST', url: '/v1/visa/refunds', payload: 'x', headers: { 'content-type': 'text/plain' } }, 415);
    await call('getPayment', { method: 'GET', url: '/v1/payments/visa:oa-a1' }, 200);
    await call('getPayment', { method: 'GET', url: '/v1/payments/visa:oa-none' }, 404);
    await call('getPayment', { method: 'GET', url: '/v1/payments/mastercard:x' }, 400);

    const message = { message_type: 'authorization', transaction_number: 'oa-q1', member_id: 'oa-card', amount: 700, merchant };
    await call('sendQuicpayMessage', { method: 'POST', url: '/v1/quicpay/messages', payload: message }, 200);
    await call('sendQuicpayMessage', { method: 'POST', url: '/v1/quicpay/messages', payload: message }, 200);
    await call('sendQuicpayMessage', { method: 'POST', url: '/v1/quicpay/messages', payload: { ...message, message_type: 'sales' } }, 400);
    await call('sendQuicpayMessage', { method: 'POST', url: '/v1/quicpay/messages', payload: { ...message, message_type: 'sales', original_transaction_number: 'oa-q1' } }, 409);
    const sale = { ...message, message_type: 'sales', transaction_number: 'oa-q2', original_transaction_number: 'oa-q1' };
    await call('sendQuicpayMessage', { method: 'POST', url: '/v1/quicpay/messages', payload: sale }, 200);
    await call('sendQuicpayMessage', { method: 'POST', url: '/v1/quicpay/messages', payload: { ...sale, message_type: 'refund', transaction_number: 'oa-q3', amount: 800 } }, 422);
    await call('sendQuicpayMessage', { method: 'POST', url: '/v1/quicpay/messages', payload: { ...sale, message_type: 'cancel', transaction_number: 'oa-q4', original_transaction_number: 'oa-none' } }, 404);

    const batchEvent = { specversion: '1.0', id: 'oa-b1', source: '/tests', type: 't', time: '2026-01-01T00:00:00.000Z' };
    await call('publishBatch', { method: 'POST', url: '/v1/events/batch', payload: { messages: [{ topic: 'rewards', event: batchEvent }, { topic: 'nowhere', event: { ...batchEvent, id: 'oa-b2' } }] } }, 200);
    await call('publishBatch', { method: 'POST', url: '/v1/events/batch', payload: { messages: [] } }, 400);
  });

  test('the accounts service answers as documented', async () => {
    await call('createAccount', { method: 'POST', url: '/v1/users', payload: { user_id: 'oa-user' } }, 201);
    await call('createAccount', { method: 'POST', url: '/v1/users', payload: { user_id: 'oa-user' } }, 200);
    await call('createAccount', { method: 'POST', url: '/v1/users', payload: { user_id: 'oa user' } }, 400);
    await call('createAccount', { method: 'POST', url: '/v1/users', payload: { user_id: 'oa-user', points: 5 } }, 400);
    await call('createAccount', { method: 'POST', url: '/v1/users', payload: { user_id: 'oa-user', padding: 'p'.repeat(2048) } }, 413);
    await call('createAccount', { method: 'POST', url: '/v1/users', payload: 'user_id=oa', headers: { 'content-type': 'text/plain' } }, 415);
    await call('getAccount', { method: 'GET', url: '/v1/users/oa-user' }, 200);
    await call('getAccount', { method: 'GET', url: '/v1/users/oa-nobody' }, 404);
    await call('getAccount', { method: 'GET', url: '/v1/users/a%20b' }, 400);
  });

  test('notifications answer as documented', async () => {
    const notifications = koban.host.api(notificationsModule);
    const data = {
      payment_id: 'visa:OA1', route: 'visa', user_id: 'oa', amount: 3_000, authorized_total: 3_000, captured_total: 0, refunded_total: 0, currency: 'JPY',
      merchant: { id: 'm-42', name: 'Koban Coffee', category_code: '5814' }, occurred_at: '2026-01-02T03:04:05.000Z', network_message_id: 'OA1',
    } as const;
    const event = paymentEvent({ id: 'visa.openapi.OA1', type: 'payment.authorized', data, time: '2026-01-02T03:04:05.000Z' }) as CloudEvent;
    await notifications.handle('payments', { event, subscription: 'notifications-payments', attempt: 1 });
    const page = await call('listNotices', { method: 'GET', url: '/v1/users/oa/notices?limit=1' }, 200);
    assert.equal(page.json().data.length, 1);
    await call('listNotices', { method: 'GET', url: '/v1/users/oa/notices?limit=0' }, 400);
    await call('getNotificationSettings', { method: 'GET', url: '/v1/users/oa/notification-settings' }, 200);
    await call('putNotificationSettings', { method: 'PUT', url: '/v1/users/oa/notification-settings', payload: { language: 'en' } }, 200);
    await call('putNotificationSettings', { method: 'PUT', url: '/v1/users/oa/notification-settings', payload: { language: 'fr' } }, 400);
    await call('listNotificationDeadLetters', { method: 'GET', url: '/v1/notifications/dead-letters' }, 200);
    await call('redriveNotificationDeadLetters', { method: 'POST', url: '/v1/notifications/dead-letters/redrive', payload: {} }, 200);
    await call('redriveNotificationDeadLetters', { method: 'POST', url: '/v1/notifications/dead-letters/redrive', payload: { ids: ['x'] } }, 400);
  });

  test('with its database gone, each service answers 503 with Retry-After, as documented', async () => {
    const databaseName = new URL(koban.database.url).pathname.slice(1);
    const admin = new pg.Client({ connectionString: testServerUrl() });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${admin.escapeIdentifier(databaseName)} ALLOW_CONNECTIONS false`);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [databaseName]);
      await call('getBalance', { method: 'GET', url: '/v1/users/oa/balances/points' }, 503);
      await call('listSubscriptions', { method: 'GET', url: '/v1/subscriptions' }, 503);
      await call('getAccount', { method: 'GET', url: '/v1/users/oa-user' }, 503);
    } finally {
      await admin.query(`ALTER DATABASE ${admin.escapeIdentifier(databaseName)} ALLOW_CONNECTIONS true`);
      await admin.end();
    }
  });

  // The response schemas also serialize, and a serializer coerces (a number where a string is
  // declared goes out as a string): so what the services produce, as plain JSON, is checked too.
  test("the services' own results match the named schemas before any serialization", async () => {
    const check = (name: string, value: unknown) => {
      const validate = ajv.getSchema(`openapi.json#/components/schemas/${name}`);
      assert.ok(validate, `${name} is a named schema`);
      const plain = JSON.parse(JSON.stringify(value));
      assert.ok(validate(plain), `${name}: ${JSON.stringify(plain)}\ndoes not match: ${ajv.errorsText(validate.errors)}`);
    };
    const errorOf = async (operation: () => Promise<unknown>) => {
      try {
        await operation();
      } catch (error) {
        return (error as { toBody(): unknown }).toBody();
      }
      assert.fail('the operation failed');
    };
    const ledger = koban.ledger;
    for (const transaction of await ledger.getTransactions('oa-use')) check('Transaction', transaction);
    for (const transaction of await ledger.getTransactions('oa-hold')) check('Transaction', transaction);
    check('Balance', await ledger.getBalance('oa', 'points'));
    check('BalanceList', { data: await ledger.listBalances('oa') });
    check('TransactionPage', await ledger.listTransactions('oa', { limit: 100 }));
    check('AuditReport', await ledger.audit());
    const add = { transaction_id: 'oa-add', type: 'add', user_id: 'oa', balance_type: 'points', amount: 500, description: 'welcome', metadata: { campaign: 'x' } } as const;
    check('Transaction', (await ledger.submit(add)).transaction);
    check('Error', await errorOf(() => ledger.submit({ ...add, amount: 1 })));
    check('Error', await errorOf(() => ledger.submit({ ...add, transaction_id: 'oa-much', type: 'consume', amount: 100_000 })));
    await ledger.submit({ transaction_id: 'oa-hold-3', type: 'consume', user_id: 'oa', balance_type: 'points', amount: 10, pending: true });
    check('Error', await errorOf(() => ledger.post('oa-hold-3', { balance_type: 'points', amount: 11 })));
    check('Error', await errorOf(() => ledger.void('oa-use', { balance_type: 'points' })));
    const accounts = koban.host.api(accountsModule);
    check('Account', (await accounts.create('oa-user')).account);
    check('Account', await accounts.get('oa-user'));
    check('Error', await errorOf(() => accounts.get('oa-nobody')));
    check('Error', await errorOf(() => accounts.create('x'.repeat(113))));
    check('SubscriptionList', { data: await koban.bus.subscriptions() });
    check('DeadLetterPage', await koban.bus.deadLetters(SUBSCRIPTION, { limit: 10, state: 'discarded' }));
    check('PublishResult', await koban.bus.publish('rewards', { specversion: '1.0', id: 'oa-3', source: '/tests', type: 't' }));
    check('Error', await errorOf(() => koban.bus.publish('nowhere', { specversion: '1.0', id: 'oa-4', source: '/tests', type: 't' })));
  });

  test('the points service answers as documented', async () => {
    await koban.bus.publish('rewards', { specversion: '1.0', id: 'oa-points-1', source: '/tests', type: 'reward.purchase_confirmed', data: { user_id: 'oa-points', purchase_id: 'oa-p1', points: 7 } });
    await koban.bus.publish('rewards', { specversion: '1.0', id: 'oa-points-2', source: '/tests', type: 'reward.purchase_confirmed', data: { user_id: 'oa-points', purchase_id: 'oa-p2', points: 8 } });
    // Granted through the bus: wait, within a bound, for both.
    const deadline = Date.now() + DEAD_LETTER_WAIT_MS;
    while ((await koban.ledger.getBalance('oa-points', 'points')).available < 15) {
      assert.ok(Date.now() < deadline, 'the rewards were granted');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await call('getUserPoints', { method: 'GET', url: '/v1/users/oa-points/points' }, 200);
    await call('getUserPoints', { method: 'GET', url: '/v1/users/a%20b/points' }, 400);
    const grants = await call('listPointGrants', { method: 'GET', url: '/v1/users/oa-points/point-grants?limit=1' }, 200);
    await call('listPointGrants', { method: 'GET', url: `/v1/users/oa-points/point-grants?limit=1&cursor=${grants.json().next_cursor}` }, 200);
    await call('listPointGrants', { method: 'GET', url: '/v1/users/oa-points/point-grants?limit=0' }, 400);
  });

  test('every operation was exercised, on every success status it declares', () => {
    for (const [id, { operation }] of operations) {
      const seen = exercised.get(id) ?? new Set();
      for (const status of Object.keys(operation.responses).filter((status) => status.startsWith('2'))) {
        assert.ok(seen.has(status), `${id} was seen answering ${status}`);
      }
    }
  });
});

describe('the docs page', () => {
  let koban: TestKoban;
  before(async () => {
    koban = await startTestKoban({ label: 'docs_page' });
  });
  after(async () => {
    await koban?.stop();
    await koban?.database.drop();
  });

  test('renders HTML that loads the OpenAPI document', async () => {
    const page = await koban.app.inject({ method: 'GET', url: '/docs/' });
    assert.equal(page.statusCode, 200, page.body);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.body, /<script src="\.\/static\/swagger-initializer\.js"/);
    const initializer = await koban.app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
    assert.equal(initializer.statusCode, 200);
    // Swagger UI resolves the document's address against the page's.
    const specUrl = /url: resolveUrl\('([^']+)'\)/.exec(initializer.body)?.[1];
    assert.ok(specUrl, `the initializer names the document it loads:\n${initializer.body}`);
    const spec = await koban.app.inject({ method: 'GET', url: new URL(specUrl, 'http://koban/docs/').pathname });
    assert.equal(spec.statusCode, 200, `${specUrl}: ${spec.body.slice(0, 200)}`);
    assert.equal(spec.json().openapi, '3.1.0');
    assert.ok(spec.json().paths['/v1/transactions'].post.operationId);
    const bundle = await koban.app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' });
    assert.equal(bundle.statusCode, 200, 'the page can load Swagger UI itself');
  });
});
