// Every check a request to the ledger must pass, whatever the transport: the
// service runs it on each call, so an in-process caller cannot skip it, and
// an HTTP caller gets the same error (the routes reject the same schemas
// earlier, for speed and OpenAPI). Pure: no I/O, no clock of its own.
//
// One definition: the JSON schemas of request-schemas.ts, compiled here with
// Ajv under the options Fastify's body validator uses, so that both report the
// same first error; then the checks a schema cannot express (metadata as
// stored, instants against now, fields that belong together).
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { KobanError, invalidRequest } from '../../../platform/errors.ts';
import type { PostRequest, TransactionListQuery, TransactionRequest, VoidRequest } from '../../../contracts/ledger/ledger-api.ts';
import { EXPIRY_HORIZON_MAX_MS, INSTANT_MIN_MS, METADATA_BYTES_MAX } from './limits.ts';
import { idSchema, ledgerRequestSchemas } from './request-schemas.ts';

/** Where a value travels over HTTP; error details say it, as the HTTP shell's do. */
type RequestPart = 'path' | 'body' | 'query';

/**
 * In JSON.stringify's output, an escape PostgreSQL's jsonb refuses: \u0000, or
 * a lone surrogate (stringify escapes those, and writes valid pairs as they
 * are). An even run of backslashes before it is escaped backslashes, not an escape.
 */
const UNSTORABLE_JSON_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/;
/** UTF-8 takes at most 3 bytes per UTF-16 code unit: shorter JSON cannot exceed the limit. */
const UTF8_BYTES_PER_CODE_UNIT_MAX = 3;
const DAY_MS = 86_400_000;

export class LedgerValidator {
  readonly #transactionRequest: ValidateFunction;
  readonly #postRequest: ValidateFunction;
  readonly #voidRequest: ValidateFunction;
  readonly #holdParams: ValidateFunction;
  readonly #transactionParams: ValidateFunction;
  readonly #userParams: ValidateFunction;
  readonly #balanceParams: ValidateFunction;
  readonly #transactionListQuery: ValidateFunction;

  constructor(balanceTypes: readonly string[]) {
    const ajv = newAjv();
    const schemas = ledgerRequestSchemas(balanceTypes);
    this.#transactionRequest = ajv.compile(schemas.transactionRequest);
    this.#postRequest = ajv.compile(schemas.postRequest);
    this.#voidRequest = ajv.compile(schemas.voidRequest);
    this.#holdParams = ajv.compile(schemas.holdParams);
    this.#transactionParams = ajv.compile(schemas.transactionParams);
    this.#userParams = ajv.compile(schemas.userParams);
    this.#balanceParams = ajv.compile(schemas.balanceParams);
    this.#transactionListQuery = ajv.compile(schemas.transactionListQuery);
  }

