// The contract every service's module file fulfils: what the service needs
// (settings, a database and its migrations, HTTP routes, background work, CLI
// commands) and how it starts and stops. The host (service-host.ts) reads
// nothing else, so adding a service is one module file and one line in the
// composition root's list.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import { ConfigError, envPrefix, type PlatformConfig, type Setting, type Settings } from './config.ts';
import type { Pool } from './postgres/pool.ts';

export type ServiceModule<Api = unknown> = Readonly<{
  /** Lower-case name: the `service` field of its logs, `koban serve <name>`, and the prefix of its variables (LEDGER_). */
  name: string;
  /** OpenAPI title and description when the service runs alone. */
  title: string;
  description: string;
  /** Its port under `koban serve`, unless `<NAME>_PORT` says otherwise. */
  defaultPort: number;
  /** Its own settings; `<NAME>_DATABASE_URL` and `<NAME>_PORT` are added by the platform. */
  settings: readonly Setting[];
  /** Its database on a server of its own (embedded PostgreSQL), and its schema in a shared one (DATABASE_URL alone). */
  database: string;
  /** The largest request body its routes accept. */
  bodyLimitBytes: number;
  /** Brings its tables up to date; safe to run from several processes at once. */
  migrate(pool: Pool, logger: Logger): Promise<void>;
  /** Starts the service on its migrated database, background work included. */
  start(context: ServiceContext): Promise<RunningService<Api>>;
  /** Commands of its own (`koban audit`), run against its database without starting it. */
  commands?: readonly ServiceCommand[];
  /**
   * The services it calls, each with what it needs it for ("moves cash through
   * the ledger"): each must run earlier in the same process or be reachable at
   * `<NAME>_URL`. Checked before any database is touched (checkPeers).
   */
  peers?: readonly ServicePeer[];
}>;

export type ServicePeer = Readonly<{ name: string; why: string }>;

export type ServiceContext = Readonly<{
  /** Every setting the process read, validated and frozen; the module reads its own. */
  settings: Settings;
  platform: PlatformConfig;
  databaseUrl: string;
  /** Carries the service's name on every line. */
  logger: Logger;
  clock: Clock;
  /**
   * The in-process API of a service started earlier in this process, or
   * undefined when it runs elsewhere: then the caller uses its HTTP client at
   * `<NAME>_URL`. Services start in the order of the composition root's list.
   */
  peer<Api>(name: string): Api | undefined;
}>;

export type RunningService<Api = unknown> = Readonly<{
  /** What callers in the same process (and tests) use: the service's in-process API. */
  api: Api;
  registerRoutes(app: FastifyInstance): void;
  /**
   * What else it needs to answer, besides its database (which the host checks
   * for every service): a broker, say. `/readyz` runs them all.
   */
  readiness?: readonly ReadinessCheck[];
  /** Ends background work and writes in flight, then closes its connections. Called once, after HTTP has drained. */
  stop(): Promise<void>;
}>;

/** One dependency `/readyz` checks: resolves if it answers; the host bounds it in time. */
export type ReadinessCheck = Readonly<{
  /** What it checks, e.g. `broker`; reported as `<service>.<name>`. */
  name: string;
  /** Resolves when the dependency answers; `signal` aborts when the host stops waiting. */
  check(signal: AbortSignal): Promise<void>;
}>;

export type ServiceCommand = Readonly<{
  name: string;
  description: string;
  /** Resolves with the process's exit code. */
  run(context: CommandContext): Promise<number>;
}>;

export type CommandContext = Readonly<{ settings: Settings; platform: PlatformConfig; databaseUrl: string; logger: Logger }>;

/**
 * Refuses a process in which a service calls another that neither runs before
 * it here nor has `<NAME>_URL` set: one line per such service, naming every
 * variable it lacks at once.
 */
export function checkPeers(modules: readonly ServiceModule[], settings: Settings): void {
  const problems: string[] = [];
  modules.forEach((module, index) => {
    const earlier = new Set(modules.slice(0, index).map((other) => other.name));
    const missing = (module.peers ?? []).filter((peer) => !earlier.has(peer.name) && typeof settings[`${envPrefix(peer.name)}URL`] !== 'string');
    if (missing.length === 0) return;
    const variables = missing.map((peer) => `${envPrefix(peer.name)}URL`);
    const together = [...missing.map((peer) => peer.name), module.name].join(' ');
    problems.push(
      `${module.name} ${missing.map((peer) => peer.why).join(' and ')}: set ${variables.join(' and ')} to where ${missing.length === 1 ? 'it runs' : 'they run'}, or run ${missing.length === 1 ? 'it' : 'them'} in the same process (koban serve ${together})`,
    );
  });
  if (problems.length > 0) throw new ConfigError(problems.join('\n'));
}

/** Where a service's tables live, in order of precedence. */
export type DatabasePlan =
  /** `<NAME>_DATABASE_URL`: a database of its own, tables where the URL's search_path puts them. */
  | Readonly<{ kind: 'own'; url: string }>
  /** `DATABASE_URL` alone: one database for every service, each in a schema named after its database. */
  | Readonly<{ kind: 'shared'; url: string; schema: string }>
  /** No URL: a database of its own on embedded PostgreSQL. */
  | Readonly<{ kind: 'embedded'; database: string }>;

export function planDatabase(module: ServiceModule, settings: Settings): DatabasePlan {
  const own = settings[`${envPrefix(module.name)}DATABASE_URL`];
  if (typeof own === 'string') return { kind: 'own', url: own };
  const shared = settings.DATABASE_URL;
  if (typeof shared === 'string') return { kind: 'shared', url: shared, schema: module.database };
  return { kind: 'embedded', database: module.database };
}

/**
 * Plans every service's database. Embedded PostgreSQL is for a process that
 * has no database URL at all: a process given some URLs but none for one of
 * its services is refused rather than quietly put half on embedded PostgreSQL.
 */
export function planDatabases(modules: readonly ServiceModule[], settings: Settings, options: { embeddedAllowed: boolean }): Map<string, DatabasePlan> {
  const plans = new Map(modules.map((module) => [module.name, planDatabase(module, settings)]));
  const unplaced = modules.filter((module) => plans.get(module.name)!.kind === 'embedded');
  const placedSomewhere = unplaced.length < modules.length;
  if (unplaced.length > 0 && (!options.embeddedAllowed || placedSomewhere)) {
    const why = options.embeddedAllowed
      ? 'embedded PostgreSQL runs only when no database URL is set at all'
      : 'a service run on its own needs a database URL (embedded PostgreSQL is for `koban start`)';
    const lines = unplaced.map(
      (module) => `  ${module.name} has no database: set ${envPrefix(module.name)}DATABASE_URL (its own), or DATABASE_URL (shared, schema ${module.database})`,
    );
    throw new ConfigError(`Invalid configuration (${why}):\n${lines.join('\n')}`);
  }
  return plans;
}
