// Goal: approval never waits on the bus, points or notifications — with every consumer and the Visa route's outbox relay stopped, authorizations over HTTP are all approved with a p99 within 1.5× of the same number sent with everything up (a slow, failing consumer attached), their events wait in the outbox, and once the relay runs again every one is published and delivered exactly once.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';
import { startTestKoban, type TestKoban } from '../../test/support/koban.ts';
import type { Consumer, Delivery, SubscriptionStats } from '../contracts/bus/event-bus.ts';
import { PAYMENTS_TOPIC } from '../contracts/events/payments.ts';
import { paymentsOutboxSchema } from '../services/payments/store/postgres/postgres-payment-store.ts';

const OUTBOX_SCHEMA = paymentsOutboxSchema('visa');
import type { PaymentService } from '../services/payments/service.ts';
import { visaModule } from '../services/payments/visa/module.ts';

/** Rounds of the two conditions, interleaved (and their order alternated) so that the machine's drift and noise hit both alike. */
const ROUNDS = 10;
/** Authorizations per condition per round: 1,000 per condition in all, as the issue asks. */
const BATCH = 100;
/** Authorizations in flight at once, as a network sends them. */
const CONCURRENCY = 4;
/** Sent with everything up before measuring, so that neither condition pays for JIT and cold pools. */
const WARMUP = 100;
const USERS = 50;
const AMOUNT_YEN = 100;
const TOP_UP_YEN = 1_000_000;
/** The bound: p99 with the relay and consumers stopped within 1.5× of p99 with everything up. */
const P99_RATIO_MAX = 1.5;
/** How long the relay may take to publish the whole backlog and the consumer to receive it. */
const DRAIN_TIMEOUT_MS = 60_000;
const POLL_INTERVAL_MS = 50;
/** The deliberately slow consumer spends this long on each event (not CPU: a slow downstream call). */
const SLOW_HANDLER_MS = 10;
const TOTAL = WARMUP + 2 * ROUNDS * BATCH;
const MERCHANT = { id: 'm-isolation', name: 'Isolation Mart', category_code: '5411' };

let koban: TestKoban;
let visaDatabase: TestDatabase;
let visaPool: pg.Pool;
let visa: PaymentService;
let baseUrl: string;

