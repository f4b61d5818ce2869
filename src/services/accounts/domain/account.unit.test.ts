// Goal: opening an account is a pure decision — the account at the clock's instant and the contract's account.created event for it — and a user id the ledger would refuse is refused here too, naming user_id and where it was.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EVENT_ID_PATTERN } from '../../../contracts/events/limits.ts';
import { checkUserId, openAccount } from './account.ts';
import { USER_ID_LENGTH_MAX } from './limits.ts';

test('openAccount: the account at that instant and its account.created event, id derived from the user', () => {
  const { account, event } = openAccount('alice', new Date('2026-04-01T09:30:00.123Z'));
  assert.deepEqual(account, { user_id: 'alice', created_at: '2026-04-01T09:30:00.123Z' });
  assert.equal(event.id, 'account.created.alice');
  assert.equal(event.type, 'account.created');
  assert.equal(event.subject, 'alice');
  assert.equal(event.time, '2026-04-01T09:30:00.123Z');
  assert.deepEqual(event.data, account);
});

test('the longest user id accepted still gives an event id the bus takes; one more character is refused before any event is built', () => {
  assert.equal(USER_ID_LENGTH_MAX, 112);
  const longest = 'x'.repeat(USER_ID_LENGTH_MAX);
  const { event } = openAccount(checkUserId(longest, 'body'), new Date('2026-04-01T00:00:00.000Z'));
  assert.match(event.id, new RegExp(EVENT_ID_PATTERN));
  assert.throws(() => checkUserId(`${longest}x`, 'body'), { code: 'invalid_request', details: { field: 'user_id', in: 'body' } });
});

test('checkUserId: accepts the ledger\'s characters, refuses the rest with invalid_request naming user_id', () => {
  for (const good of ['a', 'user-1', 'u.s:e_r', 'x'.repeat(USER_ID_LENGTH_MAX), '...']) assert.equal(checkUserId(good, 'body'), good);
  for (const bad of ['', '.', '..', 'x'.repeat(USER_ID_LENGTH_MAX + 1), 'x'.repeat(129), 'a b', 'a/b', 'a\u0000b', 'a\ud800b', 'ä', 42, null, undefined, { id: 'a' }]) {
    assert.throws(() => checkUserId(bad, 'path'), { code: 'invalid_request', details: { field: 'user_id', in: 'path' } }, JSON.stringify(bad));
  }
});
