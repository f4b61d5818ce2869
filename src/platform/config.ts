// Configuration machinery. Each service module declares its settings (key, JSON
// schema with the default, a hint saying what to set); the platform declares
// the shared ones. A process reads the environment once at start-up, validates
// every setting with one Ajv schema, then freezes the values. A bad value stops
// start-up with a message that names the variable, what was given and how to
// fix it. A variable that looks like Koban's but that no setting reads is
// reported with the closest known name; a setting's former name is refused, so
// that a rename is never silently ignored.
import { Ajv } from 'ajv';
import path from 'node:path';
import {
  RETENTION_DAYS_DEFAULT,
  RETENTION_DAYS_MAX,
  RETENTION_INTERVAL_MS_DEFAULT,
  RETENTION_INTERVAL_MS_MAX,
  type RetentionConfig,
  retentionMs,
} from './retention.ts';
import { type FailpointRule, parseFailpoints } from './failpoints.ts';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export type Setting = Readonly<{
  key: string;
  /** JSON schema of the value, with its `default` if it has one. Values arrive as strings and are coerced. */
  schema: Readonly<Record<string, unknown>>;
  /** What to set it to, shown when the value is refused: "a TCP port, 0–65535". */
  hint: string;
  /** Names this setting had before: set, they stop start-up with the new name (a rename must not be ignored). */
  formerly?: readonly string[];
  /** A check the schema cannot express, run on a value the schema accepted: what is wrong with it, or undefined. */
  check?: (value: unknown) => string | undefined;
}>;

/** Validated values by key, frozen; an unset setting without a default is absent. */
export type Settings = Readonly<Record<string, unknown>>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A request slower than this is logged at warn (KOBAN_REQUEST_SLOW_MS). */
export const REQUEST_SLOW_MS_DEFAULT = 1_000;
/** The fraction of other requests logged at info (KOBAN_REQUEST_LOG_SAMPLE_RATE). */
export const REQUEST_LOG_SAMPLE_RATE_DEFAULT = 0.001;
/** The largest KOBAN_CLOCK_SKEW_MS either way: the skew the design claims to tolerate (README, Configuration). */
export const CLOCK_SKEW_MS_MAX = 60_000;
const POSTGRES_URL_PATTERN = '^postgres(ql)?://';
/** Variables under these prefixes are Koban's own: one no setting reads is reported. Services add theirs (LEDGER_, BUS_, ...). */
export const KOBAN_PREFIX = 'KOBAN_';

