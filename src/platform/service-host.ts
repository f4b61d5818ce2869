// Runs service modules in one process: places each one's database (its own,
// a schema of a shared one, or embedded PostgreSQL), migrates it, starts the
// services, and serves their routes on one port (`koban start`) or on a port
// each (`koban serve`). Closing drains HTTP first, then stops the services in
// reverse order, then embedded PostgreSQL.
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import type { Logger } from 'pino';
import { type Clock, skewedClock, systemClock } from './clock.ts';
import { envPrefix, type PlatformConfig, type Settings } from './config.ts';
import { installFailpoints } from './failpoints.ts';
import { databaseCheck, type NamedCheck, registerHealthRoutes } from './health.ts';
import { createHttpServer } from './http/server.ts';
import { serviceLogger } from './logger.ts';
import { type EmbeddedServer, embeddedServerUrl, startEmbeddedPostgres } from './postgres/embedded.ts';
import { classifyPgError, pgErrorCode, UNIQUE_VIOLATION } from './postgres/errors.ts';
import { createPool, databaseUrl, ensureDatabase } from './postgres/pool.ts';
import { checkPeers, type DatabasePlan, planDatabases, type RunningService, type ServiceModule } from './service-module.ts';
import { isStartupError, StartupError } from './startup-error.ts';

/** Connections a migration or a command needs: few, and only for its duration. */
const MIGRATION_POOL_SIZE = 2;
/** How long `koban audit`/`migrate` wait to find a running embedded PostgreSQL before starting their own. */
const EMBEDDED_PROBE_TIMEOUT_MS = 2_000;
const DUPLICATE_SCHEMA = '42P06';
const INVALID_PASSWORD = '28P01';
const INVALID_AUTHORIZATION = '28000';
const INVALID_CATALOG_NAME = '3D000';

export type HostedApp = Readonly<{ services: readonly string[]; app: FastifyInstance; logger: Logger; port: number }>;

export type ServiceHost = Readonly<{
  apps: readonly HostedApp[];
  /** The in-process API of a running service. */
  api<Api>(module: ServiceModule<Api>): Api;
  /** Listens on every app's port; resolves with their addresses. */
  listen(): Promise<string[]>;
  /**
   * Drains requests, stops services, closes pools, stops embedded PostgreSQL.
   * Every step runs even when one fails; then it rejects naming each step that
   * failed. Safe to call twice.
   */
  close(): Promise<void>;
  /** Called once if something the process cannot run without stops (embedded PostgreSQL killed). */
  onFailure(listener: (reason: string) => void): void;
}>;

