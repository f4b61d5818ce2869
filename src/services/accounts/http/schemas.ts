// JSON schemas of the accounts API for Fastify and OpenAPI.
import { BODY_ERRORS, COMMON_ERRORS, errorResponses, jsonResponse, replayHeaders } from '../../../platform/http/openapi.ts';
import { USER_ID_LENGTH_MAX, USER_ID_PATTERN } from '../domain/limits.ts';

const userId = { type: 'string', pattern: USER_ID_PATTERN, description: `The wallet user: 1–${USER_ID_LENGTH_MAX} characters of [A-Za-z0-9._:-], not \`.\` or \`..\` (so that its account.created event id fits 128)` } as const;

const account = {
  title: 'Account',
  type: 'object',
  additionalProperties: false,
  description: 'A user account as stored; a create answers with it, and an identical repeat replays it byte for byte.',
  required: ['user_id', 'created_at'],
  properties: {
    user_id: { type: 'string' },
    created_at: { type: 'string', format: 'date-time', description: 'When the account was opened (the `created_at` of its `account.created` event)' },
  },
  examples: [{ user_id: 'alice', created_at: '2026-01-05T09:30:00.000Z' }],
} as const;

export const accountSchemas = {
  create: {
    operationId: 'createAccount',
    summary: 'Open a user account, announcing it on topic `accounts` (`account.created`)',
    description:
      'The account and its `account.created` event commit in one transaction (the outbox); the event reaches its consumers (the welcome balance, a welcome notice) through the bus. ' +
      'Idempotent on `user_id`: a repeat, or a create racing the first, answers 200 with the stored account and `Idempotent-Replayed: true`, and publishes nothing again.',
    tags: ['accounts'],
    body: { title: 'AccountRequest', type: 'object', additionalProperties: false, required: ['user_id'], properties: { user_id: userId } },
    response: {
      200: jsonResponse('An identical repeat: the account as first created, not created again', account, replayHeaders),
      201: jsonResponse('The account, created; its `account.created` event is in the outbox', account),
      ...errorResponses(BODY_ERRORS),
    },
  },
  get: {
    operationId: 'getAccount',
    summary: 'Read a user account',
    tags: ['accounts'],
    params: { type: 'object', additionalProperties: false, required: ['user_id'], properties: { user_id: userId } },
    response: { 200: jsonResponse('The account', account), ...errorResponses([...COMMON_ERRORS, 'not_found']) },
  },
} as const;
