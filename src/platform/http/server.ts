// The HTTP shell every Koban service shares: Fastify with strict JSON-schema
// validation, strict JSON bodies, one error shape from the catalogue for every
// answer (the HTTP layer's own too: 404, 405, 408, 413, 415, 431), OpenAPI and
// a docs page, and request draining on close. (Health routes: the host's, ../health.ts.)
import { STATUS_CODES, maxHeaderSize } from 'node:http';
import type { Duplex } from 'node:stream';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from 'pino';
import { REQUEST_LOG_SAMPLE_RATE_DEFAULT, REQUEST_SLOW_MS_DEFAULT } from '../config.ts';
import { ERROR_CATALOGUE, type ErrorBody, KobanError, RETRY_AFTER_SECONDS, isKobanError } from '../errors.ts';
import { classifyPgError } from '../postgres/errors.ts';
import { errorSchema, hoistNamedSchemas } from './openapi.ts';
import { RouteTable } from './route-table.ts';
import { FIELD_ECHO_LENGTH_MAX, boundedText, parseStrictJson } from './strict-json.ts';

export { ERROR_SCHEMA_ID } from './openapi.ts';
/** How long a request may take to arrive in full (headers and body) before it is answered 408 request_timeout. */
export const REQUEST_TIMEOUT_MS = 30_000;
/** NATS client errors (by class name, so the HTTP shell imports no broker client) that mean "try again later"; AWS ones: awsServiceFailure. */
const BROKER_UNAVAILABLE_ERRORS: ReadonlySet<string> = new Set([
  'TimeoutError',
  'NoRespondersError',
  'ConnectionError',
  'ClosedConnectionError',
  'DrainingConnectionError',
  'RequestError',
  // JetStream's "no responders": a server that is up but whose JetStream is not answering yet (recovering its streams after a restart).
  'JetStreamNotEnabled',
]);
/** Throttling error names of SNS and SQS (the SDK retries these, then gives up). */
const AWS_THROTTLING_ERRORS: ReadonlySet<string> = new Set(['ThrottledException', 'Throttling', 'ThrottlingException', 'RequestThrottled', 'RequestThrottledException', 'KMSThrottlingException']);
/** Longer than any id Koban accepts, so that the schema, not the router, rejects long ids. */
const ROUTE_PARAM_LENGTH_MAX = 1024;
/** Longest part of a request's path echoed back in a message. */
const PATH_ECHO_LENGTH_MAX = 100;
/** Where a request value travels, as OpenAPI names it (Fastify says params and querystring). */
const REQUEST_PARTS: Readonly<Record<string, string>> = { params: 'path', querystring: 'query', headers: 'header', body: 'body' };
/**
 * Which requests are logged. Logging each one at info cost about a third of
 * the Node CPU of a consume, so: 5xx at error, slower than `slowMs` at warn,
 * a `sampleRate` fraction of the rest at info, and every request at debug.
 */
export type RequestLogOptions = Readonly<{ slowMs: number; sampleRate: number }>;

function newAjv(options: { coerceTypes: boolean }): Ajv {
  // Request bodies are never coerced: "5" is not an amount. Path and query
  // parameters arrive as strings and are coerced to the declared type.
  const ajv = new Ajv({ coerceTypes: options.coerceTypes, useDefaults: true, removeAdditional: false, allErrors: false, strict: true });
  addFormats.default(ajv);
  return ajv;
}

type ParameterValidator = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null | undefined };

/**
 * Ajv coerces a path or query value past double range ("1e400", "Infinity")
 * to ±Infinity, and then skips `minimum` and `maximum`, which assume a finite
 * number: such a value would reach a service as a limit of Infinity. Path and
 * query objects are flat, so their own values are all there is to check.
 */
