// Account events on topic `accounts`, published by the accounts service when
// a user account is created; points (the welcome balance) and notifications
// (a welcome notice) react. Versioning rule: as in payments.ts.
import type { CloudEvent, CloudEventInput } from './envelope.ts';
import { checkEventType, eventDataValidator } from './event-data.ts';

export const ACCOUNTS_TOPIC = 'accounts';
export const ACCOUNT_EVENT_TYPES = ['account.created'] as const;
export type AccountEventType = (typeof ACCOUNT_EVENT_TYPES)[number];

/** The account.created event's id is this prefix and the user id: one event per account. */
export const ACCOUNT_CREATED_ID_PREFIX = 'account.created.';
/** Event ids are at most 128 characters (EVENT_ID_PATTERN in limits.ts). */
const EVENT_ID_LENGTH_MAX = 128;
/**
 * The longest user id an account may have: 112 characters, so that its
 * account.created id fits 128 (the ledger takes user ids up to 128; one of
 * 113–128 characters could never be published, so it is refused up front).
 */
export const ACCOUNT_USER_ID_LENGTH_MAX = EVENT_ID_LENGTH_MAX - ACCOUNT_CREATED_ID_PREFIX.length;
/** A user id of an account: the ledger's characters ([A-Za-z0-9._:-], not `.` or `..`), at most ACCOUNT_USER_ID_LENGTH_MAX. */
export const ACCOUNT_USER_ID_PATTERN = `^(?!\\.\\.?$)[A-Za-z0-9._:-]{1,${ACCOUNT_USER_ID_LENGTH_MAX}}$`;

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
    user_id: { type: 'string', pattern: ACCOUNT_USER_ID_PATTERN },
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
    id: `${ACCOUNT_CREATED_ID_PREFIX}${checked.user_id}`,
    source: '/koban/accounts',
    type: 'account.created',
    subject: checked.user_id,
    time: checked.created_at,
    datacontenttype: 'application/json',
    data: checked,
  };
}
