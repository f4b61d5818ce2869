// The accounts domain: pure decisions, no I/O. An account is a user id and the
// instant it was opened; opening one announces it with `account.created`, the
// event points (the welcome balance) and notifications react to.
import type { CloudEventInput } from '../../../contracts/events/envelope.ts';
import { accountCreatedEvent } from '../../../contracts/events/accounts.ts';
import { KobanError } from '../../../platform/errors.ts';
import { USER_ID_LENGTH_MAX, USER_ID_PATTERN } from './limits.ts';

export type Account = Readonly<{
  user_id: string;
  /** When it was opened: RFC 3339 in UTC with milliseconds, as every Koban instant is written. */
  created_at: string;
}>;

const USER_ID = new RegExp(USER_ID_PATTERN);

/**
 * The user id of a request, or `invalid_request` naming it. The HTTP schema
 * refuses bad ids first; this holds in-process callers to the same rule.
 */
export function checkUserId(value: unknown, where: 'body' | 'path'): string {
  if (typeof value !== 'string') throw new KobanError('invalid_request', 'user_id must be a string', { field: 'user_id', in: where });
  if (!USER_ID.test(value)) {
    throw new KobanError('invalid_request', `user_id must be 1–${USER_ID_LENGTH_MAX} characters of [A-Za-z0-9._:-], not . or ..`, { field: 'user_id', in: where });
  }
  return value;
}

/** Opening an account at `now`: the row to store and the event to write with it, in one transaction. */
export function openAccount(userId: string, now: Date): { account: Account; event: CloudEventInput } {
  const account: Account = { user_id: userId, created_at: now.toISOString() };
  return { account, event: accountCreatedEvent({ user_id: account.user_id, created_at: account.created_at }) };
}

/** The answer to a create or a read: built only from what is stored, so a repeat answers the same bytes. */
export function accountView(account: Account): Account {
  return { user_id: account.user_id, created_at: account.created_at };
}
