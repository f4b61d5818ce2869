// Goal: the account, reward and referral contracts accept exactly their shape
// from producers, drop unknown additive fields for consumers, and name the
// field of anything else (a poison message).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLedgerError } from '../ledger/ledger-api.ts';
import { accountCreatedEvent, parseAccountEvent } from './accounts.ts';
import type { CloudEvent } from './envelope.ts';
import { checkReferralCompletedData, parseReferralEvent } from './referrals.ts';
import { checkRewardPurchaseConfirmedData, parseRewardEvent, REWARD_POINTS_MAX } from './rewards.ts';

function envelope(type: string, data: unknown): CloudEvent {
  return { specversion: '1.0', id: 'e1', source: '/test', type, time: '2026-11-30T00:00:00.000Z', data };
}

function refusedNaming(run: () => unknown, field: string): void {
  assert.throws(run, (error: unknown) => isLedgerError(error, 'invalid_request') && error.details?.field === field);
}

describe('account.created', () => {
  it('is one event per account, its id derived from the user', () => {
    const event = accountCreatedEvent({ user_id: 'u1', created_at: '2026-11-30T00:00:00.000Z' });
    assert.equal(event.id, 'account.created.u1');
    assert.equal(event.subject, 'u1');
    assert.deepEqual(parseAccountEvent({ ...event, time: event.time! }).data, { user_id: 'u1', created_at: '2026-11-30T00:00:00.000Z' });
  });
  it('refuses a producer\'s unknown field and a bad user id; a consumer drops the unknown field', () => {
    refusedNaming(() => accountCreatedEvent({ user_id: 'u1', created_at: '2026-11-30T00:00:00.000Z', extra: 1 } as never), 'data.extra');
    refusedNaming(() => accountCreatedEvent({ user_id: 'u 1', created_at: '2026-11-30T00:00:00.000Z' }), 'data.user_id');
    assert.deepEqual(parseAccountEvent(envelope('account.created', { user_id: 'u1', created_at: '2026-11-30T00:00:00.000Z', later: true })).data, {
      user_id: 'u1',
      created_at: '2026-11-30T00:00:00.000Z',
    });
    refusedNaming(() => parseAccountEvent(envelope('account.deleted', { user_id: 'u1', created_at: '2026-11-30T00:00:00.000Z' })), 'type');
  });
});

describe('reward.purchase_confirmed', () => {
  const data = { user_id: 'u1', purchase_id: 'P-1', points: 120 };
  it('accepts its shape and refuses points that are not a whole number in range', () => {
    assert.deepEqual(checkRewardPurchaseConfirmedData(data), data);
    assert.deepEqual(parseRewardEvent(envelope('reward.purchase_confirmed', data)).data, data);
    for (const points of [0, -1, 1.5, REWARD_POINTS_MAX + 1, '120']) refusedNaming(() => parseRewardEvent(envelope('reward.purchase_confirmed', { ...data, points })), 'data.points');
    refusedNaming(() => parseRewardEvent(envelope('reward.purchase_confirmed', { user_id: 'u1', points: 1 })), 'data.purchase_id');
    refusedNaming(() => parseRewardEvent(envelope('reward.purchase_confirmed', null)), 'data');
  });
});

describe('referral.completed', () => {
  const data = { referral_id: 'R1', referrer_id: 'u1', referee_id: 'u2' };
  it('accepts its shape and names a missing or malformed field', () => {
    assert.deepEqual(checkReferralCompletedData(data), data);
    assert.deepEqual(parseReferralEvent(envelope('referral.completed', data)).data, data);
    refusedNaming(() => parseReferralEvent(envelope('referral.completed', { ...data, referral_id: 'a/b' })), 'data.referral_id');
    refusedNaming(() => parseReferralEvent(envelope('referral.completed', { referral_id: 'R1', referrer_id: 'u1' })), 'data.referee_id');
    refusedNaming(() => checkReferralCompletedData({ ...data, note: 'x' }), 'data.note');
  });
});
