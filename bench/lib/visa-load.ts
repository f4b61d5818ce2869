// Goal: the Visa traffic the payment benchmarks send — users topped up with cash through the ledger,
// authorizations of random amounts with an occasional decline probe, and the checks of their answers.
import { randomInt } from 'node:crypto';
import type { Pool } from 'undici';
import { type Plan, type Unexpected, runAll } from './load.ts';
import { withClient } from './pg-server.ts';
import { errorCode } from './report.ts';

/**
 * One authorization in this many asks for more than any user ever has (but
 * not above the route's default maximum, 1,000,000): the ledger refuses the
 * hold and Visa answers a decline — the decline path is measured and checked too.
 */
export const DECLINE_ONE_IN = 50;
export const DECLINE_AMOUNT = 1_000_000;
const MERCHANTS = [
  { id: 'bench-grocer', name: 'Bench Grocer', category_code: '5411' },
  { id: 'bench-cafe', name: 'Bench Cafe', category_code: '5814' },
  { id: 'bench-fuel', name: 'Bench Fuel', category_code: '5541' },
] as const;
export const FUNDING_CONCURRENCY = 32;

export type VisaAuthorization = {
  body: { authorization_id: string; user_id: string; amount: number; currency: 'JPY'; merchant: (typeof MERCHANTS)[number] };
  declineProbe: boolean;
};

/** The n-th authorization of a run: a fresh id, a random user, an amount in range; a decline probe one in DECLINE_ONE_IN times. */
export function drawAuthorization(n: number, options: { users: readonly string[]; idPrefix: string; amountMin: number; amountMax: number }): VisaAuthorization {
  const declineProbe = n % DECLINE_ONE_IN === DECLINE_ONE_IN - 1;
  const userId = options.users[randomInt(options.users.length)]!;
  const amount = declineProbe ? DECLINE_AMOUNT : options.amountMin + randomInt(options.amountMax - options.amountMin + 1);
  return { body: { authorization_id: `${options.idPrefix}${n.toString(36)}`, user_id: userId, amount, currency: 'JPY', merchant: MERCHANTS[n % MERCHANTS.length]! }, declineProbe };
}

/**
 * POST /v1/visa/authorizations of `auth`, judged: a first answer, approved
 * unless it is a decline probe (declined insufficient_balance). `approve` is
 * called for every approval, a wrong one too (the cash is held whatever else
 * is wrong), `decline` for every decline.
 */
export function authorizationPlan(auth: VisaAuthorization, fundAmount: number, on: { approve(): void; decline(): void }): Plan {
  const { body, declineProbe } = auth;
  return {
    method: 'POST',
    path: '/v1/visa/authorizations',
    body: JSON.stringify(body),
    check: (answer) => {
      if (answer.status !== 200) return `authorization: ${answer.status} ${errorCode(answer.body)}`;
      if (answer.headers['idempotent-replayed'] !== 'false') return `authorization: 200 with Idempotent-Replayed ${String(answer.headers['idempotent-replayed'])} to a first message`;
      const parsed = JSON.parse(answer.body) as { approved?: unknown; decline_reason?: unknown; authorization_id?: unknown };
      if (parsed.authorization_id !== body.authorization_id) return 'authorization: the answer names another authorization';
      if (parsed.approved === true) {
        on.approve();
        return declineProbe ? `authorization of ${body.amount} approved above the user's ${fundAmount}` : null;
      }
      if (parsed.approved === false) {
        on.decline();
        if (!declineProbe) return `authorization declined (${String(parsed.decline_reason)}) with enough cash`;
        return parsed.decline_reason === 'insufficient_balance' ? null : `decline probe declined for ${String(parsed.decline_reason)}, not insufficient_balance`;
      }
      return 'authorization: 200 without approved';
    },
  };
}

/** Tops every user up with `amount` of cash through the ledger's POST /v1/transactions; throws if any top-up fails. */
export async function fundUsers(ledgerPool: Pool, options: { users: readonly string[]; idPrefix: string; amount: number; signal: AbortSignal }): Promise<Unexpected> {
  const plans: Plan[] = options.users.map((userId, index) => ({
    method: 'POST',
    path: '/v1/transactions',
    body: JSON.stringify({ transaction_id: `${options.idPrefix}fund-${index}`, type: 'add', user_id: userId, balance_type: 'cash', amount: options.amount }),
    check: (answer) => (answer.status === 201 ? null : `top-up: ${answer.status} ${errorCode(answer.body)}`),
  }));
  return runAll(ledgerPool, plans, FUNDING_CONCURRENCY, options.signal);
}

/** Visa's outbox of payment events: how many there are, and how many the relay has not yet published to the bus. */
export async function readVisaOutbox(visaDatabaseUrl: string): Promise<{ events: number; unpublished: number }> {
  return withClient(visaDatabaseUrl, async (client) => {
    const result = await client.query<{ events: string; unpublished: string }>(
      `SELECT count(*)::text AS events, count(*) FILTER (WHERE published_at IS NULL)::text AS unpublished FROM koban_visa_outbox.events WHERE topic = 'payments'`,
    );
    return { events: Number(result.rows[0]!.events), unpublished: Number(result.rows[0]!.unpublished) };
  });
}
