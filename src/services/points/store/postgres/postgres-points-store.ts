// The points store on PostgreSQL: every statement in one place. A key (a
// payment, a purchase, a referral, a user's welcome) is locked with a
// session-level advisory lock on one connection, so the decision commits, then
// its journaled ledger writes run, all under the one lock.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../../../../platform/clock.ts';
import { migrate } from '../../../../platform/postgres/migrate.ts';
import type { Pool, PoolClient } from '../../../../platform/postgres/pool.ts';
import type { LedgerCommand, PaymentRecord } from '../../domain/payment-grant.ts';
import type { Counted, GrantRow, GrantWrite, JournaledCommand, KeySession, PointsStore, PointsTransaction } from '../points-store.ts';

const MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');

export const POINTS_DATABASE = 'koban_points';

export async function migratePoints(pool: Pool, logger: Logger): Promise<void> {
  await migrate(pool, MIGRATIONS_DIR, logger);
}

type GrantDbRow = Omit<GrantRow, 'created_at' | 'updated_at'> & { created_at: Date; updated_at: Date };

export class PostgresPointsStore implements PointsStore {
  readonly #pool: Pool;
  readonly #clock: Clock;

  constructor(pool: Pool, clock: Clock) {
    this.#pool = pool;
    this.#clock = clock;
  }

