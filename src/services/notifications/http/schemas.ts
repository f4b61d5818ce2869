// JSON schemas of the notifications API: they validate requests and generate OpenAPI.
import { BODY_ERRORS, COMMON_ERRORS, errorResponses, jsonResponse } from '../../../platform/http/openapi.ts';
import {
  CURSOR_PATTERN,
  DEAD_LETTER_PAGE_LIMIT_DEFAULT,
  DEAD_LETTER_PAGE_LIMIT_MAX,
  LANGUAGES,
  NOTICE_PAGE_LIMIT_DEFAULT,
  NOTICE_PAGE_LIMIT_MAX,
  REDRIVE_IDS_MAX,
  USER_ID_PATTERN,
  WEBHOOK_URL_LENGTH_MAX,
  WEBHOOK_URL_PATTERN,
} from '../domain/limits.ts';

const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

const userParams = {
  type: 'object',
  additionalProperties: false,
  required: ['user_id'],
  properties: { user_id: { type: 'string', pattern: USER_ID_PATTERN, description: 'The wallet user: 1–128 characters of [A-Za-z0-9._:-]' } },
} as const;

const pageQuery = (limitDefault: number, limitMax: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    properties: {
      limit: { type: 'integer', minimum: 1, maximum: limitMax, default: limitDefault },
      cursor: { type: 'string', pattern: CURSOR_PATTERN, description: 'The `next_cursor` of the previous page' },
    },
  }) as const;

const nextCursor = { type: ['string', 'null'], description: 'Pass back as `cursor` for the next page; null on the last' } as const;
const language = { type: 'string', enum: LANGUAGES, description: 'ja (the default unless NOTIFICATIONS_DEFAULT_LANGUAGE says otherwise) or en' } as const;
const webhookUrl = {
  type: ['string', 'null'],
  maxLength: WEBHOOK_URL_LENGTH_MAX,
  pattern: WEBHOOK_URL_PATTERN,
  description: "An http(s) URL to POST this user's notices to, signed with `Koban-Signature`; null (or absent) for none, and then the global NOTIFICATIONS_WEBHOOK_URL applies",
} as const;

const notice = {
  title: 'Notice',
  type: 'object',
  additionalProperties: false,
  required: ['notice_id', 'event_id', 'type', 'title', 'body', 'language', 'created_at'],
  properties: {
    notice_id: { type: 'string', format: 'uuid' },
    event_id: { type: 'string', description: 'The event it was made from: one notice per event' },
    type: { type: 'string', description: 'The event type, e.g. `payment.captured` or `account.created`' },
    title: { type: 'string' },
    body: { type: 'string' },
    language,
    created_at: { type: 'string', format: 'date-time' },
  },
} as const;

const settings = {
  title: 'NotificationSettings',
  type: 'object',
  additionalProperties: false,
  required: ['user_id', 'language', 'webhook_url'],
  properties: { user_id: { type: 'string' }, language, webhook_url: { type: ['string', 'null'] } },
  examples: [{ user_id: 'alice', language: 'en', webhook_url: 'https://example.com/koban-hook' }],
} as const;

const deadLetter = {
  title: 'NotificationDeadLetter',
  type: 'object',
  additionalProperties: false,
  required: ['delivery_id', 'notice_id', 'event_id', 'user_id', 'channel', 'target', 'attempts', 'last_error', 'dead_lettered_at', 'redrives'],
  properties: {
    delivery_id: { type: 'string', format: 'uuid', description: 'Sent as `Koban-Delivery-Id`; the same on every attempt' },
    notice_id: { type: 'string', format: 'uuid' },
    event_id: { type: 'string' },
    user_id: { type: 'string' },
    channel: { type: 'string', enum: ['log', 'webhook'] },
    target: { type: ['string', 'null'], description: 'The webhook URL it was sent to' },
    attempts: { type: 'integer', description: 'Attempts made since it was made or last redriven' },
    last_error: { type: ['string', 'null'] },
    dead_lettered_at: { type: 'string', format: 'date-time' },
    redrives: { type: 'integer', description: 'Times it was redriven before' },
  },
} as const;

