// Configuration is read from the environment once at start-up, validated with
// one JSON schema, then frozen. A bad value stops start-up with a message that
// names the variable, what was given and how to fix it.
import { Ajv } from 'ajv';
import path from 'node:path';

export const BALANCE_TYPE_PATTERN = '^[a-z][a-z0-9_]{0,31}$';

export type Config = Readonly<{
  host: string;
  port: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Connection string of the ledger's database; unset means embedded PostgreSQL. */
  ledgerDatabaseUrl: string | undefined;
  dataDir: string;
  embeddedPostgresPort: number;
  balanceTypes: readonly string[];
  dbPoolSize: number;
  writeTimeoutMs: number;
  /** How often expired holds and lots are recorded; 0 turns the background sweeper off. */
  sweepIntervalMs: number;
  /**
   * Ledger batches written at once, at most: a second one starts beside the
   * first only when enough operations wait (WRITE_PARALLEL_BATCH_SIZE_MIN), and
   * batches written together never share an account. More let PostgreSQL use
   * more cores under load, but make smaller batches.
   */
  writeBatchesInFlightMax: number;
  /** Event bus adapter: postgres (default, on the bus database) or nats (JetStream at natsUrl). */
  bus: 'postgres' | 'nats';
  natsUrl: string;
  /** Connection string of the bus database; unset means embedded PostgreSQL, or the ledger's server when only it is set. */
  busDatabaseUrl: string | undefined;
}>;

type EnvSpec = {
  key: string;
  schema: Record<string, unknown>;
  hint: string;
};

const ENV_SPECS: readonly EnvSpec[] = [
  { key: 'HOST', schema: { type: 'string', minLength: 1, default: '127.0.0.1' }, hint: 'an interface address such as 127.0.0.1 or 0.0.0.0' },
  { key: 'PORT', schema: { type: 'integer', minimum: 0, maximum: 65535, default: 3000 }, hint: 'a TCP port, 0–65535 (0 picks a free one)' },
  { key: 'LOG_LEVEL', schema: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' }, hint: 'one of fatal, error, warn, info, debug, trace, silent' },
  { key: 'LEDGER_DATABASE_URL', schema: { type: 'string', pattern: '^postgres(ql)?://' }, hint: 'a postgres:// connection string for the ledger database' },
  { key: 'DATABASE_URL', schema: { type: 'string', pattern: '^postgres(ql)?://' }, hint: 'a postgres:// connection string, or unset it to use embedded PostgreSQL' },
  { key: 'KOBAN_DATA_DIR', schema: { type: 'string', minLength: 1, default: './.koban' }, hint: 'a directory for embedded PostgreSQL data, e.g. ./.koban' },
  { key: 'KOBAN_EMBEDDED_PG_PORT', schema: { type: 'integer', minimum: 1024, maximum: 65535, default: 54329 }, hint: 'a free TCP port, 1024–65535, for embedded PostgreSQL' },
  { key: 'KOBAN_BALANCE_TYPES', schema: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,31}(,[a-z][a-z0-9_]{0,31})*$', default: 'cash,points' }, hint: 'a comma-separated list of lower-case names, e.g. cash,points' },
  { key: 'KOBAN_DB_POOL_SIZE', schema: { type: 'integer', minimum: 2, maximum: 200, default: 10 }, hint: 'an integer, 2–200' },
  { key: 'KOBAN_BUS', schema: { enum: ['postgres', 'nats'], default: 'postgres' }, hint: 'postgres (the default, on the bus database) or nats (JetStream at NATS_URL)' },
  { key: 'NATS_URL', schema: { type: 'string', pattern: '^(nats|tls)://[^\\s]+$', default: 'nats://127.0.0.1:4222' }, hint: 'a nats:// URL of a server with JetStream enabled, e.g. nats://127.0.0.1:4222' },
  { key: 'BUS_DATABASE_URL', schema: { type: 'string', pattern: '^postgres(ql)?://' }, hint: 'a postgres:// connection string for the bus database, or unset it to use DATABASE_URL' },
  { key: 'KOBAN_SWEEP_INTERVAL_MS', schema: { type: 'integer', minimum: 0, maximum: 3600000, default: 1000 }, hint: 'milliseconds between sweeps of expired holds and lots, 0–3600000 (0: off)' },
  { key: 'KOBAN_WRITE_BATCHES_IN_FLIGHT', schema: { type: 'integer', minimum: 1, maximum: 32, default: 2 }, hint: 'an integer, 1–32: ledger batches written at once (about the number of CPU cores of the database)' },
  { key: 'KOBAN_WRITE_TIMEOUT_MS', schema: { type: 'integer', minimum: 100, maximum: 600000, default: 5000 }, hint: 'milliseconds, 100–600000' },
];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const ajv = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: true });
  const schema = {
    type: 'object',
    properties: Object.fromEntries(ENV_SPECS.map((spec) => [spec.key, spec.schema])),
  };
  const validate = ajv.compile(schema);
  const values: Record<string, unknown> = {};
  for (const spec of ENV_SPECS) {
    const raw = env[spec.key];
    // An empty variable means "not set", as in most shells' `VAR= cmd`.
    if (raw !== undefined && raw !== '') values[spec.key] = raw;
  }
  if (!validate(values)) {
    const problems = (validate.errors ?? []).map((error) => {
      const key = error.instancePath.replace(/^\//, '');
      const spec = ENV_SPECS.find((candidate) => candidate.key === key);
      return `  ${key}=${JSON.stringify(env[key])}: ${error.message ?? 'invalid'}; set it to ${spec?.hint ?? 'a valid value'}`;
    });
    throw new ConfigError(`Invalid configuration:\n${problems.join('\n')}`);
  }
  const balanceTypes = [...new Set(String(values.KOBAN_BALANCE_TYPES).split(','))];
  return Object.freeze({
    host: values.HOST as string,
    port: values.PORT as number,
    logLevel: values.LOG_LEVEL as Config['logLevel'],
    ledgerDatabaseUrl: (values.LEDGER_DATABASE_URL ?? values.DATABASE_URL) as string | undefined,
    dataDir: path.resolve(values.KOBAN_DATA_DIR as string),
    embeddedPostgresPort: values.KOBAN_EMBEDDED_PG_PORT as number,
    balanceTypes: Object.freeze(balanceTypes),
    dbPoolSize: values.KOBAN_DB_POOL_SIZE as number,
    writeTimeoutMs: values.KOBAN_WRITE_TIMEOUT_MS as number,
    sweepIntervalMs: values.KOBAN_SWEEP_INTERVAL_MS as number,
    writeBatchesInFlightMax: values.KOBAN_WRITE_BATCHES_IN_FLIGHT as number,
    bus: values.KOBAN_BUS as Config['bus'],
    natsUrl: values.NATS_URL as string,
    busDatabaseUrl: (values.BUS_DATABASE_URL ?? values.DATABASE_URL) as string | undefined,
  });
}
