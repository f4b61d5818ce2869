// What the card routes' tests read and send: network messages over the HTTP
// routes, the user's cash as the ledger has it, the events a payment put in
// its route's outbox, and the rows a route stored. Test-only: nothing in the
// product imports it. The Koban it drives is started by the test (test/support).
import { PAYMENT_ROUTES } from '../../../contracts/events/payments.ts';
import { paymentsOutboxSchema } from '../store/postgres/postgres-payment-store.ts';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import type { LedgerApi } from '../../../contracts/ledger/ledger-api.ts';
import type { PaymentRoute } from '../../../contracts/events/payments.ts';

export type Json = Record<string, unknown>;
export type Response = { statusCode: number; body: string; headers: Record<string, unknown>; json(): Json };

export const MERCHANT = { id: 'shop-1', name: 'Corner Shop', category_code: '5411' } as const;
export const OTHER_MERCHANT = { id: 'cafe-9', name: 'Cafe Nine', category_code: '5814' } as const;

/** The three figures of a cash balance a payment moves. */
export type Cash = { available: number; posted: number; pending_debit: number };

/** One outbox event, as much of it as a test compares: what consumers filter and read. */
export type EventSummary = {
  id: string;
  type: string;
  route: string;
  mcc: string;
  amount: number;
  authorized_total: number;
  captured_total: number;
  refunded_total: number;
  network_message_id: string;
  advice?: boolean;
  final?: boolean;
  forced?: boolean;
  decline_reason?: string;
};

/** Every route's outbox as one table (each route has its own schema; a payment's events are in its route's). */
export const ALL_OUTBOXES = `(${PAYMENT_ROUTES.map((route) => `SELECT * FROM ${paymentsOutboxSchema(route)}.events`).join(' UNION ALL ')}) AS outbox`;

/** Row counts of everything a message may store: a refused message changes none. */
export type Footprint = Record<string, number>;

/** The per-route tables, in each route's own schema of the test database. */
const ROUTE_TABLES = ['payments', 'network_messages', 'payment_intents'] as const;

export type KobanUnderTest = { app: FastifyInstance; ledger: LedgerApi; database: { url: string } };

export class PaymentHarness {
  readonly #koban: KobanUnderTest;
  readonly #db: pg.Pool;

  constructor(koban: KobanUnderTest) {
    this.#koban = koban;
    this.#db = new pg.Pool({ connectionString: koban.database.url, max: 2 });
  }

  async close(): Promise<void> {
    await this.#db.end();
  }

  send(url: string, payload: unknown): Promise<Response> {
    return this.#koban.app.inject({ method: 'POST', url, payload: payload as Json }) as Promise<Response>;
  }

  /** The raw bytes, as a network may send them (text that JSON.stringify would not produce). */
  sendRaw(url: string, body: string): Promise<Response> {
    return this.#koban.app.inject({ method: 'POST', url, payload: body, headers: { 'content-type': 'application/json' } }) as Promise<Response>;
  }

  visa(kind: 'authorizations' | 'advices' | 'sales-drafts' | 'reversals' | 'refunds', payload: Json): Promise<Response> {
    return this.send(`/v1/visa/${kind}`, payload);
  }

  quicpay(payload: Json): Promise<Response> {
    return this.send('/v1/quicpay/messages', payload);
  }

  getPayment(paymentId: string): Promise<Response> {
    return this.#koban.app.inject({ method: 'GET', url: `/v1/payments/${encodeURIComponent(paymentId)}` }) as Promise<Response>;
  }

  async fund(userId: string, amount: number): Promise<void> {
    await this.#koban.ledger.submit({ transaction_id: `fund-${userId}-${amount}`, type: 'add', user_id: userId, balance_type: 'cash', amount });
  }

  async cash(userId: string): Promise<Cash> {
    const balance = await this.#koban.ledger.getBalance(userId, 'cash');
    return { available: balance.available, posted: balance.posted, pending_debit: balance.pending_debit };
  }

