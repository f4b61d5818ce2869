// The end-state check of `npm run simulate`: once traffic stops and the
// pipeline drains, every payment, cash balance, points grant and notice must
// be what the plan's model says, the ledger's audit must balance, and no event
// may sit in dead letters. Each difference is one line naming what differs.
import pg from 'pg';
import { filterAttributes, type CloudEvent } from '../../contracts/events/envelope.ts';
import type { FilterPolicy } from '../../contracts/bus/filter-policy.ts';
import { matchesFilter } from '../../services/bus/domain/filter.ts';
import { NOTIFIED_TOPICS } from '../../services/notifications/domain/notice.ts';
import { call, type Endpoints } from './driver.ts';
import type { Plan } from './plan.ts';
import { expectedPoints, type PointsExpectation, type PointsModelOptions } from './points-model.ts';

/** How long the run waits for expiries, the outboxes and the bus to drain before it calls what is left a failure. */
export const DRAIN_WAIT_MS = 180_000;
const POLL_INTERVAL_MS = 250;

export type Violation = Readonly<{ what: string; expected: string; got: string }>;

export type DrainReport = { drainMs: number; deadLetters: number };

/** Waits for lapsed holds to expire, every payment's events to leave its outbox, and every subscription to empty. */
export async function drain(endpoints: Endpoints, plan: Plan, violations: Violation[], options: { deadLettersAreViolations: boolean } = { deadLettersAreViolations: true }): Promise<DrainReport> {
  const started = performance.now();
  const deadline = started + DRAIN_WAIT_MS;
  const pending = new Set(plan.payments.map((payment) => payment.payment_id));
  while (pending.size > 0 && performance.now() < deadline) {
    for (const id of [...pending].slice(0, 200)) {
      const { status, json } = await call(`${routeUrl(endpoints, id)}/v1/payments/${id}`, 'GET');
      const payment = plan.payments.find((candidate) => candidate.payment_id === id)!;
      const events = (json.events as Array<{ published_at: string | null }> | undefined) ?? [];
      const settled = status === 200 && (!payment.expires || json.status === 'expired') && events.every((event) => event.published_at !== null);
      if (settled) pending.delete(id);
    }
    if (pending.size > 0) await sleep(POLL_INTERVAL_MS);
  }
  for (const id of pending) violations.push({ what: `payment ${id}`, expected: `settled (expired if planned so, events published) within ${DRAIN_WAIT_MS} ms`, got: 'still pending' });
  let quietPolls = 0;
  let deadLetters = 0;
  while (performance.now() < deadline) {
    const { json } = await call(`${endpoints.bus}/v1/subscriptions`, 'GET');
    const subscriptions = json.data as Array<{ name: string; depth: number; in_flight: number; dead_letters: number }>;
    deadLetters = subscriptions.reduce((sum, subscription) => sum + subscription.dead_letters, 0);
    quietPolls = subscriptions.every((subscription) => subscription.depth === 0 && subscription.in_flight === 0) ? quietPolls + 1 : 0;
    if (quietPolls >= 3) break;
    await sleep(POLL_INTERVAL_MS);
  }
  if (quietPolls < 3) violations.push({ what: 'bus', expected: `every subscription empty within ${DRAIN_WAIT_MS} ms`, got: 'messages still waiting' });
  const { json } = await call(`${endpoints.bus}/v1/subscriptions`, 'GET');
  for (const subscription of json.data as Array<{ name: string; dead_letters: number }>) {
    if (subscription.dead_letters > 0 && options.deadLettersAreViolations) violations.push({ what: `subscription ${subscription.name}`, expected: '0 dead letters', got: `${subscription.dead_letters} dead letters` });
  }
  return { drainMs: performance.now() - started, deadLetters };
}

/** Sends every subscription's dead letters back once (the chaos run's poison windows have healed by then): how many. */
export async function redriveDeadLetters(endpoints: Endpoints): Promise<number> {
  const { json } = await call(`${endpoints.bus}/v1/subscriptions`, 'GET');
  let redriven = 0;
  for (const subscription of json.data as Array<{ name: string; dead_letters: number }>) {
    if (subscription.dead_letters === 0) continue;
    const answer = await call(`${endpoints.bus}/v1/subscriptions/${encodeURIComponent(subscription.name)}/dead-letters/redrive`, 'POST', {});
    redriven += Number(answer.json.redriven ?? 0);
    if (answer.status >= 300) throw new Error(`redrive of ${subscription.name}: ${answer.status} ${JSON.stringify(answer.json)}`);
  }
  return redriven;
}

