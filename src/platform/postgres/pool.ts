// Connection pools on a service's database; what their failures mean is in errors.ts.
import pg from 'pg';
import type { Logger } from 'pino';

import { DUPLICATE_DATABASE, pgErrorCode } from './errors.ts';

const INT8_OID = 20;
/**
 * Every bigint Koban stores is bounded by Number.MAX_SAFE_INTEGER (see the
 * ledger's limits), so it parses to an exact JS number; anything larger is a
 * bug. Set on Koban's own pools, not on pg's global parsers, so that importing
 * this module changes nothing for other users of pg in the process.
 */
const kobanTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return parseSafeBigint;
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

function parseSafeBigint(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`bigint ${text} exceeds Number.MAX_SAFE_INTEGER`);
  return value;
}

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
    types: kobanTypes,
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
