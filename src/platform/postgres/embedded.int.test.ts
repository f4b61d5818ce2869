// Goal: loading embedded PostgreSQL never turns a failing process into a success (its exit hook calls process.exit(0)), so a failing `npm test` fails CI; a start this process gave up on (its postmaster still starting) does not lock the directory against the next.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import pg from 'pg';
import pino from 'pino';
import { testServerUrl } from '../../../test/support/database.ts';
import { freePort } from '../net.ts';
import { type EmbeddedServer, startEmbeddedPostgres } from './embedded.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '../../..');
const CHILD_TIMEOUT_MS = 60_000;

function runNode(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; output: string } {
  // Without the runner's marker, a nested `node --test` runs its files instead of refusing to recurse.
  const { NODE_TEST_CONTEXT: _marker, ...inherited } = process.env;
  const child = spawnSync(process.execPath, args, { cwd: REPO_ROOT, env: { ...inherited, ...env }, encoding: 'utf8', timeout: CHILD_TIMEOUT_MS });
  return { status: child.status, output: `${child.stdout}${child.stderr}` };
}

describe('exit code with embedded PostgreSQL loaded', () => {
  test('a process that sets a failing exit code and ends on its own exits with that code', () => {
    const script = `await import(${JSON.stringify(path.join(REPO_ROOT, 'src/platform/postgres/embedded.ts'))}); process.exitCode = 3;`;
    const { status, output } = runNode(['--input-type=module', '-e', script]);
    assert.equal(status, 3, output);
  });

  test('the test runner with the project setup exits 1 when a test fails', () => {
    // The test server already running: the nested run starts no cluster of its own.
    const { status, output } = runNode(['--test', '--test-global-setup=test/global-setup.ts', 'test/fixtures/always-fails.fixture.ts'], { DATABASE_URL: testServerUrl() });
    assert.match(output, /fails on purpose/);
    assert.equal(status, 1, output);
  });
});

describe('a start of this process given up on', () => {
  test("its postmaster still running on the directory is this process's own: the next start stops it and serves the same data", { timeout: 120_000 }, async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'koban-embedded-own-'));
    await chmod(dataDir, 0o755);
    const logger = pino({ level: 'silent' });
    const port = await freePort();
    const first = await startEmbeddedPostgres({ dataDir, port, logger });
    let second: EmbeddedServer | undefined;
    try {
      const client = new pg.Client({ connectionString: first.serverUrl });
      await client.connect();
      await client.query('CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)');
      await client.end();
      // As when a start timed out while PostgreSQL went on starting: the server is ours, and still up.
      second = await startEmbeddedPostgres({ dataDir, port, logger });
      assert.notEqual(second.pid, first.pid);
      assert.throws(() => process.kill(first.pid, 0), 'the postmaster of the start given up on was stopped');
      const again = new pg.Client({ connectionString: second.serverUrl });
      await again.connect();
      assert.deepEqual((await again.query('SELECT n FROM kept')).rows, [{ n: 7 }]);
      await again.end();
    } finally {
      await second?.stop();
      await first.stop().catch(() => {});
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
