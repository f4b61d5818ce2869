// One pino logger per process; every line carries the name of the service that
// wrote it (`service`). A process running several services logs its own lines
// (start-up, shutdown) under their names joined, e.g. "ledger+bus".
import pino, { type Logger } from 'pino';

/** The process's root logger: no service field; give each service `serviceLogger(root, name)`. Commands whose output is stdout log to stderr. */
export function createRootLogger(level: string, to: 'stdout' | 'stderr' = 'stdout'): Logger {
  return to === 'stdout' ? pino({ level }) : pino({ level }, pino.destination(2));
}

export function serviceLogger(root: Logger, service: string): Logger {
  return root.child({ service });
}

/** A logger for one named service (or tool) alone. */
export function createLogger(level: string, service = 'koban'): Logger {
  return serviceLogger(createRootLogger(level), service);
}
