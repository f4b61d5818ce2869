// Sends a simulation plan to Koban over HTTP, as card networks and partners
// do: each user's account first (its welcome cash awaited), a top-up, then its
// payments in order; some messages resent with the same id, as networks do.
// Every answer is compared with what the plan predicts; a difference is a
// mismatch reported with the step, never retried away.
import type { Step, UserPlan } from './plan.ts';

/** Where each service answers: one URL for `koban start`, one per service when they run apart. */
export type Endpoints = Readonly<Record<'ledger' | 'bus' | 'visa' | 'quicpay' | 'accounts' | 'points' | 'notifications', string>>;

/** One request may take this long before the run counts it as failed. */
export const SIMULATE_REQUEST_TIMEOUT_MS = 30_000;
/** How long a new account's welcome cash may take to arrive (account.created → points → ledger). */
export const WELCOME_WAIT_MS = 60_000;
/** Share of payment messages sent twice, in percent: the second must replay the first's answer. */
export const RESEND_PERCENT = 5;

export type Mismatch = Readonly<{ user_id: string; step: string; expected: string; got: string }>;

export type DriveStats = { requests: number; resends: number; declines: number; approvals: number; welcomeWaitMs: number[] };

export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export async function call(url: string, method: 'GET' | 'POST', body?: unknown, timeoutMs = SIMULATE_REQUEST_TIMEOUT_MS): Promise<{ status: number; json: Record<string, unknown>; replayed: string | null }> {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    throw new HttpError(response.status, `${method} ${url}: not JSON (${response.status}): ${text.slice(0, 200)}`);
  }
  return { status: response.status, json, replayed: response.headers.get('idempotent-replayed') };
}

/** How a request reaches Koban: once (`call`), or, for the chaos run, resent with the same id until an answer arrives. */
export type Send = (url: string, method: 'GET' | 'POST', body?: unknown) => Promise<{ status: number; json: Record<string, unknown>; replayed: string | null }>;

export type DriveOptions = {
  welcomeCash: number;
  resend: (step: Step) => boolean;
  onStep: () => void;
  send?: Send;
  /** Each answer to a payment message, as the network got it (the chaos run checks them against the end state). */
  onAnswer?: (step: Step, outcome: string) => void;
  welcomeWaitMs?: number;
};