before(async () => {
  // Visa on a database of its own, as in production: its outbox then holds its events only.
  visaDatabase = await createTestDatabase('pay_isolation_visa');
  koban = await startTestKoban({ label: 'pay_isolation', env: { VISA_DATABASE_URL: visaDatabase.url } });
  const [address] = await koban.host.listen();
  baseUrl = address!;
  visa = koban.host.api(visaModule);
  visaPool = new pg.Pool({ connectionString: visaDatabase.url, max: 2 });
  await koban.bus.declare({
    topics: [PAYMENTS_TOPIC],
    subscriptions: [
      // A consumer that is slow and fails every other event once: retries and backoff keep the bus busy while everything is up.
      { name: 'isolation-slow', topic: PAYMENTS_TOPIC, retryBackoffInitialMs: 20, retryBackoffMaxMs: 200 },
      { name: 'isolation-count', topic: PAYMENTS_TOPIC },
    ],
  });
  for (let user = 0; user < USERS; user += 1) {
    const response = await fetch(`${baseUrl}/v1/transactions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ transaction_id: `iso-topup-${user}`, type: 'add', user_id: `iso-u${user}`, balance_type: 'cash', amount: TOP_UP_YEN }),
    });
    assert.equal(response.status, 201, await response.text());
  }
});

after(async () => {
  await visaPool?.end();
  await koban?.stop();
  await koban?.database.drop();
  await visaDatabase?.drop();
});

test('1,000 authorizations with the relay and every consumer stopped: all approved, p99 within 1.5× of everything up, events held in the outbox, then published exactly once', async (t) => {
  const deliveries = new Map<string, number>();
  const countHandler = async ({ event }: Delivery) => {
    deliveries.set(event.id, (deliveries.get(event.id) ?? 0) + 1);
  };
  const slowHandler = async ({ event, attempt }: Delivery) => {
    await delay(SLOW_HANDLER_MS);
    if (attempt === 1 && event.id.charCodeAt(event.id.length - 1) % 2 === 0) throw new Error('deliberately failing its first delivery');
  };
  let consumers: Consumer[] = [];
  const everythingUp = async () => {
    visa.resumePublishing();
    if (consumers.length === 0) consumers = [await koban.bus.consume('isolation-slow', slowHandler, { inFlightMax: 16 }), await koban.bus.consume('isolation-count', countHandler)];
  };
  const everythingDown = async () => {
    await visa.pausePublishing();
    await Promise.all(consumers.map((consumer) => consumer.stop()));
    consumers = [];
  };

  await everythingUp();
  await authorizeBatch('warmup', WARMUP);
  const latencies = { up: [] as number[], down: [] as number[] };
  for (let round = 0; round < ROUNDS; round += 1) {
    // Alternated, the last round ending stopped: its events are still waiting when the relay is started at the end.
    const order = (ROUNDS - 1 - round) % 2 === 0 ? (['up', 'down'] as const) : (['down', 'up'] as const);
    for (const condition of order) {
      if (condition === 'up') {
        await everythingUp();
        latencies.up.push(...(await authorizeBatch(`up${round}`, BATCH)));
        continue;
      }
      await everythingDown();
      const [backlogBefore, busBefore] = [await outboxBacklog(), await countSubscription()];
      latencies.down.push(...(await authorizeBatch(`down${round}`, BATCH)));
      // Every event of the batch waits in visa's outbox; none reached the bus.
      assert.equal(await outboxBacklog(), backlogBefore + BATCH, `round ${round}: the batch's events wait in the outbox`);
      const busAfter = await countSubscription();
      assert.equal(busAfter.depth + busAfter.in_flight, busBefore.depth + busBefore.in_flight, `round ${round}: nothing was published while the relay was stopped`);
    }
  }

  const [up, down] = [p99(latencies.up), p99(latencies.down)];
  t.diagnostic(
    `p99 over ${latencies.up.length} each: everything up ${up.toFixed(1)} ms, relay and consumers stopped ${down.toFixed(1)} ms (ratio ${(down / up).toFixed(2)}); ` +
      `p50 ${p50(latencies.up).toFixed(1)} / ${p50(latencies.down).toFixed(1)} ms`,
  );
  assert.equal(latencies.down.length, ROUNDS * BATCH);
  assert.equal(latencies.up.length, ROUNDS * BATCH);
  assert.ok(down <= P99_RATIO_MAX * up, `p99 with the relay and consumers stopped (${down.toFixed(1)} ms) is over ${P99_RATIO_MAX}× the p99 with everything up (${up.toFixed(1)} ms)`);

  // The relay runs again: everything that waited is published, and each event reaches a consumer once.
  assert.ok((await outboxBacklog()) >= BATCH, 'the last batch waits in the outbox');
  await everythingUp();
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  while (deliveries.size < TOTAL || (await outboxBacklog()) > 0) {
    if (Date.now() > deadline) assert.fail(`after ${DRAIN_TIMEOUT_MS} ms: ${deliveries.size} of ${TOTAL} events delivered, ${await outboxBacklog()} unpublished`);
    await delay(POLL_INTERVAL_MS);
  }
  await everythingDown();
  const expected = new Set<string>();
  for (const [batch, size] of [['warmup', WARMUP], ...Array.from({ length: ROUNDS }, (_, round) => [[`up${round}`, BATCH], [`down${round}`, BATCH]]).flat()] as Array<[string, number]>) {
    for (let index = 0; index < size; index += 1) expected.add(`visa.authorization.${authorizationId(batch, index)}`);
  }
  assert.deepEqual(new Set(deliveries.keys()), expected, 'every authorization event, and nothing else');
  assert.deepEqual([...deliveries.values()].filter((count) => count !== 1), [], 'each delivered once');
  const drained = await countSubscription();
  assert.deepEqual([drained.depth, drained.in_flight, drained.dead_letters], [0, 0, 0], 'nothing else waits to be delivered');
  assert.equal(await outboxBacklog(), 0, 'no unpublished row is left in the outbox');
});

function authorizationId(batch: string, index: number): string {
  return `ISO-${batch}-${index}`;
}

/** Sends `size` authorizations, CONCURRENCY at a time; checks each is approved; returns each one's latency in ms. */
async function authorizeBatch(batch: string, size: number): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < size) {
      const index = next;
      next += 1;
      const authorization_id = authorizationId(batch, index);
      const started = performance.now();
      const response = await fetch(`${baseUrl}/v1/visa/authorizations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ authorization_id, user_id: `iso-u${index % USERS}`, amount: AMOUNT_YEN, currency: 'JPY', merchant: MERCHANT }),
      });
      const body = await response.text();
      latencies.push(performance.now() - started);
      assert.equal(response.status, 200, body);
      assert.equal((JSON.parse(body) as { approved: boolean }).approved, true, `${authorization_id} approved: ${body}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return latencies;
}

async function outboxBacklog(): Promise<number> {
  const result = await visaPool.query<{ count: number }>(`SELECT count(*)::int AS count FROM ${OUTBOX_SCHEMA}.events WHERE published_at IS NULL`);
  return result.rows[0]!.count;
}

async function countSubscription(): Promise<SubscriptionStats> {
  const found = (await koban.bus.subscriptions()).find((subscription) => subscription.name === 'isolation-count');
  assert.ok(found, 'the counting subscription exists');
  return found;
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

const p99 = (values: readonly number[]) => quantile(values, 0.99);
const p50 = (values: readonly number[]) => quantile(values, 0.5);