export type CheckCounts = { payments: number; users: number; grants: number; notices: number; events: number };

export async function checkEndState(endpoints: Endpoints, plan: Plan, model: PointsModelOptions, violations: Violation[]): Promise<CheckCounts> {
  const differ = (what: string, expected: unknown, got: unknown) => {
    if (JSON.stringify(expected) !== JSON.stringify(got)) violations.push({ what, expected: JSON.stringify(expected), got: JSON.stringify(got) });
  };
  const eventsByUser = new Map<string, number>();
  for (const payment of plan.payments) {
    const { status, json } = await call(`${routeUrl(endpoints, payment.payment_id)}/v1/payments/${payment.payment_id}`, 'GET');
    if (status !== 200) {
      differ(`payment ${payment.payment_id}`, 200, status);
      continue;
    }
    differ(`payment ${payment.payment_id} totals`, totalsOf(payment), {
      authorized_amount: json.authorized_amount,
      captured_total: json.captured_total,
      refunded_total: json.refunded_total,
      held_amount: json.held_amount,
    });
    if (payment.expires) differ(`payment ${payment.payment_id} status`, 'expired', json.status);
    eventsByUser.set(payment.user_id, (eventsByUser.get(payment.user_id) ?? 0) + (json.events as unknown[]).length);
  }
  const points = expectedPoints(plan, model);
  let grants = 0;
  let notices = 0;
  for (const user of plan.users) {
    const cash = await call(`${endpoints.ledger}/v1/users/${user.user_id}/balances/cash`, 'GET');
    differ(`cash of ${user.user_id}`, { available: user.cash_end, pending_debit: 0 }, { available: cash.json.available, pending_debit: cash.json.pending_debit });
    grants += await checkUserPoints(endpoints, user.user_id, points.get(user.user_id) ?? { available: 0, pending: 0, grants: new Map() }, differ);
    const seen = await countNotices(endpoints, user.user_id);
    notices += seen;
    // One notice per payment event, and the welcome notice.
    differ(`notices of ${user.user_id}`, (eventsByUser.get(user.user_id) ?? 0) + 1, seen);
  }
  const audit = await call(`${endpoints.ledger}/v1/audit`, 'GET');
  differ('ledger audit', true, audit.json.ok);
  return { payments: plan.payments.length, users: plan.users.length, grants, notices, events: [...eventsByUser.values()].reduce((a, b) => a + b, 0) };
}

function totalsOf(payment: Plan['payments'][number]) {
  return {
    authorized_amount: payment.authorized_total,
    captured_total: payment.captured_total,
    refunded_total: payment.refunded_total,
    held_amount: payment.expires ? 0 : payment.held,
  };
}

async function checkUserPoints(endpoints: Endpoints, userId: string, expected: PointsExpectation, differ: (what: string, expected: unknown, got: unknown) => void): Promise<number> {
  const balance = await call(`${endpoints.points}/v1/users/${userId}/points`, 'GET');
  differ(`points of ${userId}`, { available: expected.available, pending: expected.pending }, { available: balance.json.available, pending: balance.json.pending });
  const seen = new Map<string, Record<string, unknown>>();
  let cursor: string | null = null;
  do {
    const page: { json: Record<string, unknown> } = await call(`${endpoints.points}/v1/users/${userId}/point-grants?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, 'GET');
    for (const grant of page.json.data as Array<Record<string, unknown>>) seen.set(`${String(grant.source)}:${String(grant.reference)}`, grant);
    cursor = page.json.next_cursor as string | null;
  } while (cursor !== null);
  for (const [key, grant] of expected.grants) {
    const got = seen.get(key);
    differ(`grant ${key} of ${userId}`, grant, got === undefined ? null : { points: got.points, status: got.status, clawed_back_points: got.clawed_back_points });
  }
  for (const key of seen.keys()) if (!expected.grants.has(key)) differ(`grant ${key} of ${userId}`, null, 'an unexpected grant');
  return seen.size;
}

async function countNotices(endpoints: Endpoints, userId: string): Promise<number> {
  let count = 0;
  let cursor: string | null = null;
  do {
    const page: { json: Record<string, unknown> } = await call(`${endpoints.notifications}/v1/users/${userId}/notices?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, 'GET');
    count += (page.json.data as unknown[]).length;
    cursor = page.json.next_cursor as string | null;
  } while (cursor !== null);
  return count;
}

