// The accounts service's store port: what the service needs from its
// database, nothing more. One adapter: store/postgres/.
import type { CloudEventInput } from '../../../contracts/events/envelope.ts';
import type { Account } from '../domain/account.ts';

export type Opened = Readonly<{
  /** The account as stored: the new one, or the one that was there first (then `created` is false and nothing was written). */
  account: Account;
  created: boolean;
}>;

export interface AccountStore {
  /** Stores the account and its event in one transaction, unless an account with its user id exists: then writes nothing and returns that one. */
  open(account: Account, event: CloudEventInput): Promise<Opened>;
  account(userId: string): Promise<Account | undefined>;
  close(): Promise<void>;
}
