// JSON schemas of the points API, for Fastify (which rejects bad parameters
// with a catalogue `invalid_request` naming the field) and OpenAPI.
import { EVENT_USER_ID_PATTERN } from '../../../contracts/events/limits.ts';
import { COMMON_ERRORS, errorResponses, jsonResponse } from '../../../platform/http/openapi.ts';
import { GRANTS_PAGE_LIMIT_DEFAULT, GRANTS_PAGE_LIMIT_MAX } from '../domain/limits.ts';

/** Cursors this API hands out are short base64url; anything else is refused before it is decoded. */
const CURSOR_PATTERN = '^[A-Za-z0-9_-]+$';
const CURSOR_LENGTH_MAX = 64;

const userParams = {
  type: 'object',
  required: ['user_id'],
  properties: { user_id: { type: 'string', pattern: EVENT_USER_ID_PATTERN, description: 'User id: 1–128 of [A-Za-z0-9._:-]' } },
} as const;

const instant = { type: 'string', format: 'date-time' } as const;

const pointsSummary = {
  title: 'PointsSummary',
  type: 'object',
  additionalProperties: false,
  required: ['user_id', 'available', 'pending', 'expiring'],
  properties: {
    user_id: { type: 'string' },
    available: { type: 'integer', description: 'Points spendable now; negative after a claw-back of points already spent (a debt the next grants repay)' },
    pending: { type: 'integer', description: 'Points to be earned: pending grants of authorized, not yet captured payments' },
    expiring: {
      type: 'array',
      description: 'Upcoming expirations of confirmed points, soonest first',
      items: { type: 'object', additionalProperties: false, required: ['amount', 'expires_at'], properties: { amount: { type: 'integer' }, expires_at: instant } },
    },
    negative_since: { ...instant, description: 'Present while available is below zero: when it went below zero' },
  },
} as const;

const grant = {
  title: 'PointGrant',
  type: 'object',
  additionalProperties: false,
  required: ['grant_id', 'source', 'reference', 'points', 'status', 'clawed_back_points', 'rule_version', 'created_at', 'updated_at'],
  properties: {
    grant_id: { type: 'string', description: '`payment:<payment_id>`, `reward:<purchase_id>` or `referral:<referral_id>`' },
    source: { type: 'string', enum: ['payment', 'reward', 'referral'] },
    reference: { type: 'string', description: 'The payment, purchase or referral id' },
    points: { type: 'integer', description: 'Points granted: pending or confirmed (before claw-backs)' },
    status: { type: 'string', enum: ['pending', 'confirmed', 'voided', 'clawed_back'], description: 'A partial refund leaves `confirmed` with clawed_back_points > 0; a full refund makes it `clawed_back`' },
    clawed_back_points: { type: 'integer' },
    rule_version: { type: ['string', 'null'], description: 'The earning rule version a card payment was computed with; null for other sources' },
    created_at: instant,
    updated_at: instant,
  },
} as const;

export const pointsSchemas = {
  getPoints: {
    operationId: 'getUserPoints',
    summary: "A user's points: available, pending, expiring",
    tags: ['points'],
    params: userParams,
    response: { 200: jsonResponse("The user's points (zero for a user never seen)", pointsSummary), ...errorResponses([...COMMON_ERRORS]) },
  },
  listGrants: {
    operationId: 'listPointGrants',
    summary: "A user's point grants, newest first",
    description: 'Cursor pagination: pass `next_cursor` back as `cursor`.',
    tags: ['points'],
    params: userParams,
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        limit: { type: 'integer', minimum: 1, maximum: GRANTS_PAGE_LIMIT_MAX, default: GRANTS_PAGE_LIMIT_DEFAULT },
        cursor: { type: 'string', minLength: 1, maxLength: CURSOR_LENGTH_MAX, pattern: CURSOR_PATTERN },
      },
    },
    response: {
      200: jsonResponse('One page, newest first', {
        title: 'PointGrantPage',
        type: 'object',
        additionalProperties: false,
        required: ['data', 'next_cursor'],
        properties: { data: { type: 'array', items: grant }, next_cursor: { type: ['string', 'null'], description: 'Pass back as `cursor` for the next page; null on the last' } },
      }),
      ...errorResponses([...COMMON_ERRORS]),
    },
  },
} as const;
