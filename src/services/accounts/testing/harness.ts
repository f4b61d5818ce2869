// What the accounts service's tests read and send: creates and reads over the
// HTTP routes, and the rows the service stored (accounts and outbox events) in
// its schemas of the test database. Test-only: nothing in the product imports it.
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { ACCOUNTS_OUTBOX_SCHEMA } from '../store/postgres/postgres-account-store.ts';

export type Json = Record<string, unknown>;
export type Response = { statusCode: number; body: string; headers: Record<string, unknown>; json(): Json };

/** Where the accounts table is when every service shares the test database (DATABASE_URL alone): the schema named after its database. */
export const ACCOUNTS_SCHEMA = 'koban_accounts';

export type OutboxRow = { topic: string; event_id: string; event: Json; published_at: Date | null };

export class AccountsHarness {
  readonly #app: FastifyInstance;
  readonly #db: pg.Pool;

  constructor(koban: { app: FastifyInstance; database: { url: string } }) {
    this.#app = koban.app;
    this.#db = new pg.Pool({ connectionString: koban.database.url, max: 2 });
  }

  async close(): Promise<void> {
    await this.#db.end();
  }

  create(payload: unknown): Promise<Response> {
    return this.#app.inject({ method: 'POST', url: '/v1/users', payload: payload as Json }) as Promise<Response>;
  }

  /** The raw bytes, as a client may send them (text that JSON.stringify would not produce). */
  createRaw(body: string): Promise<Response> {
    return this.#app.inject({ method: 'POST', url: '/v1/users', payload: body, headers: { 'content-type': 'application/json' } }) as Promise<Response>;
  }

  get(userId: string): Promise<Response> {
    return this.#app.inject({ method: 'GET', url: `/v1/users/${encodeURIComponent(userId)}` }) as Promise<Response>;
  }

  async accounts(userId: string): Promise<Array<{ user_id: string; created_at: Date }>> {
    return (await this.#db.query(`SELECT user_id, created_at FROM ${ACCOUNTS_SCHEMA}.accounts WHERE user_id = $1`, [userId])).rows;
  }

  /** The user's events in the outbox, in the order they were written. */
  async events(userId: string): Promise<OutboxRow[]> {
    return (await this.#db.query<OutboxRow>(`SELECT topic, event_id, event, published_at FROM ${ACCOUNTS_OUTBOX_SCHEMA}.events WHERE event->>'subject' = $1 ORDER BY seq`, [userId])).rows;
  }

  /** Row counts of everything a create may store: a refused one changes neither. */
  async footprint(): Promise<{ accounts: number; outbox: number }> {
    const result = await this.#db.query<{ accounts: number; outbox: number }>(
      `SELECT (SELECT count(*)::int FROM ${ACCOUNTS_SCHEMA}.accounts) AS accounts, (SELECT count(*)::int FROM ${ACCOUNTS_OUTBOX_SCHEMA}.events) AS outbox`,
    );
    return result.rows[0]!;
  }

  query<Row extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<pg.QueryResult<Row>> {
    return this.#db.query<Row>(text, values);
  }
}
