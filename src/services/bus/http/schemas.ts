// JSON schemas of the bus API: they validate requests and generate OpenAPI.
import { BODY_ERRORS, COMMON_ERRORS, errorResponses, jsonResponse } from '../../../platform/http/openapi.ts';
import type { ErrorCode } from '../../../platform/errors.ts';
import { cloudEventSchema } from '../../../contracts/events/envelope.ts';
import { DEAD_LETTER_PAGE_LIMIT_DEFAULT, DEAD_LETTER_PAGE_LIMIT_MAX, NAME_PATTERN, PUBLISH_BATCH_MESSAGES_MAX, REDRIVE_IDS_MAX } from '../domain/limits.ts';
import { EVENT_ID_PATTERN } from '../../../contracts/events/limits.ts';

const readErrors = (...codes: ErrorCode[]) => errorResponses([...COMMON_ERRORS, ...codes]);
const writeErrors = (...codes: ErrorCode[]) => errorResponses([...BODY_ERRORS, ...codes]);
/** CloudEvents' structured-mode media type, which publish accepts besides JSON. */
const CLOUDEVENTS_JSON = 'application/cloudevents+json';

const eventExample = {
  specversion: '1.0',
  id: 'reward-9001',
  source: 'partner/shop-42',
  type: 'shopping.reward.earned',
  subject: 'alice',
  data: { user_id: 'alice', points: 120 },
  tier: 'gold',
};
/** Topic and subscription names in a path: the pattern every declared one matches, so no other reaches the bus. */
const nameParam = (what: string) => ({ type: 'string', pattern: NAME_PATTERN, description: `${what}: a lowercase letter, then up to 62 of [a-z0-9_-]` }) as const;

const storedEvent = { type: 'object', additionalProperties: true, description: 'The CloudEvent as published, with `time` as stamped at publish' } as const;

const deadLetter = {
  title: 'DeadLetter',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'event', 'attempts', 'last_error', 'dead_lettered_at', 'discarded_at'],
  properties: {
    id: { type: 'string', description: 'The event id' },
    event: storedEvent,
    attempts: { type: 'integer', description: 'Deliveries made before it was dead-lettered' },
    last_error: { type: ['string', 'null'] },
    dead_lettered_at: { type: 'string', format: 'date-time' },
    discarded_at: { type: ['string', 'null'], format: 'date-time' },
  },
} as const;

const subscriptionParams = {
  type: 'object',
  required: ['name'],
  properties: { name: nameParam('The subscription') },
} as const;

