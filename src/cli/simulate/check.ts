// The end-state check of `npm run simulate`: once traffic stops and the
// pipeline drains, every payment, cash balance, points grant and notice must
// be what the plan's model says, the ledger's audit must balance, and no event
// may sit in dead letters. Each difference is one line naming what differs.
import { call, type Endpoints } from './driver.ts';
import type { Plan } from './plan.ts';
import { expectedPoints, type PointsExpectation, type PointsModelOptions } from './points-model.ts';

/** How long the run waits for expiries, the outboxes and the bus to drain before it calls what is left a failure. */
export const DRAIN_WAIT_MS = 180_000;
const POLL_INTERVAL_MS = 250;

export type Violation = Readonly<{ what: string; expected: string; got: string }>;

export type DrainReport = { drainMs: number; deadLetters: number };

/** Waits for lapsed holds to expire, every payment's events to leave its outbox, and every subscription to empty. */
export async function drain(endpoints: Endpoints, plan: Plan, violations: Violation[]): Promise<DrainReport> {
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
    if (subscription.dead_letters > 0) violations.push({ what: `subscription ${subscription.name}`, expected: '0 dead letters', got: `${subscription.dead_letters} dead letters` });
  }
  return { drainMs: performance.now() - started, deadLetters };
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
