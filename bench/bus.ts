// npm run bench:bus — events per second from outbox commit to handler ack,
// and p50/p99 of that latency, for each EventBus adapter, beside a raw
// JetStream publish/consume measured in the same run. Everything runs on
// 127.0.0.1: PostgreSQL from DATABASE_URL (or an embedded one started here)
// and NATS at NATS_URL (skipped with a message if unreachable).
//
// The producer side is realistic: writers commit one event per transaction
// through the transactional outbox (as a payment service would), a relay
// publishes, a consumer handles and acks. Latency is taken per event from the
// instant its transaction committed to the instant its handler returned.
//
// sns-sqs runs on the fauxqs emulator embedded here on loopback (its figures
// say what the adapter adds, not what AWS does): the adapter's publishBatch and
// its consumer, each beside a raw AWS SDK loop on the same emulator in the same
// run (PublishBatch of 10; ReceiveMessage of 10 then DeleteMessageBatch),
// alternating, SNS_SQS_ROUNDS rounds, medians compared.
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, nanos } from '@nats-io/transport-node';
import pg from 'pg';
import type { EventBus } from '../src/contracts/bus/event-bus.ts';
import { openEventBus, type BusAdapter } from '../src/services/bus/clients/open-event-bus.ts';
import { systemClock } from '../src/platform/clock.ts';
import { createLogger } from '../src/platform/logger.ts';
import { appendToOutbox, migrateOutbox, OutboxRelay } from '../src/platform/outbox/outbox.ts';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/platform/postgres/embedded.ts';
import { createPool, databaseUrl } from '../src/platform/postgres/pool.ts';
import { PublishBatchCommand, SNSClient, SubscribeCommand, CreateTopicCommand } from '@aws-sdk/client-sns';
import { CreateQueueCommand, DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { EMULATOR_CREDENTIALS, EMULATOR_REGION_DEFAULT, startEmbeddedEmulator } from '../src/services/bus/adapters/sns-sqs/embedded-emulator.ts';
import { SnsSqsEventBus } from '../src/services/bus/adapters/sns-sqs/sns-sqs-event-bus.ts';
import { natsReachable } from './lib/nats.ts';
import { freePort } from './lib/net.ts';

/** Events per adapter run (after warm-up). */
const EVENTS = Number(process.env.BENCH_BUS_EVENTS ?? 30_000);
const WARMUP_EVENTS = 2_000;
/** Concurrent producer transactions. */
const WRITERS = Number(process.env.BENCH_BUS_WRITERS ?? 16);
/**
 * Events committed per producer transaction. One per transaction caps this
 * machine at ~3,500 commits/s in the producer's own database (measured with no
 * bus at all), which would measure the producer, not the bus.
 */
const EVENTS_PER_TRANSACTION = Number(process.env.BENCH_BUS_EVENTS_PER_TX ?? 10);
/** Offered load of the latency phase, events per second: the postgres target rate. */
const PACED_RATE = Number(process.env.BENCH_BUS_PACED_RATE ?? 5_000);
const PACED_SECONDS = 6;
/** Events preloaded and then drained by the adapter's own consumer, to compare with the raw JetStream consume. */
const DRAIN_EVENTS = Number(process.env.BENCH_BUS_DRAIN_EVENTS ?? 50_000);
/** Messages for the raw JetStream baseline. */
const RAW_MESSAGES = Number(process.env.BENCH_BUS_RAW_MESSAGES ?? 100_000);
/** Raw publishes awaiting their ack at once. */
const RAW_PUBLISH_WINDOW = 1_000;
/** One phase gives up after this long, so the whole run stays under five minutes. */
const PHASE_TIMEOUT_MS = 60_000;
/** Messages per sns-sqs round, each way (adapter and raw), and rounds (medians are reported). */
const SNS_SQS_MESSAGES = Number(process.env.BENCH_BUS_SNS_SQS_MESSAGES ?? 3_000);
const SNS_SQS_ROUNDS = Number(process.env.BENCH_BUS_SNS_SQS_ROUNDS ?? 3);
/** PublishBatch calls (of 10) awaiting their answer at once, raw and adapter alike (the adapter: publishBatch calls of 10). */
const SNS_SQS_PUBLISH_WINDOW = 8;
/** Which adapters run (comma-separated): all by default. */
const ADAPTERS = (process.env.BENCH_BUS_ADAPTERS ?? 'postgres,nats,sns-sqs').split(',');
const TARGETS = { postgresEventsPerSecond: 5_000, postgresP99Ms: 100, natsShareOfRawConsume: 0.5, snsSqsShareOfRaw: 0.5 };

const logger = createLogger(process.env.LOG_LEVEL ?? 'warn');
const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const now = () => performance.timeOrigin + performance.now();

type Phase = { events: number; seconds: number; eventsPerSecond: number; p50Ms: number; p99Ms: number; maxMs: number; complete: boolean };
type Result = { adapter: string; burst: Phase; paced: Phase; drainPerSecond: number };

async function main(): Promise<void> {
  const started = now();
  let embedded: EmbeddedServer | undefined;
  let dataDir: string | undefined;
  let serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'koban-bench-bus-'));
    await chmod(dataDir, 0o755);
    embedded = await startEmbeddedPostgres({ dataDir, port: await freePort(), logger });
    serverUrl = embedded.serverUrl;
  }
  const natsUp = await natsReachable(natsUrl);
  const databases: string[] = [];
  const results: Result[] = [];
  let raw: { publishPerSecond: number; consumePerSecond: number } | undefined;
  let snsSqs: SnsSqsFigures | undefined;
  try {
    console.log(`bench:bus — ${EVENTS} events per adapter, ${WRITERS} writers, ${EVENTS_PER_TRANSACTION} events per producer transaction, ${os.cpus().length} cores`);
    // sns-sqs too: with no endpoint and no AWS credentials it opens on an embedded emulator, as `koban start` does.
    for (const adapter of (['postgres', 'nats', 'sns-sqs'] as BusAdapter[]).filter((name) => ADAPTERS.includes(name))) {
      if (adapter === 'nats' && !natsUp) {
        console.log(`nats: skipped, NATS not reachable at ${natsUrl}`);
        continue;
      }
      const busDb = await createDatabase(serverUrl, `bench_bus_${adapter}`);
      const producerDb = await createDatabase(serverUrl, `bench_producer_${adapter}`);
      databases.push(busDb, producerDb);
      results.push(await runAdapter(adapter, databaseUrl(serverUrl, busDb), databaseUrl(serverUrl, producerDb)));
      printResult(results.at(-1)!);
    }
    if (ADAPTERS.includes('sns-sqs')) {
      const busDb = await createDatabase(serverUrl, 'bench_bus_sns_sqs');
      databases.push(busDb);
      snsSqs = await snsSqsVersusRaw(databaseUrl(serverUrl, busDb));
    }
    if (natsUp && ADAPTERS.includes('nats')) {
      raw = await rawJetStream();
      console.log(`raw JetStream: publish ${fmt(raw.publishPerSecond)} msg/s, consume ${fmt(raw.consumePerSecond)} msg/s (${RAW_MESSAGES} messages, file storage)`);
    }
  } finally {
    for (const name of databases) await dropDatabase(serverUrl, name).catch(() => undefined);
    await embedded?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }

  console.log('\nsummary');
  const postgres = results.find((result) => result.adapter === 'postgres');
  const nats = results.find((result) => result.adapter === 'nats');
  if (postgres) {
    const ok = postgres.burst.complete && postgres.burst.eventsPerSecond >= TARGETS.postgresEventsPerSecond && postgres.paced.complete && postgres.paced.p99Ms < TARGETS.postgresP99Ms;
    console.log(
      `  postgres: ${fmt(postgres.burst.eventsPerSecond)} events/s; at ${fmt(PACED_RATE)}/s offered p99 ${postgres.paced.p99Ms.toFixed(1)} ms — target ≥ ${fmt(TARGETS.postgresEventsPerSecond)}/s with p99 < ${TARGETS.postgresP99Ms} ms: ${ok ? 'met' : 'NOT met'}`,
    );
  }
  if (nats && raw) {
    const share = nats.drainPerSecond / raw.consumePerSecond;
    const endToEnd = nats.burst.eventsPerSecond / raw.consumePerSecond;
    console.log(
      `  nats: consumer drains ${fmt(nats.drainPerSecond)} events/s = ${(share * 100).toFixed(0)}% of raw JetStream consume (${fmt(raw.consumePerSecond)}/s) — target ≥ ${TARGETS.natsShareOfRawConsume * 100}%: ${share >= TARGETS.natsShareOfRawConsume ? 'met' : 'NOT met'}; outbox→ack ${fmt(nats.burst.eventsPerSecond)} events/s = ${(endToEnd * 100).toFixed(0)}% of raw consume`,
    );
  }
  if (snsSqs) {
    const publishShare = snsSqs.adapter.publish / snsSqs.raw.publish;
    const consumeShare = snsSqs.adapter.consume / snsSqs.raw.consume;
    const met = publishShare >= TARGETS.snsSqsShareOfRaw && consumeShare >= TARGETS.snsSqsShareOfRaw;
    console.log(
      `  sns-sqs (emulator): publish ${fmt(snsSqs.adapter.publish)}/s = ${(publishShare * 100).toFixed(0)}% of raw SDK (${fmt(snsSqs.raw.publish)}/s); consume ${fmt(snsSqs.adapter.consume)}/s = ${(consumeShare * 100).toFixed(0)}% of raw SDK (${fmt(snsSqs.raw.consume)}/s) — target ≥ ${TARGETS.snsSqsShareOfRaw * 100}% each: ${met ? 'met' : 'NOT met'}`,
    );
  }
  console.log(`  run took ${((now() - started) / 1000).toFixed(1)} s`);
}

