// Composition root: reads the configuration of every service once, and starts
// services in this process. `koban start` and the tests run every service on one
// port; `koban serve` runs the named ones, each on its own port.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { EventBus } from '../contracts/bus/event-bus.ts';
import { busModule } from '../services/bus/module.ts';
import type { LedgerService } from '../services/ledger/service.ts';
import { ledgerModule } from '../services/ledger/module.ts';
import type { Clock } from '../platform/clock.ts';
import { KOBAN_PREFIX, PLATFORM_SETTINGS, type PlatformConfig, platformConfig, readSettings, type Setting, type Settings, envPrefix, serviceSettings, unknownVariables } from '../platform/config.ts';
import type { ServiceModule } from '../platform/service-module.ts';
import { type ServiceHost, startServices } from '../platform/service-host.ts';
import { KOBAN_OPENAPI, SERVICES } from './services.ts';

export type Configuration = Readonly<{
  settings: Settings;
  platform: PlatformConfig;
  /** Variables that look like Koban's but no setting reads, with the closest known name: logged at warn at start-up. */
  unknown: ReadonlyArray<{ key: string; suggestion: string | undefined }>;
}>;

/** Every setting of the platform and of every service (not only those this process runs: one environment serves them all). */
export function allSettings(modules: readonly ServiceModule[] = SERVICES): Setting[] {
  return [...PLATFORM_SETTINGS, ...modules.flatMap((module) => [...serviceSettings(module.name, module.defaultPort), ...module.settings])];
}

/** Reads and validates the whole configuration once; throws ConfigError naming each bad variable. */
export function readConfiguration(env: NodeJS.ProcessEnv): Configuration {
  const settings = allSettings();
  const values = readSettings(settings, env);
  const prefixes = [KOBAN_PREFIX, ...SERVICES.map((module) => envPrefix(module.name))];
  return { settings: values, platform: platformConfig(values), unknown: unknownVariables(settings, env, prefixes) };
}

export function warnUnknownVariables(configuration: Configuration, logger: Logger): void {
  for (const { key, suggestion } of configuration.unknown) {
    logger.warn({ variable: key, didYouMean: suggestion }, `${key} is not a Koban setting and is ignored${suggestion ? `: did you mean ${suggestion}?` : ''}`);
  }
}

export type Koban = {
  app: FastifyInstance;
  ledger: LedgerService;
  bus: EventBus;
  host: ServiceHost;
  /** Drains requests and writes, closes pools, stops embedded PostgreSQL. Safe to call twice. */
  close(): Promise<void>;
};

/** Every service in this process on one port, as `koban start` runs them (and the tests, in-process). */
export async function createKoban(configuration: Configuration, deps: { root: Logger; clock?: Clock }): Promise<Koban> {
  const host = await startServices({
    modules: SERVICES,
    settings: configuration.settings,
    platform: configuration.platform,
    root: deps.root,
    ...(deps.clock ? { clock: deps.clock } : {}),
    http: 'one-port',
    embeddedAllowed: true,
    openApi: KOBAN_OPENAPI,
  });
  return { app: host.apps[0]!.app, ledger: host.api(ledgerModule), bus: host.api(busModule), host, close: host.close };
}
