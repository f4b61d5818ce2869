// PostgreSQL adapter of the ledger store: one function per statement.
import path from 'node:path';
import type { Logger } from 'pino';
import { migrate } from '../../../platform/postgres/migrate.ts';
import type { Pool } from '../../../platform/postgres/pool.ts';
import type { Balance, Metadata, Transaction, TransactionType } from '../../types.ts';
import type { AuditReport, LedgerStore, TransactionPage, WriteOperation, WriteOutcome } from '../ledger-store.ts';

export const LEDGER_MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');
/** The system accounts on the other side of user transactions, per balance type. */
export const SYSTEM_ACCOUNTS = { issuance: 'issuance', redemption: 'redemption' } as const;
const AUDIT_MISMATCHES_REPORTED_MAX = 100;

type TransactionRow = {
  transaction_id: string;
  balance_type: string;
  type: string;
  user_id: string;
  amount: number;
  status: string;
  description: string | null;
  metadata: Metadata | null;
  balance_after: number;
  created_at: Date;
};

/** One fixed field order: a replay serializes byte for byte like the original. */
function toTransaction(row: TransactionRow): Transaction {
  return {
    transaction_id: row.transaction_id,
    type: row.type as TransactionType,
    user_id: row.user_id,
    balance_type: row.balance_type,
    amount: row.amount,
    status: 'posted',
    description: row.description,
    metadata: row.metadata,
    balance_after: row.balance_after,
    created_at: row.created_at.toISOString(),
  };
}

export async function migrateLedger(pool: Pool, logger: Logger): Promise<void> {
  await migrate(pool, LEDGER_MIGRATIONS_DIR, logger);
}