function routeUrl(endpoints: Endpoints, paymentId: string): string {
  return paymentId.startsWith('quicpay:') ? endpoints.quicpay : endpoints.visa;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Where the delivery check reads: each producer's database (its outbox), the bus's, the notifications service's. */
export type DeliveryDatabases = Readonly<{
  producers: Readonly<Record<string, { url: string; outboxSchema: string }>>;
  bus: string;
  notifications: string;
  busKind: 'postgres' | 'nats' | 'sns-sqs';
  /** Outbox events published before this are checked as published only: retention may have pruned their bus records (a soak runs a retention of a minute). */
  busRecordsSince?: Date;
}>;

export type DeliveryCounts = { outboxEvents: number; deliveries: number; notices: number };

/**
 * No event lost, none handled twice in effect: every outbox event was published; on the postgres bus,
 * every message (outbox or published from outside) was handled by every subscription whose topic and
 * filter it matches (acked), or sits in dead letters with its error; and every event of a notified
 * topic has exactly one notice. On the sns-sqs bus, every outbox event reached the bus (its publish
 * fingerprint) and was handled by every subscription it matches (the consumers' claim of it marked
 * handled), or is dead with its error. NATS keeps no per-event record of handling: there the effects
 * (grants, notices, cash) and the bus's dead letters say it.
 */
export async function checkDelivery(databases: DeliveryDatabases, violations: Violation[]): Promise<DeliveryCounts> {
  const read = async <T extends Record<string, unknown>>(url: string, sql: string): Promise<T[]> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<T>(sql)).rows;
    } finally {
      await client.end();
    }
  };
  const outbox: Array<{ producer: string; topic: string; event_id: string; event: CloudEvent }> = [];
  for (const [producer, { url, outboxSchema }] of Object.entries(databases.producers)) {
    for (const row of await read<{ topic: string; event_id: string; event: CloudEvent; published: boolean; published_at: Date | null; last_error: string | null }>(url, `SELECT topic, event_id, event, published_at IS NOT NULL AS published, published_at, last_error FROM ${outboxSchema}.events`)) {
      const pruneable = databases.busRecordsSince !== undefined && row.published_at !== null && row.published_at < databases.busRecordsSince;
      if (!pruneable) outbox.push({ producer, topic: row.topic, event_id: row.event_id, event: row.event });
      if (!row.published) violations.push({ what: `outbox event ${row.event_id} of ${producer}`, expected: 'published', got: `unpublished${row.last_error ? ` (${row.last_error})` : ''}` });
    }
  }
  let deliveries = 0;
  if (databases.busKind === 'postgres') {
    const subscriptions = await read<{ name: string; topic: string; filter: FilterPolicy | null }>(databases.bus, 'SELECT name, topic, filter FROM subscriptions');
    const messages = await read<{ seq: string; topic: string; event_id: string; event: CloudEvent }>(databases.bus, 'SELECT seq, topic, event_id, event FROM messages');
    const states = new Map<string, { state: string; last_error: string | null }>();
    for (const row of await read<{ subscription: string; message_seq: string; state: string; last_error: string | null }>(databases.bus, 'SELECT subscription, message_seq, state, last_error FROM deliveries')) {
      states.set(`${row.subscription}/${row.message_seq}`, row);
    }
    const published = new Set(messages.map((message) => `${message.topic}/${message.event_id}`));
    for (const event of outbox) if (!published.has(`${event.topic}/${event.event_id}`)) violations.push({ what: `outbox event ${event.event_id} of ${event.producer}`, expected: `a message on ${event.topic}`, got: 'none: lost between outbox and bus' });
    for (const message of messages) {
      for (const subscription of subscriptions) {
        if (subscription.topic !== message.topic || !matchesFilter(subscription.filter, filterAttributes(message.event))) continue;
        deliveries += 1;
        const delivery = states.get(`${subscription.name}/${message.seq}`);
        const handled = delivery?.state === 'acked' || (delivery?.state === 'dead' && delivery.last_error !== null);
        if (!handled) violations.push({ what: `event ${message.event_id} for ${subscription.name}`, expected: 'handled (acked), or dead-lettered with its error', got: delivery === undefined ? 'no delivery' : `${delivery.state}${delivery.last_error ? ` (${delivery.last_error})` : ''}` });
      }
    }
  }
  if (databases.busKind === 'sns-sqs') {
    const subscriptions = await read<{ name: string; topic: string; filter: FilterPolicy | null }>(databases.bus, 'SELECT name, topic, filter FROM subscriptions');
    const fingerprinted = new Set((await read<{ topic: string; event_id: string }>(databases.bus, 'SELECT topic, event_id FROM event_fingerprints')).map((row) => `${row.topic}/${row.event_id}`));
    const handled = new Set((await read<{ subscription: string; event_id: string }>(databases.bus, 'SELECT subscription, event_id FROM consumed_events WHERE handled_at IS NOT NULL')).map((row) => `${row.subscription}/${row.event_id}`));
    const dead = new Map<string, { state: string; last_error: string | null }>();
    for (const row of await read<{ subscription: string; event_id: string; state: string; last_error: string | null }>(databases.bus, 'SELECT subscription, event_id, state, last_error FROM dead_letters')) {
      dead.set(`${row.subscription}/${row.event_id}`, row);
    }
    for (const event of outbox) {
      if (!fingerprinted.has(`${event.topic}/${event.event_id}`)) violations.push({ what: `outbox event ${event.event_id} of ${event.producer}`, expected: `published on ${event.topic}`, got: 'never published: lost between outbox and bus' });
      for (const subscription of subscriptions) {
        if (subscription.topic !== event.topic || !matchesFilter(subscription.filter, filterAttributes(event.event))) continue;
        deliveries += 1;
        const key = `${subscription.name}/${event.event_id}`;
        const letter = dead.get(key);
        if (handled.has(key) || (letter?.state === 'dead' && letter.last_error !== null)) continue;
        violations.push({ what: `event ${event.event_id} for ${subscription.name}`, expected: 'handled (its claim marked handled), or dead-lettered with its error', got: letter === undefined ? 'no handled claim and no dead letter' : `a ${letter.state} dead letter${letter.last_error ? ` (${letter.last_error})` : ''}, not handled` });
      }
    }
  }
  const notified = new Set<string>(NOTIFIED_TOPICS);
  const notices = new Map<string, number>();
  for (const row of await read<{ topic: string; event_id: string; count: string }>(databases.notifications, 'SELECT topic, event_id, count(*) AS count FROM notices GROUP BY topic, event_id')) {
    notices.set(`${row.topic}/${row.event_id}`, Number(row.count));
  }
  for (const event of outbox) {
    if (!notified.has(event.topic)) continue;
    const count = notices.get(`${event.topic}/${event.event_id}`) ?? 0;
    if (count !== 1) violations.push({ what: `notices of event ${event.event_id}`, expected: '1', got: String(count) });
  }
  return { outboxEvents: outbox.length, deliveries, notices: [...notices.values()].reduce((a, b) => a + b, 0) };
}

