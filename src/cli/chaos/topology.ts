// What `npm run chaos` runs: its own PostgreSQL (embedded binaries, a fresh
// directory, a free port: it can be restarted with an immediate shutdown
// without touching any other server), its own broker where the bus needs one,
// and every service as its own OS process on its own database — each of which
// the fault injector may kill, restart or take down for a while.
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { freePort } from '../../platform/net.ts';
import { startBrokerProcess } from '../../services/bus/testing/broker-process.ts';
import { natsServerBinary, startOwnNatsServer } from '../../services/bus/testing/nats-server.ts';
import { type EmbeddedServer, startEmbeddedPostgres } from '../../platform/postgres/embedded.ts';
import { EMULATOR_CREDENTIALS } from '../../services/bus/adapters/sns-sqs/embedded-emulator.ts';
import { NOTIFICATION_SUBSCRIPTIONS } from '../../services/notifications/module.ts';
import { POINTS_SUBSCRIPTIONS } from '../../services/points/module.ts';
import { SERVICES } from '../services.ts';
import type { Endpoints } from '../simulate/driver.ts';
import type { BusKind, ProcessRole } from './schedule.ts';

/** The processes of the split topology (the ledger serves the bus's HTTP API beside it) and their roles. */
export const CHAOS_PROCESSES: readonly ProcessRole[] = [
  { name: 'ledger+bus', producer: false, subscriptions: [] },
  { name: 'visa', producer: 'steady', subscriptions: [] },
  { name: 'quicpay', producer: 'steady', subscriptions: [] },
  { name: 'accounts', producer: 'sparse', subscriptions: [] },
  // The payments subscription first: card traffic keeps it busy (see ProcessRole).
  { name: 'points', producer: false, subscriptions: [POINTS_SUBSCRIPTIONS.payments, ...Object.values(POINTS_SUBSCRIPTIONS).filter((name) => name !== POINTS_SUBSCRIPTIONS.payments)] },
  { name: 'notifications', producer: false, subscriptions: [NOTIFICATION_SUBSCRIPTIONS.payments, NOTIFICATION_SUBSCRIPTIONS.accounts] },
];
/** Every service of Koban, as `koban start` runs them: each gets a database and a port of its own. */
export const SERVICE_NAMES: readonly string[] = SERVICES.map((service) => service.name);
/** Every service's connection pools plus the consumers' together stay well under this. */
const POSTGRES_MAX_CONNECTIONS = 400;
/** A PostgreSQL that will not start again is tried again after this pause, for this long. */
const POSTGRES_START_RETRY_PAUSE_MS = 1_000;
const POSTGRES_START_DEADLINE_MS = 180_000;
const READY_TIMEOUT_MS = 30_000;
const POLL_MS = 50;

export type Postgres = {
  readonly serverUrl: string;
  /** Restartable: false when the run uses a server it was given. */
  readonly own: boolean;
  /** Immediate shutdown (SIGQUIT to the postmaster: no checkpoint, connections cut), down for `downMs`, started again. */
  restart(downMs: number): Promise<void>;
  pid(): number | undefined;
  stop(): Promise<void>;
};