  /**
   * An add, consume or refund, posted or as a hold. `nowMs` bounds how far
   * ahead its instants may be. ("In the future" is checked when the ledger
   * creates it, so that a replay of an old request still replays.)
   */
  transactionRequest(request: TransactionRequest, nowMs: number): void {
    check(this.#transactionRequest, request, 'body');
    checkMetadata(request.metadata);
    checkInstant('expires_at', request.expires_at, nowMs);
    checkInstant('pending_expires_at', request.pending_expires_at, nowMs);
    checkCoherent(request);
  }

  postRequest(transactionId: string, request: PostRequest): void {
    check(this.#holdParams, { transaction_id: transactionId }, 'path');
    check(this.#postRequest, request, 'body');
  }

  voidRequest(transactionId: string, request: VoidRequest): void {
    check(this.#holdParams, { transaction_id: transactionId }, 'path');
    check(this.#voidRequest, request, 'body');
  }

  transactionId(transactionId: string): void {
    check(this.#transactionParams, { transaction_id: transactionId }, 'path');
  }

  userId(userId: string): void {
    check(this.#userParams, { user_id: userId }, 'path');
  }

  balance(userId: string, balanceType: string): void {
    check(this.#balanceParams, { user_id: userId, balance_type: balanceType }, 'path');
  }

  transactionList(userId: string, query: TransactionListQuery): void {
    check(this.#userParams, { user_id: userId }, 'path');
    check(this.#transactionListQuery, query, 'query');
  }
}

/** Ids in a URL path, as the service's params schemas check them (all of them name ids the same way). */
let pathIds: ValidateFunction | undefined;

/**
 * For an HTTP client, before it builds a URL: the ids it puts in the path,
 * with the error the service would give. An id that is not one may not reach
 * the service at all (`..` resolves to another route, `` leaves a segment out).
 */
export function checkPathIds(ids: { transaction_id?: string; user_id?: string }): void {
  pathIds ??= newAjv().compile({ type: 'object', properties: { transaction_id: idSchema('Transaction id'), user_id: idSchema('User id') } });
  check(pathIds, ids, 'path');
}

/** The balance type in a URL path, for an HTTP client: the values a path cannot carry are never configured ones. */
export function checkPathBalanceType(balanceType: string): void {
  if (balanceType === '' || balanceType === '.' || balanceType === '..') {
    // Ajv's own wording for an enum, so that the error reads as the service's.
    throw schemaError({ instancePath: '/balance_type', keyword: 'enum', schemaPath: '', params: {}, message: 'must be equal to one of the allowed values' }, 'path');
  }
}

function newAjv(): Ajv {
  // As Fastify's body validator (platform/http/server.ts), except defaults: the caller's objects are never changed.
  const ajv = new Ajv({ coerceTypes: false, useDefaults: false, removeAdditional: false, allErrors: false, strict: true });
  addFormats.default(ajv);
  return ajv;
}

function check(validate: ValidateFunction, value: unknown, part: RequestPart): void {
  if (!validate(value)) throw schemaError(validate.errors?.[0], part);
}

/** Ajv's first error as the HTTP shell words it (platform/http/server.ts): the same field, the same message. */
export function schemaError(error: ErrorObject | undefined, part: RequestPart): KobanError {
  const params = (error?.params ?? {}) as Record<string, unknown>;
  const path = (error?.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
  const field =
    typeof params.missingProperty === 'string'
      ? joinPath(path, params.missingProperty)
      : typeof params.additionalProperty === 'string'
        ? joinPath(path, params.additionalProperty)
        : path || part;
  const problem =
    typeof params.additionalProperty === 'string' ? 'is not a known field' : typeof params.missingProperty === 'string' ? 'is required' : (error?.message ?? 'is invalid');
  return new KobanError('invalid_request', `${field} ${problem}`, { field, in: part });
}

function joinPath(path: string, property: string): string {
  return path ? `${path}.${property}` : property;
}

/** Metadata as it will be stored: a JSON object, within the size limit, text PostgreSQL accepts. */
function checkMetadata(metadata: unknown): void {
  if (metadata === undefined) return;
  let serialized: string | undefined;
  try {
    serialized = JSON.stringify(metadata);
  } catch {
    // Only an in-process caller can get here (a BigInt, a cycle): JSON off the wire always serializes.
    throw invalidRequest('metadata', 'metadata must be JSON data');
  }
  // A Date or an object with toJSON passes the schema's `object` but is not stored as one.
  if (serialized === undefined || serialized.charCodeAt(0) !== 0x7b) throw invalidRequest('metadata', 'metadata must be a JSON object');
  if (serialized.length * UTF8_BYTES_PER_CODE_UNIT_MAX > METADATA_BYTES_MAX && Buffer.byteLength(serialized) > METADATA_BYTES_MAX) {
    throw invalidRequest('metadata', `metadata must be at most ${METADATA_BYTES_MAX} bytes as JSON`, { limit_bytes: METADATA_BYTES_MAX });
  }
  if (serialized.includes('\\u') && UNSTORABLE_JSON_ESCAPE.test(serialized)) {
    throw invalidRequest('metadata', 'metadata must not contain a NUL character or a lone surrogate');
  }
}

/** An instant the schema accepted (RFC 3339) that the ledger can also keep and compare. */
function checkInstant(field: 'expires_at' | 'pending_expires_at', value: string | undefined, nowMs: number): void {
  if (value === undefined) return;
  const ms = Date.parse(value);
  // RFC 3339 allows a leap second (…:60); a JavaScript Date cannot hold one.
  if (Number.isNaN(ms)) throw invalidRequest(field, `${field} is not an instant the ledger can represent (a leap second?)`);
  if (ms < INSTANT_MIN_MS) throw invalidRequest(field, `${field} is before ${new Date(INSTANT_MIN_MS).toISOString()}`);
  if (ms - nowMs > EXPIRY_HORIZON_MAX_MS) {
    throw invalidRequest(field, `${field} is further in the future than the ledger accepts`, { horizon_days: EXPIRY_HORIZON_MAX_MS / DAY_MS });
  }
}

/** Fields that belong together. */
function checkCoherent(request: TransactionRequest): void {
  if (request.type !== 'add' && request.expires_at !== undefined) throw invalidRequest('expires_at', 'expires_at applies to adds only');
  if (request.type === 'refund' && request.refund_of === undefined) throw invalidRequest('refund_of', 'refund_of is required for a refund');
  if (request.type !== 'refund' && request.refund_of !== undefined) throw invalidRequest('refund_of', 'refund_of applies to refunds only');
  if (request.type === 'refund' && request.pending === true) throw invalidRequest('pending', 'a refund cannot be a hold');
  if (request.type !== 'consume' && request.force === true) throw invalidRequest('force', 'force applies to consumes only');
  if (request.pending !== true && request.pending_expires_at !== undefined) {
    throw invalidRequest('pending_expires_at', 'pending_expires_at applies to holds (pending: true) only');
  }
}
