// Goal: `npm run simulate` as a user runs it — it starts its own Koban (embedded PostgreSQL), sends mixed traffic, checks the end state and exits 0 saying OK; bad usage exits 64 naming the option.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const SIMULATE = path.join(import.meta.dirname, '..', 'cli', 'simulate.ts');
const RUN_TIMEOUT_MS = 240_000;

function run(args: string[]): Promise<{ code: number | null; output: string }> {
  // Its own embedded PostgreSQL: nothing inherited may point it at another database.
  const { DATABASE_URL: _shared, ...env } = process.env;
  const child = spawn(process.execPath, [SIMULATE, ...args], { env: { ...env, LOG_LEVEL: 'error' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  return new Promise((resolve) => child.once('close', (code) => (clearTimeout(timer), resolve({ code, output }))));
}

test('simulate --payments 60 --seed 5: traffic sent, end state checked, exit 0', { timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
  const { code, output } = await run(['--payments', '60', '--seed', '5', '--users', '8']);
  assert.equal(code, 0, output);
  assert.match(output, /seed 5, 60 payments over 8 users/);
  assert.match(output, /simulate: OK — every answer, balance, grant and notice matches the model \(seed 5\)/);
});

test('bad usage: exit 64 naming the option', async () => {
  const { code, output } = await run(['--payments', '0']);
  assert.equal(code, 64, output);
  assert.match(output, /--payments must be an integer 1–1000000/);
});