export class PostgresLedgerStore implements LedgerStore {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  async ensureSystemAccounts(balanceTypes: readonly string[], now: Date): Promise<void> {
    await this.#pool.query(
      `INSERT INTO accounts (owner_kind, owner_id, balance_type, balance, created_at, updated_at)
       SELECT 'system', owner_id, balance_type, NULL, $3, $3
         FROM unnest($1::text[]) AS owner_id CROSS JOIN unnest($2::text[]) AS balance_type
       ON CONFLICT (owner_kind, owner_id, balance_type) DO NOTHING`,
      [Object.values(SYSTEM_ACCOUNTS), balanceTypes, now],
    );
  }

  async applyBatch(operations: readonly WriteOperation[]): Promise<WriteOutcome[]> {
    const result = await this.#pool.query({
      name: 'ledger_apply_batch',
      text: `SELECT * FROM ledger_apply_batch($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::jsonb[], $8::timestamptz[])`,
      values: [
        operations.map((op) => op.transaction_id),
        operations.map((op) => op.balance_type),
        operations.map((op) => op.type),
        operations.map((op) => op.user_id),
        operations.map((op) => op.amount),
        operations.map((op) => op.description ?? null),
        operations.map((op) => (op.metadata === undefined ? null : JSON.stringify(op.metadata))),
        operations.map((op) => op.created_at.toISOString()),
      ],
    });
    const outcomes: WriteOutcome[] = new Array(operations.length);
    for (const row of result.rows) {
      const index = (row.out_ordinal as number) - 1;
      switch (row.out_outcome as string) {
        case 'created':
        case 'replayed':
          outcomes[index] = {
            outcome: row.out_outcome,
            transaction: toTransaction({
              transaction_id: row.out_transaction_id,
              balance_type: row.out_balance_type,
              type: row.out_type,
              user_id: row.out_user_id,
              amount: row.out_amount,
              status: row.out_status,
              description: row.out_description,
              metadata: row.out_metadata,
              balance_after: row.out_balance_after,
              created_at: row.out_created_at,
            }),
          };
          break;
        case 'conflict':
          outcomes[index] = { outcome: 'conflict', fields: row.out_differing_fields };
          break;
        case 'insufficient_balance':
        case 'balance_limit_exceeded':
          outcomes[index] = { outcome: row.out_outcome, available: row.out_available ?? 0 };
          break;
        default:
          throw new Error(`ledger_apply_batch returned unknown outcome ${String(row.out_outcome)}`);
      }
    }
    for (let index = 0; index < operations.length; index++) {
      if (outcomes[index] === undefined) throw new Error(`ledger_apply_batch returned no outcome for operation ${index + 1}`);
    }
    return outcomes;
  }

  async findTransactions(transactionId: string): Promise<Transaction[]> {
    const result = await this.#pool.query<TransactionRow>(
      `SELECT transaction_id, balance_type, type, user_id, amount, status, description, metadata, balance_after, created_at
         FROM transactions WHERE transaction_id = $1 ORDER BY transaction_pk`,
      [transactionId],
    );
    return result.rows.map(toTransaction);
  }

  async findBalances(userId: string, balanceTypes: readonly string[]): Promise<Balance[]> {
    const result = await this.#pool.query<{ balance_type: string; balance: number }>(
      `SELECT balance_type, balance FROM accounts
        WHERE owner_kind = 'user' AND owner_id = $1 AND balance_type = ANY($2::text[])`,
      [userId, balanceTypes],
    );
    const stored = new Map(result.rows.map((row) => [row.balance_type, row.balance]));
    return balanceTypes.map((balanceType) => {
      const posted = stored.get(balanceType) ?? 0;
      return { user_id: userId, balance_type: balanceType, available: posted, posted };
    });
  }

  async listUserTransactions(query: {
    userId: string;
    balanceType: string | undefined;
    limit: number;
    beforeKey: number | undefined;
  }): Promise<TransactionPage> {
    const result = await this.#pool.query<TransactionRow & { transaction_pk: number }>(
      `SELECT transaction_pk, transaction_id, balance_type, type, user_id, amount, status, description, metadata, balance_after, created_at
         FROM transactions
        WHERE user_id = $1
          AND ($2::text IS NULL OR balance_type = $2)
          AND ($3::bigint IS NULL OR transaction_pk < $3)
        ORDER BY transaction_pk DESC
        LIMIT $4`,
      [query.userId, query.balanceType ?? null, query.beforeKey ?? null, query.limit + 1],
    );
    const hasMore = result.rows.length > query.limit;
    const rows = hasMore ? result.rows.slice(0, query.limit) : result.rows;
    return { transactions: rows.map(toTransaction), lastKey: hasMore ? rows.at(-1)!.transaction_pk : undefined };
  }

  async audit(): Promise<AuditReport> {
    // REPEATABLE READ: every figure comes from one snapshot, even while writes go on.
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const accounts = await client.query<{
        account_id: number;
        owner_kind: string;
        owner_id: string;
        balance_type: string;
        stored: number | null;
        derived: string;
      }>(
        `WITH movements AS (
           SELECT debit_account_id AS account_id, -amount::numeric AS delta FROM transactions
           UNION ALL
           SELECT credit_account_id, amount::numeric FROM transactions
         ), derived AS (
           SELECT account_id, sum(delta) AS derived FROM movements GROUP BY account_id
         )
         SELECT a.account_id, a.owner_kind, a.owner_id, a.balance_type, a.balance AS stored,
                coalesce(d.derived, 0)::text AS derived
           FROM accounts a LEFT JOIN derived d USING (account_id)
          ORDER BY a.balance_type, a.account_id`,
      );
      const misrouted = await client.query<{ count: string }>(
        `SELECT count(*) FROM transactions t
           JOIN accounts d ON d.account_id = t.debit_account_id
           JOIN accounts c ON c.account_id = t.credit_account_id
          WHERE d.balance_type <> t.balance_type OR c.balance_type <> t.balance_type`,
      );
      await client.query('COMMIT');
      const byType = new Map<string, AuditReport['balance_types'][number] & { exactSum: bigint }>();
      for (const row of accounts.rows) {
        let entry = byType.get(row.balance_type);
        if (!entry) {
          entry = { balance_type: row.balance_type, sum: 0, accounts_checked: 0, mismatches: [], exactSum: 0n };
          byType.set(row.balance_type, entry);
        }
        const derived = BigInt(row.derived);
        entry.accounts_checked++;
        if (row.owner_kind === 'user') {
          const stored = BigInt(row.stored ?? 0);
          entry.exactSum += stored;
          if (stored !== derived && entry.mismatches.length < AUDIT_MISMATCHES_REPORTED_MAX) {
            entry.mismatches.push({ account_id: row.account_id, owner: `user:${row.owner_id}`, stored: Number(stored), derived: Number(derived) });
          }
        } else {
          entry.exactSum += derived;
        }
      }
      const balanceTypes = [...byType.values()].map(({ exactSum, ...entry }) => ({ ...entry, sum: Number(exactSum) }));
      const misroutedTransactions = Number(misrouted.rows[0]?.count ?? 0);
      return {
        ok: misroutedTransactions === 0 && balanceTypes.every((entry) => entry.sum === 0 && entry.mismatches.length === 0),
        balance_types: balanceTypes,
        misrouted_transactions: misroutedTransactions,
      };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
