// Goal: loading embedded PostgreSQL never turns a failing process into a success (its exit hook calls process.exit(0)), so a failing `npm test` fails CI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { testServerUrl } from '../../../test/support/database.ts';

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
