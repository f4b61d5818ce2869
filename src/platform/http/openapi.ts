// The parts of every service's OpenAPI description that the platform owns: the
// catalogue's error shape with typed details, error responses that list their
// codes, the headers Koban sends, and the hoisting of titled schemas into named
// components. Route schemas stay whole and inline because Fastify validates and
// serializes with them; only the generated document names them.
import { ERROR_CATALOGUE, type ErrorCode, RETRY_AFTER_SECONDS } from '../errors.ts';

export const ERROR_SCHEMA_ID = 'Error';
/** Set to `true` on a 200 that replays a stored result. */
export const REPLAY_HEADER = 'Idempotent-Replayed';

const errorDetailsSchema = {
  type: 'object',
  description: 'What the error is about. Which keys appear depends on the code (docs/errors.md); a client must ignore keys it does not know.',
  additionalProperties: true,
  // In the order the services write them: the serializer follows this order.
  properties: {
    field: { type: 'string', description: 'The offending field, as a dotted path (invalid_request; not_found and not_refundable for `refund_of`)' },
    in: { type: 'string', description: 'Where that field is: `body`, `params`, `querystring` or `headers`' },
    transaction_id: { type: 'string' },
    balance_type: { type: 'string' },
    fields: { type: 'array', items: { type: 'string' }, description: 'idempotency_conflict: every field that differs from the stored request' },
    posted_amount: { type: 'integer', description: 'idempotency_conflict on a post: the amount posted' },
    status: { type: 'string', description: 'not_pending: the status of the transaction' },
    pending_expires_at: { type: 'string', format: 'date-time', description: "pending_expired: the hold's deadline" },
    available: { type: 'integer', description: 'insufficient_balance, balance_limit_exceeded: the available balance' },
    refundable: { type: 'integer', description: 'exceeds_refundable_amount: what remains refundable' },
    pending_amount: { type: 'integer', description: 'exceeds_pending_amount: the most that can be posted' },
    requested: { type: 'integer', description: 'The amount asked for' },
    reason: { type: 'string', description: 'Why, when the message alone is not enough (e.g. `too_large`)' },
    limit_bytes: { type: 'integer', description: 'invalid_request for a size limit: the limit in bytes' },
    horizon_days: { type: 'integer', description: 'invalid_request for an instant too far ahead: how far ahead is accepted, in days' },
    queue_depth: { type: 'integer', description: 'unavailable when overloaded: the queue depth that was reached' },
    topic: { type: 'string' },
    subscription: { type: 'string' },
    id: { type: 'string', description: 'An event id' },
  },
} as const;

export const errorSchema = {
  $id: ERROR_SCHEMA_ID,
  type: 'object',
  description: 'Every error Koban returns: one code of the catalogue (docs/errors.md), with its HTTP status and whether retrying can help.',
  additionalProperties: false,
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      additionalProperties: false,
      required: ['code', 'message', 'retryable'],
      properties: {
        code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE) },
        message: { type: 'string', description: 'For people, not for programs: match on `code`' },
        retryable: { type: 'boolean', description: 'Whether the same request may succeed if tried again (after `Retry-After` seconds)' },
        details: errorDetailsSchema,
      },
    },
  },
  examples: [{ error: { code: 'invalid_request', message: 'amount must be integer', retryable: false, details: { field: 'amount', in: 'body' } } }],
} as const;

const retryAfterHeader = {
  'Retry-After': { type: 'integer', minimum: 0, description: `Seconds to wait before retrying the same request (${RETRY_AFTER_SECONDS})` },
} as const;

/** A documented JSON response: its description, optional headers, and its (named) schema. */
export function jsonResponse(description: string, schema: object, headers?: object) {
  return { description, ...(headers ? { headers } : {}), content: { 'application/json': { schema } } };
}

export const replayHeaders = {
  [REPLAY_HEADER]: { type: 'string', enum: ['true'], description: 'Present on an identical repeat: the body is the stored result of the first success' },
} as const;

