// The HTTP shell every Koban service shares: Fastify with strict JSON-schema
// validation, one error shape from the catalogue, OpenAPI and a docs page,
// and request draining on close. (Health routes: the host's, ../health.ts.)
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from 'pino';
import { REQUEST_LOG_SAMPLE_RATE_DEFAULT, REQUEST_SLOW_MS_DEFAULT } from '../config.ts';
import { ERROR_CATALOGUE, type ErrorBody, KobanError, RETRY_AFTER_SECONDS, isKobanError } from '../errors.ts';
import { classifyPgError } from '../postgres/errors.ts';
import { errorSchema, hoistNamedSchemas } from './openapi.ts';

export { ERROR_SCHEMA_ID } from './openapi.ts';
/** How long a request may take in all before Fastify answers 503 itself. */
export const REQUEST_TIMEOUT_MS = 30_000;
/** NATS client errors (by class name, so the HTTP shell imports no broker client) that mean "try again later". */
const BROKER_UNAVAILABLE_ERRORS: ReadonlySet<string> = new Set([
  'TimeoutError',
  'NoRespondersError',
  'ConnectionError',
  'ClosedConnectionError',
  'DrainingConnectionError',
  'RequestError',
]);
/** Longer than any id Koban accepts, so that the schema, not the router, rejects long ids. */
const ROUTE_PARAM_LENGTH_MAX = 1024;
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

export async function createHttpServer(options: {
  logger: Logger;
  bodyLimitBytes: number;
  title: string;
  version: string;
  description: string;
  requestLog?: RequestLogOptions;
}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // Fastify's own two info lines per request are replaced by at most one, chosen by RequestLog.
    logController: new RequestLog(options.logger, options.requestLog ?? { slowMs: REQUEST_SLOW_MS_DEFAULT, sampleRate: REQUEST_LOG_SAMPLE_RATE_DEFAULT }),
    bodyLimit: options.bodyLimitBytes,
    requestTimeout: REQUEST_TIMEOUT_MS,
    return503OnClosing: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Ids are bounded by their schemas; the router's own 100-character limit would answer 414 outside the catalogue.
    routerOptions: { maxParamLength: ROUTE_PARAM_LENGTH_MAX },
    // Errors raised before routing (bad URL encoding, bad headers) still get the catalogue shape.
    frameworkErrors: (error, _request, reply) => {
      const catalogued = toCatalogueError(error);
      void (reply as unknown as FastifyReply).code(catalogued.status).send(catalogued.toBody());
    },
  });
  // JSON only: without this Fastify would parse text/plain bodies into strings.
  app.removeContentTypeParser('text/plain');

  const bodyAjv = newAjv({ coerceTypes: false });
  const parameterAjv = newAjv({ coerceTypes: true });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : parameterAjv).compile(schema));
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
    const error = new KobanError('not_found', `No route ${request.method} ${request.url.split('?')[0]}`);
    void reply.code(error.status).send(error.toBody());
  });

  app.setErrorHandler((rawError, request, reply) => {
    const error = toCatalogueError(rawError);
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

/** Maps Fastify's and Ajv's errors onto the catalogue, naming the offending field. */
function toCatalogueError(error: unknown): KobanError {
  if (isKobanError(error)) return error;
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation && fastifyError.validation.length > 0) {
    const [first] = fastifyError.validation;
    const params = (first?.params ?? {}) as Record<string, unknown>;
    const path = (first?.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
    const field =
      typeof params.missingProperty === 'string'
        ? joinPath(path, params.missingProperty)
        : typeof params.additionalProperty === 'string'
          ? joinPath(path, params.additionalProperty)
          : path || (fastifyError.validationContext ?? 'body');
    const problem =
      typeof params.additionalProperty === 'string' ? 'is not a known field' : typeof params.missingProperty === 'string' ? 'is required' : (first?.message ?? 'is invalid');
    return new KobanError('invalid_request', `${field} ${problem}`, { field, in: fastifyError.validationContext ?? 'body' });
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new KobanError('invalid_request', `The body is not valid JSON: ${fastifyError.message ?? ''}`, { field: 'body' });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new KobanError('invalid_request', 'The body is larger than this API accepts', { field: 'body', reason: 'too_large' });
    case 'FST_ERR_BAD_URL':
      return new KobanError('invalid_request', 'The URL is not validly percent-encoded', { field: 'url' });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new KobanError('unsupported_media_type', 'Send the body as application/json');
  }
  // Prototype poisoning and other 4xx raised by Fastify itself.
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new KobanError('invalid_request', fastifyError.message ?? 'Invalid request', { field: 'body' });
  }
  if (fastifyError.statusCode === 503) return new KobanError('unavailable', 'The server is shutting down or overloaded; retry shortly');
  // A database or broker that is down or slow is the caller's cue to retry, not a bug.
  switch (classifyPgError(error)) {
    case 'unavailable':
      return new KobanError('unavailable', 'A database is unavailable; retry shortly', undefined, { cause: error });
    case 'timeout':
      return new KobanError('timeout', 'A database did not answer in time; retry', undefined, { cause: error });
  }
  if (error instanceof Error && BROKER_UNAVAILABLE_ERRORS.has(error.name)) {
    return new KobanError('unavailable', 'The message broker is unavailable; retry shortly', undefined, { cause: error });
  }
  return new KobanError('internal', 'Internal error', undefined, { cause: error });
}

function joinPath(path: string, property: string): string {
  return path ? `${path}.${property}` : property;
}