type SnsSqsRate = { publish: number; consume: number };
type SnsSqsFigures = { adapter: SnsSqsRate; raw: SnsSqsRate };

/**
 * Rounds of: the raw SDK publishing SNS_SQS_MESSAGES through a topic to a
 * queue and draining it, then the adapter doing the same through its own
 * topic and subscription (claims in the registry, dedupe records, batched
 * deletes included). Medians of each.
 */
async function snsSqsVersusRaw(busUrl: string): Promise<SnsSqsFigures> {
  const emulator = await startEmbeddedEmulator();
  const client = { region: EMULATOR_REGION_DEFAULT, endpoint: emulator.endpoint, credentials: { ...EMULATOR_CREDENTIALS } };
  const sns = new SNSClient(client);
  const sqs = new SQSClient({ ...client, useQueueUrlAsEndpoint: false });
  const bus = await SnsSqsEventBus.open({ databaseUrl: busUrl, poolSize: 8, logger, clock: systemClock, ...client, namespace: `bench-${randomUUID().slice(0, 8)}` });
  const rates: { adapter: SnsSqsRate[]; raw: SnsSqsRate[] } = { adapter: [], raw: [] };
  const time = new Date().toISOString();
  const eventOf = (id: string) => ({ specversion: '1.0' as const, id, source: '/bench', type: 'koban.bench.event', time, data: { n: 1 } });
  try {
    // Round 0 warms both sides up (the emulator too) and is not counted.
    for (let round = 0; round <= SNS_SQS_ROUNDS; round++) {
      // Raw: a topic, a queue subscribed with raw delivery, PublishBatch of 10, then receive and delete in batches of 10.
      const name = `raw-${round}-${randomUUID().slice(0, 8)}`;
      const topicArn = (await sns.send(new CreateTopicCommand({ Name: name }))).TopicArn!;
      const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl!;
      const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
      await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: queueArn, Attributes: { RawMessageDelivery: 'true' } }));
      const rawPublish = await timed(SNS_SQS_MESSAGES, (start, count) =>
        sns.send(new PublishBatchCommand({ TopicArn: topicArn, PublishBatchRequestEntries: Array.from({ length: count }, (_, index) => ({ Id: String(index), Message: JSON.stringify(eventOf(`raw-${start + index}`)) })) })),
      );
      const rawConsumeStart = now();
      for (let received = 0; received < SNS_SQS_MESSAGES; ) {
        const result = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageSystemAttributeNames: ['ApproximateReceiveCount'] }));
        const messages = result.Messages ?? [];
        if (messages.length === 0) continue;
        for (const message of messages) JSON.parse(message.Body!);
        await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: messages.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle! })) }));
        received += messages.length;
      }
      const rawRate = { publish: rawPublish, consume: SNS_SQS_MESSAGES / ((now() - rawConsumeStart) / 1000) };

      // The adapter: publishBatch of 10, then its consumer (default limits) handling each.
      const topic = `adapter-${round}-${randomUUID().slice(0, 8)}`;
      await bus.declare({ topics: [topic], subscriptions: [{ name: `${topic}-sink`, topic }] });
      // As a relay calls it: one batch at a time, as many messages as the raw loop has in flight (the adapter sends them 10 to a PublishBatch, as many at once).
      const adapterPublish = await timed(
        SNS_SQS_MESSAGES,
        (start, count) => bus.publishBatch(Array.from({ length: count }, (_, index) => ({ topic, event: eventOf(`adapter-${start + index}`) }))),
        { window: 1, batch: 10 * SNS_SQS_PUBLISH_WINDOW },
      );
      let handled = 0;
      let allHandled!: () => void;
      const done = new Promise<void>((resolve) => (allHandled = resolve));
      const consumeStart = now();
      const consumer = await bus.consume(`${topic}-sink`, async () => {
        if (++handled === SNS_SQS_MESSAGES) allHandled();
      });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, PHASE_TIMEOUT_MS)))]);
      clearTimeout(timer);
      const adapterRate = { publish: adapterPublish, consume: handled / ((now() - consumeStart) / 1000) };
      await consumer.stop();
      if (round > 0) {
        rates.raw.push(rawRate);
        rates.adapter.push(adapterRate);
      }
      console.log(
        `sns-sqs ${round === 0 ? 'warm-up' : `round ${round}`}: raw SDK publish ${fmt(rawRate.publish)}/s, consume ${fmt(rawRate.consume)}/s; adapter publish ${fmt(adapterRate.publish)}/s, consume ${fmt(adapterRate.consume)}/s${handled < SNS_SQS_MESSAGES ? ` (INCOMPLETE: ${handled} handled)` : ''}`,
      );
    }
  } finally {
    await bus.close();
    sns.destroy();
    sqs.destroy();
    await emulator.stop();
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const medians = (list: SnsSqsRate[]) => ({ publish: median(list.map((rate) => rate.publish)), consume: median(list.map((rate) => rate.consume)) });
  const figures = { adapter: medians(rates.adapter), raw: medians(rates.raw) };
  console.log(`sns-sqs medians of ${SNS_SQS_ROUNDS} rounds of ${SNS_SQS_MESSAGES} messages: raw SDK publish ${fmt(figures.raw.publish)}/s, consume ${fmt(figures.raw.consume)}/s; adapter publish ${fmt(figures.adapter.publish)}/s, consume ${fmt(figures.adapter.consume)}/s`);
  return figures;
}

