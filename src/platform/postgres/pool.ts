// Connection pools and the mapping from PostgreSQL failures to what a caller
// can do about them (retry now, retry later, or nothing).
import pg from 'pg';
import type { Logger } from 'pino';

const INT8_OID = 20;
// Every bigint Koban stores is bounded by Number.MAX_SAFE_INTEGER (see the
// ledger's limits), so it parses to an exact JS number; anything larger is a bug.
pg.types.setTypeParser(INT8_OID, (text: string) => {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`bigint ${text} exceeds Number.MAX_SAFE_INTEGER`);
  return value;
});

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export const POOL_CONNECT_TIMEOUT_MS = 5_000;
export const POOL_IDLE_TIMEOUT_MS = 30_000;
/** Bounds a stuck statement (e.g. waiting on a lock someone never releases) so the writer moves on. */
export const STATEMENT_TIMEOUT_MS = 30_000;

export function createPool(options: { url: string; size: number; applicationName: string; logger: Logger }): Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.size,
    connectionTimeoutMillis: POOL_CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: POOL_IDLE_TIMEOUT_MS,
    application_name: options.applicationName,
    statement_timeout: STATEMENT_TIMEOUT_MS,
  });
  // An idle client losing its server is reported here; the pool replaces it.
  // A client that is checked out has no error listener of pg-pool's: a
  // connection dying between two of its queries (the server restarting, a
  // terminated backend) would emit an unhandled 'error' and end the process.
  // Its queries still fail, and the caller hands it back broken.
  pool.on('connect', (client) => {
    client.on('error', (error) => options.logger.debug({ err: error }, 'PostgreSQL connection failed while checked out'));
  });
  // While the pool ends, pg-pool has already let go of its clients but their
  // sockets may still be open when the server stops: expected, not a warning.
  pool.on('error', (error) => {
    if (pool.ending) options.logger.debug({ err: error }, 'PostgreSQL connection closed during shutdown');
    else options.logger.warn({ err: error }, 'idle PostgreSQL connection failed');
  });
  return pool;
}

export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Creates the database if it does not exist; safe to call from concurrent starts. */
export async function ensureDatabase(serverUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: POOL_CONNECT_TIMEOUT_MS });
  await client.connect();
  try {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (existing.rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`).catch((error: unknown) => {
        if (pgErrorCode(error) !== DUPLICATE_DATABASE) throw error;
      });
    }
  } finally {
    await client.end();
  }
}

const DUPLICATE_DATABASE = '42P04';
export const UNIQUE_VIOLATION = '23505';
const DEADLOCK_DETECTED = '40P01';
const SERIALIZATION_FAILURE = '40001';
const QUERY_CANCELED = '57014';
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300', '53400']);
const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH']);

export function pgErrorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

/**
 * What a failed statement means to the caller:
 * - `conflict`: the transaction lost a race (deadlock, unique key, serialization); re-running it is safe and will see the winner;
 * - `unavailable`: the server is down or refused us; retry later;
 * - `timeout`: the statement ran out of time; retry later;
 * - `fatal`: a bug or bad data; retrying will not help.
 */
export function classifyPgError(error: unknown): 'conflict' | 'unavailable' | 'timeout' | 'fatal' {
  const code = pgErrorCode(error);
  if (code === DEADLOCK_DETECTED || code === SERIALIZATION_FAILURE || code === UNIQUE_VIOLATION) return 'conflict';
  if (code === QUERY_CANCELED) return 'timeout';
  if (code !== undefined && (UNAVAILABLE_CODES.has(code) || NETWORK_ERROR_CODES.has(code) || code.startsWith('08'))) return 'unavailable';
  // FATAL ends the session (refused connection, database closed, shutdown): the server, not the request, is the problem.
  if (typeof error === 'object' && error !== null && 'severity' in error && (error.severity === 'FATAL' || error.severity === 'PANIC')) return 'unavailable';
  const message = error instanceof Error ? error.message : '';
  if (/Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(message)) {
    return 'unavailable';
  }
  return 'fatal';
}

/**
 * Runs `work` in one database transaction on one client: BEGIN (or the given
 * statement), COMMIT on success, ROLLBACK on failure. A client whose work
 * failed is discarded rather than handed to the next caller: its connection
 * may be the reason it failed.
 */
export async function withTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(begin);
    const result = await work(client);
    await client.query('COMMIT');
    client.release();
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release(true);
    throw error;
  }
}