  async withKey<T>(key: string, work: (session: KeySession) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let locked = false;
    let healthy = true;
    try {
      await client.query({ name: 'points_lock', text: 'SELECT pg_advisory_lock(hashtextextended($1, 0))', values: [key] });
      locked = true;
      return await work(keySession(client, key, this.#clock));
    } finally {
      // A connection that cannot unlock is destroyed, which ends its session and so its lock.
      if (locked) {
        healthy = await client.query({ name: 'points_unlock', text: 'SELECT pg_advisory_unlock(hashtextextended($1, 0))', values: [key] }).then(
          () => true,
          () => false,
        );
      }
      client.release(!healthy);
    }
  }

  async journaledKeys(limit: number): Promise<string[]> {
    const result = await this.#pool.query<{ key: string }>('SELECT key FROM (SELECT key, min(seq) AS first FROM point_commands GROUP BY key) keys ORDER BY first LIMIT $1', [limit]);
    return result.rows.map((row) => row.key);
  }

  async grants(userId: string, options: { limit: number; beforeSeq?: number | undefined }): Promise<GrantRow[]> {
    const result = await this.#pool.query<GrantDbRow>(
      `SELECT seq, grant_id, user_id, source, reference, points, status, clawed_back_points, rule_version, created_at, updated_at
         FROM point_grants WHERE user_id = $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3`,
      [userId, options.beforeSeq ?? null, options.limit],
    );
    return result.rows.map(grantOf);
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}

function grantOf(row: GrantDbRow): GrantRow {
  return { ...row, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() };
}

function keySession(client: PoolClient, key: string, clock: Clock): KeySession {
  return {
    async transaction<T>(work: (tx: PointsTransaction) => Promise<T>): Promise<T> {
      await client.query('BEGIN');
      try {
        const result = await work(transaction(client, clock));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    },
    async journaled(): Promise<JournaledCommand[]> {
      const result = await client.query<{ seq: number; command: LedgerCommand }>({
        name: 'points_journaled',
        text: 'SELECT seq, command FROM point_commands WHERE key = $1 ORDER BY seq',
        values: [key],
      });
      return result.rows;
    },
    async done(seq: number): Promise<void> {
      await client.query({ name: 'points_done', text: 'DELETE FROM point_commands WHERE seq = $1', values: [seq] });
    },
  };
}

function transaction(client: PoolClient, clock: Clock): PointsTransaction {
  const now = () => clock.now();
  return {
    async payment(paymentId) {
      const result = await client.query<{ record: PaymentRecord }>('SELECT record FROM point_payments WHERE payment_id = $1', [paymentId]);
      return result.rows[0]?.record;
    },
    async savePayment(paymentId, userId, record) {
      await client.query(
        `INSERT INTO point_payments (payment_id, user_id, record, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (payment_id) DO UPDATE SET record = EXCLUDED.record, updated_at = EXCLUDED.updated_at`,
        [paymentId, userId, JSON.stringify(record), now()],
      );
    },
    async capTotals(userId, month, own) {
      // Rows are created, then locked, so two payments of one user count one after the other.
      await client.query('INSERT INTO point_month_totals (user_id, month, points) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING', [userId, month]);
      const monthRow = await client.query<{ points: number }>('SELECT points FROM point_month_totals WHERE user_id = $1 AND month = $2 FOR UPDATE', [userId, month]);
      const campaigns = await client.query<{ campaign_id: string; points: number }>(
        'SELECT campaign_id, points FROM point_campaign_totals WHERE user_id = $1 ORDER BY campaign_id FOR UPDATE',
        [userId],
      );
      const campaign_points_others: Record<string, number> = {};
      for (const row of campaigns.rows) campaign_points_others[row.campaign_id] = Math.max(0, row.points - (own?.campaigns[row.campaign_id] ?? 0));
      const ownMonth = own !== null && own.month === month ? own.points : 0;
      return { month_points_others: Math.max(0, monthRow.rows[0]!.points - ownMonth), campaign_points_others };
    },
    async recount(userId, before: Counted, after: Counted) {
      const months = new Map<string, number>();
      const campaigns = new Map<string, number>();
      const add = (counted: Counted, sign: number) => {
        if (counted === null) return;
        months.set(counted.month, (months.get(counted.month) ?? 0) + sign * counted.points);
        for (const [id, points] of Object.entries(counted.campaigns)) campaigns.set(id, (campaigns.get(id) ?? 0) + sign * points);
      };
      add(before, -1);
      add(after, 1);
      for (const [month, delta] of months) {
        if (delta === 0) continue;
        await client.query(
          `INSERT INTO point_month_totals (user_id, month, points) VALUES ($1, $2, $3)
           ON CONFLICT (user_id, month) DO UPDATE SET points = point_month_totals.points + EXCLUDED.points`,
          [userId, month, delta],
        );
      }
      for (const [id, delta] of campaigns) {
        if (delta === 0) continue;
        await client.query(
          `INSERT INTO point_campaign_totals (user_id, campaign_id, points) VALUES ($1, $2, $3)
           ON CONFLICT (user_id, campaign_id) DO UPDATE SET points = point_campaign_totals.points + EXCLUDED.points`,
          [userId, id, delta],
        );
      }
    },
    async grant(grantId) {
      const result = await client.query<GrantDbRow>(
        `SELECT seq, grant_id, user_id, source, reference, points, status, clawed_back_points, rule_version, created_at, updated_at FROM point_grants WHERE grant_id = $1`,
        [grantId],
      );
      const row = result.rows[0];
      return row === undefined ? undefined : grantOf(row);
    },
    async saveGrant(grant: GrantWrite) {
      await client.query(
        `INSERT INTO point_grants (grant_id, user_id, source, reference, points, status, clawed_back_points, rule_version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
         ON CONFLICT (grant_id) DO UPDATE SET points = EXCLUDED.points, status = EXCLUDED.status, clawed_back_points = EXCLUDED.clawed_back_points,
           rule_version = EXCLUDED.rule_version, updated_at = EXCLUDED.updated_at
         WHERE (point_grants.points, point_grants.status, point_grants.clawed_back_points, point_grants.rule_version)
           IS DISTINCT FROM (EXCLUDED.points, EXCLUDED.status, EXCLUDED.clawed_back_points, EXCLUDED.rule_version)`,
        [grant.grant_id, grant.user_id, grant.source, grant.reference, grant.points, grant.status, grant.clawed_back_points, grant.rule_version, now()],
      );
    },
    async recordSkipped(source, reference, userId, reason) {
      const result = await client.query(
        'INSERT INTO point_skipped (source, reference, user_id, reason, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING',
        [source, reference, userId, reason, now()],
      );
      return result.rowCount === 0;
    },
    async recordWelcome(userId, amount, expiresAt) {
      const result = await client.query(
        'INSERT INTO welcome_balances (user_id, amount, expires_at, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
        [userId, amount, expiresAt, now()],
      );
      return result.rowCount === 0;
    },
    async addCommands(key, commands) {
      for (const command of commands) {
        await client.query({ name: 'points_journal', text: 'INSERT INTO point_commands (key, command, created_at) VALUES ($1, $2, $3)', values: [key, JSON.stringify(command), now()] });
      }
    },
  };
}
