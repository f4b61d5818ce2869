// The accounts service: opens user accounts and reads them. Opening is
// idempotent on the user id: the first create stores the account and its
// account.created event together; every later one (or one racing it) answers
// the stored account, marked as a replay, and writes nothing.
import type { Clock } from '../../platform/clock.ts';
import { KobanError } from '../../platform/errors.ts';
import { type Account, accountView, checkUserId, openAccount } from './domain/account.ts';
import type { AccountStore } from './store/account-store.ts';

export type CreateResult = Readonly<{ account: Account; replayed: boolean }>;

export class AccountsService {
  readonly #store: AccountStore;
  readonly #clock: Clock;

  constructor(options: { store: AccountStore; clock: Clock }) {
    this.#store = options.store;
    this.#clock = options.clock;
  }

  async create(userId: unknown): Promise<CreateResult> {
    const id = checkUserId(userId, 'body');
    // A repeat is answered by a read: no transaction, no lock.
    const stored = await this.#store.account(id);
    if (stored !== undefined) return { account: accountView(stored), replayed: true };
    const { account, event } = openAccount(id, this.#clock.now());
    const opened = await this.#store.open(account, event);
    return { account: accountView(opened.account), replayed: !opened.created };
  }

  async get(userId: unknown): Promise<Account> {
    const id = checkUserId(userId, 'path');
    const account = await this.#store.account(id);
    if (account === undefined) throw new KobanError('not_found', `No account for user ${id}`, { field: 'user_id' });
    return accountView(account);
  }
}