  /** Every event the payment put in the outbox, in the order they were written. */
  async events(paymentId: string): Promise<EventSummary[]> {
    const result = await this.#db.query<{ event: Json & { data: Json } }>(`SELECT event FROM ${ALL_OUTBOXES} WHERE event->>'subject' = $1 ORDER BY seq`, [paymentId]);
    return result.rows.map(({ event }) => summarize(event));
  }

  /** The events of the payment exactly as stored, for one test that checks every field. */
  async rawEvents(paymentId: string): Promise<Json[]> {
    const result = await this.#db.query<{ event: Json }>(`SELECT event FROM ${ALL_OUTBOXES} WHERE event->>'subject' = $1 ORDER BY seq`, [paymentId]);
    return result.rows.map((row) => row.event);
  }

  async outboxCount(): Promise<number> {
    const result = await this.#db.query<{ n: string }>(`SELECT count(*) AS n FROM ${ALL_OUTBOXES}`);
    return Number(result.rows[0]!.n);
  }

  /** How many rows every payment table and the outbox hold. */
  async footprint(): Promise<Footprint> {
    const counts: Footprint = { outbox: await this.outboxCount() };
    for (const route of ['visa', 'quicpay'] satisfies PaymentRoute[]) {
      for (const table of ROUTE_TABLES) {
        const result = await this.#db.query<{ n: string }>(`SELECT count(*) AS n FROM koban_${route}.${table}`);
        counts[`${route}.${table}`] = Number(result.rows[0]!.n);
      }
    }
    return counts;
  }

  /** Rows of a route's tables, for assertions a response cannot show. */
  query<Row extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<Row>> {
    return this.#db.query<Row>(text, values);
  }

  /** Waits, bounded, until the relay has published every event of the payment (the relay polls every few ms). */
  async untilPublished(paymentId: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const result = await this.#db.query<{ waiting: string; total: string }>(
        `SELECT count(*) FILTER (WHERE published_at IS NULL) AS waiting, count(*) AS total FROM ${ALL_OUTBOXES} WHERE event->>'subject' = $1`,
        [paymentId],
      );
      const row = result.rows[0]!;
      if (Number(row.total) > 0 && Number(row.waiting) === 0) return;
      assert.ok(Date.now() < deadline, `the relay did not publish ${paymentId}'s events within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

function summarize(event: Json & { data: Json }): EventSummary {
  const data = event.data;
  const summary: EventSummary = {
    id: event.id as string,
    type: event.type as string,
    route: event.route as string,
    mcc: event.mcc as string,
    amount: data.amount as number,
    authorized_total: data.authorized_total as number,
    captured_total: data.captured_total as number,
    refunded_total: data.refunded_total as number,
    network_message_id: data.network_message_id as string,
  };
  for (const key of ['advice', 'final', 'forced', 'decline_reason'] as const) if (key in data) (summary as Json)[key] = data[key];
  return summary;
}

/** The catalogue error of a refused message. */
export function errorOf(response: Response): { code: string; details: Json } {
  const error = response.json().error as { code: string; details?: Json };
  return { code: error.code, details: error.details ?? {} };
}

/** An event as EventSummary spells it, with defaults for what most events share. */
export function event(
  route: PaymentRoute,
  kind: string,
  messageId: string,
  type: string,
  figures: { amount: number; authorized_total: number; captured_total?: number; refunded_total?: number; mcc?: string } & Partial<Pick<EventSummary, 'advice' | 'final' | 'forced' | 'decline_reason'>>,
): EventSummary {
  const { amount, authorized_total, captured_total = 0, refunded_total = 0, mcc = MERCHANT.category_code, ...extra } = figures;
  return { id: `${route}.${kind}.${messageId}`, type, route, mcc, amount, authorized_total, captured_total, refunded_total, network_message_id: messageId, ...extra };
}
