// PostgreSQL adapter of the ledger store: one function per statement. The
// write path is one call of ledger_apply per batch (migrations 0002-0004; each
// rule of it is one SQL function, listed at the top of 0004).
import path from 'node:path';
import type { Logger } from 'pino';
import { migrate } from '../../../../platform/postgres/migrate.ts';
import { type Pool, withTransaction } from '../../../../platform/postgres/pool.ts';
import type { Balance, LotDraw, Transaction } from '../../../../contracts/ledger/types.ts';
import type { AuditMismatch, AuditReport, LedgerOperation, LedgerOutcome, LedgerStore, TransactionPage } from '../ledger-store.ts';

/** The ledger's database inside embedded PostgreSQL (one database per service). */
export const LEDGER_DATABASE = 'koban_ledger';

export const LEDGER_MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');
/** The system accounts on the other side of user transactions, per balance type. */
export const SYSTEM_ACCOUNTS = ['issuance', 'redemption', 'expiry'] as const;
const AUDIT_MISMATCHES_REPORTED_MAX = 100;
const AUDIT_STATEMENT_TIMEOUT_MS = 10 * 60 * 1000;
/**
 * For the audit, set-wise: each consume's debt, as ledger_uncovered() gives it
 * one at a time — what it keeps (its amount while pending, what was posted,
 * less refunds) minus what its lots gave, net of what went back to them.
 */
const CONSUME_DEBTS = `consume_debts AS (
  SELECT t.debit_account_id AS account_id, t.force OR t.post_force AS forced,
         CASE t.status WHEN 'pending' THEN t.amount WHEN 'posted' THEN t.posted_amount ELSE 0 END
         - coalesce(f.amount, 0) - coalesce(g.amount, 0) + coalesce(b.amount, 0) AS debt
    FROM transactions t
    LEFT JOIN (SELECT refund_of, balance_type, sum(amount) AS amount FROM transactions WHERE type = 'refund' GROUP BY refund_of, balance_type) f
           ON f.refund_of = t.transaction_id AND f.balance_type = t.balance_type
    LEFT JOIN (SELECT transaction_pk, sum(amount) AS amount FROM lot_draws GROUP BY transaction_pk) g ON g.transaction_pk = t.transaction_pk
    LEFT JOIN (SELECT d.transaction_pk, sum(r.amount) AS amount FROM lot_returns r JOIN lot_draws d USING (draw_id) GROUP BY d.transaction_pk) b
           ON b.transaction_pk = t.transaction_pk
   WHERE t.type = 'consume')`;

/** A balance as ledger_balance() renders it in SQL, or its request to record what is due first. */
type StoredBalance = Omit<Balance, 'user_id' | 'balance_type'>;
type BalanceRow = { balance_type: string; balance: StoredBalance | { sweep_first: number } };

/** A transaction as ledger_view() renders it in SQL: the API's shape, with PostgreSQL's timestamp format. */
type TransactionView = Transaction;

const isoOrNull = (value: string | null): string | null => (value === null ? null : new Date(value).toISOString());

/** One fixed field order and one timestamp format: a replay serializes byte for byte like the original. */
function toTransaction(view: TransactionView): Transaction {
  return {
    transaction_id: view.transaction_id,
    type: view.type,
    user_id: view.user_id,
    balance_type: view.balance_type,
    amount: view.amount,
    status: view.status,
    pending: view.pending,
    posted_amount: view.posted_amount,
    pending_expires_at: isoOrNull(view.pending_expires_at),
    resolved_at: isoOrNull(view.resolved_at),
    expires_at: isoOrNull(view.expires_at),
    refund_of: view.refund_of,
    force: view.force,
    lots: view.lots === null ? null : view.lots.map((lot): LotDraw => ({ source_transaction_id: lot.source_transaction_id, amount: lot.amount, expires_at: isoOrNull(lot.expires_at) })),
    description: view.description,
    metadata: view.metadata,
    balance_after: view.balance_after,
    created_at: new Date(view.created_at).toISOString(),
  };
}

function toOutcome(row: Record<string, unknown>): LedgerOutcome {
  if ('transaction' in row) return { ...(row as LedgerOutcome & { transaction: TransactionView }), transaction: toTransaction(row.transaction as TransactionView) } as LedgerOutcome;
  return row as LedgerOutcome;
}

export async function migrateLedger(pool: Pool, logger: Logger): Promise<void> {
  await migrate(pool, LEDGER_MIGRATIONS_DIR, logger);
}

