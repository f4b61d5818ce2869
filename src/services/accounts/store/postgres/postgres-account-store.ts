// The account store on PostgreSQL: every statement in one place. An account
// and its event commit in one transaction; a second create of the same user id
// waits for the first to commit (the primary key), then writes nothing.
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Logger } from 'pino';
import type { CloudEventInput } from '../../../../contracts/events/envelope.ts';
import { ACCOUNTS_TOPIC } from '../../../../contracts/events/accounts.ts';
import type { Clock } from '../../../../platform/clock.ts';
import { appendToOutbox, migrateOutbox } from '../../../../platform/outbox/outbox.ts';
import { migrate } from '../../../../platform/postgres/migrate.ts';
import { type Pool, type PoolClient, withTransaction } from '../../../../platform/postgres/pool.ts';
import type { Account } from '../../domain/account.ts';
import type { AccountStore, Opened } from '../account-store.ts';

const MIGRATIONS_DIR = path.join(import.meta.dirname, 'migrations');

/** The outbox's schema: its own, so that with one database for every service (DATABASE_URL alone) it is not another producer's. */
export const ACCOUNTS_OUTBOX_SCHEMA = 'koban_accounts_outbox';

/** The accounts table and the outbox, in the service's database. */
export async function migrateAccounts(pool: Pool, databaseUrl: string, logger: Logger): Promise<void> {
  await migrate(pool, MIGRATIONS_DIR, logger);
  await migrateOutbox(databaseUrl, logger, ACCOUNTS_OUTBOX_SCHEMA);
}

type AccountRow = { user_id: string; created_at: Date };

export class PostgresAccountStore implements AccountStore {
  readonly #pool: Pool;
  readonly #clock: Clock;

  constructor(pool: Pool, clock: Clock) {
    this.#pool = pool;
    this.#clock = clock;
  }

  open(account: Account, event: CloudEventInput): Promise<Opened> {
    return withTransaction(this.#pool, async (client) => {
      // A concurrent create of the same id blocks here until the first commits, then inserts nothing.
      const inserted = await client.query<AccountRow>({
        name: 'accounts_insert',
        text: 'INSERT INTO accounts (user_id, created_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING RETURNING user_id, created_at',
        values: [account.user_id, account.created_at],
      });
      const row = inserted.rows[0];
      if (row !== undefined) {
        await appendToOutbox(client, [{ topic: ACCOUNTS_TOPIC, event }], this.#clock, ACCOUNTS_OUTBOX_SCHEMA);
        return { account: toAccount(row), created: true };
      }
      // A statement of its own, so its snapshot sees the row the other transaction committed.
      const existing = await selectAccount(client, account.user_id);
      assert.ok(existing !== undefined, `account ${account.user_id} conflicted on insert but is not there`);
      return { account: existing, created: false };
    });
  }

  account(userId: string): Promise<Account | undefined> {
    return selectAccount(this.#pool, userId);
  }

  close(): Promise<void> {
    return this.#pool.end();
  }
}

async function selectAccount(client: Pick<PoolClient, 'query'>, userId: string): Promise<Account | undefined> {
  const result = await client.query<AccountRow>({ name: 'accounts_select', text: 'SELECT user_id, created_at FROM accounts WHERE user_id = $1', values: [userId] });
  const row = result.rows[0];
  return row === undefined ? undefined : toAccount(row);
}

/** Written as the API writes every instant: UTC, milliseconds, `Z` (the clock's milliseconds are stored exactly). */
function toAccount(row: AccountRow): Account {
  return { user_id: row.user_id, created_at: row.created_at.toISOString() };
}
