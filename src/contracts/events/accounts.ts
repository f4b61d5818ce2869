// Account events on topic `accounts`, published by the accounts service when
// a user account is created; points (the welcome balance) and notifications
// (a welcome notice) react. Versioning rule: as in payments.ts.
import type { CloudEvent, CloudEventInput } from './envelope.ts';
import { checkEventType, eventDataValidator } from './event-data.ts';
import { EVENT_USER_ID_PATTERN } from './limits.ts';

export const ACCOUNTS_TOPIC = 'accounts';
export const ACCOUNT_EVENT_TYPES = ['account.created'] as const;
export type AccountEventType = (typeof ACCOUNT_EVENT_TYPES)[number];

export type AccountCreatedData = {
  user_id: string;
  /** When the account was created, RFC 3339. */
  created_at: string;
};

export const accountCreatedDataSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['user_id', 'created_at'],
  properties: {
    user_id: { type: 'string', pattern: EVENT_USER_ID_PATTERN },
    created_at: { type: 'string', minLength: 20, maxLength: 64 },
  },
} as const;

const validator = eventDataValidator<AccountCreatedData>(accountCreatedDataSchema, 'account event');

export type AccountEvent = { id: string; type: AccountEventType; data: AccountCreatedData };

/** Consumers: throws `invalid_request` (a poison message) unless it is an account event. */
export function parseAccountEvent(event: CloudEvent): AccountEvent {
  const type = checkEventType(event.type, ACCOUNT_EVENT_TYPES, 'account event');
  return { id: event.id, type, data: validator.parse(event.data) };
}

/** The event the accounts service writes to its outbox: one per account, so its id is the user's. */
export function accountCreatedEvent(data: AccountCreatedData): CloudEventInput {
  const checked = validator.check(data);
  return {
    specversion: '1.0',
    id: `account.created.${checked.user_id}`,
    source: '/koban/accounts',
    type: 'account.created',
    subject: checked.user_id,
    time: checked.created_at,
    datacontenttype: 'application/json',
    data: checked,
  };
}
