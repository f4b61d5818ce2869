// The one conformance suite every EventBus adapter must pass, against real
// services: fan-out, filters, retries and dead letters, redrive, discard,
// crashes of consumers and relays, duplicates, poison messages, outages.
// Each adapter's *.int.test.ts calls runConformance with a harness.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Logger } from 'pino';
import { systemClock } from '../../../platform/clock.ts';
import { isErrorCode } from '../../../platform/errors.ts';
import { createLogger } from '../../../platform/logger.ts';
import { appendToOutbox, migrateOutbox, OutboxRelay, outboxBacklog } from '../../../platform/outbox/outbox.ts';
import { createPool, type Pool, type PoolClient } from '../../../platform/postgres/pool.ts';
import type { CloudEventInput } from '../../../contracts/events/envelope.ts';
import type { Delivery, EventBus, SubscriptionSpec } from '../../../contracts/bus/event-bus.ts';
import { createHttpServer } from '../../../platform/http/server.ts';
import { registerBusRoutes } from '../http/routes.ts';
import { TcpProxy } from './tcp-proxy.ts';

export type BusHarness = {
  /** A new bus instance with connections of its own, on the adapter's shared store; `via` routes its broker traffic through a proxy the test can cut. */
  open(options?: { via?: (target: { host: string; port: number }) => Promise<TcpProxy> }): Promise<EventBus>;
  /** A database for a pretend producer service's outbox. */
  producerDatabaseUrl: string;
  /**
   * Leaves the bus's store as a publisher that died after the broker accepted
   * this event and before it recorded so would leave it. Left out by adapters
   * whose publish and record commit together (postgres), which have no such state.
   */
  forgetPublished?(topic: string, id: string): Promise<void>;
  teardown(): Promise<void>;
};

export type HarnessFactory = (logger: Logger) => Promise<BusHarness>;

const WAIT_TIMEOUT_MS = 15_000;
/** Retry timings of test subscriptions: milliseconds, so the suite stays fast. */
const FAST: Partial<SubscriptionSpec> = { ackWaitMs: 2_000, retryBackoffInitialMs: 20, retryBackoffMaxMs: 80 };

