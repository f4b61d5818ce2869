// Goal: `npm start`'s entry point (`koban start`) boots on embedded PostgreSQL, serves real add/consume, shuts down cleanly on SIGTERM, and keeps its data (and replays) across a restart.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LedgerClient } from '../services/ledger/clients/http-client.ts';
import { freePort } from '../platform/net.ts';

const KOBAN = path.join(import.meta.dirname, '..', 'cli', 'koban.ts');
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

let dataDir: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'koban-e2e-'));
  await chmod(dataDir, 0o755);
  const { DATABASE_URL: _ignored, LEDGER_DATABASE_URL: _ignoredToo, ...rest } = process.env;
  env = { ...rest, KOBAN_DATA_DIR: path.join(dataDir, 'data'), KOBAN_EMBEDDED_PG_PORT: String(await freePort()), PORT: String(await freePort()), LOG_LEVEL: 'info' };
});
after(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

type Running = { child: ChildProcess; baseUrl: string; output: () => string };

async function startKoban(): Promise<Running> {
  const child = spawn(process.execPath, [KOBAN, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!output.includes('Koban is listening')) {
    if (child.exitCode !== null) throw new Error(`Koban exited with ${child.exitCode}:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`Koban did not start within ${START_TIMEOUT_MS} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, baseUrl: `http://127.0.0.1:${env.PORT}`, output: () => output };
}

async function stopKoban(running: Running): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => running.child.once('exit', (code) => resolve(code)));
  running.child.kill('SIGTERM');
  const timer = setTimeout(() => running.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

describe('npm start', () => {
  test('serves add and consume, stops cleanly, and replays after a restart', async () => {
    const first = await startKoban();
    const client = new LedgerClient({ baseUrl: first.baseUrl });
    let stored: string;
    try {
      const health = await fetch(`${first.baseUrl}/readyz`);
      assert.equal(health.status, 200);
      const openapi = (await (await fetch(`${first.baseUrl}/openapi.json`)).json()) as { paths: Record<string, unknown> };
      assert.ok(openapi.paths['/v1/transactions'], 'OpenAPI documents the transactions route');
      assert.equal((await fetch(`${first.baseUrl}/docs`)).status, 200);

      const added = await client.submit({ transaction_id: 'e2e-add', type: 'add', user_id: 'u-e2e', balance_type: 'points', amount: 800 });
      assert.equal(added.replayed, false);
      const consumed = await client.submit({ transaction_id: 'e2e-use', type: 'consume', user_id: 'u-e2e', balance_type: 'points', amount: 300 });
      assert.equal(consumed.transaction.balance_after, 500);
      const response = await fetch(`${first.baseUrl}/v1/transactions/e2e-use`);
      stored = await response.text();
    } finally {
      const code = await stopKoban(first);
      assert.equal(code, 0, `clean exit after SIGTERM:\n${first.output().slice(-2000)}`);
    }
    // Order matters: requests drain and pools close while PostgreSQL still runs, then it stops.
    // (Compared by the log's timestamps: two lines written in one tick may reach the pipe in either order.)
    const log = first.output();
    const loggedAt = (message: string) => {
      const line = log.split('\n').find((candidate) => candidate.includes(`"msg":"${message}"`));
      assert.ok(line, `logged "${message}":\n${log.slice(-3000)}`);
      return (JSON.parse(line) as { time: number }).time;
    };
    assert.ok(loggedAt('embedded PostgreSQL stopped') >= loggedAt('shutting down: draining requests'), 'PostgreSQL stops after the drain begins');
    assert.ok(loggedAt('shutdown complete') >= loggedAt('embedded PostgreSQL stopped'), 'and before shutdown completes');
    assert.doesNotMatch(log, /terminating connection due to administrator command/, 'no connection was cut off by PostgreSQL stopping early');

    const second = await startKoban();
    try {
      const client2 = new LedgerClient({ baseUrl: second.baseUrl });
      const replay = await client2.submit({ transaction_id: 'e2e-use', type: 'consume', user_id: 'u-e2e', balance_type: 'points', amount: 300 });
      assert.equal(replay.replayed, true, 'the restart kept the transaction, so the repeat is a replay');
      assert.equal(replay.transaction.balance_after, 500);
      assert.equal(await (await fetch(`${second.baseUrl}/v1/transactions/e2e-use`)).text(), stored, 'the stored transaction reads back byte for byte');
      assert.equal((await client2.getBalance('u-e2e', 'points')).available, 500);
    } finally {
      assert.equal(await stopKoban(second), 0);
    }
  });

  test('a bad configuration value stops start-up with a message naming it', async () => {
    const child = spawn(process.execPath, [KOBAN, 'start'], { env: { ...env, PORT: 'eighty' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 78);
    assert.match(stderr, /PORT="eighty": must be integer/);
  });
});