export async function startServices(options: {
  modules: readonly ServiceModule[];
  settings: Settings;
  platform: PlatformConfig;
  /** The process's root logger; each service logs under its own name, the process under theirs joined. */
  root: Logger;
  clock?: Clock;
  /** `one-port`: every service's routes on PORT (koban start); `port-per-service`: each on `<NAME>_PORT` (koban serve). */
  http: 'one-port' | 'port-per-service';
  embeddedAllowed: boolean;
  openApi: { title: string; version: string; description: string };
}): Promise<ServiceHost> {
  const { modules, settings, platform } = options;
  const processLogger = serviceLogger(options.root, modules.map((module) => module.name).join('+'));
  checkPeers(modules, settings);
  const plans = planDatabases(modules, settings, { embeddedAllowed: options.embeddedAllowed });
  // Testing settings (KOBAN_FAILPOINTS, KOBAN_CLOCK_SKEW_MS): both inert by default.
  installFailpoints(platform.failpoints);
  const clock = skewedClock(options.clock ?? systemClock, platform.clockSkewMs);
  const cleanups: Array<{ step: string; run: () => Promise<void> }> = [];
  let closing: Promise<void> | undefined;
  // Every step runs even when one fails (a pool still closes after a failed drain); then close rejects naming what failed.
  const close = () => {
    closing ??= (async () => {
      const failures: ShutdownStepError[] = [];
      while (cleanups.length > 0) {
        const { step, run } = cleanups.pop()!;
        await run().catch((error: unknown) => {
          const failure = new ShutdownStepError(step, error);
          processLogger.error({ err: error, step }, failure.message);
          failures.push(failure);
        });
      }
      if (failures.length > 0) throw new AggregateError(failures, `shutdown failed: ${failures.map((failure) => failure.message).join('; ')}`);
    })();
    return closing;
  };
  const failureListeners: Array<(reason: string) => void> = [];

  try {
    const databases = await placeDatabases(plans, platform, processLogger, 'start');
    cleanups.push({ step: 'stop embedded PostgreSQL', run: databases.close });
    databases.embedded?.onUnexpectedExit((description) => {
      for (const listener of failureListeners) listener(`embedded PostgreSQL stopped unexpectedly (${description})`);
    });
    const running = new Map<string, RunningService>();
    for (const module of modules) {
      const logger = serviceLogger(options.root, module.name);
      const url = databases.urls.get(module.name)!;
      await migrateModule(module, url, logger).catch((error: unknown) => {
        throw databaseStartupError(module.name, plans.get(module.name)!, url, error);
      });
      const service = await module.start({
        settings,
        platform,
        databaseUrl: url,
        logger,
        clock,
        peer: <Api>(name: string) => running.get(name)?.api as Api | undefined,
      });
      running.set(module.name, service);
      cleanups.push({ step: `stop ${module.name}`, run: () => service.stop() });
    }

    const groups: Array<{ modules: readonly ServiceModule[]; logger: Logger; port: number; title: string; description: string }> =
      options.http === 'one-port'
        ? [{ modules, logger: processLogger, port: platform.port, ...options.openApi }]
        : modules.map((module) => ({
            modules: [module],
            logger: serviceLogger(options.root, module.name),
            port: settings[`${envPrefix(module.name)}PORT`] as number,
            title: module.title,
            description: module.description,
          }));
    const apps: HostedApp[] = [];
    for (const group of groups) {
      const app = await createHttpServer({
        logger: group.logger,
        bodyLimitBytes: Math.max(...group.modules.map((module) => module.bodyLimitBytes)),
        title: group.title,
        version: options.openApi.version,
        description: group.description,
        requestLog: { slowMs: platform.requestSlowMs, sampleRate: platform.requestLogSampleRate },
      });
      const checks: NamedCheck[] = group.modules.flatMap((module) => [
        databaseCheck(`${module.name}.database`, databases.urls.get(module.name)!),
        ...(running.get(module.name)!.readiness ?? []).map((check) => ({ ...check, name: `${module.name}.${check.name}` })),
      ]);
      const embedded = databases.embedded;
      if (embedded !== undefined) {
        checks.push({
          name: 'embedded-postgres',
          check: async () => {
            if (embedded.unexpectedExit !== undefined) throw new Error(`stopped unexpectedly (${embedded.unexpectedExit})`);
          },
        });
      }
      registerHealthRoutes(app, checks);
      for (const module of group.modules) running.get(module.name)!.registerRoutes(app);
      await app.ready();
      cleanups.push({ step: `close HTTP on port ${group.port}`, run: () => app.close() });
      apps.push({ services: group.modules.map((module) => module.name), app, logger: group.logger, port: group.port });
    }

    return {
      apps,
      api<Api>(module: ServiceModule<Api>): Api {
        const service = running.get(module.name);
        if (service === undefined) throw new Error(`Service ${module.name} does not run in this process`);
        return service.api as Api;
      },
      async listen() {
        const addresses: string[] = [];
        for (const hosted of apps) {
          const address = await hosted.app.listen({ host: platform.host, port: hosted.port }).catch((error: unknown) => {
            throw listenStartupError(error, platform.host, hosted.port, options.http === 'one-port' ? 'PORT' : `${envPrefix(hosted.services[0]!)}PORT`);
          });
          hosted.logger.info({ address, docs: `${address}/docs`, services: hosted.services }, 'Koban is listening');
          addresses.push(address);
        }
        return addresses;
      },
      close,
      onFailure(listener) {
        failureListeners.push(listener);
      },
    };
  } catch (error) {
    // The start-up error is the one to report; close's own failures are logged.
    await close().catch(() => undefined);
    throw error;
  }
}

/**
 * Runs `work` with each module's database placed and migrated, for commands
 * (`koban migrate`, `koban audit`) that do not start the services. With
 * embedded PostgreSQL it joins the server of a running Koban, or starts it
 * for the duration.
 */
export async function withServiceDatabases<T>(
  options: { modules: readonly ServiceModule[]; settings: Settings; platform: PlatformConfig; root: Logger; migrate: boolean },
  work: (urls: ReadonlyMap<string, string>) => Promise<T>,
): Promise<T> {
  const plans = planDatabases(options.modules, options.settings, { embeddedAllowed: true });
  const processLogger = serviceLogger(options.root, options.modules.map((module) => module.name).join('+'));
  const databases = await placeDatabases(plans, options.platform, processLogger, 'join');
  try {
    if (options.migrate) {
      for (const module of options.modules) {
        const url = databases.urls.get(module.name)!;
        await migrateModule(module, url, serviceLogger(options.root, module.name)).catch((error: unknown) => {
          throw databaseStartupError(module.name, plans.get(module.name)!, url, error);
        });
      }
    }
    return await work(databases.urls);
  } finally {
    await databases.close();
  }
}

async function migrateModule(module: ServiceModule, url: string, logger: Logger): Promise<void> {
  const pool = createPool({ url, size: MIGRATION_POOL_SIZE, applicationName: `koban-${module.name}-migrate`, logger });
  try {
    await module.migrate(pool, logger);
  } finally {
    await pool.end();
  }
}