/**
 * Every operation can fail these ways: a malformed request (or one whose
 * headers or query string are too large, or that arrives too slowly), another
 * method on its path, a bug, a database or broker that is down or slow.
 */
export const COMMON_ERRORS = ['invalid_request', 'method_not_allowed', 'request_timeout', 'headers_too_large', 'internal', 'unavailable', 'timeout'] as const satisfies readonly ErrorCode[];
/** And an operation that takes a body, these: the wrong media type, a body over the limit. */
export const BODY_ERRORS = [...COMMON_ERRORS, 'unsupported_media_type', 'request_too_large'] as const satisfies readonly ErrorCode[];

/**
 * The error responses of one operation, grouped by status: each lists its
 * codes in its description and restricts `error.code` to them, and retryable
 * ones document `Retry-After`. Serializes exactly as the `Error` schema.
 */
export function errorResponses(codes: readonly ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const { status } = ERROR_CATALOGUE[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<number, object> = {};
  for (const [status, statusCodes] of [...byStatus].sort(([a], [b]) => a - b)) {
    const retryable = statusCodes.some((code) => ERROR_CATALOGUE[code].retryable);
    responses[status] = {
      description: statusCodes.map((code) => `\`${code}\`: ${ERROR_CATALOGUE[code].description}`).join('\n\n'),
      ...(retryable ? { headers: retryAfterHeader } : {}),
      content: {
        'application/json': {
          schema: {
            allOf: [
              { $ref: `${ERROR_SCHEMA_ID}#` },
              { type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string', enum: statusCodes } } } } },
            ],
          },
        },
      },
    };
  }
  return responses;
}

type Schema = Record<string, unknown>;
const SCHEMA_MAPS = ['properties', 'patternProperties', '$defs', 'dependentSchemas'];
const SCHEMA_LISTS = ['allOf', 'anyOf', 'oneOf', 'prefixItems'];
const SCHEMA_VALUES = ['items', 'additionalProperties', 'contains', 'not', 'if', 'then', 'else', 'propertyNames'];

/**
 * The swagger plugin's `transformObject`: every schema with a `title` in a
 * request or response body becomes `#/components/schemas/<title>`, so each
 * request and response has a name a client generator can use. Two different
 * schemas with one title are a programming error, refused here.
 */
export function hoistNamedSchemas(document: Schema): Schema {
  const components = ((document.components ??= {}) as Schema);
  const named = ((components.schemas ??= {}) as Record<string, unknown>);
  const hoist = (schema: unknown): unknown => {
    if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) return schema;
    const node = { ...(schema as Schema) };
    for (const key of SCHEMA_MAPS) {
      if (node[key] && typeof node[key] === 'object') node[key] = Object.fromEntries(Object.entries(node[key] as Schema).map(([name, value]) => [name, hoist(value)]));
    }
    for (const key of SCHEMA_LISTS) if (Array.isArray(node[key])) node[key] = (node[key] as unknown[]).map(hoist);
    for (const key of SCHEMA_VALUES) if (node[key] !== undefined) node[key] = hoist(node[key]);
    if (typeof node.title !== 'string') return node;
    const existing = named[node.title];
    if (existing !== undefined && JSON.stringify(existing) !== JSON.stringify(node)) throw new Error(`Two different schemas are both named ${node.title}`);
    named[node.title] = node;
    return { $ref: `#/components/schemas/${node.title}` };
  };
  const media = (content: unknown) => {
    for (const entry of Object.values((content ?? {}) as Record<string, Schema>)) entry.schema = hoist(entry.schema);
  };
  for (const path of Object.values((document.paths ?? {}) as Record<string, Record<string, Schema>>)) {
    for (const operation of Object.values(path)) {
      if (operation === null || typeof operation !== 'object') continue;
      media((operation.requestBody as Schema | undefined)?.content);
      for (const response of Object.values((operation.responses ?? {}) as Record<string, Schema>)) media(response.content);
    }
  }
  return document;
}
