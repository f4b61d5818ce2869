// Liveness and readiness. `/livez`: the process runs and serves HTTP (a
// restart is the cure when it does not answer). `/readyz`: every dependency
// this process needs — each service's database, a broker, embedded
// PostgreSQL — answers within READINESS_TIMEOUT_MS; otherwise 503
// `unavailable` naming what failed (send no traffic, but do not restart).
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { KobanError, RETRY_AFTER_SECONDS } from './errors.ts';
import { errorResponses, jsonResponse } from './http/openapi.ts';
import type { ReadinessCheck } from './service-module.ts';

/** How long every check together may take before `/readyz` reports the slow ones as failed. */
export const READINESS_TIMEOUT_MS = 2_000;
/** A failure's message as reported: bounded, one line. */
const CHECK_ERROR_LENGTH_MAX = 200;

export type NamedCheck = ReadinessCheck;
export type CheckResult = { status: 'ok' } | { status: 'failed'; error: string };

/** Runs every check at once, each bounded by `timeoutMs`. */
export async function runReadinessChecks(checks: readonly NamedCheck[], timeoutMs = READINESS_TIMEOUT_MS): Promise<Record<string, CheckResult>> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new Error(`did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    const results = await Promise.all(
      checks.map(async (check): Promise<[string, CheckResult]> => {
        try {
          await Promise.race([check.check(controller.signal), timedOut]);
          return [check.name, { status: 'ok' }];
        } catch (error) {
          const message = (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').slice(0, CHECK_ERROR_LENGTH_MAX);
          return [check.name, { status: 'failed', error: message || 'failed' }];
        }
      }),
    );
    return Object.fromEntries(results);
  } finally {
    clearTimeout(timer);
  }
}

/** A database answers: a connection of its own (not one of the service's pools, which may be busy) runs `SELECT 1`. */
export function databaseCheck(name: string, url: string): NamedCheck {
  return {
    name,
    async check(signal) {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: READINESS_TIMEOUT_MS, query_timeout: READINESS_TIMEOUT_MS });
      client.on('error', () => undefined);
      const abort = () => void client.end().catch(() => undefined);
      signal.addEventListener('abort', abort, { once: true });
      try {
        await client.connect();
        await client.query('SELECT 1');
      } finally {
        signal.removeEventListener('abort', abort);
        await client.end().catch(() => undefined);
      }
    },
  };
}

const checkResultSchema = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['ok', 'failed'] }, error: { type: 'string' } },
} as const;

/** `/livez` and `/readyz` on one app, for the checks of the services it serves. */
export function registerHealthRoutes(app: FastifyInstance, checks: readonly NamedCheck[]): void {
  app.get(
    '/livez',
    {
      schema: {
        operationId: 'getLiveness',
        summary: 'Liveness: the process runs and answers HTTP',
        response: { 200: jsonResponse('The process runs', { title: 'Liveness', type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'getReadiness',
        summary: `Readiness: every database and broker this process needs answers within ${READINESS_TIMEOUT_MS} ms (else 503 unavailable naming each that failed)`,
        response: {
          200: jsonResponse('Every dependency answered', {
            title: 'Readiness',
            type: 'object',
            required: ['status', 'checks'],
            properties: { status: { type: 'string', enum: ['ready'] }, checks: { type: 'object', additionalProperties: checkResultSchema } },
          }),
          503: errorResponses(['unavailable'])[503]!,
        },
      },
    },
    async (_request, reply) => {
      const results = await runReadinessChecks(checks);
      const failed = Object.entries(results).filter(([, result]) => result.status === 'failed');
      if (failed.length === 0) return { status: 'ready' as const, checks: results };
      const summary = failed.map(([name, result]) => `${name} (${result.status === 'failed' ? result.error : ''})`).join(', ');
      const error = new KobanError('unavailable', `Not ready: ${summary}`, { failed: failed.map(([name]) => name), checks: results });
      return reply.code(503).header('Retry-After', String(RETRY_AFTER_SECONDS)).send(error.toBody());
    },
  );
}