export const notificationSchemas = {
  listNotices: {
    operationId: 'listNotices',
    summary: "A user's notices, newest first",
    description: 'One notice per event (payments, and a welcome when the account is created), rendered in the user\'s language. Cursor pagination: pass `next_cursor` back as `cursor`.',
    tags: ['notifications'],
    params: userParams,
    querystring: pageQuery(NOTICE_PAGE_LIMIT_DEFAULT, NOTICE_PAGE_LIMIT_MAX),
    response: {
      200: jsonResponse('One page, newest first', {
        title: 'NoticePage',
        type: 'object',
        additionalProperties: false,
        required: ['data', 'next_cursor'],
        properties: { data: { type: 'array', items: notice }, next_cursor: nextCursor },
      }),
      ...errorResponses(COMMON_ERRORS),
    },
  },
  getSettings: {
    operationId: 'getNotificationSettings',
    summary: "A user's notification settings (the defaults if they chose none)",
    tags: ['notifications'],
    params: userParams,
    response: { 200: jsonResponse("The user's settings", settings), ...errorResponses(COMMON_ERRORS) },
  },
  putSettings: {
    operationId: 'putNotificationSettings',
    summary: "Set a user's language and webhook",
    description:
      "Replaces both: a `webhook_url` left out removes the user's webhook. Notices made from then on use them. A webhook needs NOTIFICATIONS_WEBHOOK_SECRET set (else 400). Unless NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED is true, a `webhook_url` whose host is a loopback, private, link-local or other non-public address, or `localhost`, is a 400, and a name that resolves to such an address is refused when sending (a dead letter, without retries).",
    tags: ['notifications'],
    params: userParams,
    body: {
      title: 'NotificationSettingsRequest',
      type: 'object',
      additionalProperties: false,
      required: ['language'],
      properties: { language, webhook_url: webhookUrl },
      examples: [{ language: 'en', webhook_url: 'https://example.com/koban-hook' }],
    },
    response: { 200: jsonResponse("The user's settings as stored", settings), ...errorResponses(BODY_ERRORS) },
  },
  listDeadLetters: {
    operationId: 'listNotificationDeadLetters',
    summary: 'Deliveries that failed on every attempt, oldest first',
    tags: ['notifications'],
    querystring: pageQuery(DEAD_LETTER_PAGE_LIMIT_DEFAULT, DEAD_LETTER_PAGE_LIMIT_MAX),
    response: {
      200: jsonResponse('One page, oldest first', {
        title: 'NotificationDeadLetterPage',
        type: 'object',
        additionalProperties: false,
        required: ['data', 'next_cursor'],
        properties: { data: { type: 'array', items: deadLetter }, next_cursor: nextCursor },
      }),
      ...errorResponses(COMMON_ERRORS),
    },
  },
  redrive: {
    operationId: 'redriveNotificationDeadLetters',
    summary: 'Send dead deliveries again (all, or the ids given) with a fresh attempt count',
    description: `Without \`ids\` (or without a body), the oldest ${REDRIVE_IDS_MAX} dead deliveries; call again for more.`,
    tags: ['notifications'],
    body: {
      title: 'NotificationRedriveRequest',
      type: 'object',
      additionalProperties: false,
      properties: { ids: { type: 'array', minItems: 1, maxItems: REDRIVE_IDS_MAX, uniqueItems: true, items: { type: 'string', pattern: UUID_PATTERN } } },
      examples: [{}, { ids: ['0b5f7c1e-8d2a-4f4e-9c61-3a7d2f1e9b40'] }],
    },
    response: {
      200: jsonResponse('How many deliveries are due again', {
        title: 'NotificationRedriveResult',
        type: 'object',
        additionalProperties: false,
        required: ['redriven'],
        properties: { redriven: { type: 'integer' } },
      }),
      ...errorResponses(BODY_ERRORS),
    },
  },
} as const;