/**
 * Every answer the client received agrees with the final state: an approval is never undone (its
 * payment exists, authorized, with ledger transactions), a decline is never charged (nothing
 * authorized, captured or held, no ledger transaction). `answers` maps authorization ids to what the
 * network was told.
 */
export async function checkAnswers(endpoints: Endpoints, plan: Plan, answers: ReadonlyMap<string, string>, violations: Violation[]): Promise<number> {
  let checked = 0;
  for (const payment of plan.payments) {
    const authorizationId = payment.payment_id.slice(payment.payment_id.indexOf(':') + 1);
    const told = answers.get(authorizationId);
    if (told === undefined) continue;
    const { status, json } = await call(`${routeUrl(endpoints, payment.payment_id)}/v1/payments/${payment.payment_id}`, 'GET');
    checked += 1;
    const ids = (json.ledger_transaction_ids as string[] | undefined) ?? [];
    if (new Set(ids).size !== ids.length) violations.push({ what: `payment ${payment.payment_id} ledger transactions`, expected: 'each once', got: JSON.stringify(ids) });
    if (told === 'approved' && (status !== 200 || !(Number(json.authorized_amount) > 0) || ids.length === 0)) {
      violations.push({ what: `payment ${payment.payment_id}`, expected: 'approved as the network was told: authorized, with its hold in the ledger', got: `${status} ${JSON.stringify(json).slice(0, 300)}` });
    }
    if (told === 'declined' && status === 200 && (Number(json.authorized_amount ?? 0) > 0 || Number(json.captured_total ?? 0) > 0 || Number(json.held_amount ?? 0) > 0 || ids.length > 0)) {
      violations.push({ what: `payment ${payment.payment_id}`, expected: 'declined as the network was told: nothing held or charged', got: JSON.stringify(json).slice(0, 300) });
    }
  }
  return checked;
}