/** Messages per second of `send` over `total` messages in batches (of 10), `window` (SNS_SQS_PUBLISH_WINDOW) batches awaiting their answer at once. */
async function timed(total: number, send: (start: number, count: number) => Promise<unknown>, shape = { window: SNS_SQS_PUBLISH_WINDOW, batch: 10 }): Promise<number> {
  const start = now();
  let next = 0;
  await Promise.all(
    Array.from({ length: shape.window }, async () => {
      while (next < total) {
        const first = next;
        const count = Math.min(shape.batch, total - first);
        next += count;
        await send(first, count);
      }
    }),
  );
  return total / ((now() - start) / 1000);
}

async function runAdapter(adapter: BusAdapter, busUrl: string, producerUrl: string): Promise<Result> {
  const bus: EventBus = await openEventBus({ adapter, databaseUrl: busUrl, natsUrl, poolSize: 8, logger, clock: systemClock });
  const namespaceTopic = `bench-${randomUUID().slice(0, 8)}`;
  const producerPool = createPool({ url: producerUrl, size: WRITERS + 2, applicationName: 'bench-producer', logger });
  await migrateOutbox(producerUrl, logger);
  await bus.declare({ topics: [namespaceTopic], subscriptions: [{ name: `${namespaceTopic}-sink`, topic: namespaceTopic }] });
  const relay = new OutboxRelay({ pool: producerPool, bus, logger, batchSizeMax: 512 });
  relay.start();

  const committedAt = new Map<string, number>();
  const latencies: number[] = [];
  let handled = 0;
  let target = WARMUP_EVENTS;
  let reached: () => void = () => undefined;
  let firstCommit = 0;
  let lastAck = 0;
  const consumer = await bus.consume(
    `${namespaceTopic}-sink`,
    async (delivery) => {
      const committed = committedAt.get(delivery.event.id);
      if (committed === undefined) return; // a redelivery of one already counted
      committedAt.delete(delivery.event.id);
      const at = now();
      latencies.push(at - committed);
      lastAck = at;
      handled += 1;
      if (handled >= target) reached();
    },
    { inFlightMax: 1_024, batchSizeMax: 256 },
  );

  const produce = async (prefix: string, count: number, ratePerSecond?: number) => {
    let next = 0;
    const start = now();
    const writer = async () => {
      while (next < count) {
        if (ratePerSecond !== undefined) {
          // Open-loop pacing: event n is due at start + n / rate.
          const dueAt = start + (next / ratePerSecond) * 1000;
          if (dueAt > now()) await new Promise((resolve) => setTimeout(resolve, dueAt - now()));
          if (next >= count) break;
        }
        const ids: string[] = [];
        while (ids.length < EVENTS_PER_TRANSACTION && next < count) ids.push(`${prefix}-${next++}`);
        const client = await producerPool.connect();
        try {
          await client.query('BEGIN');
          await appendToOutbox(client, ids.map((id) => ({ topic: namespaceTopic, event: { specversion: '1.0', id, source: '/bench', type: 'koban.bench.event', data: { n: 1 } } })), systemClock);
          await client.query('COMMIT');
          const committed = now();
          for (const id of ids) committedAt.set(id, committed);
        } finally {
          client.release();
        }
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
  };

  const phase = async (prefix: string, count: number, ratePerSecond?: number): Promise<Phase> => {
    const done = new Promise<void>((resolve) => (reached = resolve));
    latencies.length = 0;
    const handledBefore = handled;
    target = handled + count;
    firstCommit = now();
    await produce(prefix, count, ratePerSecond);
    let timer: NodeJS.Timeout | undefined;
    const complete = await Promise.race([done.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), PHASE_TIMEOUT_MS)))]);
    clearTimeout(timer);
    const events = handled - handledBefore;
    const seconds = (lastAck - firstCommit) / 1000;
    const sorted = [...latencies].sort((a, b) => a - b);
    return { events, seconds, eventsPerSecond: events / seconds, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99), maxMs: sorted.at(-1) ?? 0, complete };
  };

  await phase('warmup', WARMUP_EVENTS);
  // Throughput: producers commit as fast as they can; the bus drains the backlog.
  const burst = await phase('burst', EVENTS);
  // Latency: a steady offered load below saturation, as in production.
  const paced = await phase('paced', PACED_RATE * PACED_SECONDS, PACED_RATE);
  await consumer.stop();
  await relay.stop();

  // Consumer only: preload a queue, then drain it with the adapter's own consumer.
  const drainTopic = `${namespaceTopic}-drain`;
  await bus.declare({ topics: [drainTopic], subscriptions: [{ name: `${drainTopic}-sink`, topic: drainTopic }] });
  const time = new Date().toISOString();
  for (let index = 0; index < DRAIN_EVENTS; index += 512) {
    const batch = Array.from({ length: Math.min(512, DRAIN_EVENTS - index) }, (_, offset) => ({
      topic: drainTopic,
      event: { specversion: '1.0' as const, id: `drain-${index + offset}`, source: '/bench', type: 'koban.bench.event', time, data: { n: 1 } },
    }));
    await bus.publishBatch(batch);
  }
  let drained = 0;
  let drainDone!: () => void;
  const allDrained = new Promise<void>((resolve) => (drainDone = resolve));
  const drainStart = now();
  const drainer = await bus.consume(
    `${drainTopic}-sink`,
    async () => {
      if (++drained === DRAIN_EVENTS) drainDone();
    },
    { inFlightMax: 1_024, batchSizeMax: 256 },
  );
  let drainTimer: NodeJS.Timeout | undefined;
  await Promise.race([allDrained, new Promise<void>((resolve) => (drainTimer = setTimeout(resolve, PHASE_TIMEOUT_MS)))]);
  clearTimeout(drainTimer);
  const drainPerSecond = drained / ((now() - drainStart) / 1000);
  await drainer.stop();

  if ('deleteStreams' in bus && typeof bus.deleteStreams === 'function') await (bus as unknown as { deleteStreams(topics: string[]): Promise<void> }).deleteStreams([namespaceTopic, drainTopic]);
  await bus.close();
  await producerPool.end();
  return { adapter, burst, paced, drainPerSecond };
}

