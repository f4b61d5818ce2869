// Goal: the SNS+SQS adapter passes the EventBus conformance suite against an emulator on loopback, and beyond it translates every filter operator, extends a slow handler's deadline, deletes what it acknowledges, drops a redelivery of what it handled, and keeps namespaces apart (skips when the emulator cannot start).
import assert from 'node:assert/strict';
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import type { SNSClient } from '@aws-sdk/client-sns';
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, GetQueueAttributesCommand, GetQueueUrlCommand, ReceiveMessageCommand, SendMessageBatchCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { type Clock, systemClock } from '../../../../platform/clock.ts';
import { createLogger } from '../../../../platform/logger.ts';
import { createPool } from '../../../../platform/postgres/pool.ts';
import { createTestDatabase, type TestDatabase } from '../../../../../test/support/database.ts';
import type { FilterPolicy } from '../../../../contracts/bus/filter-policy.ts';
import { type CloudEvent, filterAttributes } from '../../../../contracts/events/envelope.ts';
import { ACK_DEADLINE_EXCEEDED } from '../../domain/dead-letters.ts';
import { matchesFilter } from '../../domain/filter.ts';
import { runConformance, sleep, waitFor } from '../../testing/conformance.ts';
import { TcpProxy } from '../../testing/tcp-proxy.ts';
import { type EmbeddedEmulator, EMULATOR_CREDENTIALS, EMULATOR_REGION_DEFAULT, startEmbeddedEmulator } from './embedded-emulator.ts';
import { markRedriven } from './consumed-events.ts';
import { DLQ_SCAN_TIME_BUDGET_MS, SnsSqsEventBus } from './sns-sqs-event-bus.ts';

let emulator: EmbeddedEmulator | undefined;
let skip: string | false = false;
try {
  emulator = await startEmbeddedEmulator();
} catch (error) {
  skip = `the SNS+SQS emulator could not start (${error instanceof Error ? error.message : String(error)})`;
}
// Stopped once every suite of the file is done (whichever of them ran).
after(() => emulator?.stop());
// Resources of this run carry their own prefix.
const namespace = `kobantest-${randomUUID().slice(0, 8)}`;

runConformance(
  'sns-sqs',
  async (logger) => {
    const busDatabase = await createTestDatabase('bus_sns');
    const producerDatabase = await createTestDatabase('bus_sns_producer');
    const open = (endpoint: string) =>
      SnsSqsEventBus.open({ databaseUrl: busDatabase.url, poolSize: 4, logger, clock: systemClock, namespace, region: EMULATOR_REGION_DEFAULT, endpoint, credentials: EMULATOR_CREDENTIALS });
    const registry = createPool({ url: busDatabase.url, size: 1, applicationName: 'conformance-registry', logger });
    return {
      producerDatabaseUrl: producerDatabase.url,
      async forgetPublished(topic, id) {
        await registry.query('UPDATE event_fingerprints SET published_at = NULL WHERE topic = $1 AND event_id = $2', [topic, id]);
      },
      async open(options) {
        if (!options?.via) return open(emulator!.endpoint);
        const proxy = await options.via({ host: emulator!.host, port: emulator!.port });
        return open(`http://127.0.0.1:${proxy.port}`);
      },
      async teardown() {
        await registry.end();
        await busDatabase.drop();
        await producerDatabase.drop();
      },
    };
  },
  { skip },
);

