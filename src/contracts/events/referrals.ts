// Referral events on topic `referrals`: the referral program says a referee
// completed what makes a referral count. The points service pays the
// configured bonus, once per referral; a self-referral earns nothing.
// Versioning rule: as in payments.ts.
import type { CloudEvent } from './envelope.ts';
import { checkEventType, eventDataValidator } from './event-data.ts';
import { EVENT_REFERENCE_ID_PATTERN, EVENT_USER_ID_PATTERN } from './limits.ts';

export const REFERRALS_TOPIC = 'referrals';
export const REFERRAL_EVENT_TYPES = ['referral.completed'] as const;
export type ReferralEventType = (typeof REFERRAL_EVENT_TYPES)[number];

export type ReferralCompletedData = {
  referral_id: string;
  referrer_id: string;
  referee_id: string;
};

export const referralCompletedDataSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['referral_id', 'referrer_id', 'referee_id'],
  properties: {
    referral_id: { type: 'string', pattern: EVENT_REFERENCE_ID_PATTERN },
    referrer_id: { type: 'string', pattern: EVENT_USER_ID_PATTERN },
    referee_id: { type: 'string', pattern: EVENT_USER_ID_PATTERN },
  },
} as const;

const validator = eventDataValidator<ReferralCompletedData>(referralCompletedDataSchema, 'referral event');

export type ReferralEvent = { id: string; type: ReferralEventType; data: ReferralCompletedData };

/** Producers: throws `invalid_request` naming the field. */
export function checkReferralCompletedData(data: unknown): ReferralCompletedData {
  return validator.check(data);
}

/** Consumers: throws `invalid_request` (a poison message) unless it is a referral event. */
export function parseReferralEvent(event: CloudEvent): ReferralEvent {
  const type = checkEventType(event.type, REFERRAL_EVENT_TYPES, 'referral event');
  return { id: event.id, type, data: validator.parse(event.data) };
}
