// A Koban instance on a fresh test database, driven in-process with inject()
// or over a real socket with listen(). The ledger has the database to itself
// (its tables in public, where tests read them); the bus shares it in schema
// koban_bus, as with DATABASE_URL alone.
import { createKoban, type Koban, readConfiguration } from '../../src/cli/app.ts';
import type { Clock } from '../../src/platform/clock.ts';
import { createRootLogger } from '../../src/platform/logger.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

export type TestKoban = Koban & { database: TestDatabase; stop(): Promise<void> };

export async function startTestKoban(options: { label: string; clock?: Clock; database?: TestDatabase; env?: Record<string, string> }): Promise<TestKoban> {
  const database = options.database ?? (await createTestDatabase(options.label));
  const configuration = readConfiguration({
    LEDGER_DATABASE_URL: database.url,
    DATABASE_URL: database.url,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PORT: '0',
    ...options.env,
  });
  const koban = await createKoban(configuration, { root: createRootLogger(configuration.platform.logLevel), ...(options.clock ? { clock: options.clock } : {}) });
  return {
    ...koban,
    database,
    async stop() {
      await koban.close();
    },
  };
}

/** A clock that stands still until a test moves it. */
export class ManualClock implements Clock {
  #nowMs: number;
  constructor(start: string | Date) {
    this.#nowMs = new Date(start).getTime();
  }
  now(): Date {
    return new Date(this.#nowMs);
  }
  set(instant: string | Date): void {
    this.#nowMs = new Date(instant).getTime();
  }
  advance(ms: number): void {
    this.#nowMs += ms;
  }
}