export class PostgresLedgerStore implements LedgerStore {
  readonly #pool: Pool;
  /** {"points": {"issuance": 1, ...}, ...}: sent with every batch so the SQL need not look them up. */
  #systemAccounts = '{}';

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  async ensureSystemAccounts(balanceTypes: readonly string[], now: Date): Promise<void> {
    await this.#pool.query(
      `INSERT INTO accounts (owner_kind, owner_id, balance_type, created_at, updated_at)
       SELECT 'system', owner_id, balance_type, $3, $3
         FROM unnest($1::text[]) AS owner_id CROSS JOIN unnest($2::text[]) AS balance_type
       ON CONFLICT (owner_kind, owner_id, balance_type) DO NOTHING`,
      [SYSTEM_ACCOUNTS, balanceTypes, now],
    );
    const result = await this.#pool.query<{ accounts: Record<string, Record<string, number>> }>(
      `SELECT jsonb_object_agg(balance_type, ids) AS accounts FROM (
         SELECT balance_type, jsonb_object_agg(owner_id, account_id) AS ids FROM accounts
          WHERE owner_kind = 'system' AND balance_type = ANY($1::text[]) GROUP BY balance_type) per_type`,
      [balanceTypes],
    );
    this.#systemAccounts = JSON.stringify(result.rows[0]?.accounts ?? {});
  }

  async applyBatch(operations: readonly LedgerOperation[]): Promise<LedgerOutcome[]> {
    const result = await this.#pool.query<{ outcome: Record<string, unknown> & { ordinal: number } }>({
      name: 'ledger_apply',
      text: 'SELECT ledger_apply($1::jsonb, $2::jsonb) AS outcome',
      values: [JSON.stringify(operations), this.#systemAccounts],
    });
    const outcomes: LedgerOutcome[] = new Array(operations.length);
    for (const { outcome } of result.rows) {
      const { ordinal, ...rest } = outcome;
      outcomes[ordinal - 1] = toOutcome(rest);
    }
    for (let index = 0; index < operations.length; index++) {
      if (outcomes[index] === undefined) throw new Error(`ledger_apply returned no outcome for operation ${index + 1}`);
    }
    return outcomes;
  }

  async findTransactions(transactionId: string, at: Date): Promise<Transaction[]> {
    const result = await this.#pool.query<{ view: TransactionView }>(
      `SELECT ledger_view(t, 'current', $2) AS view FROM transactions t WHERE transaction_id = $1 ORDER BY transaction_pk`,
      [transactionId, at],
    );
    return result.rows.map((row) => toTransaction(row.view));
  }

  async findBalances(userId: string, balanceTypes: readonly string[], at: Date): Promise<Balance[]> {
    let result = await this.#pool.query<BalanceRow>(
      `SELECT a.balance_type, ledger_balance(a, $3) AS balance FROM accounts a
        WHERE owner_kind = 'user' AND owner_id = $1 AND balance_type = ANY($2::text[])`,
      [userId, balanceTypes, at],
    );
    if (result.rows.some((row) => 'sweep_first' in row.balance)) result = await this.#findBalancesSwept(userId, balanceTypes, at);
    const stored = new Map(result.rows.map((row) => [row.balance_type, row.balance as StoredBalance]));
    return balanceTypes.map((balanceType): Balance => {
      const balance = stored.get(balanceType);
      return {
        user_id: userId,
        balance_type: balanceType,
        available: balance?.available ?? 0,
        posted: balance?.posted ?? 0,
        pending_debit: balance?.pending_debit ?? 0,
        pending_credit: balance?.pending_credit ?? 0,
        expiring: (balance?.expiring ?? []).map((entry) => ({ amount: entry.amount, expires_at: new Date(entry.expires_at).toISOString() })),
      };
    });
  }

  /**
   * A balance in debt with a hold past its deadline (ledger_balance says
   * `sweep_first`): what is due is recorded, the balance read, and all of it
   * rolled back. A read changes nothing; the sweeper or the next write records
   * the same for good.
   */
  async #findBalancesSwept(userId: string, balanceTypes: readonly string[], at: Date) {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `SELECT ledger_lock_account_by_id(account_id, $3, $4::jsonb) FROM accounts
          WHERE owner_kind = 'user' AND owner_id = $1 AND balance_type = ANY($2::text[]) ORDER BY account_id`,
        [userId, balanceTypes, at, this.#systemAccounts],
      );
      const swept = await client.query<BalanceRow>(
        `SELECT a.balance_type, ledger_balance(a, $3) AS balance FROM accounts a
          WHERE owner_kind = 'user' AND owner_id = $1 AND balance_type = ANY($2::text[])`,
        [userId, balanceTypes, at],
      );
      await client.query('ROLLBACK');
      client.release();
      return swept;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release(true);
      throw error;
    }
  }

  async listUserTransactions(query: { userId: string; balanceType: string | undefined; limit: number; beforeKey: number | undefined; at: Date }): Promise<TransactionPage> {
    const result = await this.#pool.query<{ transaction_pk: number; view: TransactionView }>(
      `SELECT transaction_pk, ledger_view(t, 'current', $5) AS view
         FROM transactions t
        WHERE user_id = $1
          AND ($2::text IS NULL OR balance_type = $2)
          AND ($3::bigint IS NULL OR transaction_pk < $3)
        ORDER BY transaction_pk DESC
        LIMIT $4`,
      [query.userId, query.balanceType ?? null, query.beforeKey ?? null, query.limit + 1, query.at],
    );
    const hasMore = result.rows.length > query.limit;
    const rows = hasMore ? result.rows.slice(0, query.limit) : result.rows;
    return { transactions: rows.map((row) => toTransaction(row.view)), lastKey: hasMore ? rows.at(-1)!.transaction_pk : undefined };
  }

  async findAccountsDueForSweep(at: Date, limit: number): Promise<Array<{ account_id: number; user_id: string; balance_type: string }>> {
    const result = await this.#pool.query<{ account_id: number; user_id: string; balance_type: string }>(
      `SELECT account_id, owner_id AS user_id, balance_type FROM accounts WHERE next_expiry_at <= $1 ORDER BY next_expiry_at LIMIT $2`,
      [at, limit],
    );
    return result.rows;
  }

  async findTransactionOwner(transactionId: string, balanceType: string): Promise<string | undefined> {
    const result = await this.#pool.query<{ user_id: string }>({
      name: 'ledger_transaction_owner',
      text: 'SELECT user_id FROM transactions WHERE transaction_id = $1 AND balance_type = $2',
      values: [transactionId, balanceType],
    });
    return result.rows[0]?.user_id;
  }

  async audit(): Promise<AuditReport> {
    // REPEATABLE READ: every figure comes from one snapshot, even while writes go on.
    const { accounts, misrouted, inconsistentLots, dangling } = await withTransaction(
      this.#pool,
      async (client) => {
        // The audit reads the whole ledger: it gets more time than a request's statement.
        await client.query(`SET LOCAL statement_timeout = ${AUDIT_STATEMENT_TIMEOUT_MS}`);
        const accounts = await client.query<{
          account_id: number;
          owner_kind: string;
          owner_id: string;
          balance_type: string;
          posted: number | null;
          pending_debit: number | null;
          pending_credit: number | null;
          derived_posted: string;
          derived_pending_debit: string;
          derived_pending_credit: string;
          lots_remaining: string;
          debt: string;
        }>(
          `WITH movements AS (
             SELECT debit_account_id AS account_id, -posted_amount::numeric AS posted_delta,
                    CASE WHEN status = 'pending' THEN amount ELSE 0 END::numeric AS pending_debit, 0::numeric AS pending_credit
               FROM transactions
             UNION ALL
             SELECT credit_account_id, posted_amount::numeric, 0, CASE WHEN status = 'pending' THEN amount ELSE 0 END
               FROM transactions
           ), derived AS (
             SELECT account_id, sum(coalesce(posted_delta, 0)) AS posted, sum(pending_debit) AS pending_debit, sum(pending_credit) AS pending_credit
               FROM movements GROUP BY account_id
           ), lot_totals AS (
             SELECT account_id, sum(remaining) AS remaining FROM lots GROUP BY account_id
           ), ${CONSUME_DEBTS}, debts AS (
             SELECT account_id, sum(debt) AS debt FROM consume_debts GROUP BY account_id
           )
           SELECT a.account_id, a.owner_kind, a.owner_id, a.balance_type, a.posted, a.pending_debit, a.pending_credit,
                  coalesce(d.posted, 0)::text AS derived_posted, coalesce(d.pending_debit, 0)::text AS derived_pending_debit,
                  coalesce(d.pending_credit, 0)::text AS derived_pending_credit, coalesce(l.remaining, 0)::text AS lots_remaining,
                  coalesce(x.debt, 0)::text AS debt
             FROM accounts a LEFT JOIN derived d USING (account_id) LEFT JOIN lot_totals l USING (account_id) LEFT JOIN debts x USING (account_id)
            ORDER BY a.balance_type, a.account_id`,
        );
        const misrouted = await client.query<{ count: string }>(
          `SELECT count(*) FROM transactions t
             JOIN accounts d ON d.account_id = t.debit_account_id
             JOIN accounts c ON c.account_id = t.credit_account_id
            WHERE d.balance_type <> t.balance_type OR c.balance_type <> t.balance_type`,
        );
        // The write path has no foreign keys (see migration 0003): check here what they would have refused.
        const dangling = await client.query<{ count: string }>(
          `SELECT (SELECT count(*) FROM transactions t
                    WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = t.debit_account_id)
                       OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = t.credit_account_id))
                + (SELECT count(*) FROM lots l
                    WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = l.account_id)
                       OR NOT EXISTS (SELECT 1 FROM transactions t WHERE t.transaction_pk = l.source_transaction_pk))
                + (SELECT count(*) FROM lot_draws d
                    WHERE NOT EXISTS (SELECT 1 FROM lots l WHERE l.lot_id = d.lot_id)
                       OR NOT EXISTS (SELECT 1 FROM transactions t WHERE t.transaction_pk = d.transaction_pk)
                       OR (d.cause_pk IS NOT NULL AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.transaction_pk = d.cause_pk))) AS count`,
        );
        // Also a consume that drew more than it kept (a debt below zero), or a debt no forced debit made.
        const inconsistentLots = await client.query<{ count: string }>(
          `WITH drawn AS (SELECT lot_id, sum(amount) AS amount FROM lot_draws GROUP BY lot_id),
                returned AS (SELECT d.lot_id, sum(r.amount) AS amount FROM lot_returns r JOIN lot_draws d USING (draw_id) GROUP BY d.lot_id),
                ${CONSUME_DEBTS}
           SELECT (SELECT count(*) FROM lots l LEFT JOIN drawn d USING (lot_id) LEFT JOIN returned r USING (lot_id)
                    WHERE l.remaining <> l.amount - coalesce(d.amount, 0) + coalesce(r.amount, 0))
                + (SELECT count(*) FROM consume_debts WHERE debt < 0 OR (NOT forced AND debt <> 0)) AS count`,
        );
        return { accounts, misrouted, inconsistentLots, dangling };
      },
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    );

    const byType = new Map<string, AuditReport['balance_types'][number] & { exactSum: bigint }>();
    for (const row of accounts.rows) {
      let entry = byType.get(row.balance_type);
      if (!entry) {
        entry = { balance_type: row.balance_type, sum: 0, accounts_checked: 0, mismatches: [], exactSum: 0n };
        byType.set(row.balance_type, entry);
      }
      entry.accounts_checked++;
      if (row.owner_kind !== 'user') {
        entry.exactSum += BigInt(row.derived_posted);
        continue;
      }
      entry.exactSum += BigInt(row.posted ?? 0);
      const checks: Array<[AuditMismatch['field'], bigint, bigint]> = [
        ['posted', BigInt(row.posted ?? 0), BigInt(row.derived_posted)],
        ['pending_debit', BigInt(row.pending_debit ?? 0), BigInt(row.derived_pending_debit)],
        ['pending_credit', BigInt(row.pending_credit ?? 0), BigInt(row.derived_pending_credit)],
        // Lots hold what is posted and not reserved by a hold, plus what forced debits owe (drawn from no lot).
        ['lots', BigInt(row.posted ?? 0) - BigInt(row.pending_debit ?? 0) + BigInt(row.debt), BigInt(row.lots_remaining)],
      ];
      // Credits pay debts first: after any write, an account in debt has no value left in a lot.
      const debt = BigInt(row.debt);
      const lotsRemaining = BigInt(row.lots_remaining);
      if (debt > 0n && lotsRemaining > 0n) checks.push(['debt', debt, debt > lotsRemaining ? debt - lotsRemaining : 0n]);
      for (const [field, stored, derived] of checks) {
        if (stored !== derived && entry.mismatches.length < AUDIT_MISMATCHES_REPORTED_MAX) {
          entry.mismatches.push({ account_id: row.account_id, owner: `user:${row.owner_id}`, field, stored: Number(stored), derived: Number(derived) });
        }
      }
    }
    const balanceTypes = [...byType.values()].map(({ exactSum, ...entry }) => ({ ...entry, sum: Number(exactSum) }));
    const misroutedTransactions = Number(misrouted.rows[0]?.count ?? 0);
    const lotsInconsistent = Number(inconsistentLots.rows[0]?.count ?? 0);
    const danglingReferences = Number(dangling.rows[0]?.count ?? 0);
    return {
      ok:
        misroutedTransactions === 0 &&
        lotsInconsistent === 0 &&
        danglingReferences === 0 &&
        balanceTypes.every((entry) => entry.sum === 0 && entry.mismatches.length === 0),
      balance_types: balanceTypes,
      misrouted_transactions: misroutedTransactions,
      inconsistent_lots: lotsInconsistent,
      dangling_references: danglingReferences,
    };
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