function finiteParameters(validate: ValidateFunction): ParameterValidator {
  const checked: ParameterValidator = (data) => {
    if (!validate(data)) {
      checked.errors = validate.errors;
      return false;
    }
    const infinite = data !== null && typeof data === 'object' ? Object.entries(data).find(([, value]) => typeof value === 'number' && !Number.isFinite(value)) : undefined;
    if (infinite) {
      const [name] = infinite;
      checked.errors = [{ instancePath: `/${name}`, schemaPath: '#/type', keyword: 'type', params: { type: 'number' }, message: 'must be a finite number' }];
      return false;
    }
    checked.errors = null;
    return true;
  };
  return checked;
}

export async function createHttpServer(options: {
  logger: Logger;
  bodyLimitBytes: number;
  title: string;
  version: string;
  description: string;
  requestLog?: RequestLogOptions;
}): Promise<FastifyInstance> {
  const routes = new RouteTable();
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // Fastify's own two info lines per request are replaced by at most one, chosen by RequestLog.
    logController: new RequestLog(options.logger, options.requestLog ?? { slowMs: REQUEST_SLOW_MS_DEFAULT, sampleRate: REQUEST_LOG_SAMPLE_RATE_DEFAULT }),
    bodyLimit: options.bodyLimitBytes,
    requestTimeout: REQUEST_TIMEOUT_MS,
    // Answered by the onRequest hook below instead, in the catalogue's shape.
    return503OnClosing: false,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Ids are bounded by their schemas; the router's own 100-character limit would answer 414 outside the catalogue.
    routerOptions: { maxParamLength: ROUTE_PARAM_LENGTH_MAX },
    // Errors raised before routing (bad URL encoding, an over-long path parameter) still get the catalogue shape.
    frameworkErrors: (error, request, reply) => {
      const catalogued = toCatalogueError(error, request as unknown as FastifyRequest, routes);
      void (reply as unknown as FastifyReply).code(catalogued.status).send(catalogued.toBody());
    },
    // What Node's HTTP parser refuses before Fastify sees a request: headers (with the URL) over its limit, a request too slow to arrive.
    clientErrorHandler: answerClientError,
  });
  app.addHook('onRoute', (route) => routes.add(route.method, route.url));
  // JSON only: without this Fastify would parse text/plain bodies into strings.
  app.removeContentTypeParser('text/plain');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parseJsonBody);

  const bodyAjv = newAjv({ coerceTypes: false });
  const parameterAjv = newAjv({ coerceTypes: true });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv.compile(schema) : finiteParameters(parameterAjv.compile(schema))));
  app.addSchema(errorSchema);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: options.title, version: options.version, description: options.description },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, index) => String(json.$id ?? `def-${index}`) },
    // Titled request and response schemas become named components, for client generators.
    transformObject: (documents) => hoistNamedSchemas('openapiObject' in documents ? (documents.openapiObject as Record<string, unknown>) : (documents.swaggerObject as Record<string, unknown>)) as never,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.setNotFoundHandler((request, reply) => {
    // A path some route serves, with another method: 405 and the methods it takes.
    const allowed = routes.methodsFor(request.url);
    if (allowed.length > 0) {
      const error = new KobanError('method_not_allowed', `${boundedText(request.method, 16)} is not accepted here; use ${allowed.join(', ')}`, { allow: allowed });
      void reply.code(error.status).header('Allow', allowed.join(', ')).send(error.toBody());
      return;
    }
    const error = new KobanError('not_found', `No route ${boundedText(request.method, 16)} ${boundedText(request.url.split('?')[0]!, PATH_ECHO_LENGTH_MAX)}`);
    void reply.code(error.status).send(error.toBody());
  });

  app.setErrorHandler((rawError, request, reply) => {
    const error = toCatalogueError(rawError, request, routes);
    if (error.code === 'internal') request.log.error({ err: rawError }, 'unhandled error');
    if (error.retryable) void reply.header('Retry-After', String(RETRY_AFTER_SECONDS));
    void reply.code(error.status).send(error.toBody() satisfies ErrorBody);
  });

  // close() drains the requests in flight, then waits for their connections to end; a client
  // keeps those alive for the server's keep-alive timeout (72 s), longer than any shutdown grace.
  // Once closing, each response asks the client to close its connection instead.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // New requests while closing are refused, retryable, in the catalogue's shape (Fastify's own 503 body is not).
  app.addHook('onRequest', (_request, reply, done) => {
    if (!closing) return done();
    const error = new KobanError('unavailable', 'The server is shutting down; retry shortly');
    void reply.code(error.status).header('Retry-After', String(RETRY_AFTER_SECONDS)).send(error.toBody());
  });
  // A callback hook, not an async one: it runs on every response and should cost no promise.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) void reply.header('connection', 'close');
    done(null, payload);
  });

  return app;
}

