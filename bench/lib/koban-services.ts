// Goal: what a benchmark needs to know of Koban's services to run them as child processes: which
// services `koban start` runs (each given a database of its own on the benchmark's server), and a
// child environment cleared of every Koban database, port and peer setting so that only what the
// benchmark sets applies.
import { SERVICES } from '../../src/cli/services.ts';
import { envPrefix } from '../../src/platform/config.ts';

/**
 * Every service `koban start` runs, from the composition root: once one
 * service has a database URL of its own, every one must (embedded PostgreSQL
 * is for none or all), so a list kept here would break with each new service.
 */
export const EMBEDDED_SERVICES: readonly string[] = SERVICES.map((module) => module.name);

/** The variable that gives `service` a database of its own, e.g. LEDGER_DATABASE_URL. */
export function databaseUrlVariable(service: string): string {
  return `${envPrefix(service)}DATABASE_URL`;
}

/** The environment of a Koban child: this one without any database, port or peer setting of Koban's. */
export function kobanChildEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  const prefixes = SERVICES.map((module) => envPrefix(module.name));
  for (const key of Object.keys(env)) {
    if (key === 'DATABASE_URL' || key === 'PORT' || prefixes.some((prefix) => key.startsWith(prefix))) delete env[key];
  }
  return { ...env, HOST: '127.0.0.1', LOG_LEVEL: 'warn' };
}
