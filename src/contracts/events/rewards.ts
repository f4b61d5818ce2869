// Reward events on topic `rewards`: a shopping partner confirms a purchase
// that earns points, publishing through the bus (`POST /v1/topics/rewards/events`).
// The points service grants them, once per purchase. Versioning rule: as in payments.ts.
import type { CloudEvent } from './envelope.ts';
import { checkEventType, eventDataValidator } from './event-data.ts';
import { EVENT_REFERENCE_ID_PATTERN, EVENT_USER_ID_PATTERN } from './limits.ts';

export const REWARDS_TOPIC = 'rewards';
export const REWARD_EVENT_TYPES = ['reward.purchase_confirmed'] as const;
export type RewardEventType = (typeof REWARD_EVENT_TYPES)[number];

/** The most points one purchase may earn: a partner's typo must not mint a fortune. */
export const REWARD_POINTS_MAX = 10_000_000;

export type RewardPurchaseConfirmedData = {
  user_id: string;
  /** The partner's purchase id: one grant per purchase, however often it is published. */
  purchase_id: string;
  points: number;
};

export const rewardPurchaseConfirmedDataSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['user_id', 'purchase_id', 'points'],
  properties: {
    user_id: { type: 'string', pattern: EVENT_USER_ID_PATTERN },
    purchase_id: { type: 'string', pattern: EVENT_REFERENCE_ID_PATTERN },
    points: { type: 'integer', minimum: 1, maximum: REWARD_POINTS_MAX },
  },
} as const;

const validator = eventDataValidator<RewardPurchaseConfirmedData>(rewardPurchaseConfirmedDataSchema, 'reward event');

export type RewardEvent = { id: string; type: RewardEventType; data: RewardPurchaseConfirmedData };

/** Producers (partners, tests): throws `invalid_request` naming the field. */
export function checkRewardPurchaseConfirmedData(data: unknown): RewardPurchaseConfirmedData {
  return validator.check(data);
}

/** Consumers: throws `invalid_request` (a poison message) unless it is a reward event. */
export function parseRewardEvent(event: CloudEvent): RewardEvent {
  const type = checkEventType(event.type, REWARD_EVENT_TYPES, 'reward event');
  return { id: event.id, type, data: validator.parse(event.data) };
}
