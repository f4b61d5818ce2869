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
import type { Counted, DecisionWrite, GrantRow, GrantWrite, JournaledCommand, KeySession, PointsStore, PointsTransaction } from '../points-store.ts';

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

  async withKey<T>(key: string, work: (session: KeySession) => Promise<T>, options: { paymentId?: string } = {}): Promise<T> {
    const client = await this.#pool.connect();
    let session: OpenSession | undefined;
    // Until the open has answered, the lock may be held with nothing to release it (a session-level lock
    // outlives a failed statement): such a connection is destroyed, which ends its session and the lock.
    let healthy = false;
    try {
      // The lock, the key's journal and (for a payment) its record: one round trip.
      const opened = await client.query<{ commands: JournaledCommand[]; record: PaymentRecord | null }>({
        name: 'points_open',
        text: 'SELECT commands, record FROM points_open($1, $2)',
        values: [key, options.paymentId ?? null],
      });
      const row = opened.rows[0]!;
      session = openSession(client, key, this.#clock, row.commands.map(({ seq, command }) => ({ seq: Number(seq), command })), row.record ?? undefined);
      healthy = true;
      return await work(session);
    } finally {
      // Forgets what was done and unlocks, in one round trip. A connection that cannot is destroyed, which ends its session and so its lock;
      // writes it did not forget are journaled still, and replay (the ledger answers them as repeats).
      if (session !== undefined) {
        healthy = await client.query({ name: 'points_close', text: 'SELECT points_close($1, $2::bigint[])', values: [key, session.doneSeqs()] }).then(
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

type OpenSession = KeySession & { doneSeqs(): number[] };

/**
 * A key's session: the journal is read once when the lock is taken and kept
 * here (under the lock no one else changes it), what a committed transaction
 * journals is added, and what is done is forgotten when the key is closed.
 */
function openSession(client: PoolClient, key: string, clock: Clock, journal: JournaledCommand[], payment: PaymentRecord | undefined): OpenSession {
  let pending = journal;
  const done: number[] = [];
  return {
    payment,
    async transaction<T>(work: (tx: PointsTransaction) => Promise<T>): Promise<T> {
      await client.query('BEGIN');
      const added: JournaledCommand[] = [];
      try {
        const result = await work(transaction(client, clock, added));
        await client.query('COMMIT');
        pending = [...pending, ...added];
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    },
    async saveDecision(write: DecisionWrite): Promise<void> {
      pending = [...pending, ...(await writeDecision(client, clock, key, write))];
    },
    async journaled(): Promise<JournaledCommand[]> {
      return pending;
    },
    async done(seq: number): Promise<void> {
      pending = pending.filter((entry) => entry.seq !== seq);
      done.push(seq);
    },
    doneSeqs: () => done,
  };
}

/**
 * A payment's decision in one statement: its record, its grant, the change of
 * its count in the cap totals and its ledger writes journaled — atomic on its
 * own, or inside a transaction that holds the cap totals' locks.
 */
async function writeDecision(client: PoolClient, clock: Clock, key: string, write: DecisionWrite): Promise<JournaledCommand[]> {
  const { months, campaigns } = recountDeltas(write.recount?.before ?? null, write.recount?.after ?? null);
  const grant = write.grant;
  const result = await client.query<{ seq: string; command: LedgerCommand }>({
    name: 'points_decision',
    text: `WITH payment AS (
             INSERT INTO point_payments (payment_id, user_id, record, created_at, updated_at)
             SELECT $1::text, $2::text, $3::jsonb, $4::timestamptz, $4::timestamptz WHERE $1::text IS NOT NULL
             ON CONFLICT (payment_id) DO UPDATE SET record = EXCLUDED.record, updated_at = EXCLUDED.updated_at
           ), granted AS (
             INSERT INTO point_grants (grant_id, user_id, source, reference, points, status, clawed_back_points, rule_version, created_at, updated_at)
             SELECT $5::text, $6::text, $7::text, $8::text, $9::bigint, $10::text, $11::bigint, $12::text, $4::timestamptz, $4::timestamptz WHERE $5::text IS NOT NULL
             ON CONFLICT (grant_id) DO UPDATE SET points = EXCLUDED.points, status = EXCLUDED.status, clawed_back_points = EXCLUDED.clawed_back_points,
               rule_version = EXCLUDED.rule_version, updated_at = EXCLUDED.updated_at
             WHERE (point_grants.points, point_grants.status, point_grants.clawed_back_points, point_grants.rule_version)
               IS DISTINCT FROM (EXCLUDED.points, EXCLUDED.status, EXCLUDED.clawed_back_points, EXCLUDED.rule_version)
           ), months AS (
             INSERT INTO point_month_totals (user_id, month, points)
             SELECT $13::text, m.month, m.delta FROM unnest($14::text[], $15::bigint[]) AS m (month, delta)
             ON CONFLICT (user_id, month) DO UPDATE SET points = point_month_totals.points + EXCLUDED.points
           ), campaigns AS (
             INSERT INTO point_campaign_totals (user_id, campaign_id, points)
             SELECT $13::text, c.id, c.delta FROM unnest($16::text[], $17::bigint[]) AS c (id, delta)
             ON CONFLICT (user_id, campaign_id) DO UPDATE SET points = point_campaign_totals.points + EXCLUDED.points
           ), journaled AS (
             INSERT INTO point_commands (key, command, created_at)
             SELECT $18::text, c.command, $4::timestamptz FROM unnest($19::jsonb[]) WITH ORDINALITY AS c (command, n) ORDER BY c.n
             RETURNING seq, command
           )
           SELECT seq, command FROM journaled ORDER BY seq`,
    values: [
      write.payment?.payment_id ?? null,
      write.payment?.user_id ?? null,
      write.payment === undefined ? null : JSON.stringify(write.payment.record),
      clock.now(),
      grant?.grant_id ?? null,
      grant?.user_id ?? null,
      grant?.source ?? null,
      grant?.reference ?? null,
      grant?.points ?? null,
      grant?.status ?? null,
      grant?.clawed_back_points ?? null,
      grant?.rule_version ?? null,
      write.recount?.user_id ?? null,
      [...months.keys()],
      [...months.values()],
      [...campaigns.keys()],
      [...campaigns.values()],
      key,
      write.commands.map((command) => JSON.stringify(command)),
    ],
  });
  return result.rows.map((row) => ({ seq: Number(row.seq), command: row.command }));
}

/** How a payment's count moves in the totals, from `before` to `after`: the nonzero changes per month and per campaign. */
function recountDeltas(before: Counted, after: Counted): { months: Map<string, number>; campaigns: Map<string, number> } {
  const months = new Map<string, number>();
  const campaigns = new Map<string, number>();
  const add = (counted: Counted, sign: number) => {
    if (counted === null) return;
    months.set(counted.month, (months.get(counted.month) ?? 0) + sign * counted.points);
    for (const [id, points] of Object.entries(counted.campaigns)) campaigns.set(id, (campaigns.get(id) ?? 0) + sign * points);
  };
  add(before, -1);
  add(after, 1);
  for (const [month, delta] of months) if (delta === 0) months.delete(month);
  for (const [id, delta] of campaigns) if (delta === 0) campaigns.delete(id);
  return { months, campaigns };
}

function transaction(client: PoolClient, clock: Clock, added: JournaledCommand[]): PointsTransaction {
  const now = () => clock.now();
  return {
    async capTotals(userId, month, own) {
      // Created if need be and locked until commit, so two payments of one user count one after the other.
      const result = await client.query<{ month_points: string; campaigns: Record<string, number> }>({
        name: 'points_cap_totals',
        text: 'SELECT month_points, campaigns FROM points_cap_totals($1, $2)',
        values: [userId, month],
      });
      const row = result.rows[0]!;
      const campaign_points_others: Record<string, number> = {};
      for (const [id, points] of Object.entries(row.campaigns)) campaign_points_others[id] = Math.max(0, Number(points) - (own?.campaigns[id] ?? 0));
      const ownMonth = own !== null && own.month === month ? own.points : 0;
      return { month_points_others: Math.max(0, Number(row.month_points) - ownMonth), campaign_points_others };
    },
    saveDecision: (write) => writeDecision(client, clock, write.key, write).then((journaled) => void added.push(...journaled)),
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
        const result = await client.query<{ seq: string }>({
          name: 'points_journal',
          text: 'INSERT INTO point_commands (key, command, created_at) VALUES ($1, $2, $3) RETURNING seq',
          values: [key, JSON.stringify(command), now()],
        });
        added.push({ seq: Number(result.rows[0]!.seq), command });
      }
    },
  };
}