/** Settings every process reads, whatever services it runs. */
export const PLATFORM_SETTINGS: readonly Setting[] = [
  { key: 'HOST', schema: { type: 'string', minLength: 1, default: '127.0.0.1' }, hint: 'an interface address such as 127.0.0.1 or 0.0.0.0' },
  { key: 'PORT', schema: { type: 'integer', minimum: 0, maximum: 65535, default: 3000 }, hint: 'a TCP port, 0–65535 (0 picks a free one)' },
  { key: 'LOG_LEVEL', schema: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' }, hint: 'one of fatal, error, warn, info, debug, trace, silent' },
  {
    key: 'DATABASE_URL',
    schema: { type: 'string', pattern: POSTGRES_URL_PATTERN },
    hint: 'a postgres:// connection string of one database every service shares (each in a schema of its own), or unset it',
  },
  { key: 'KOBAN_DATA_DIR', schema: { type: 'string', minLength: 1, default: './.koban' }, hint: 'a directory for embedded PostgreSQL data, e.g. ./.koban' },
  { key: 'KOBAN_EMBEDDED_PG_PORT', schema: { type: 'integer', minimum: 1024, maximum: 65535, default: 54329 }, hint: 'a free TCP port, 1024–65535, for embedded PostgreSQL' },
  { key: 'KOBAN_DB_POOL_SIZE', schema: { type: 'integer', minimum: 2, maximum: 200, default: 10 }, hint: 'an integer, 2–200: connections per service' },
  {
    key: 'KOBAN_REQUEST_SLOW_MS',
    schema: { type: 'integer', minimum: 1, maximum: 600000, default: REQUEST_SLOW_MS_DEFAULT },
    hint: 'milliseconds, 1–600000: a request slower than this is logged at warn',
  },
  {
    key: 'KOBAN_REQUEST_LOG_SAMPLE_RATE',
    schema: { type: 'number', minimum: 0, maximum: 1, default: REQUEST_LOG_SAMPLE_RATE_DEFAULT },
    hint: 'a fraction, 0–1, of requests logged at info (0.001: one in a thousand)',
  },
  {
    key: 'KOBAN_RETENTION_DAYS',
    schema: { type: 'number', exclusiveMinimum: 0, maximum: RETENTION_DAYS_MAX, default: RETENTION_DAYS_DEFAULT },
    hint: `days, more than 0 and at most ${RETENTION_DAYS_MAX} (fractions allowed: 0.01 is about 15 minutes), that published outbox rows, acknowledged bus messages, handled dedupe records and delivered notifications are kept`,
  },
  {
    key: 'KOBAN_RETENTION_INTERVAL_MS',
    schema: { type: 'integer', minimum: 0, maximum: RETENTION_INTERVAL_MS_MAX, default: RETENTION_INTERVAL_MS_DEFAULT },
    hint: `milliseconds between looks for rows older than the retention, 0–${RETENTION_INTERVAL_MS_MAX} (0: never prune)`,
  },
  {
    key: 'KOBAN_FAILPOINTS',
    schema: { type: 'string' },
    hint: 'testing only: comma-separated <name>[@<scope>]=crash|throw|delay:<ms>[;p=<0..1>][;from=<epoch ms>][;until=<epoch ms>], or unset it',
    check: (value) => {
      try {
        parseFailpoints(value as string);
        return undefined;
      } catch (error) {
        return (error as Error).message;
      }
    },
  },
  {
    key: 'KOBAN_CLOCK_SKEW_MS',
    schema: { type: 'integer', minimum: -CLOCK_SKEW_MS_MAX, maximum: CLOCK_SKEW_MS_MAX, default: 0 },
    hint: `testing only: milliseconds, ${-CLOCK_SKEW_MS_MAX}–${CLOCK_SKEW_MS_MAX}, added to this process's clock`,
  },
];

export type PlatformConfig = Readonly<{
  host: string;
  /** The port of `koban start`, which serves every service on one port. */
  port: number;
  logLevel: LogLevel;
  /** One database for every service (each in a schema of its own), unless a service has its own URL. */
  sharedDatabaseUrl: string | undefined;
  dataDir: string;
  embeddedPostgresPort: number;
  dbPoolSize: number;
  requestSlowMs: number;
  requestLogSampleRate: number;
  /** How long prunable rows are kept, and how often each service prunes its own database. */
  retention: RetentionConfig;
  /** Testing only: the failpoints this process arms (none by default). */
  failpoints: readonly FailpointRule[];
  /** Testing only: added to the process's clock, signed. */
  clockSkewMs: number;
}>;

export function platformConfig(settings: Settings): PlatformConfig {
  return Object.freeze({
    host: settings.HOST as string,
    port: settings.PORT as number,
    logLevel: settings.LOG_LEVEL as LogLevel,
    sharedDatabaseUrl: settings.DATABASE_URL as string | undefined,
    dataDir: path.resolve(settings.KOBAN_DATA_DIR as string),
    embeddedPostgresPort: settings.KOBAN_EMBEDDED_PG_PORT as number,
    dbPoolSize: settings.KOBAN_DB_POOL_SIZE as number,
    requestSlowMs: settings.KOBAN_REQUEST_SLOW_MS as number,
    requestLogSampleRate: settings.KOBAN_REQUEST_LOG_SAMPLE_RATE as number,
    retention: Object.freeze({ retentionMs: retentionMs(settings.KOBAN_RETENTION_DAYS as number), intervalMs: settings.KOBAN_RETENTION_INTERVAL_MS as number }),
    failpoints: Object.freeze(parseFailpoints((settings.KOBAN_FAILPOINTS as string | undefined) ?? '')),
    clockSkewMs: (settings.KOBAN_CLOCK_SKEW_MS as number | undefined) ?? 0,
  });
}

/** The settings the platform adds for each service: its own database and, under `koban serve`, its own port. */
export function serviceSettings(service: string, defaultPort: number): Setting[] {
  const prefix = envPrefix(service);
  return [
    {
      key: `${prefix}DATABASE_URL`,
      schema: { type: 'string', pattern: POSTGRES_URL_PATTERN },
      hint: `a postgres:// connection string of the ${service} database, or unset it to use DATABASE_URL`,
    },
    {
      key: `${prefix}PORT`,
      schema: { type: 'integer', minimum: 0, maximum: 65535, default: defaultPort },
      hint: `a TCP port, 0–65535, for the ${service} service under \`koban serve\``,
    },
    {
      key: `${prefix}URL`,
      schema: { type: 'string', pattern: '^https?://[^\\s/]+(/[^\\s]*)?$' },
      hint: `the http(s):// base URL where other processes reach the ${service} service, e.g. http://127.0.0.1:${defaultPort}; needed by a service that calls ${service} and runs in another process`,
    },
  ];
}

/** `ledger` → `LEDGER_`: the prefix of a service's own variables. */
export function envPrefix(service: string): string {
  return `${service.toUpperCase().replaceAll('-', '_')}_`;
}

/**
 * Validates every setting at once and freezes the values. Throws ConfigError
 * listing each bad value, and each former name still set, with how to fix it.
 */
export function readSettings(settings: readonly Setting[], env: NodeJS.ProcessEnv): Settings {
  const keys = new Set<string>();
  for (const setting of settings) {
    if (keys.has(setting.key)) throw new Error(`Setting ${setting.key} is declared twice`);
    keys.add(setting.key);
  }
  const problems: string[] = [];
  const values: Record<string, unknown> = {};
  for (const setting of settings) {
    const raw = env[setting.key];
    // An empty variable means "not set", as in most shells' `VAR= cmd`.
    if (raw !== undefined && raw !== '') values[setting.key] = raw;
    for (const former of setting.formerly ?? []) {
      if (env[former] !== undefined && env[former] !== '') problems.push(`  ${former} was renamed ${setting.key}: rename the variable (${setting.hint})`);
    }
  }
  const ajv = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: true });
  const validate = ajv.compile({ type: 'object', properties: Object.fromEntries(settings.map((setting) => [setting.key, setting.schema])) });
  const refused = new Set<string>();
  if (!validate(values)) {
    for (const error of validate.errors ?? []) {
      const key = error.instancePath.replace(/^\//, '');
      const setting = settings.find((candidate) => candidate.key === key);
      refused.add(key);
      problems.push(`  ${key}=${JSON.stringify(env[key])}: ${error.message ?? 'invalid'}; set it to ${setting?.hint ?? 'a valid value'}`);
    }
  }
  for (const setting of settings) {
    if (setting.check === undefined || values[setting.key] === undefined || refused.has(setting.key)) continue;
    const problem = setting.check(values[setting.key]);
    if (problem !== undefined) problems.push(`  ${setting.key}=${JSON.stringify(env[setting.key])}: ${problem}; set it to ${setting.hint}`);
  }
  if (problems.length > 0) throw new ConfigError(`Invalid configuration:\n${problems.join('\n')}`);
  return Object.freeze(values);
}

