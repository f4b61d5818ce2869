// Runs once before every test file: provides the PostgreSQL server the tests
// use. DATABASE_URL points them at a real server; otherwise an embedded one is
// started in a temporary directory and stopped at the end.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/platform/postgres/embedded.ts';
import { createLogger } from '../src/platform/logger.ts';
import { freePort } from '../src/platform/net.ts';

let embedded: EmbeddedServer | undefined;
let dataDir: string | undefined;

export async function globalSetup(): Promise<void> {
  if (process.env.DATABASE_URL) {
    process.env.KOBAN_TEST_SERVER_URL = process.env.DATABASE_URL;
    console.log(`tests use the PostgreSQL server at DATABASE_URL`);
    return;
  }
  // /tmp is reachable by every user, as embedded PostgreSQL needs when run as root.
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'koban-test-'));
  await chmod(dataDir, 0o755);
  embedded = await startEmbeddedPostgres({ dataDir, port: await freePort(), logger: createLogger('warn') });
  process.env.KOBAN_TEST_SERVER_URL = embedded.serverUrl;
  console.log(`tests use embedded PostgreSQL in ${dataDir}`);
}

export async function globalTeardown(): Promise<void> {
  await embedded?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}