export const busSchemas = {
  publishBatch: {
    summary: 'Publish a batch of CloudEvents, as a producing service\'s outbox relay does from another process',
    description:
      'One status per message, in order: `published`, `duplicate` (the id was already published on its topic with the same content), `unknown_topic`, or `conflict` (the id was used with other content; `conflict` names the attributes). A malformed event refuses the whole batch (400 naming `messages.<index>`); nothing is published then.',
    operationId: 'publishBatch',
    tags: ['bus'],
    body: {
      title: 'PublishBatch',
      type: 'object',
      additionalProperties: false,
      required: ['messages'],
      properties: {
        messages: {
          type: 'array',
          minItems: 1,
          maxItems: PUBLISH_BATCH_MESSAGES_MAX,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['topic', 'event'],
            properties: { topic: nameParam('The topic'), event: cloudEventSchema },
          },
        },
      },
    },
    response: {
      200: jsonResponse('What became of each message', {
        title: 'PublishBatchResult',
        type: 'object',
        additionalProperties: false,
        required: ['results'],
        properties: {
          results: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['id', 'status'],
              properties: {
                id: { type: 'string' },
                status: { type: 'string', enum: ['published', 'duplicate', 'unknown_topic', 'conflict'] },
                conflict: { type: 'array', items: { type: 'string' } },
              },
            },
          },
        },
      }),
      ...writeErrors(),
    },
  },
  publish: {
    summary: 'Publish a CloudEvent to a topic from outside (e.g. a shopping-rewards partner)',
    description:
      'Accepted for delivery to every subscription of the topic whose filter matches. An id already published on the topic is accepted once: an identical repeat (every attribute but `time` compared, key order and whitespace aside) answers `duplicate: true` and delivers nothing; the same id with different content is 409 `idempotency_conflict` naming the attributes that differ. Send `application/json` or `application/cloudevents+json`.',
    operationId: 'publishEvent',
    tags: ['bus'],
    consumes: ['application/json', CLOUDEVENTS_JSON],
    params: { type: 'object', required: ['topic'], properties: { topic: nameParam('The topic') } },
    body: { ...cloudEventSchema, title: 'CloudEvent', examples: [eventExample] },
    response: {
      202: jsonResponse('Accepted for delivery, or a duplicate of an event already accepted (delivered once)', {
        title: 'PublishResult',
        type: 'object',
        additionalProperties: false,
        required: ['id', 'duplicate'],
        properties: { id: { type: 'string' }, duplicate: { type: 'boolean', description: 'Whether the topic already had this event id' } },
        examples: [{ id: 'reward-9001', duplicate: false }],
      }),
      ...writeErrors('not_found', 'idempotency_conflict'),
    },
  },
  listSubscriptions: {
    operationId: 'listSubscriptions',
    summary: 'Every declared subscription with its queue depth, in-flight count, oldest message age and dead letters',
    tags: ['bus'],
    response: {
      200: jsonResponse('Every subscription declared by a consumer', {
        title: 'SubscriptionList',
        type: 'object',
        additionalProperties: false,
        required: ['data'],
        properties: {
          data: {
            type: 'array',
            items: {
              title: 'SubscriptionStats',
              type: 'object',
              additionalProperties: false,
              required: ['name', 'topic', 'filter', 'depth', 'in_flight', 'oldest_age_ms', 'dead_letters'],
              properties: {
                name: { type: 'string' },
                topic: { type: 'string' },
                filter: { type: ['object', 'null'], additionalProperties: true },
                depth: { type: 'integer' },
                in_flight: { type: 'integer' },
                oldest_age_ms: { type: ['integer', 'null'] },
                dead_letters: { type: 'integer' },
              },
            },
          },
        },
      }),
      ...errorResponses(['internal', 'unavailable', 'timeout']),
    },
  },
  listDeadLetters: {
    operationId: 'listDeadLetters',
    summary: "A subscription's dead letters, oldest first",
    tags: ['bus'],
    params: subscriptionParams,
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        limit: { type: 'integer', minimum: 1, maximum: DEAD_LETTER_PAGE_LIMIT_MAX, default: DEAD_LETTER_PAGE_LIMIT_DEFAULT },
        cursor: { type: 'string', minLength: 1, maxLength: 64 },
        state: { type: 'string', enum: ['dead', 'discarded'], default: 'dead', description: '`discarded` lists those set aside' },
      },
    },
    response: {
      200: jsonResponse('One page, oldest first', {
        title: 'DeadLetterPage',
        type: 'object',
        additionalProperties: false,
        required: ['data', 'next_cursor'],
        properties: { data: { type: 'array', items: deadLetter }, next_cursor: { type: ['string', 'null'], description: 'Pass back as `cursor` for the next page; null on the last' } },
      }),
      ...readErrors('not_found'),
    },
  },
  redrive: {
    operationId: 'redriveDeadLetters',
    summary: 'Send dead letters back to their subscription (all, or the ids given) with a fresh delivery count',
    tags: ['bus'],
    params: subscriptionParams,
    body: {
      title: 'RedriveRequest',
      description: 'Without `ids` (or without a body), every dead letter of the subscription',
      examples: [{}, { ids: ['reward-9001'] }],
      type: 'object',
      additionalProperties: false,
      properties: {
        ids: { type: 'array', minItems: 1, maxItems: REDRIVE_IDS_MAX, uniqueItems: true, items: { type: 'string', pattern: EVENT_ID_PATTERN } },
      },
    },
    response: {
      200: jsonResponse('How many dead letters went back to the subscription', {
        title: 'RedriveResult',
        type: 'object',
        additionalProperties: false,
        required: ['redriven'],
        properties: { redriven: { type: 'integer' } },
      }),
      ...writeErrors('not_found'),
    },
  },
  discard: {
    operationId: 'discardDeadLetter',
    summary: 'Set a dead letter aside: it is kept, marked discarded, and never redriven',
    tags: ['bus'],
    params: { type: 'object', required: ['name', 'id'], properties: { name: subscriptionParams.properties.name, id: { type: 'string', pattern: EVENT_ID_PATTERN } } },
    response: { 200: jsonResponse('The dead letter, now discarded', deadLetter), ...writeErrors('not_found') },
  },
} as const;