async function placeDatabases(
  plans: ReadonlyMap<string, DatabasePlan>,
  platform: PlatformConfig,
  logger: Logger,
  embeddedMode: 'start' | 'join',
): Promise<{ urls: Map<string, string>; embedded: EmbeddedServer | undefined; close(): Promise<void> }> {
  let embedded: EmbeddedServer | undefined;
  const urls = new Map<string, string>();
  try {
    for (const [service, plan] of plans) {
      switch (plan.kind) {
        case 'own':
          urls.set(service, plan.url);
          break;
        case 'shared':
          urls.set(
            service,
            await schemaUrl(plan.url, plan.schema, logger).catch((error: unknown) => {
              throw databaseStartupError(service, plan, plan.url, error);
            }),
          );
          logger.info({ schema: plan.schema }, `${service} keeps its tables in schema ${plan.schema} of DATABASE_URL (set ${envPrefix(service)}DATABASE_URL to give it a database of its own)`);
          break;
        case 'embedded': {
          const serverUrl = embeddedServerUrl(platform.embeddedPostgresPort);
          if (embedded === undefined && !(embeddedMode === 'join' && (await canConnect(serverUrl)))) {
            embedded = await startEmbeddedPostgres({ dataDir: platform.dataDir, port: platform.embeddedPostgresPort, logger });
          }
          await ensureDatabase(serverUrl, plan.database);
          urls.set(service, databaseUrl(serverUrl, plan.database));
          break;
        }
      }
    }
  } catch (error) {
    // The error to report is the one that stopped the placing; a failed stop is logged by the server.
    await embedded?.stop().catch(() => undefined);
    throw error;
  }
  return { urls, embedded, close: async () => embedded?.stop() };
}

/** A shutdown step that failed, named. */
export class ShutdownStepError extends Error {
  override name = 'ShutdownStepError';
  readonly step: string;
  constructor(step: string, cause: unknown) {
    super(`${step} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.step = step;
  }
}

/** The URL as it may be shown: without its password. */
function redacted(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    parsed.search = '';
    return parsed.toString();
  } catch {
    return '(an invalid URL)';
  }
}

/** A database Koban cannot reach or log in to at start-up: one line naming the variable to fix. */
function databaseStartupError(service: string, plan: DatabasePlan, url: string, error: unknown): unknown {
  if (isStartupError(error)) return error;
  const code = pgErrorCode(error);
  const variable = plan.kind === 'own' ? `${envPrefix(service)}DATABASE_URL` : plan.kind === 'shared' ? 'DATABASE_URL' : undefined;
  const where = variable === undefined ? `embedded PostgreSQL (${redacted(url)})` : `${variable} (${redacted(url)})`;
  const reason = (error instanceof Error && error.message) || code || 'unknown error';
  if (code === INVALID_PASSWORD || code === INVALID_AUTHORIZATION) {
    return new StartupError(`The ${service} database at ${where} refused the login: ${reason}. Fix the user or password in ${variable ?? 'the URL'}.`, { cause: error });
  }
  if (code === INVALID_CATALOG_NAME) {
    return new StartupError(`The ${service} database at ${where} does not exist: ${reason}. Create it (createdb) or fix ${variable ?? 'the URL'}.`, { cause: error });
  }
  if (classifyPgError(error) === 'unavailable') {
    return new StartupError(`Cannot reach the ${service} database at ${where}: ${reason}. Start PostgreSQL there, or fix ${variable ?? 'the URL'}.`, { cause: error });
  }
  return error;
}

/** The HTTP port cannot be had: one line naming the variable to change. */
function listenStartupError(error: unknown, host: string, port: number, variable: string): unknown {
  switch (pgErrorCode(error)) {
    case 'EADDRINUSE':
      return new StartupError(`Port ${port} on ${host} is already in use by another process: stop it, or set ${variable} to a free port.`, { cause: error });
    case 'EACCES':
      return new StartupError(`Port ${port} on ${host} needs privileges this process does not have: set ${variable} to a port above 1023.`, { cause: error });
    case 'EADDRNOTAVAIL':
      return new StartupError(`HOST ${host} is not an address of this machine: set HOST to one of its addresses, e.g. 127.0.0.1 or 0.0.0.0.`, { cause: error });
  }
  return error;
}

/**
 * A URL for a service inside a shared database, in a schema of its own (its
 * own tables and its own migration bookkeeping), created if need be.
 */
export async function schemaUrl(sharedDatabaseUrl: string, schema: string, logger: Logger): Promise<string> {
  const url = new URL(sharedDatabaseUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  const pool = createPool({ url: sharedDatabaseUrl, size: 1, applicationName: 'koban-schema', logger });
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(schema)}`).catch((error: unknown) => {
      // Two processes creating it at once: the loser sees a duplicate, which is fine.
      if (pgErrorCode(error) !== DUPLICATE_SCHEMA && pgErrorCode(error) !== UNIQUE_VIOLATION) throw error;
    });
  } finally {
    await pool.end();
  }
  return url.toString();
}

async function canConnect(connectionString: string): Promise<boolean> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: EMBEDDED_PROBE_TIMEOUT_MS });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}