/** The baseline: publish RAW_MESSAGES into a stream with acks awaited in a window, then drain them with one pull consumer, acking each. */
async function rawJetStream(): Promise<{ publishPerSecond: number; consumePerSecond: number }> {
  const nc = await connect({ servers: natsUrl });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const stream = `bench_raw_${randomUUID().slice(0, 8)}`;
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: StorageType.File, retention: RetentionPolicy.Limits, duplicate_window: nanos(60_000) });
  await jsm.consumers.add(stream, { durable_name: 'raw', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_ack_pending: 10_000 });
  const payload = JSON.stringify({ specversion: '1.0', id: 'x'.repeat(36), source: '/bench', type: 'koban.bench.event', time: new Date().toISOString(), data: { n: 1 } });
  try {
    const publishStart = now();
    const inFlight = new Set<Promise<unknown>>();
    for (let index = 0; index < RAW_MESSAGES; index++) {
      const publish = js.publish(`${stream}.events`, payload, { msgID: `raw-${index}` }).finally(() => inFlight.delete(publish));
      inFlight.add(publish);
      if (inFlight.size >= RAW_PUBLISH_WINDOW) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const publishSeconds = (now() - publishStart) / 1000;

    const consumer = await js.consumers.get(stream, 'raw');
    const consumeStart = now();
    const messages = await consumer.consume({ max_messages: 1_000 });
    let received = 0;
    const deadline = consumeStart + PHASE_TIMEOUT_MS;
    for await (const message of messages) {
      message.ack();
      if (++received >= RAW_MESSAGES || now() > deadline) break;
    }
    const consumeSeconds = (now() - consumeStart) / 1000;
    await messages.close();
    return { publishPerSecond: RAW_MESSAGES / publishSeconds, consumePerSecond: received / consumeSeconds };
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}

function printResult(result: Result): void {
  const line = (label: string, phase: Phase) =>
    `  ${label}: ${fmt(phase.eventsPerSecond)} events/s outbox commit → handler ack (${phase.events} events in ${phase.seconds.toFixed(2)} s${phase.complete ? '' : ', INCOMPLETE: phase timed out'}); latency p50 ${phase.p50Ms.toFixed(1)} ms, p99 ${phase.p99Ms.toFixed(1)} ms, max ${phase.maxMs.toFixed(1)} ms`;
  console.log(`${result.adapter}:`);
  console.log(line('throughput (producers flat out)', result.burst));
  console.log(line(`steady ${fmt(PACED_RATE)}/s offered`, result.paced));
  console.log(`  consumer alone drains a preloaded queue at ${fmt(result.drainPerSecond)} events/s (${DRAIN_EVENTS} events)`);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function fmt(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

async function createDatabase(serverUrl: string, label: string): Promise<string> {
  const name = `${label}_${randomUUID().slice(0, 8)}`;
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  return name;
}

async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

const hardStop = setTimeout(() => {
  console.error('bench:bus exceeded its time budget; stopping');
  process.exit(1);
}, 4.5 * 60 * 1000);
hardStop.unref();

await main();