describe('SNS+SQS adapter beyond the conformance suite', { skip, concurrency: false }, () => {
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const databases: TestDatabase[] = [];
  const buses: SnsSqsEventBus[] = [];
  const proxies: TcpProxy[] = [];
  const sqs = new SQSClient({ region: EMULATOR_REGION_DEFAULT, endpoint: emulator?.endpoint ?? 'http://127.0.0.1:1', credentials: { ...EMULATOR_CREDENTIALS }, useQueueUrlAsEndpoint: false });
  after(async () => {
    sqs.destroy();
    for (const bus of buses) await bus.close();
    for (const proxy of proxies) await proxy.down();
    for (const database of databases) await database.drop();
  });

  async function openBus(
    busNamespace: string,
    options: { endpoint?: string; databaseUrl?: string; instrumentSns?: (client: SNSClient) => void; instrumentSqs?: (client: SQSClient) => void; clock?: Clock } = {},
  ): Promise<SnsSqsEventBus> {
    let databaseUrl = options.databaseUrl;
    if (databaseUrl === undefined) {
      const database = await createTestDatabase('bus_sns_more');
      databases.push(database);
      databaseUrl = database.url;
    }
    const bus = await SnsSqsEventBus.open({
      databaseUrl,
      poolSize: 2,
      logger,
      clock: options.clock ?? systemClock,
      namespace: busNamespace,
      region: EMULATOR_REGION_DEFAULT,
      endpoint: options.endpoint ?? emulator!.endpoint,
      credentials: EMULATOR_CREDENTIALS,
      ...(options.instrumentSns === undefined ? {} : { instrumentSns: options.instrumentSns }),
      ...(options.instrumentSqs === undefined ? {} : { instrumentSqs: options.instrumentSqs }),
    });
    buses.push(bus);
    return bus;
  }

  /** A bus whose SQS and SNS traffic runs through a proxy the test can cut. */
  async function openBehindProxy(busNamespace: string): Promise<{ bus: SnsSqsEventBus; proxy: TcpProxy }> {
    const proxy = new TcpProxy({ host: emulator!.host, port: emulator!.port });
    await proxy.up();
    proxies.push(proxy);
    return { bus: await openBus(busNamespace, { endpoint: `http://127.0.0.1:${proxy.port}` }), proxy };
  }

  const event = (id: string, extra: Record<string, string> = {}) => ({ specversion: '1.0' as const, id, source: '/koban/tests', type: 'koban.test.happened', data: { id }, ...extra });

  test('every filter operator, translated to an SNS FilterPolicy, selects in SNS exactly what the bus\'s own evaluator selects', async () => {
    const bus = await openBus(`ns-f-${randomUUID().slice(0, 8)}`);
    const topic = `filters-${randomUUID().slice(0, 8)}`;
    const policies: Record<string, FilterPolicy> = {
      exact: { network: ['visa'] },
      either: { network: ['visa', 'jcb'] },
      prefix: { type: [{ prefix: 'koban.payment.' }] },
      butOne: { network: [{ 'anything-but': 'visa' }] },
      butMany: { network: [{ 'anything-but': ['visa', 'jcb'] }] },
      butPrefix: { type: [{ 'anything-but': { prefix: 'koban.payment.' } }] },
      exists: { campaign: [{ exists: true }] },
      absent: { campaign: [{ exists: false }] },
      mixed: { network: ['quicpay', { prefix: 'vi' }], campaign: [{ exists: false }] },
    };
    await bus.declare({ topics: [topic], subscriptions: Object.entries(policies).map(([label, filter]) => ({ name: `${topic}-${label.toLowerCase()}`, topic, filter })) });
    const events = [
      event('visa', { type: 'koban.payment.authorized', network: 'visa' }),
      event('jcb', { type: 'koban.payment.captured', network: 'jcb' }),
      event('quicpay', { type: 'koban.payment.authorized', network: 'quicpay' }),
      event('virtual', { type: 'koban.card.issued', network: 'virtual', campaign: 'spring' }),
      event('reward', { type: 'koban.reward.granted', campaign: 'spring' }),
    ];
    const seen = new Map<string, string[]>();
    const consumers = await Promise.all(
      Object.keys(policies).map((label) =>
        bus.consume(`${topic}-${label.toLowerCase()}`, async (delivery) => {
          seen.set(label, [...(seen.get(label) ?? []), delivery.event.id]);
        }),
      ),
    );
    for (const input of events) await bus.publish(topic, input);
    const expected = Object.fromEntries(
      Object.entries(policies).map(([label, filter]) => [label, events.filter((input) => matchesFilter(filter, filterAttributes(input as CloudEvent))).map((input) => input.id).sort()]),
    );
    const total = Object.values(expected).reduce((sum, ids) => sum + ids.length, 0);
    await waitFor(() => [...seen.values()].reduce((sum, ids) => sum + ids.length, 0) >= total);
    await sleep(300);
    assert.deepEqual(Object.fromEntries(Object.keys(policies).map((label) => [label, (seen.get(label) ?? []).sort()])), expected);
    // The evaluator is not vacuous here: every subscription lets something through and holds something back.
    for (const [label, ids] of Object.entries(expected)) assert.ok(ids.length > 0 && ids.length < events.length, label);
    await Promise.all(consumers.map((consumer) => consumer.stop()));
  });

  test('a filtered subscription declared again (a restart) stays as it is; its filter removed is removed in SNS, and it receives everything', async () => {
    const bus = await openBus(`ns-r-${randomUUID().slice(0, 8)}`);
    const topic = `unfiltered-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-visa`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, filter: { network: ['visa'] } }] });
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, filter: { network: ['visa'] } }] });
    const ids: string[] = [];
    const consumer = await bus.consume(name, async (delivery) => void ids.push(delivery.event.id));
    await bus.publish(topic, event('jcb-before', { network: 'jcb' }));
    await bus.publish(topic, event('visa-before', { network: 'visa' }));
    await waitFor(() => ids.length >= 1);
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic }] });
    await bus.publish(topic, event('jcb-after', { network: 'jcb' }));
    await waitFor(() => ids.length >= 2);
    await sleep(300);
    assert.deepEqual(ids, ['visa-before', 'jcb-after']);
    await consumer.stop();
  });

  test('a handler slower than its ack deadline keeps its message: the deadline is extended, it is delivered once', async () => {
    const bus = await openBus(`ns-v-${randomUUID().slice(0, 8)}`);
    const topic = `slow-${randomUUID().slice(0, 8)}`;
    const ACK_WAIT_MS = 2_000;
    await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-worker`, topic, ackWaitMs: ACK_WAIT_MS, maxDeliveries: 5 }] });
    const attempts: number[] = [];
    const consumer = await bus.consume(`${topic}-worker`, async (delivery) => {
      attempts.push(delivery.attempt);
      if (attempts.length === 1) await sleep(ACK_WAIT_MS * 2.5);
    });
    await bus.publish(topic, event('slow-1'));
    await waitFor(() => attempts.length >= 1);
    await sleep(ACK_WAIT_MS * 3.5);
    assert.deepEqual(attempts, [1], 'not redelivered under the slow handler, nor after it acknowledged');
    await consumer.stop();
  });

  test('an acknowledged message is deleted, not left to come back: nothing returns after its visibility timeout', async () => {
    const bus = await openBus(`ns-d-${randomUUID().slice(0, 8)}`);
    const topic = `acked-${randomUUID().slice(0, 8)}`;
    const ACK_WAIT_MS = 2_000;
    await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-worker`, topic, ackWaitMs: ACK_WAIT_MS }] });
    const ids: string[] = [];
    const consumer = await bus.consume(`${topic}-worker`, async (delivery) => {
      ids.push(delivery.event.id);
    });
    for (let index = 0; index < 12; index++) await bus.publish(topic, event(`acked-${index}`));
    await waitFor(() => ids.length >= 12);
    // The emulator accepts any receipt handle: only the message's absence after its deadline proves the delete.
    await sleep(ACK_WAIT_MS * 2);
    assert.equal(ids.length, 12, 'no message came back');
    const stats = (await bus.subscriptions()).find((entry) => entry.name === `${topic}-worker`);
    assert.equal(stats?.depth, 0);
    assert.equal(stats?.in_flight, 0);
    await consumer.stop();
  });

  test('acks are deleted together, each by its own receipt handle: the queue is empty long before any deadline could bring one back', async () => {
    const bus = await openBus(`ns-b-${randomUUID().slice(0, 8)}`);
    const topic = `batched-${randomUUID().slice(0, 8)}`;
    const ACK_WAIT_MS = 30_000;
    await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-worker`, topic, ackWaitMs: ACK_WAIT_MS }] });
    const ids: string[] = [];
    const consumer = await bus.consume(`${topic}-worker`, async (delivery) => {
      ids.push(delivery.event.id);
    });
    const messages = Array.from({ length: 25 }, (_, index) => ({ topic, event: { ...event(`batched-${index}`), time: new Date().toISOString() } }));
    await bus.publishBatch(messages);
    await waitFor(() => ids.length >= 25);
    // The emulator deletes nothing for a wrong (or another message's) handle and says nothing: a message left in flight shows it.
    await waitFor(async () => {
      const stats = (await bus.subscriptions()).find((entry) => entry.name === `${topic}-worker`);
      return stats?.depth === 0 && stats.in_flight === 0;
    }, 3_000);
    assert.equal(new Set(ids).size, 25);
    await consumer.stop();
  });

  test('a message handled but whose delete was lost comes back and is dropped: its handler runs once', async () => {
    const { bus, proxy } = await openBehindProxy(`ns-l-${randomUUID().slice(0, 8)}`);
    const topic = `lost-${randomUUID().slice(0, 8)}`;
    const ACK_WAIT_MS = 2_000;
    await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-worker`, topic, ackWaitMs: ACK_WAIT_MS }] });
    const attempts: number[] = [];
    const consumer = await bus.consume(`${topic}-worker`, async (delivery) => {
      attempts.push(delivery.attempt);
      // SQS is cut off as the first handler returns: its success is recorded (the database is reached directly), the delete is lost.
      if (attempts.length === 1) await proxy.down();
    });
    await bus.publish(topic, event('lost-delete'));
    await waitFor(() => attempts.length >= 1);
    await sleep(500);
    await proxy.up();
    // Back after its visibility timeout, received again, and dropped.
    await waitFor(async () => {
      const stats = (await bus.subscriptions()).find((entry) => entry.name === `${topic}-worker`);
      return stats?.depth === 0 && stats.in_flight === 0;
    }, ACK_WAIT_MS * 4);
    assert.deepEqual(attempts, [1], 'the handler ran once');
    await consumer.stop();
  });

  /** Messages in a queue of the bus (visible and in flight), read with a client of the test's own. */
  async function queueDepth(bus: SnsSqsEventBus, queueName: string): Promise<number> {
    const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: bus.resourceName(queueName) }));
    const result = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
    return Number(result.Attributes?.ApproximateNumberOfMessages) + Number(result.Attributes?.ApproximateNumberOfMessagesNotVisible);
  }

  test('a message that fails its last delivery waits once in the subscription\'s SQS dead-letter queue; discard deletes it there, redrive sends it back from there', async () => {
    const bus = await openBus(`ns-q-${randomUUID().slice(0, 8)}`);
    const topic = `dlq-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-worker`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, maxDeliveries: 2, retryBackoffInitialMs: 20, retryBackoffMaxMs: 40 }] });
    const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: bus.resourceName(name) }));
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['RedrivePolicy'] }));
    const { QueueUrl: dlqUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: `${bus.resourceName(name)}-DLQ` }));
    const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
    assert.deepEqual(JSON.parse(Attributes?.RedrivePolicy ?? '{}'), { deadLetterTargetArn: dlqArn, maxReceiveCount: 2 });
    let healthy = false;
    const handled: [string, number][] = [];
    const consumer = await bus.consume(name, async (delivery) => {
      if (!healthy) throw new Error(`refused ${delivery.event.id}`);
      handled.push([delivery.event.id, delivery.attempt]);
    });
    await bus.publish(topic, event('dies-1'));
    await bus.publish(topic, event('dies-2'));
    await waitFor(async () => (await queueDepth(bus, `${name}-DLQ`)) === 2 && (await queueDepth(bus, name)) === 0);
    await sleep(300);
    assert.equal(await queueDepth(bus, `${name}-DLQ`), 2, 'one copy of each in the dead-letter queue');
    const listed = await bus.deadLetters(name, { limit: 10 });
    assert.deepEqual(listed.data.map((letter) => [letter.id, letter.attempts, letter.last_error]).sort(), [['dies-1', 2, 'Error: refused dies-1'], ['dies-2', 2, 'Error: refused dies-2']]);
    await bus.discard(name, 'dies-2');
    assert.equal(await queueDepth(bus, `${name}-DLQ`), 1, 'the discarded one is gone from the dead-letter queue');
    assert.deepEqual((await bus.deadLetters(name, { limit: 10, state: 'discarded' })).data.map((letter) => letter.id), ['dies-2'], 'and kept as discarded');
    healthy = true;
    assert.deepEqual(await bus.redrive(name), { redriven: 1 });
    await waitFor(() => handled.length >= 1);
    assert.equal(await queueDepth(bus, `${name}-DLQ`), 0, 'the redriven one left the dead-letter queue');
    await sleep(300);
    assert.deepEqual(handled, [['dies-1', 1]]);
    assert.equal((await bus.deadLetters(name, { limit: 10 })).data.length, 0);
    await consumer.stop();
  });

  test('a redrive whose send is answered with an error after SQS took the messages leaves no event handled twice, however often it is redriven again', async () => {
    // The real client, talking to the emulator: the call that carries the 2nd redriven message reaches SQS, and its answer is lost.
    let armed = false;
    let messagesSent = 0;
    const failAfterSecondMessage = (client: SQSClient) => {
      client.middlewareStack.add(
        (next, context) => async (args) => {
          const input = args.input as { Entries?: unknown[] };
          const carried = context.commandName === 'SendMessageCommand' ? 1 : context.commandName === 'SendMessageBatchCommand' ? (input.Entries?.length ?? 0) : 0;
          const result = await next(args);
          if (armed && carried > 0) {
            const before = messagesSent;
            messagesSent += carried;
            if (before < 2 && messagesSent >= 2) throw new Error('the answer to this send was lost (injected)');
          }
          return result;
        },
        { step: 'initialize', name: 'loseSecondSendAnswer' },
      );
    };
    const bus = await openBus(`ns-h-${randomUUID().slice(0, 8)}`, { instrumentSqs: failAfterSecondMessage });
    const topic = `halfway-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-worker`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, maxDeliveries: 1 }] });
    let healthy = false;
    const handled = new Map<string, number>();
    const consumer = await bus.consume(name, async (delivery) => {
      if (!healthy) throw new Error(`refused ${delivery.event.id}`);
      handled.set(delivery.event.id, (handled.get(delivery.event.id) ?? 0) + 1);
    });
    const ids = ['half-1', 'half-2', 'half-3'];
    for (const id of ids) await bus.publish(topic, event(id));
    await waitFor(async () => (await queueDepth(bus, `${name}-DLQ`)) === 3 && (await bus.deadLetters(name, { limit: 10 })).data.length === 3, 10_000);
    healthy = true;
    armed = true;
    await assert.rejects(bus.redrive(name), /answer to this send was lost/);
    armed = false;
    // What SQS took is delivered and handled.
    await waitFor(() => handled.has('half-1') && handled.has('half-2'), 10_000);
    // Redriven again (an operator retrying): whatever is still listed goes back, and what was handled is not handled again.
    await bus.redrive(name);
    await waitFor(async () => ids.every((id) => handled.has(id)) && (await queueDepth(bus, name)) === 0 && (await queueDepth(bus, `${name}-DLQ`)) === 0, 10_000);
    assert.deepEqual(Object.fromEntries(handled), { 'half-1': 1, 'half-2': 1, 'half-3': 1 }, 'each event handled once');
    assert.deepEqual((await bus.deadLetters(name, { limit: 10 })).data, [], 'nothing is left dead');
    assert.deepEqual(await bus.redrive(name), { redriven: 0 });
    await consumer.stop();
  });

  /** Counts the SQS calls of a bus by command name (the real client, unchanged otherwise). */
  function countCalls(calls: Map<string, number>) {
    return (client: SQSClient) =>
      client.middlewareStack.add(
        (next, context) => (args) => {
          calls.set(context.commandName ?? '', (calls.get(context.commandName ?? '') ?? 0) + 1);
          return next(args);
        },
        { step: 'initialize', name: 'countCalls' },
      );
  }

  /** Publishes these events to a subscription whose handler refuses them, with maxDeliveries 1, and waits until each is a dead letter in the dead-letter queue. */
  async function deadLettersOf(bus: SnsSqsEventBus, ids: readonly string[]) {
    const topic = `dead-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-worker`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, maxDeliveries: 1 }] });
    const state = { healthy: false, handled: new Map<string, number>() };
    const consumer = await bus.consume(name, async (delivery) => {
      if (!state.healthy) throw new Error(`refused ${delivery.event.id}`);
      state.handled.set(delivery.event.id, (state.handled.get(delivery.event.id) ?? 0) + 1);
    });
    for (const id of ids) await bus.publish(topic, event(id));
    await waitFor(async () => (await queueDepth(bus, `${name}-DLQ`)) === ids.length && (await bus.deadLetters(name, { limit: 100 })).data.length === ids.length, 10_000);
    return { topic, name, state, consumer };
  }

  test('a redrive of all asks once per bus whether SQS has message move tasks; the emulator has none, so it goes message by message, and chosen ids never ask', async () => {
    const calls = new Map<string, number>();
    const bus = await openBus(`ns-m-${randomUUID().slice(0, 8)}`, { instrumentSqs: countCalls(calls) });
    const { name, state, consumer } = await deadLettersOf(bus, ['move-1', 'move-2', 'move-3']);
    state.healthy = true;
    assert.deepEqual(await bus.redrive(name, ['move-1']), { redriven: 1 });
    assert.equal(calls.get('ListMessageMoveTasksCommand'), undefined, 'chosen ids: the broker is not asked');
    assert.deepEqual(await bus.redrive(name), { redriven: 2 });
    assert.deepEqual(await bus.redrive(name), { redriven: 0 });
    assert.equal(calls.get('ListMessageMoveTasksCommand'), 1, 'asked once, the answer kept');
    assert.equal(calls.get('StartMessageMoveTaskCommand'), undefined, 'no task is started where there are none');
    await waitFor(async () => state.handled.size === 3 && (await queueDepth(bus, name)) === 0 && (await queueDepth(bus, `${name}-DLQ`)) === 0, 10_000);
    assert.deepEqual(Object.fromEntries(state.handled), { 'move-1': 1, 'move-2': 1, 'move-3': 1 });
    await consumer.stop();
  });

  test('where SQS has move tasks (its two answers injected: the emulator lacks them), a redrive of all moves what waits in the dead-letter queue, sends from the registry what does not, lists again what a task left, and goes message by message when the task will not start', async () => {
    // Only ListMessageMoveTasks and StartMessageMoveTask are answered here; every other call reaches the emulator.
    const task = { running: false, refuseStart: false, starts: 0 };
    const injectMoveTasks = (client: SQSClient) =>
      client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'ListMessageMoveTasksCommand') return { output: { $metadata: {}, Results: task.running ? [{ Status: 'RUNNING' }] : [] }, response: {} };
          if (context.commandName === 'StartMessageMoveTaskCommand') {
            task.starts += 1;
            if (task.refuseStart) throw Object.assign(new Error('Rate exceeded (injected)'), { name: 'RequestThrottled' });
            task.running = true;
            return { output: { $metadata: {}, TaskHandle: 'injected' }, response: {} };
          }
          return next(args);
        },
        { step: 'initialize', name: 'injectMoveTasks' },
      );
    const bus = await openBus(`ns-w-${randomUUID().slice(0, 8)}`, { instrumentSqs: injectMoveTasks });
    const { name, state, consumer } = await deadLettersOf(bus, ['mv-1', 'mv-2', 'mv-3']);
    // mv-3's copy leaves the dead-letter queue (as at the end of its retention): only the registry still has it.
    const { QueueUrl: dlqUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: `${bus.resourceName(name)}-DLQ` }));
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 1 }));
    const copy = received.Messages?.find((message) => JSON.parse(message.Body!).id === 'mv-3');
    assert.ok(copy && received.Messages?.length === 3);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: dlqUrl, ReceiptHandle: copy.ReceiptHandle! }));
    for (const other of received.Messages!.filter((message) => message !== copy)) {
      await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: dlqUrl, ReceiptHandle: other.ReceiptHandle!, VisibilityTimeout: 0 }));
    }
    state.healthy = true;

    assert.deepEqual(await bus.redrive(name), { redriven: 3 });
    assert.equal(task.starts, 1, 'one task for the two copies in the dead-letter queue');
    await waitFor(() => state.handled.has('mv-3'), 10_000);
    assert.deepEqual([...state.handled.keys()], ['mv-3'], 'the one with no copy was sent from the registry; the others wait for the task');
    assert.deepEqual((await bus.deadLetters(name, { limit: 10 })).data, [], 'while the task runs, what it is to move is not listed dead');
    // The task ends having moved nothing (as a failed one would): its copies are still there, and no message owns their events.
    task.running = false;
    assert.deepEqual((await bus.deadLetters(name, { limit: 10 })).data.map((letter) => letter.id).sort(), ['mv-1', 'mv-2'], 'listed dead again, not lost');

    // A task that will not start (throttled): the same redrive goes message by message, and nothing is handled twice.
    task.refuseStart = true;
    assert.deepEqual(await bus.redrive(name), { redriven: 2 });
    assert.equal(task.starts, 2);
    await waitFor(async () => state.handled.size === 3 && (await queueDepth(bus, name)) === 0 && (await queueDepth(bus, `${name}-DLQ`)) === 0, 10_000);
    assert.deepEqual(Object.fromEntries(state.handled), { 'mv-3': 1, 'mv-1': 1, 'mv-2': 1 });
    assert.deepEqual((await bus.deadLetters(name, { limit: 10 })).data, []);
    await consumer.stop();
  });

  test('a redrive that died between marking its dead letters and sending them: the next look lists them dead again, and a redrive then delivers each once', async () => {
    const database = await createTestDatabase('bus_sns_died_redrive');
    databases.push(database);
    const bus = await openBus(`ns-k-${randomUUID().slice(0, 8)}`, { databaseUrl: database.url });
    const { name, state, consumer } = await deadLettersOf(bus, ['cut-1', 'cut-2']);
    // What a redrive does first, and nothing after it: as if its process died there.
    const pool = createPool({ url: database.url, size: 1, applicationName: 'died-redrive', logger });
    try {
      assert.equal((await markRedriven(pool, name, null)).length, 2);
    } finally {
      await pool.end();
    }
    assert.equal(await queueDepth(bus, `${name}-DLQ`), 2, 'their copies still wait in the dead-letter queue');
    assert.deepEqual((await bus.deadLetters(name, { limit: 10 })).data.map((letter) => letter.id).sort(), ['cut-1', 'cut-2'], 'listed dead again, not lost');
    state.healthy = true;
    assert.deepEqual(await bus.redrive(name), { redriven: 2 });
    await waitFor(async () => state.handled.size === 2 && (await queueDepth(bus, name)) === 0 && (await queueDepth(bus, `${name}-DLQ`)) === 0, 10_000);
    assert.deepEqual(Object.fromEntries(state.handled), { 'cut-1': 1, 'cut-2': 1 });
    await consumer.stop();
  });

  /** Sends valid events straight to a subscription's dead-letter queue: dead letters SQS moved with nobody recording them. */
  async function unrecordedDeadLetters(bus: SnsSqsEventBus, name: string, count: number, prefix: string): Promise<void> {
    const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: `${bus.resourceName(name)}-DLQ` }));
    for (let start = 0; start < count; start += 10) {
      const entries = Array.from({ length: Math.min(10, count - start) }, (_, index) => ({
        Id: String(index),
        MessageBody: JSON.stringify({ ...event(`${prefix}-${start + index}`), time: new Date().toISOString() }),
      }));
      const result = await sqs.send(new SendMessageBatchCommand({ QueueUrl, Entries: entries }));
      assert.equal(result.Failed?.length ?? 0, 0);
    }
  }

  test('a look through the dead-letter queue is not cut at 1,000 messages: 1,050 unrecorded dead letters are all found by one listing', async () => {
    const bus = await openBus(`ns-o-${randomUUID().slice(0, 8)}`);
    const topic = `overflow-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-worker`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic }] });
    const COUNT = 1_050;
    await unrecordedDeadLetters(bus, name, COUNT, 'many');
    await bus.deadLetters(name, { limit: 10 });
    const stats = (await bus.subscriptions()).find((entry) => entry.name === name);
    assert.equal(stats?.dead_letters, COUNT);
  });

  test('a look that runs out of its time budget goes on where it stopped at the next call: a queue larger than one look is found whole over a few', async () => {
    // Each reading of the bus's clock moves it on 40% of the budget: every look ends after two rounds of 10 messages.
    let nowMs = Date.now();
    const hurried: Clock = { now: () => new Date((nowMs += DLQ_SCAN_TIME_BUDGET_MS * 0.4)) };
    const bus = await openBus(`ns-s-${randomUUID().slice(0, 8)}`, { clock: hurried });
    const topic = `budget-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-worker`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic }] });
    await unrecordedDeadLetters(bus, name, 45, 'slow');
    const found: number[] = [];
    for (let look = 0; look < 4; look++) found.push((await bus.deadLetters(name, { limit: 100 })).data.length);
    assert.deepEqual(found, [20, 40, 45, 45], 'each look reaches what the one before did not, and none is recorded twice');
  });

  test('a body that is not JSON, or not a CloudEvent, is a dead letter at once saying so, and waits in the dead-letter queue; the messages around it are handled', async () => {
    const bus = await openBus(`ns-p-${randomUUID().slice(0, 8)}`);
    const topic = `poison-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-worker`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, maxDeliveries: 3 }] });
    const handled: string[] = [];
    const consumer = await bus.consume(name, async (delivery) => void handled.push(delivery.event.id));
    const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: bus.resourceName(name) }));
    await bus.publish(topic, event('before'));
    const notJson = await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'hello, not json' }));
    const notEvent = await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: JSON.stringify({ specversion: '1.0', source: '/elsewhere', type: 'x', time: new Date().toISOString() }) }));
    await bus.publish(topic, event('after'));
    const started = Date.now();
    await waitFor(async () => (await bus.deadLetters(name, { limit: 10 })).data.length === 2);
    assert.ok(Date.now() - started < 5_000, 'not hidden for hours');
    const letters = new Map((await bus.deadLetters(name, { limit: 10 })).data.map((letter) => [letter.id, letter]));
    assert.match(letters.get(`sqs-message:${notJson.MessageId}`)?.last_error ?? '', /not JSON/);
    assert.deepEqual(letters.get(`sqs-message:${notJson.MessageId}`)?.event.data, { body: 'hello, not json' });
    assert.match(letters.get(`sqs-message:${notEvent.MessageId}`)?.last_error ?? '', /not a CloudEvent: no valid id/);
    await waitFor(async () => (await queueDepth(bus, `${name}-DLQ`)) === 2 && (await queueDepth(bus, name)) === 0);
    await waitFor(() => handled.length >= 2);
    assert.deepEqual(handled.sort(), ['after', 'before']);
    assert.equal((await bus.deadLetters(name, { limit: 10 })).data.length, 2, 'one dead letter each');
    await consumer.stop();
  });

  test('a message handled on its last delivery whose delete was lost, then moved by SQS to the dead-letter queue, is not a dead letter: the look deletes it there', async () => {
    const { bus, proxy } = await openBehindProxy(`ns-h-${randomUUID().slice(0, 8)}`);
    const topic = `handled-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-worker`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, maxDeliveries: 1, ackWaitMs: 2_000 }] });
    const handled: string[] = [];
    const consumer = await bus.consume(name, async (delivery) => {
      handled.push(delivery.event.id);
      // SQS is cut off as the handler returns: its success is recorded (the database is reached directly), the delete is lost.
      if (handled.length === 1) await proxy.down();
    });
    await bus.publish(topic, event('handled-then-moved'));
    await waitFor(() => handled.length >= 1);
    await sleep(500);
    await proxy.up();
    // Its next receive is one past maxReceiveCount: SQS moves it to the dead-letter queue.
    await waitFor(async () => (await queueDepth(bus, `${name}-DLQ`)) === 1, 10_000);
    assert.deepEqual((await bus.deadLetters(name, { limit: 10 })).data, [], 'its event was handled: nothing is dead');
    assert.equal((await bus.subscriptions()).find((entry) => entry.name === name)?.dead_letters, 0);
    assert.equal(await queueDepth(bus, `${name}-DLQ`), 0, 'the stale copy is deleted');
    assert.deepEqual(await bus.redrive(name), { redriven: 0 });
    assert.deepEqual(handled, ['handled-then-moved'], 'the handler ran once');
    await consumer.stop();
  });

  test('a consumer that dies holding a last delivery: SQS moves the message, and the dead-letter API finds it there, once', async () => {
    const database = await createTestDatabase('bus_sns_crash');
    databases.push(database);
    const busNamespace = `ns-c-${randomUUID().slice(0, 8)}`;
    const bus = await openBus(busNamespace, { databaseUrl: database.url });
    const crashing = await openBus(busNamespace, { databaseUrl: database.url });
    const topic = `crash-${randomUUID().slice(0, 8)}`;
    const name = `${topic}-worker`;
    await bus.declare({ topics: [topic], subscriptions: [{ name, topic, maxDeliveries: 1, ackWaitMs: 2_000 }] });
    let received!: () => void;
    const receivedOnce = new Promise<void>((resolve) => (received = resolve));
    const doomed = await crashing.consume(name, () => {
      received();
      return new Promise<void>(() => undefined);
    });
    await bus.publish(topic, event('held-at-death'));
    await receivedOnce;
    await doomed.stop({ abandonInFlight: true });
    const handled: string[] = [];
    const survivor = await bus.consume(name, async (delivery) => void handled.push(delivery.event.id));
    // Back after its deadline, the survivor's receive is one past maxReceiveCount: SQS moves it, nobody handles it.
    await waitFor(async () => (await queueDepth(bus, `${name}-DLQ`)) === 1, 10_000);
    const stats = (await bus.subscriptions()).find((entry) => entry.name === name);
    assert.equal(stats?.dead_letters, 1, 'the stats find it');
    const listed = await bus.deadLetters(name, { limit: 10 });
    assert.deepEqual(listed.data.map((letter) => [letter.id, letter.attempts, letter.last_error]), [['held-at-death', 1, ACK_DEADLINE_EXCEEDED]]);
    assert.equal((await bus.deadLetters(name, { limit: 10 })).data.length, 1, 'listed again, still one');
    assert.deepEqual(handled, []);
    assert.deepEqual(await bus.redrive(name), { redriven: 1 });
    await waitFor(() => handled.length === 1);
    assert.equal(await queueDepth(bus, `${name}-DLQ`), 0);
    await survivor.stop();
  });

  test('publish answers before its mark is written, yet an immediate repeat is a duplicate, and closing writes every mark', async () => {
    const database = await createTestDatabase('bus_sns_marks');
    databases.push(database);
    const bus = await openBus(`ns-m-${randomUUID().slice(0, 8)}`, { databaseUrl: database.url });
    const topic = `marks-${randomUUID().slice(0, 8)}`;
    await bus.declare({ topics: [topic], subscriptions: [] });
    // The mark statement held back until the test lets it go: publish must not wait for it.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const pool = bus['pool'];
    const query = pool.query.bind(pool);
    pool.query = (async (...args: Parameters<typeof query>) => {
      const config = args[0] as { name?: string };
      if (typeof config === 'object' && config?.name === 'bus_mark_events_published') await held;
      return query(...args);
    }) as typeof pool.query;
    const messages = Array.from({ length: 25 }, (_, index) => ({ topic, event: { ...event(`mark-${index}`), time: '2026-11-30T00:00:00.000Z' } }));
    assert.deepEqual(new Set(await bus.publishBatch(messages)), new Set(['published']), 'answered while every mark waits');
    assert.deepEqual(new Set(await bus.publishBatch(messages)), new Set(['duplicate']), 'a repeat while its mark waits is a duplicate, not sent again');
    const unmarked = async () => Number((await query<{ n: string }>('SELECT count(*) AS n FROM event_fingerprints WHERE published_at IS NULL')).rows[0]!.n);
    assert.equal(await unmarked(), 25);
    release();
    buses.splice(buses.indexOf(bus), 1);
    const closing = bus.close();
    // The pool closes after the marks are written: read them on a connection of the test's own.
    await closing;
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const rows = await client.query<{ unmarked: string; marked: string }>('SELECT count(*) FILTER (WHERE published_at IS NULL) AS unmarked, count(*) FILTER (WHERE published_at IS NOT NULL) AS marked FROM event_fingerprints');
      assert.deepEqual(rows.rows[0], { unmarked: '0', marked: '25' });
    } finally {
      await client.end();
    }
  });

  test('publishing reads the declared topics from the registry once, not per batch, and still finds a topic another process declared', async () => {
    const database = await createTestDatabase('bus_sns_topics');
    databases.push(database);
    const busNamespace = `ns-t-${randomUUID().slice(0, 8)}`;
    const publisher = await openBus(busNamespace, { databaseUrl: database.url });
    const declarer = await openBus(busNamespace, { databaseUrl: database.url });
    const topic = `cached-${randomUUID().slice(0, 8)}`;
    await declarer.declare({ topics: [topic], subscriptions: [] });
    // Counted at the bus's own pool: the statement loadTopics sends.
    let reads = 0;
    const pool = publisher['pool'];
    const query = pool.query.bind(pool);
    pool.query = ((...args: Parameters<typeof query>) => {
      if (typeof args[0] === 'string' && args[0].startsWith('SELECT name FROM topics')) reads += 1;
      return query(...args);
    }) as typeof pool.query;
    for (let index = 0; index < 5; index++) assert.deepEqual(await publisher.publish(topic, event(`cached-${index}`)), { id: `cached-${index}`, duplicate: false });
    assert.equal(reads, 1, 'one look at the registry for a topic it had not declared, none after');
    await assert.rejects(publisher.publish(`never-${randomUUID().slice(0, 8)}`, event('x')), /No topic named/);
  });

  test('at most 10 attributes travel as SNS message attributes, those the filters name first; a topology filtering on more than 10 is refused at declare', async () => {
    const bus = await openBus(`ns-a-${randomUUID().slice(0, 8)}`);
    const topic = `attrs-${randomUUID().slice(0, 8)}`;
    const subscription = `${topic}-late`;
    // `zz` sorts after the 13 others: without the rule, it would be the one left behind.
    await bus.declare({ topics: [topic], subscriptions: [{ name: subscription, topic, filter: { zz: ['yes'] } }] });
    const extensions = Object.fromEntries([...'abcdefghijklm'].map((letter) => [`ext${letter}`, letter]));
    assert.deepEqual(await bus.publishBatch([{ topic, event: { ...event('many-attributes', { ...extensions, zz: 'yes' }), time: new Date().toISOString() } }]), ['published']);
    const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: bus.resourceName(subscription) }));
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl, MessageAttributeNames: ['All'], WaitTimeSeconds: 2, MaxNumberOfMessages: 1 }));
    const message = received.Messages?.[0];
    assert.ok(message, 'the filter on the 15th attribute matched in SNS: the message was delivered');
    const names = Object.keys(message.MessageAttributes ?? {}).sort();
    assert.equal(names.length, 10, `exactly 10 attributes: ${names.join(', ')}`);
    assert.deepEqual(names.slice(0, 3), ['exta', 'extb', 'extc'], 'after the filtered one and type, source, subject come the others by name');
    assert.ok(['zz', 'type', 'source'].every((name) => names.includes(name)), names.join(', '));
    assert.equal(JSON.parse(message.Body!).extm, 'm', 'the body keeps every attribute');

    // A filter names at most 5 keys: two more subscriptions with 5 each bring the topic to 11.
    const keys = (from: number) => Object.fromEntries(Array.from({ length: 5 }, (_, index) => [`k${from + index}`, ['x']]));
    const wide = [0, 5].map((from) => ({ name: `${topic}-wide${from}`, topic, filter: keys(from) }));
    await assert.rejects(bus.declare({ topics: [topic], subscriptions: wide }), /filter on 11 attributes .*at most 10/);
    await bus.declare({ topics: [topic], subscriptions: wide.slice(0, 1) });
  });

  test('a batch of large events is published in PublishBatch calls of at most 256 KiB altogether (SNS refuses a larger one), each event once', async () => {
    const SNS_BATCH_BYTES_MAX = 256 * 1024;
    const batchBytes: number[] = [];
    const watchBatches = (client: SNSClient) =>
      client.middlewareStack.add(
        (next, context) => (args) => {
          if (context.commandName === 'PublishBatchCommand') {
            const entries = (args.input as { PublishBatchRequestEntries: { Message: string; MessageAttributes?: Record<string, { DataType: string; StringValue?: string }> }[] }).PublishBatchRequestEntries;
            // As SNS counts: each body, and each attribute's name, type and value.
            batchBytes.push(
              entries.reduce(
                (sum, entry) =>
                  sum +
                  Buffer.byteLength(entry.Message) +
                  Object.entries(entry.MessageAttributes ?? {}).reduce((bytes, [name, value]) => bytes + Buffer.byteLength(name) + Buffer.byteLength(value.DataType) + Buffer.byteLength(value.StringValue ?? ''), 0),
                0,
              ),
            );
          }
          return next(args);
        },
        { step: 'initialize', name: 'watchBatches' },
      );
    const bus = await openBus(`ns-g-${randomUUID().slice(0, 8)}`, { instrumentSns: watchBatches });
    const topic = `large-${randomUUID().slice(0, 8)}`;
    await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-worker`, topic }] });
    const ids: string[] = [];
    const consumer = await bus.consume(`${topic}-worker`, async (delivery) => void ids.push(delivery.event.id));
    // Ten events of about 60 KB (the limit is 64 KiB each): 600 KB, which no single batch may carry.
    const messages = Array.from({ length: 10 }, (_, index) => ({ topic, event: { ...event(`large-${index}`), data: { pad: 'x'.repeat(60_000) }, time: new Date().toISOString() } }));
    assert.deepEqual(await bus.publishBatch(messages), messages.map(() => 'published'));
    assert.ok(batchBytes.length >= 3, `at least three calls: ${batchBytes.join(', ')}`);
    for (const bytes of batchBytes) assert.ok(bytes <= SNS_BATCH_BYTES_MAX, `a call of ${bytes} bytes`);
    await waitFor(async () => ids.length >= 10 && (await queueDepth(bus, `${topic}-worker`)) === 0, 10_000);
    assert.deepEqual(ids.sort(), messages.map((message) => message.event.id).sort());
    await consumer.stop();
  });

  test('two deployments in two namespaces never see each other\'s events, even on the same topic and subscription names', async () => {
    const suffix = randomUUID().slice(0, 8);
    const [a, b] = [await openBus(`ns-a-${suffix}`), await openBus(`ns-b-${suffix}`)];
    const topic = `shared-${suffix}`;
    const seen = { a: [] as unknown[], b: [] as unknown[] };
    const consumers = [];
    for (const [label, bus] of [['a', a], ['b', b]] as const) {
      await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-all`, topic }] });
      consumers.push(await bus.consume(`${topic}-all`, async (delivery) => void seen[label].push([delivery.event.id, delivery.event.data])));
    }
    assert.deepEqual(await a.publish(topic, event('same-id')), { id: 'same-id', duplicate: false });
    assert.deepEqual(await b.publish(topic, { ...event('same-id'), data: { from: 'b' } }), { id: 'same-id', duplicate: false });
    await a.publish(topic, event('only-a'));
    await waitFor(() => seen.a.length >= 2 && seen.b.length >= 1);
    await sleep(300);
    assert.deepEqual(seen.a.sort(), [['only-a', { id: 'only-a' }], ['same-id', { id: 'same-id' }]]);
    assert.deepEqual(seen.b, [['same-id', { from: 'b' }]]);
    assert.notEqual(a.resourceName(topic), b.resourceName(topic));
    await Promise.all(consumers.map((consumer) => consumer.stop()));
  });
});