export async function driveUser(endpoints: Endpoints, user: UserPlan, options: DriveOptions, stats: DriveStats): Promise<Mismatch[]> {
  const send: Send = options.send ?? call;
  const welcomeWaitMs = options.welcomeWaitMs ?? WELCOME_WAIT_MS;
  const mismatches: Mismatch[] = [];
  const differ = (step: string, expected: string, got: string) => mismatches.push({ user_id: user.user_id, step, expected, got });
  const created = await send(`${endpoints.accounts}/v1/users`, 'POST', { user_id: user.user_id });
  stats.requests += 1;
  if (created.status !== 201 && created.status !== 200) differ('create account', '201', `${created.status} ${JSON.stringify(created.json).slice(0, 200)}`);
  if (user.topup > 0) {
    const topup = await send(`${endpoints.ledger}/v1/transactions`, 'POST', { transaction_id: `${user.user_id}-topup`, type: 'add', user_id: user.user_id, balance_type: 'cash', amount: user.topup });
    stats.requests += 1;
    if (topup.status !== 201 && topup.status !== 200) differ('top-up', '201', `${topup.status} ${JSON.stringify(topup.json).slice(0, 200)}`);
  }
  // The first authorization must see the welcome cash, or the plan's predicted declines would be guesses.
  const waitStarted = performance.now();
  const funds = user.topup + options.welcomeCash;
  for (;;) {
    const balance = await send(`${endpoints.ledger}/v1/users/${user.user_id}/balances/cash`, 'GET');
    stats.requests += 1;
    if (balance.json.available === funds) break;
    if (performance.now() - waitStarted > welcomeWaitMs) {
      differ('welcome cash', `available ${funds} within ${welcomeWaitMs} ms`, `available ${String(balance.json.available)}`);
      return mismatches;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  stats.welcomeWaitMs.push(performance.now() - waitStarted);
  for (const step of user.steps) {
    const request = requestOf(endpoints, user.user_id, step);
    const first = await send(request.url, 'POST', request.body);
    stats.requests += 1;
    const got = outcomeOf(step, first.status, first.json);
    if (got !== step.expect) differ(describe(step), step.expect, `${got} (${first.status} ${JSON.stringify(first.json).slice(0, 300)})`);
    options.onAnswer?.(step, got);
    if (got === 'approved') stats.approvals += 1;
    if (got === 'declined') stats.declines += 1;
    if (step.kind === 'reward' && step.duplicate) {
      const again = await send(request.url, 'POST', request.body);
      stats.requests += 1;
      stats.resends += 1;
      if (again.status !== 200 && again.status !== 201 && again.status !== 202) differ(`${describe(step)} published again`, 'accepted as a duplicate', String(again.status));
    } else if (step.kind !== 'reward' && step.kind !== 'referral' && options.resend(step)) {
      const again = await send(request.url, 'POST', request.body);
      stats.requests += 1;
      stats.resends += 1;
      if (again.status !== first.status || JSON.stringify(again.json) !== JSON.stringify(first.json) || again.replayed !== 'true') {
        differ(`${describe(step)} resent`, `the same ${first.status} answer, Idempotent-Replayed: true`, `${again.status} ${JSON.stringify(again.json).slice(0, 200)} replayed=${again.replayed}`);
      }
    }
    options.onStep();
  }
  return mismatches;
}

function describe(step: Step): string {
  return `${step.kind} ${step.id}`;
}

/** The answer in the plan's terms: approved/declined for authorizations, ok for any other 2xx. */
function outcomeOf(step: Step, status: number, json: Record<string, unknown>): string {
  if (status < 200 || status > 299) return `http ${status}`;
  if (step.kind !== 'authorize') return 'ok';
  if (step.route === 'quicpay') return json.result === 'approved' ? 'approved' : json.result === 'declined' ? 'declined' : 'unknown';
  return json.approved === true ? 'approved' : json.approved === false ? 'declined' : 'unknown';
}

function requestOf(endpoints: Endpoints, user_id: string, step: Step): { url: string; body: unknown } {
  switch (step.kind) {
    case 'reward':
      return {
        url: `${endpoints.bus}/v1/topics/rewards/events`,
        body: { specversion: '1.0', id: step.id, source: '/partners/simulated-shop', type: 'reward.purchase_confirmed', subject: user_id, data: { user_id, purchase_id: step.purchase_id, points: step.points } },
      };
    case 'referral':
      return {
        url: `${endpoints.bus}/v1/topics/referrals/events`,
        body: { specversion: '1.0', id: step.id, source: '/koban/simulated-referrals', type: 'referral.completed', data: { referral_id: step.referral_id, referrer_id: step.referrer_id, referee_id: step.referee_id } },
      };
  }
  if (step.route === 'quicpay') {
    const quicpay = (message_type: string, amount: number, original?: string) => ({
      url: `${endpoints.quicpay}/v1/quicpay/messages`,
      body: { message_type, transaction_number: step.id, ...(original === undefined ? {} : { original_transaction_number: original }), member_id: user_id, amount, merchant: step.merchant },
    });
    switch (step.kind) {
      case 'authorize':
        return quicpay('authorization', step.amount);
      case 'capture':
        return quicpay('sales', step.amount, step.authorization_id);
      case 'reverse':
        return quicpay('cancel', step.amount, step.authorization_id);
      case 'refund':
        return quicpay('refund', step.amount, step.authorization_id);
    }
  }
  switch (step.kind) {
    case 'authorize':
      return {
        url: `${endpoints.visa}/v1/visa/${step.advice ? 'advices' : 'authorizations'}`,
        body: { authorization_id: step.id, user_id, amount: step.amount, currency: 'JPY', merchant: step.merchant, ...(step.incremental_of === undefined ? {} : { incremental_of: step.incremental_of }) },
      };
    case 'capture':
      return {
        url: `${endpoints.visa}/v1/visa/sales-drafts`,
        body: { sales_draft_id: step.id, authorization_id: step.authorization_id, user_id, amount: step.amount, currency: 'JPY', merchant: step.merchant, final: step.final },
      };
    case 'reverse':
      return { url: `${endpoints.visa}/v1/visa/reversals`, body: { reversal_id: step.id, authorization_id: step.authorization_id, user_id, amount: step.amount } };
    case 'refund':
      return { url: `${endpoints.visa}/v1/visa/refunds`, body: { refund_id: step.id, sales_draft_id: step.sales_draft_id, user_id, amount: step.amount } };
  }
}