export function runConformance(adapter: string, factory: HarnessFactory, options: { skip?: string | false } = {}): void {
  describe(`EventBus conformance: ${adapter}`, { skip: options.skip ?? false, concurrency: false }, () => {
    const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
    let harness: BusHarness;
    let bus: EventBus;
    let producerPool: Pool;
    const opened: EventBus[] = [];
    const proxies: TcpProxy[] = [];

    const openBus = async () => {
      const instance = await harness.open();
      opened.push(instance);
      return instance;
    };

    /** A bus whose broker traffic runs through a proxy the test can cut (closed after the suite). */
    const openBehindProxy = async () => {
      let proxy!: TcpProxy;
      const instance = await harness.open({
        via: async (target) => {
          proxy = new TcpProxy(target);
          await proxy.up();
          proxies.push(proxy);
          return proxy;
        },
      });
      opened.push(instance);
      return { bus: instance, proxy };
    };

    before(async () => {
      harness = await factory(logger);
      bus = await openBus();
      await migrateOutbox(harness.producerDatabaseUrl, logger);
      producerPool = createPool({ url: harness.producerDatabaseUrl, size: 4, applicationName: 'conformance-producer', logger });
    });

    after(async () => {
      for (const instance of opened) await instance.close();
      for (const proxy of proxies) await proxy.down();
      await producerPool?.end();
      await harness?.teardown();
    });

    /** Declares a fresh topic with subscriptions named after it, so tests never share queues. */
    async function declare(subscriptions: Record<string, Omit<SubscriptionSpec, 'name' | 'topic'>>) {
      const topic = `t-${randomUUID().slice(0, 8)}`;
      const names = Object.fromEntries(Object.keys(subscriptions).map((label) => [label, `${topic}-${label}`]));
      await bus.declare({
        topics: [topic],
        subscriptions: Object.entries(subscriptions).map(([label, spec]) => ({ ...FAST, ...spec, name: names[label]!, topic })),
      });
      return { topic, names };
    }

    test('fan-out: every subscription of a topic gets its own copy of every event', async () => {
      const { topic, names } = await declare({ points: {}, notices: {}, audit: {} });
      const seen = collect();
      const consumers = await Promise.all(Object.values(names).map((name) => bus.consume(name, seen.handler)));
      for (let index = 0; index < 5; index++) await bus.publish(topic, event({ id: `fan-${index}` }));
      await waitFor(() => seen.deliveries.length >= 15);
      for (const name of Object.values(names)) {
        assert.deepEqual(seen.ids(name).sort(), ['fan-0', 'fan-1', 'fan-2', 'fan-3', 'fan-4']);
      }
      await Promise.all(consumers.map((consumer) => consumer.stop()));
    });

    test('filters: exact, prefix, anything-but and exists select what each subscription receives', async () => {
      const { topic, names } = await declare({
        exact: { filter: { network: ['visa'] } },
        prefix: { filter: { type: [{ prefix: 'koban.payment.' }] } },
        anythingbut: { filter: { network: [{ 'anything-but': ['visa', 'jcb'] }] } },
        exists: { filter: { campaign: [{ exists: true }] } },
        absent: { filter: { campaign: [{ exists: false }] } },
        both: { filter: { network: ['quicpay'], type: [{ prefix: 'koban.payment.' }] } },
      });
      const seen = collect();
      const consumers = await Promise.all(Object.values(names).map((name) => bus.consume(name, seen.handler)));
      await bus.publish(topic, event({ id: 'visa-auth', type: 'koban.payment.authorized', network: 'visa' }));
      await bus.publish(topic, event({ id: 'qp-auth', type: 'koban.payment.authorized', network: 'quicpay' }));
      await bus.publish(topic, event({ id: 'reward', type: 'koban.reward.granted', campaign: 'spring' }));
      await waitFor(() => seen.deliveries.length >= 8);
      await settle();
      assert.deepEqual(seen.ids(names.exact!).sort(), ['visa-auth']);
      assert.deepEqual(seen.ids(names.prefix!).sort(), ['qp-auth', 'visa-auth']);
      assert.deepEqual(seen.ids(names.anythingbut!).sort(), ['qp-auth'], 'anything-but needs the attribute present');
      assert.deepEqual(seen.ids(names.exists!).sort(), ['reward']);
      assert.deepEqual(seen.ids(names.absent!).sort(), ['qp-auth', 'visa-auth']);
      assert.deepEqual(seen.ids(names.both!).sort(), ['qp-auth']);
      await Promise.all(consumers.map((consumer) => consumer.stop()));
    });

    test('a failing handler is retried with growing delays, then dead-lettered with attempts and last error', async () => {
      const { topic, names } = await declare({ flaky: { maxDeliveries: 4, retryBackoffInitialMs: 40, retryBackoffMaxMs: 400 } });
      const attempts: { attempt: number; at: number }[] = [];
      const consumer = await bus.consume(names.flaky!, async (delivery) => {
        attempts.push({ attempt: delivery.attempt, at: performance.now() });
        throw new Error(`points service down (attempt ${delivery.attempt})`);
      });
      await bus.publish(topic, event({ id: 'always-fails', data: { amount: 1200 } }));
      const dead = await waitFor(async () => (await bus.deadLetters(names.flaky!, { limit: 10 })).data[0]);
      assert.deepEqual(attempts.map((entry) => entry.attempt), [1, 2, 3, 4]);
      // Equal jitter: each delay is at least half its exponential step (40, 80, 160 ms).
      const gaps = attempts.slice(1).map((entry, index) => entry.at - attempts[index]!.at);
      gaps.forEach((gap, index) => assert.ok(gap >= (40 * 2 ** index) / 2 - 5, `retry ${index + 1} came after ${gap.toFixed(0)} ms`));
      assert.equal(dead.id, 'always-fails');
      assert.equal(dead.attempts, 4);
      assert.match(dead.last_error ?? '', /points service down \(attempt 4\)/);
      assert.deepEqual(dead.event.data, { amount: 1200 });
      assert.ok(!Number.isNaN(Date.parse(dead.dead_lettered_at)));
      await settle();
      assert.equal(attempts.length, 4, 'no delivery after the dead letter');
      const stats = (await bus.subscriptions()).find((entry) => entry.name === names.flaky);
      assert.equal(stats?.dead_letters, 1);
      assert.equal(stats?.depth, 0);
      await consumer.stop();
    });

    test('redrive sends chosen dead letters back to their subscription only, where they are handled', async () => {
      const { topic, names } = await declare({ target: { maxDeliveries: 1 }, bystander: {} });
      let healthy = false;
      const seen = collect();
      const target = await bus.consume(names.target!, async (delivery) => {
        if (!healthy) throw new Error('not yet');
        await seen.handler(delivery);
      });
      const bystander = await bus.consume(names.bystander!, seen.handler);
      for (const id of ['r-1', 'r-2', 'r-3']) await bus.publish(topic, event({ id }));
      await waitFor(async () => (await bus.deadLetters(names.target!, { limit: 10 })).data.length === 3);
      await waitFor(() => seen.ids(names.bystander!).length === 3);
      healthy = true;
      assert.deepEqual(await bus.redrive(names.target!, ['r-2', 'no-such-id']), { redriven: 1 });
      await waitFor(() => seen.ids(names.target!).length === 1);
      assert.deepEqual(seen.ids(names.target!), ['r-2']);
      assert.equal(seen.deliveries.find((delivery) => delivery.subscription === names.target)?.attempt, 1, 'a redrive starts counting again');
      assert.deepEqual((await bus.deadLetters(names.target!, { limit: 10 })).data.map((letter) => letter.id).sort(), ['r-1', 'r-3']);
      assert.deepEqual(await bus.redrive(names.target!), { redriven: 2 });
      await waitFor(() => seen.ids(names.target!).length === 3);
      await settle();
      assert.equal(seen.ids(names.bystander!).length, 3, 'the other subscription got nothing again');
      assert.equal((await bus.deadLetters(names.target!, { limit: 10 })).data.length, 0);
      await Promise.all([target.stop(), bystander.stop()]);
    });

    test('discard keeps the dead letter as discarded, out of the queue and out of redrive', async () => {
      const { topic, names } = await declare({ sink: { maxDeliveries: 1 } });
      const consumer = await bus.consume(names.sink!, async () => {
        throw new Error('rejected');
      });
      await bus.publish(topic, event({ id: 'to-discard' }));
      await waitFor(async () => (await bus.deadLetters(names.sink!, { limit: 10 })).data.length === 1);
      const discarded = await bus.discard(names.sink!, 'to-discard');
      assert.equal(discarded.id, 'to-discard');
      assert.ok(discarded.discarded_at);
      assert.deepEqual(await bus.discard(names.sink!, 'to-discard'), discarded, 'discarding twice changes nothing');
      assert.equal((await bus.deadLetters(names.sink!, { limit: 10 })).data.length, 0);
      const kept = await bus.deadLetters(names.sink!, { limit: 10, state: 'discarded' });
      assert.deepEqual(kept.data.map((letter) => letter.id), ['to-discard']);
      assert.deepEqual(await bus.redrive(names.sink!), { redriven: 0 });
      await assert.rejects(bus.discard(names.sink!, 'never-published'), (error) => isErrorCode(error, 'not_found'));
      await assert.rejects(bus.deadLetters('no-such-subscription', { limit: 10 }), (error) => isErrorCode(error, 'not_found'));
      await consumer.stop();
    });

    test('a graceful stop with a slow handler finishes it and takes no more: the rest arrive later on their first attempt', async () => {
      const { topic, names } = await declare({ worker: { maxDeliveries: 1 } });
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let slowStarted!: () => void;
      const started = new Promise<void>((resolve) => (slowStarted = resolve));
      const handled: string[] = [];
      const first = await bus.consume(names.worker!, async (delivery) => {
        if (delivery.event.id === 'slow') {
          slowStarted();
          await released;
        }
        handled.push(delivery.event.id);
      }, { inFlightMax: 1 });
      await bus.publish(topic, event({ id: 'slow' }));
      await started;
      for (const id of ['later-1', 'later-2', 'later-3']) await bus.publish(topic, event({ id }));
      const stopping = first.stop();
      await new Promise((resolve) => setTimeout(resolve, 300));
      release();
      await stopping;
      assert.ok(handled.includes('slow'), 'the message in hand was finished');
      const seen = collect();
      const second = await bus.consume(names.worker!, seen.handler);
      await waitFor(() => handled.length + seen.deliveries.length >= 4);
      await settle();
      const all = [...handled, ...seen.deliveries.map((delivery) => delivery.event.id)].sort();
      assert.deepEqual(all, ['later-1', 'later-2', 'later-3', 'slow'], 'each handled exactly once, none dead-lettered');
      for (const delivery of seen.deliveries) assert.equal(delivery.attempt, 1, `${delivery.event.id} arrives on its first attempt`);
      assert.equal((await bus.deadLetters(names.worker!, { limit: 10 })).data.length, 0);
      await second.stop();
    });

    test('consumer limits are checked: a zero or fractional batch is refused, not spun on', async () => {
      const { names } = await declare({ worker: {} });
      for (const options of [{ batchSizeMax: 0 }, { batchSizeMax: 1.5 }, { inFlightMax: 0 }, { inFlightMax: -1 }]) {
        await assert.rejects(bus.consume(names.worker!, async () => undefined, options), /must be an integer/, JSON.stringify(options));
      }
    });

    test('a consumer killed mid-message loses nothing: the message is redelivered after its ack deadline', async () => {
      const { topic, names } = await declare({ worker: { ackWaitMs: 400 } });
      const crashing = await openBus();
      let received!: () => void;
      const receivedOnce = new Promise<void>((resolve) => (received = resolve));
      const doomed = await crashing.consume(names.worker!, () => {
        received();
        return new Promise<void>(() => undefined); // hangs: the process "dies" holding the message
      });
      await bus.publish(topic, event({ id: 'mid-crash' }));
      await receivedOnce;
      await doomed.stop({ abandonInFlight: true });
      await crashing.close();
      const seen = collect();
      const survivor = await bus.consume(names.worker!, seen.handler);
      await waitFor(() => seen.deliveries.length === 1);
      assert.equal(seen.deliveries[0]!.event.id, 'mid-crash');
      assert.equal(seen.deliveries[0]!.attempt, 2);
      await survivor.stop();
    });

    test('outbox: an event commits with its state change or not at all', async () => {
      const { topic, names } = await declare({ audit: {} });
      const seen = collect();
      const consumer = await bus.consume(names.audit!, seen.handler);
      const relay = new OutboxRelay({ pool: producerPool, bus, logger, idlePollMs: 50 });
      relay.start();
      await inTransaction(producerPool, async (client) => {
        await appendToOutbox(client, [{ topic, event: event({ id: 'committed' }) }], systemClock);
      });
      await assert.rejects(
        inTransaction(producerPool, async (client) => {
          await appendToOutbox(client, [{ topic, event: event({ id: 'rolled-back' }) }], systemClock);
          throw new Error('payment declined');
        }),
        /payment declined/,
      );
      await assert.rejects(
        inTransaction(producerPool, (client) => appendToOutbox(client, [{ topic, event: { ...event({ id: 'bad' }), specversion: '0.3' } as unknown as CloudEventInput }], systemClock)),
        (error) => isErrorCode(error, 'invalid_request'),
      );
      await waitFor(() => seen.deliveries.length === 1);
      await settle();
      assert.deepEqual(seen.ids(names.audit!), ['committed']);
      assert.equal(await outboxBacklog(producerPool), 0);
      await relay.stop();
      await consumer.stop();
    });

    test('a relay killed between publish and mark causes no second delivery', async () => {
      const { topic, names } = await declare({ points: {}, notices: {} });
      const seen = collect();
      const consumers = await Promise.all(Object.values(names).map((name) => bus.consume(name, seen.handler)));
      await inTransaction(producerPool, (client) => appendToOutbox(client, [{ topic, event: event({ id: 'crash-before-mark' }) }], systemClock));
      // This bus publishes, then the relay "dies" before it can mark the row.
      const dyingBus: Pick<EventBus, 'publishBatch'> = {
        publishBatch: async (messages) => {
          await bus.publishBatch(messages);
          throw new Error('relay process killed');
        },
      };
      const dying = new OutboxRelay({ pool: producerPool, bus: dyingBus, logger });
      await assert.rejects(dying.relayOnce(), /relay process killed/);
      assert.equal(await outboxBacklog(producerPool), 1, 'the row is still unmarked');
      const restarted = new OutboxRelay({ pool: producerPool, bus, logger });
      assert.equal(await restarted.relayOnce(), 1);
      assert.equal(await outboxBacklog(producerPool), 0);
      await waitFor(() => seen.deliveries.length >= 2);
      await settle();
      assert.deepEqual(seen.ids(names.points!), ['crash-before-mark']);
      assert.deepEqual(seen.ids(names.notices!), ['crash-before-mark']);
      await Promise.all(consumers.map((consumer) => consumer.stop()));
    });

    test('an event the broker took but the publisher never recorded, published again, reaches each handler once', async () => {
      const { topic, names } = await declare({ points: {}, notices: { filter: { network: ['visa'] } } });
      const seen = collect();
      const consumers = await Promise.all(Object.values(names).map((name) => bus.consume(name, seen.handler)));
      await bus.publish(topic, event({ id: 'taken-unrecorded', network: 'visa' }));
      await waitFor(() => seen.deliveries.length >= 2);
      // The publisher "died" between the broker's acceptance and its record: the relay publishes the row again.
      await harness.forgetPublished?.(topic, 'taken-unrecorded');
      await bus.publish(topic, event({ id: 'taken-unrecorded', network: 'visa' }));
      await bus.publish(topic, event({ id: 'after-it', network: 'visa' }));
      await waitFor(() => seen.deliveries.length >= 4);
      await settle();
      for (const name of Object.values(names)) assert.deepEqual(seen.ids(name), ['taken-unrecorded', 'after-it'], `${name} handled it once`);
      await Promise.all(consumers.map((consumer) => consumer.stop()));
    });

    test('a duplicate publish is accepted once: one delivery per subscription', async () => {
      const { topic, names } = await declare({ a: {}, b: {} });
      const seen = collect();
      const consumers = await Promise.all(Object.values(names).map((name) => bus.consume(name, seen.handler)));
      assert.deepEqual(await bus.publish(topic, event({ id: 'dup-1' })), { id: 'dup-1', duplicate: false });
      // An identical repeat (time, left for the bus to stamp, differs) is a duplicate; different content is a conflict (next test).
      assert.deepEqual(await bus.publish(topic, event({ id: 'dup-1' })), { id: 'dup-1', duplicate: true });
      const batch = [event({ id: 'dup-2' }), event({ id: 'dup-2' }), event({ id: 'dup-1' })].map((input) => ({ topic, event: { ...input, time: new Date().toISOString() } }));
      assert.deepEqual(await bus.publishBatch(batch), ['published', 'duplicate', 'duplicate']);
      await waitFor(() => seen.deliveries.length >= 4);
      await settle();
      for (const name of Object.values(names)) assert.deepEqual(seen.ids(name).sort(), ['dup-1', 'dup-2']);
      assert.deepEqual(seen.deliveries.find((delivery) => delivery.event.id === 'dup-1')?.event.data, { n: 1 }, 'the first publish wins');
      await assert.rejects(bus.publish(`no-such-topic-${randomUUID().slice(0, 8)}`, event({ id: 'x' })), (error) => isErrorCode(error, 'not_found'));
      await assert.rejects(bus.publish(topic, { ...event({ id: 'y' }), Amount: 5 }), (error) => isErrorCode(error, 'invalid_request'));
      await Promise.all(consumers.map((consumer) => consumer.stop()));
    });

    test('an id reused with different content is 409 idempotency_conflict naming the fields; key order and time do not count; nothing is delivered twice', async () => {
      const { topic, names } = await declare({ a: {}, b: { filter: { network: ['visa'] } } });
      const seen = collect();
      const consumers = await Promise.all(Object.values(names).map((name) => bus.consume(name, seen.handler)));
      const original = event({ id: 'reused-1', network: 'visa', time: '2026-04-01T09:00:00.000Z', data: { amount: 1200, merchant: { name: 'Lawson', mcc: '5411' }, tags: ['a', 'b'] } });
      assert.deepEqual(await bus.publish(topic, original), { id: 'reused-1', duplicate: false });
      // The same event with every object's keys in another order and another time: the same content.
      const reordered = {
        data: { tags: ['a', 'b'], merchant: { mcc: '5411', name: 'Lawson' }, amount: 1200 },
        time: '2026-04-02T10:00:00.000Z',
        ...Object.fromEntries(Object.entries(original).filter(([name]) => name !== 'data' && name !== 'time').reverse()),
      };
      assert.deepEqual(await bus.publish(topic, reordered), { id: 'reused-1', duplicate: true });
      const conflicts: Array<[Record<string, unknown>, string[]]> = [
        [{ ...original, data: { ...original.data as object, amount: 1300 } }, ['data']],
        [{ ...original, subject: 'user-2', network: 'jcb' }, ['network', 'subject']],
        [{ ...original, campaign: 'spring' }, ['campaign']],
        [Object.fromEntries(Object.entries(original).filter(([name]) => name !== 'subject')), ['subject']],
        [{ ...original, data: { ...original.data as object, tags: ['b', 'a'] } }, ['data']],
      ];
      for (const [repeat, fields] of conflicts) {
        await assert.rejects(bus.publish(topic, repeat), (error) => {
          assert.ok(isErrorCode(error, 'idempotency_conflict'), String(error));
          assert.deepEqual(error.details, { topic, id: 'reused-1', fields });
          return true;
        });
      }
      // In a batch: against the stored event, and against the batch's first for a new id.
      const stamped = (input: CloudEventInput) => ({ topic, event: { ...input, time: input.time ?? new Date().toISOString() } });
      assert.deepEqual(
        await bus.publishBatch([
          stamped(original),
          stamped({ ...original, type: 'koban.test.other' }),
          stamped(event({ id: 'reused-2', network: 'visa' })),
          stamped(event({ id: 'reused-2', network: 'visa', data: { n: 2 } })),
          stamped(event({ id: 'reused-2', network: 'visa' })),
        ]),
        ['duplicate', { conflict: ['type'] }, 'published', { conflict: ['data'] }, 'duplicate'],
      );
      assert.deepEqual(await bus.publish(topic, event({ id: 'reused-2', network: 'visa' })), { id: 'reused-2', duplicate: true });
      await waitFor(() => seen.deliveries.length >= 4);
      await settle();
      for (const name of Object.values(names)) assert.deepEqual(seen.ids(name).sort(), ['reused-1', 'reused-2'], `${name} got each event once`);
      const delivered = seen.deliveries.find((delivery) => delivery.event.id === 'reused-1')!.event;
      assert.deepEqual({ data: delivered.data, time: delivered.time, subject: delivered.subject }, { data: original.data, time: original.time, subject: original.subject }, 'the first publish stands');
      await Promise.all(consumers.map((consumer) => consumer.stop()));
    });

    test('text PostgreSQL cannot store is a 400 naming the field at publish and in the outbox, and nothing is stored', async () => {
      const { topic, names } = await declare({ all: {} });
      const seen = collect();
      const consumer = await bus.consume(names.all!, seen.handler);
      const bad: Array<[Record<string, unknown>, string]> = [
        [{ subject: 'user\u0000' }, 'subject'],
        [{ network: '\ud800' }, 'network'],
        [{ data: { note: 'x\udc00' } }, 'data.note'],
        [{ data: { ['k\u0000']: 1 } }, 'data'],
      ];
      for (const [overrides, field] of bad) {
        const input = event({ id: `unstorable-${field}`, ...overrides });
        await assert.rejects(bus.publish(topic, input), (error) => isErrorCode(error, 'invalid_request') && error.details?.field === field, field);
        await assert.rejects(
          inTransaction(producerPool, (client) => appendToOutbox(client, [{ topic, event: event({ id: 'storable-neighbour' }) }, { topic, event: input }], systemClock)),
          (error) => isErrorCode(error, 'invalid_request') && error.details?.field === field,
          `outbox: ${field}`,
        );
      }
      await assert.rejects(bus.publish('bad\u0000topic', event({ id: 'x' })), (error) => isErrorCode(error, 'invalid_request') && error.details?.field === 'topic');
      await assert.rejects(
        inTransaction(producerPool, (client) => appendToOutbox(client, [{ topic: 'bad\u0000topic', event: event({ id: 'x' }) }], systemClock)),
        (error) => isErrorCode(error, 'invalid_request') && error.details?.field === 'topic',
      );
      assert.equal(await outboxBacklog(producerPool), 0, 'the outbox wrote nothing, not even the good neighbour');
      // The bus still works, and delivered none of them.
      await bus.publish(topic, event({ id: 'after-refusals' }));
      await waitFor(() => seen.deliveries.length >= 1);
      await settle();
      assert.deepEqual(seen.ids(names.all!), ['after-refusals']);
      await consumer.stop();
    });

    test('a poison message never blocks the messages behind it', async () => {
      const { topic, names } = await declare({ orders: { maxDeliveries: 3, retryBackoffInitialMs: 100, retryBackoffMaxMs: 200 } });
      const seen = collect();
      const consumer = await bus.consume(
        names.orders!,
        async (delivery) => {
          if (delivery.event.id === 'poison') throw new Error('cannot parse');
          await seen.handler(delivery);
        },
        { inFlightMax: 1, batchSizeMax: 1 },
      );
      await bus.publish(topic, event({ id: 'poison' }));
      for (let index = 0; index < 20; index++) await bus.publish(topic, event({ id: `good-${index}` }));
      await waitFor(() => seen.deliveries.length === 20);
      const dead = await waitFor(async () => (await bus.deadLetters(names.orders!, { limit: 10 })).data[0]);
      assert.equal(dead.id, 'poison');
      assert.equal(dead.attempts, 3);
      await consumer.stop();
    });

    test('broker down, then up: the relay backs off, nothing committed is lost', async () => {
      const { topic, names } = await declare({ ledger: {} });
      const seen = collect();
      const consumer = await bus.consume(names.ledger!, seen.handler);
      const { bus: flaky, proxy } = await openBehindProxy();
      const relay = new OutboxRelay({ pool: producerPool, bus: flaky, logger, idlePollMs: 50, retryInitialMs: 20, retryMaxMs: 200 });
      relay.start();
      await inTransaction(producerPool, (client) => appendToOutbox(client, [{ topic, event: event({ id: 'before-outage' }) }], systemClock));
      await waitFor(() => seen.deliveries.length === 1);
      await proxy.down();
      const during = Array.from({ length: 30 }, (_, index) => `during-outage-${index}`);
      for (const id of during) await inTransaction(producerPool, (client) => appendToOutbox(client, [{ topic, event: event({ id }) }], systemClock));
      await waitFor(() => relay.failures >= 2);
      const failuresSeen = relay.failures;
      await sleep(300);
      assert.ok(relay.failures - failuresSeen < 10, `the relay backs off instead of spinning (${relay.failures - failuresSeen} failures in 300 ms)`);
      assert.equal(seen.deliveries.length, 1);
      await proxy.up();
      await waitFor(() => new Set(seen.ids(names.ledger!)).size === 31, 30_000);
      // Delivery may beat the mark (a publish buffered through the outage lands on reconnect); the mark follows.
      await waitFor(async () => (await outboxBacklog(producerPool)) === 0);
      await relay.stop();
      await consumer.stop();
    });

    test('a partner publish over HTTP while the broker is down is 503 unavailable with Retry-After; the resend once it is back is accepted and delivered once', async () => {
      const { topic, names } = await declare({ points: {} });
      const seen = collect();
      const consumer = await bus.consume(names.points!, seen.handler);
      const { bus: flaky, proxy } = await openBehindProxy();
      const app = await createHttpServer({ logger, bodyLimitBytes: 16 * 1024, title: 'conformance', version: '0', description: 'conformance' });
      registerBusRoutes(app, flaky);
      await app.ready();
      const publish = (id: string) =>
        app.inject({ method: 'POST', url: `/v1/topics/${topic}/events`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(event({ id })) });
      try {
        await proxy.down();
        const refused = await publish('partner-1');
        assert.equal(refused.statusCode, 503, refused.body);
        assert.equal(refused.json().error.code, 'unavailable');
        assert.equal(refused.json().error.retryable, true);
        assert.ok(refused.headers['retry-after'], 'Retry-After tells the partner when to resend');
        await proxy.up();
        const accepted = await waitFor(async () => {
          const answer = await publish('partner-1');
          if (answer.statusCode !== 202) assert.equal(answer.json().error.code, 'unavailable', answer.body);
          return answer.statusCode === 202 ? answer : undefined;
        }, 30_000);
        assert.equal(accepted.json().id, 'partner-1');
        await waitFor(() => seen.deliveries.length >= 1);
        await settle();
        assert.deepEqual(seen.ids(names.points!), ['partner-1']);
      } finally {
        await app.close();
        await consumer.stop();
      }
    });

    test('subscription stats report depth, in-flight, oldest age and dead letters', async () => {
      const { topic, names } = await declare({ slow: { maxDeliveries: 1 } });
      await bus.publish(topic, event({ id: 'waiting-1' }));
      await bus.publish(topic, event({ id: 'waiting-2' }));
      await sleep(20);
      let stats = (await bus.subscriptions()).find((entry) => entry.name === names.slow);
      assert.equal(stats?.topic, topic);
      assert.equal(stats?.depth, 2);
      assert.equal(stats?.in_flight, 0);
      assert.ok((stats?.oldest_age_ms ?? 0) >= 10, `oldest_age_ms ${stats?.oldest_age_ms}`);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const consumer = await bus.consume(names.slow!, async (delivery) => {
        if (delivery.event.id === 'waiting-1') throw new Error('bad');
        await gate;
      });
      await waitFor(async () => {
        stats = (await bus.subscriptions()).find((entry) => entry.name === names.slow);
        return stats?.in_flight === 1 && stats.dead_letters === 1 && stats.depth === 0;
      }, 3_000).finally(release);
      release();
      await waitFor(async () => {
        stats = (await bus.subscriptions()).find((entry) => entry.name === names.slow);
        return stats?.in_flight === 0 && stats.oldest_age_ms === null;
      });
      await consumer.stop();
    });
  });
}

function event(overrides: Partial<CloudEventInput> & { id: string }): CloudEventInput {
  return {
    specversion: '1.0',
    source: '/koban/tests',
    type: 'koban.test.happened',
    subject: 'user-1',
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    data: { n: 1 },
    ...overrides,
  };
}

function collect() {
  const deliveries: Delivery[] = [];
  return {
    deliveries,
    handler: async (delivery: Delivery) => {
      deliveries.push(delivery);
    },
    ids: (subscription: string) => deliveries.filter((delivery) => delivery.subscription === subscription).map((delivery) => delivery.event.id),
  };
}

async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

/** Polls until the check returns something truthy; returns it. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = WAIT_TIMEOUT_MS): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${check.toString().slice(0, 200)}`);
    await sleep(10);
  }
}

/** Long enough for a wrong extra delivery to show up. */
function settle(): Promise<void> {
  return sleep(150);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