export async function startOwnPostgres(): Promise<Postgres> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'koban-chaos-pg-'));
  // Embedded PostgreSQL runs as `postgres` when this runs as root: it must reach its directory.
  await chmod(dataDir, 0o755);
  const port = await freePort();
  const logger = pino({ level: 'silent' });
  let server: EmbeddedServer = await startEmbeddedPostgres({ dataDir, port, logger });
  const client = new pg.Client({ connectionString: server.serverUrl });
  await client.connect();
  await client.query(`ALTER SYSTEM SET max_connections = ${POSTGRES_MAX_CONNECTIONS}`);
  await client.end();
  await server.stop();
  server = await startEmbeddedPostgres({ dataDir, port, logger });
  return {
    serverUrl: server.serverUrl,
    own: true,
    pid: () => server.pid,
    async restart(downMs) {
      await stopImmediately(server.pid);
      await sleep(downMs);
      // Started again until it is up, as a supervisor would: one failed start (a slow recovery on a loaded
      // machine) had left a long run without its database, every later restart failing with ESRCH. A start
      // that failed may still have left a postmaster running (its pid in postmaster.pid) that holds the
      // directory and refuses the next start: it is stopped the same way first.
      const deadline = Date.now() + POSTGRES_START_DEADLINE_MS;
      for (;;) {
        try {
          server = await startEmbeddedPostgres({ dataDir, port, logger });
          return;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await stopImmediately(await postmasterPid(dataDir));
          await sleep(POSTGRES_START_RETRY_PAUSE_MS);
        }
      }
    },
    async stop() {
      await server.stop().catch(() => {});
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export function givenPostgres(serverUrl: string): Postgres {
  return {
    serverUrl,
    own: false,
    pid: () => undefined,
    restart: () => Promise.reject(new Error('the run does not restart a PostgreSQL it did not start')),
    stop: async () => {},
  };
}

/** One fresh database per service on the server, named after the run; dropped by the returned function. */
export async function createDatabases(serverUrl: string, runTag: string): Promise<{ urls: Record<string, string>; drop(): Promise<void> }> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  const urls: Record<string, string> = {};
  try {
    for (const name of SERVICE_NAMES) {
      const database = `chaos_${runTag}_${name}`;
      await admin.query(`CREATE DATABASE ${database}`);
      const url = new URL(serverUrl);
      url.pathname = `/${database}`;
      urls[name] = url.toString();
    }
  } finally {
    await admin.end();
  }
  return {
    urls,
    async drop() {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        for (const name of SERVICE_NAMES) await client.query(`DROP DATABASE IF EXISTS chaos_${runTag}_${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

export type Broker = {
  readonly kind: BusKind;
  /** What the services' environment needs to reach it. */
  readonly env: NodeJS.ProcessEnv;
  /** Stopped (cleanly: the broker keeps what it acknowledged), down for `downMs`, started again on the same port and store. */
  restart(downMs: number): Promise<void>;
  pid(): number | undefined;
  stop(): Promise<void>;
};

export { natsServerBinary } from '../../services/bus/testing/nats-server.ts';

export async function startOwnNats(runTag: string): Promise<Broker> {
  if (natsServerBinary() === undefined) throw new Error('--bus nats needs nats-server (on PATH or in /usr/sbin): the run starts its own so it can stop and start it');
  const server = await startOwnNatsServer({ storePrefix: 'koban-chaos-nats-' });
  return {
    kind: 'nats',
    env: { NATS_URL: server.url, KOBAN_NATS_NAMESPACE: `chaos-${runTag}` },
    pid: () => server.pid(),
    restart: (downMs) => server.restart(downMs),
    stop: () => server.stop(),
  };
}

const SNS_SQS_EMULATOR = path.join(import.meta.dirname, 'sns-sqs-emulator.ts');

/**
 * The SNS+SQS emulator (fauxqs) as a process of its own on a free loopback
 * port, its state in a directory of its own: a restart stops it and starts it
 * again on the same port and directory, and it comes back with every topic,
 * subscription, queue and message (in flight ones with their deadlines), as
 * SQS never loses what it acknowledged.
 */
export async function startOwnSnsSqs(runTag: string): Promise<Broker> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'koban-chaos-sns-sqs-'));
  const port = await freePort();
  const emulator = await startBrokerProcess({
    name: 'the SNS+SQS emulator',
    port,
    dataDir,
    spawn: () => spawn(process.execPath, [SNS_SQS_EMULATOR, String(port), dataDir], { stdio: ['ignore', 'ignore', 'inherit'] }),
  });
  return {
    kind: 'sns-sqs',
    env: {
      KOBAN_SNS_SQS_ENDPOINT: `http://127.0.0.1:${port}`,
      KOBAN_SNS_SQS_NAMESPACE: `chaos-${runTag}`,
      // The SDK signs with credentials from its default chain, the environment first; the emulator checks none.
      AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
    },
    pid: () => emulator.pid(),
    restart: (downMs) => emulator.restart(downMs),
    stop: () => emulator.stop(),
  };
}

/** The postgres bus: PostgreSQL itself is the broker; its restarts are the PostgreSQL faults. */
export function postgresBroker(): Broker {
  return { kind: 'postgres', env: {}, pid: () => undefined, restart: () => Promise.reject(new Error('the postgres bus has no broker of its own')), stop: async () => {} };
}

/** Each process's environment, and where each service answers. */
export async function serviceEnvironments(options: { bus: Broker; databaseUrls: Record<string, string>; base: NodeJS.ProcessEnv }): Promise<{ env: (process: string) => NodeJS.ProcessEnv; endpoints: Endpoints }> {
  const ports = new Map<string, number>();
  for (const name of SERVICE_NAMES) ports.set(name, await freePort());
  const url = (name: string) => `http://127.0.0.1:${ports.get(name)}`;
  const common: NodeJS.ProcessEnv = {
    ...options.base,
    KOBAN_BUS: options.bus.kind,
    ...options.bus.env,
    LEDGER_URL: url('ledger'),
    BUS_URL: url('bus'),
    // Consumers claim from the bus's own database (its queues and registry), as a NATS consumer reaches NATS.
    BUS_DATABASE_URL: options.databaseUrls.bus,
  };
  const env = (processName: string): NodeJS.ProcessEnv => {
    const own: NodeJS.ProcessEnv = { ...common };
    for (const served of processName.split('+')) {
      own[`${served.toUpperCase()}_DATABASE_URL`] = options.databaseUrls[served];
      own[`${served.toUpperCase()}_PORT`] = String(ports.get(served));
    }
    return own;
  };
  const endpoints = Object.fromEntries(SERVICE_NAMES.map((name) => [name, url(name)])) as unknown as Endpoints;
  return { env, endpoints };
}

/** An immediate shutdown (SIGQUIT) of the postmaster `pid`, waited for; nothing when it is not running. */
async function stopImmediately(pid: number | undefined): Promise<void> {
  if (pid === undefined || !alive(pid)) return;
  process.kill(pid, 'SIGQUIT');
  await waitFor(() => !alive(pid), READY_TIMEOUT_MS, `PostgreSQL (pid ${pid}) to stop`);
}

/** The pid in the cluster's postmaster.pid (embedded PostgreSQL keeps its cluster in `<dataDir>/pg`), if any. */
async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number(text.split('\n')[0]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitFor(done: () => boolean | Promise<boolean>, timeoutMs: number, what: string, failed: () => boolean = () => false): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (failed()) throw new Error(`waiting for ${what}: it exited`);
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: not within ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
