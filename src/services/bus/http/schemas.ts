// JSON schemas of the bus API: they validate requests and generate OpenAPI.
import { ERROR_SCHEMA_ID } from '../../../platform/http/server.ts';
import { cloudEventSchema } from '../../../contracts/events/envelope.ts';
import { DEAD_LETTER_PAGE_LIMIT_DEFAULT, DEAD_LETTER_PAGE_LIMIT_MAX, NAME_PATTERN, REDRIVE_IDS_MAX } from '../domain/limits.ts';
import { EVENT_ID_PATTERN } from '../../../contracts/events/limits.ts';

const errorRef = { $ref: `${ERROR_SCHEMA_ID}#` } as const;
const errors = { 400: errorRef, 404: errorRef, 415: errorRef, 500: errorRef, 503: errorRef } as const;
/** Topic and subscription names in a path: the pattern every declared one matches, so no other reaches the bus. */
const nameParam = (what: string) => ({ type: 'string', pattern: NAME_PATTERN, description: `${what}: a lowercase letter, then up to 62 of [a-z0-9_-]` }) as const;

const storedEvent = { type: 'object', additionalProperties: true, description: 'The CloudEvent as published' } as const;

const deadLetter = {
  type: 'object',
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
  publish: {
    summary: 'Publish a CloudEvent to a topic from outside (e.g. a shopping-rewards partner)',
    description:
      'Accepted for delivery to every subscription of the topic whose filter matches. An id already published on the topic is accepted once: the repeat answers `duplicate: true` and delivers nothing (with KOBAN_BUS=nats, within the JetStream duplicate window of 15 minutes). Send `application/json` or `application/cloudevents+json`.',
    tags: ['bus'],
    params: { type: 'object', required: ['topic'], properties: { topic: nameParam('The topic') } },
    body: cloudEventSchema,
    response: {
      202: { type: 'object', required: ['id', 'duplicate'], properties: { id: { type: 'string' }, duplicate: { type: 'boolean' } } },
      ...errors,
    },
  },
  listSubscriptions: {
    summary: 'Every declared subscription with its queue depth, in-flight count, oldest message age and dead letters',
    tags: ['bus'],
    response: {
      200: {
        type: 'object',
        required: ['data'],
        properties: {
          data: {
            type: 'array',
            items: {
              type: 'object',
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
      },
      500: errorRef,
      503: errorRef,
    },
  },
  listDeadLetters: {
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
      200: { type: 'object', required: ['data', 'next_cursor'], properties: { data: { type: 'array', items: deadLetter }, next_cursor: { type: ['string', 'null'] } } },
      ...errors,
    },
  },
  redrive: {
    summary: 'Send dead letters back to their subscription (all, or the ids given) with a fresh delivery count',
    tags: ['bus'],
    params: subscriptionParams,
    body: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ids: { type: 'array', minItems: 1, maxItems: REDRIVE_IDS_MAX, uniqueItems: true, items: { type: 'string', pattern: EVENT_ID_PATTERN } },
      },
    },
    response: { 200: { type: 'object', required: ['redriven'], properties: { redriven: { type: 'integer' } } }, ...errors },
  },
  discard: {
    summary: 'Set a dead letter aside: it is kept, marked discarded, and never redriven',
    tags: ['bus'],
    params: { type: 'object', required: ['name', 'id'], properties: { name: subscriptionParams.properties.name, id: { type: 'string', pattern: EVENT_ID_PATTERN } } },
    response: { 200: deadLetter, ...errors },
  },
} as const;