/**
 * One line per request at most, when it completes: 5xx at error, slower than
 * `slowMs` at warn, a `sampleRate` fraction of the rest at info, every request
 * at debug. Nothing when a request arrives.
 */
class RequestLog extends LogController {
  readonly #options: RequestLogOptions;
  // The level is fixed for the process's life: decide once which branches can log at all.
  readonly #sampled: boolean;
  readonly #debug: boolean;

  constructor(logger: Logger, options: RequestLogOptions) {
    super();
    this.#options = options;
    this.#sampled = options.sampleRate > 0 && logger.isLevelEnabled('info');
    this.#debug = logger.isLevelEnabled('debug');
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const status = reply.statusCode;
    const elapsedMs = reply.elapsedTime;
    let level: 'error' | 'warn' | 'info' | 'debug';
    if (error || status >= 500) level = 'error';
    else if (elapsedMs >= this.#options.slowMs) level = 'warn';
    else if (this.#sampled && Math.random() < this.#options.sampleRate) level = 'info';
    else if (this.#debug) level = 'debug';
    else return;
    const line = { method: request.method, url: request.url, status, elapsedMs: Math.round(elapsedMs * 100) / 100, ...(error ? { err: error } : {}) };
    reply.log[level](line, level === 'warn' ? 'slow request' : 'request');
  }
}

/**
 * The JSON body parser of every route: strict JSON (no repeated or prototype
 * keys), refused in the catalogue's shape. A service that accepts another JSON
 * media type (application/cloudevents+json) registers it with this parser.
 */
export function parseJsonBody(_request: FastifyRequest, body: string | Buffer, done: (error: Error | null, body?: unknown) => void): void {
  try {
    done(null, parseStrictJson(typeof body === 'string' ? body : body.toString('utf8')));
  } catch (error) {
    done(error as Error);
  }
}

/** Maps Fastify's and Ajv's errors onto the catalogue, naming the offending field and never echoing unbounded input. */
function toCatalogueError(error: unknown, request: FastifyRequest | undefined, routes: RouteTable): KobanError {
  if (isKobanError(error)) return error;
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation && fastifyError.validation.length > 0) {
    const [first] = fastifyError.validation;
    const params = (first?.params ?? {}) as Record<string, unknown>;
    const path = (first?.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
    const part = REQUEST_PARTS[fastifyError.validationContext ?? 'body'] ?? 'body';
    const field = boundedText(
      typeof params.missingProperty === 'string'
        ? joinPath(path, params.missingProperty)
        : typeof params.additionalProperty === 'string'
          ? joinPath(path, params.additionalProperty)
          : path || part,
      FIELD_ECHO_LENGTH_MAX,
    );
    const problem =
      typeof params.additionalProperty === 'string' ? 'is not a known field' : typeof params.missingProperty === 'string' ? 'is required' : (first?.message ?? 'is invalid');
    return new KobanError('invalid_request', `${field} ${problem}`, { field, in: part });
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': {
      const limit = request?.routeOptions.bodyLimit;
      return new KobanError('request_too_large', `The body is larger than this endpoint accepts${limit === undefined ? '' : ` (${limit} bytes)`}`, {
        field: 'body',
        ...(limit === undefined ? {} : { limit_bytes: limit }),
      });
    }
    // The router refuses these before it says which path parameter was at fault; the route table says.
    case 'FST_ERR_BAD_URL': {
      const field = pathParameter(request, routes, (value) => !decodes(value)) ?? 'url';
      return new KobanError('invalid_request', `${field} is not validly percent-encoded UTF-8`, { field, in: 'path' });
    }
    case 'FST_ERR_MAX_PARAM_LENGTH': {
      const field = pathParameter(request, routes, (value) => value.length > ROUTE_PARAM_LENGTH_MAX) ?? 'path';
      return new KobanError('invalid_request', `${field} is longer than ${ROUTE_PARAM_LENGTH_MAX} characters`, { field, in: 'path' });
    }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new KobanError('unsupported_media_type', 'Send the body as JSON, with Content-Type: application/json', { field: 'content-type', in: 'header' });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new KobanError('invalid_request', 'The body is not as long as Content-Length says', { field: 'content-length', in: 'header' });
  }
  // Other 4xx raised by Fastify itself: its message names no input, but is bounded all the same.
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new KobanError('invalid_request', boundedText(fastifyError.message ?? 'Invalid request', PATH_ECHO_LENGTH_MAX), {
      ...(typeof fastifyError.code === 'string' ? { reason: fastifyError.code } : {}),
    });
  }
  if (fastifyError.statusCode === 503) return new KobanError('unavailable', 'The server is shutting down or overloaded; retry shortly');
  // A database or broker that is down or slow is the caller's cue to retry, not a bug.
  switch (classifyPgError(error)) {
    case 'unavailable':
      return new KobanError('unavailable', 'A database is unavailable; retry shortly', undefined, { cause: error });
    case 'timeout':
      return new KobanError('timeout', 'A database did not answer in time; retry', undefined, { cause: error });
  }
  if (error instanceof Error && (BROKER_UNAVAILABLE_ERRORS.has(error.name) || awsServiceFailure(error))) {
    return new KobanError('unavailable', 'The message broker is unavailable; retry shortly', undefined, { cause: error });
  }
  return new KobanError('internal', 'Internal error', undefined, { cause: error });
}

/**
 * An AWS SDK error (told by its shape: `$fault`, and the throttling names its
 * retry strategy knows) that is the service's failure, not our request's: a
 * 5xx (the emulator's "database is locked" among them) or throttling.
 */
function awsServiceFailure(error: Error): boolean {
  const fault = (error as { $fault?: unknown }).$fault;
  if (fault === 'server') return true;
  return fault === 'client' && AWS_THROTTLING_ERRORS.has(error.name);
}

/** The name of the first path parameter of the request's route whose value (as sent) is `faulty`. */
function pathParameter(request: FastifyRequest | undefined, routes: RouteTable, faulty: (value: string) => boolean): string | undefined {
  if (!request) return undefined;
  return Object.entries(routes.parametersOf(request.method, request.url) ?? {}).find(([, value]) => faulty(value))?.[0];
}

function decodes(value: string): boolean {
  try {
    decodeURIComponent(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Answers what Node's HTTP parser refused, before any request exists: the
 * catalogue's shape on the raw socket, then the connection is closed (the
 * rest of what the client sent cannot be read as HTTP).
 */
function answerClientError(this: FastifyInstance, error: Error & { code?: string }, socket: Duplex): void {
  // A connection the client reset has no one to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  let catalogued: KobanError;
  if (error.code === 'HPE_HEADER_OVERFLOW') {
    catalogued = new KobanError('headers_too_large', `The request line and headers are larger than this server accepts (${maxHeaderSize} bytes); a long query string counts`, {
      limit_bytes: maxHeaderSize,
    });
  } else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    catalogued = new KobanError('request_timeout', `The request did not arrive in full within ${REQUEST_TIMEOUT_MS / 1000} s`, { limit_ms: REQUEST_TIMEOUT_MS });
  } else {
    catalogued = new KobanError('invalid_request', 'The request is not valid HTTP/1.1', { ...(error.code ? { reason: boundedText(error.code, 40) } : {}) });
  }
  this.log.debug({ err: error }, 'client error');
  const body = JSON.stringify(catalogued.toBody());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${catalogued.status} ${STATUS_CODES[catalogued.status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

function joinPath(path: string, property: string): string {
  return path ? `${path}.${property}` : property;
}