/**
 * Variables that look like Koban's (under one of `prefixes`) but that no
 * setting reads: most often a typo or a renamed setting. Each comes with the
 * closest known name, when one is close enough to be a likely meaning.
 */
export function unknownVariables(
  settings: readonly Setting[],
  env: NodeJS.ProcessEnv,
  prefixes: readonly string[],
): Array<{ key: string; suggestion: string | undefined }> {
  const known = new Set(settings.flatMap((setting) => [setting.key, ...(setting.formerly ?? [])]));
  const names = settings.map((setting) => setting.key);
  return Object.keys(env)
    .filter((key) => !known.has(key) && prefixes.some((prefix) => key.startsWith(prefix)))
    .sort()
    .map((key) => ({ key, suggestion: closestName(key, names) }));
}

/** The candidate within a third of the name's length in edits (at least 2), or undefined. */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const editsMax = Math.max(2, Math.floor(name.length / 3));
  let best: { name: string; edits: number } | undefined;
  for (const candidate of candidates) {
    const edits = editDistance(name, candidate);
    if (edits <= editsMax && (best === undefined || edits < best.edits)) best = { name: candidate, edits };
  }
  return best?.name;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours each cost 1. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) distance = Math.min(distance, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = distance;
    }
  }
  return rows[a.length]![b.length]!;
}
