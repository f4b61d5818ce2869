// Test-only: what the points tests send and read — events published on the
// bus, the points service's reads, the ledger's balances — and a bounded wait
// for the points subscriptions to have nothing left to do.
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import type { EventBus } from '../../../contracts/bus/event-bus.ts';
import type { LedgerApi } from '../../../contracts/ledger/ledger-api.ts';
import type { Balance } from '../../../contracts/ledger/types.ts';
import { POINTS_SUBSCRIPTIONS } from '../module.ts';

/** How long the points service may take to work through what a test published. */
export const SETTLE_TIMEOUT_MS = 15_000;
const POLL_INTERVAL_MS = 20;

export type Json = Record<string, unknown>;

export class PointsHarness {
  readonly #app: FastifyInstance;
  readonly #bus: EventBus;
  readonly #ledger: LedgerApi;
  #published = 0;

  constructor(koban: { app: FastifyInstance; bus: EventBus; ledger: LedgerApi }) {
    this.#app = koban.app;
    this.#bus = koban.bus;
    this.#ledger = koban.ledger;
  }

  async publish(topic: string, event: unknown): Promise<void> {
    await this.#bus.publish(topic, event);
    this.#published += 1;
  }

  /** A CloudEvent of a point source (rewards, referrals, accounts) with a unique id. */
  sourceEvent(type: string, data: Json, id = `${type}.${this.#published + 1}.${process.hrtime.bigint()}`): Json {
    return { specversion: '1.0', id, source: '/tests', type, time: new Date().toISOString(), datacontenttype: 'application/json', data };
  }

  /** Waits until no points subscription has a message waiting, in flight or due for a retry. */
  async settle(): Promise<void> {
    const names = new Set<string>(Object.values(POINTS_SUBSCRIPTIONS));
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const busy = (await this.#bus.subscriptions()).filter((stats) => names.has(stats.name) && (stats.depth > 0 || stats.in_flight > 0));
      if (busy.length === 0) return;
      assert.ok(Date.now() < deadline, `points subscriptions still busy after ${SETTLE_TIMEOUT_MS} ms: ${JSON.stringify(busy)}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
  }

  async points(userId: string): Promise<Json> {
    const response = await this.#app.inject({ method: 'GET', url: `/v1/users/${userId}/points` });
    assert.equal(response.statusCode, 200, response.body);
    return response.json();
  }

  async grants(userId: string, query = ''): Promise<{ data: Json[]; next_cursor: string | null }> {
    const response = await this.#app.inject({ method: 'GET', url: `/v1/users/${userId}/point-grants${query}` });
    assert.equal(response.statusCode, 200, response.body);
    return response.json();
  }

  get(url: string) {
    return this.#app.inject({ method: 'GET', url });
  }

  /** The figures of a balance a grant moves. */
  async balance(userId: string, balanceType = 'points'): Promise<Pick<Balance, 'available' | 'pending_credit'>> {
    const { available, pending_credit } = await this.#ledger.getBalance(userId, balanceType);
    return { available, pending_credit };
  }
}
