// Goal: the real `koban start` recovers by itself after being SIGKILLed, says in one line (no stack) why it cannot start, notices that its embedded PostgreSQL died, and names the shutdown step that failed.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';
import { freePort } from '../platform/net.ts';

const KOBAN = path.join(import.meta.dirname, '..', 'cli', 'koban.ts');
const START_TIMEOUT_MS = 60_000;
const EXIT_TIMEOUT_MS = 30_000;
const POLL_MS = 50;
/** A stack frame as V8 prints it, raw or inside a JSON log line. */
const STACK_FRAME = /(\n|\\n)\s+at /;

let dir: string;
let database: TestDatabase;
let baseEnv: NodeJS.ProcessEnv;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'koban-e2e-process-'));
  await chmod(dir, 0o755);
  database = await createTestDatabase('e2e_process');
  const { DATABASE_URL: _a, LEDGER_DATABASE_URL: _b, BUS_DATABASE_URL: _c, KOBAN_TEST_SERVER_URL: _d, KOBAN_BUS: _e, ...inherited } = process.env;
  baseEnv = { ...inherited, LOG_LEVEL: 'info' };
});
after(async () => {
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

type Koban = { child: ChildProcess; output: () => string; exited: Promise<number | null>; baseUrl: string };

async function embeddedEnv(name: string): Promise<NodeJS.ProcessEnv> {
  return { ...baseEnv, KOBAN_DATA_DIR: path.join(dir, name), KOBAN_EMBEDDED_PG_PORT: String(await freePort()), PORT: String(await freePort()) };
}

function spawnKoban(env: NodeJS.ProcessEnv): Koban {
  const child = spawn(process.execPath, [KOBAN, 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited, baseUrl: `http://127.0.0.1:${env.PORT}` };
}

async function startKoban(env: NodeJS.ProcessEnv): Promise<Koban> {
  const koban = spawnKoban(env);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!koban.output().includes('Koban is listening')) {
    if (koban.child.exitCode !== null) throw new Error(`Koban exited with ${koban.child.exitCode}:\n${koban.output()}`);
    if (Date.now() > deadline) {
      koban.child.kill('SIGKILL');
      throw new Error(`Koban did not start within ${START_TIMEOUT_MS} ms:\n${koban.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return koban;
}

async function exitCode(koban: Koban): Promise<number | null> {
  const timer = setTimeout(() => koban.child.kill('SIGKILL'), EXIT_TIMEOUT_MS);
  try {
    return await koban.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `koban start` that is expected to fail; returns its exit code and its output. */
async function failedStart(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  const koban = spawnKoban(env);
  return { code: await exitCode(koban), output: koban.output() };
}

/** The one fatal line of a failed start (pino level 60), and no stack anywhere. */
function assertOneLine(output: string, expected: RegExp): void {
  const fatal = output.split('\n').filter((line) => line.includes('"level":60'));
  assert.equal(fatal.length, 1, `one fatal line:\n${output}`);
  const { msg } = JSON.parse(fatal[0]!) as { msg: string };
  assert.match(msg, expected);
  assert.doesNotMatch(output, STACK_FRAME, `no stack trace:\n${output}`);
  assert.doesNotMatch(output, /"stack"/, `no stack trace:\n${output}`);
}

/**
 * Whether the process still runs. A stopped orphan whose new parent (PID 1 of
 * a container) does not reap it lingers as a zombie: it has exited, so it
 * counts as stopped (Linux: state Z in /proc/<pid>/stat).
 */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

async function postmasterPid(dataDir: string): Promise<number> {
  return Number.parseInt((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]!, 10);
}

async function addPoints(baseUrl: string, id: string): Promise<number> {
  const response = await fetch(`${baseUrl}/v1/transactions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ transaction_id: id, type: 'add', user_id: 'u-crash', balance_type: 'points', amount: 10 }),
  });
  await response.body?.cancel();
  return response.status;
}

describe('koban start after a crash', () => {
  test('SIGKILLed, it leaves its PostgreSQL behind; the next start stops that orphan and serves the same data', async () => {
    const env = await embeddedEnv('crash');
    const first = await startKoban(env);
    assert.equal(await addPoints(first.baseUrl, 'before-crash'), 201);
    const orphan = await postmasterPid(env.KOBAN_DATA_DIR!);
    first.child.kill('SIGKILL');
    await first.exited;
    assert.ok(alive(orphan), 'the embedded PostgreSQL outlived the killed Koban (else this test proves nothing)');

    const second = await startKoban(env);
    try {
      assert.match(second.output(), new RegExp(`embedded PostgreSQL \\(pid ${orphan}\\) outlived the Koban that started it`));
      assert.equal((await fetch(`${second.baseUrl}/readyz`)).status, 200);
      assert.equal(await addPoints(second.baseUrl, 'before-crash'), 200, 'the transaction written before the crash is there: its repeat replays');
    } finally {
      second.child.kill('SIGTERM');
      assert.equal(await exitCode(second), 0, second.output());
    }
    assert.equal(alive(orphan), false, 'the orphan was stopped');
  });
});

describe('koban start that cannot start: one line saying what to fix, exit 1, no stack', () => {
  test('its data directory used by a running Koban; its HTTP port taken', async () => {
    const env = await embeddedEnv('busy');
    const running = await startKoban(env);
    try {
      const sameData = await failedStart({ ...env, PORT: String(await freePort()), KOBAN_EMBEDDED_PG_PORT: String(await freePort()) });
      assert.equal(sameData.code, 1, sameData.output);
      assertOneLine(sameData.output, new RegExp(`data directory .* is in use by another running Koban \\(pid ${running.child.pid}\\b.*set KOBAN_DATA_DIR`));
      assert.doesNotMatch(sameData.output, /KOBAN_EMBEDDED_PG_PORT/, 'the port is not blamed');

      const portTaken = await failedStart({ ...(await embeddedEnv('other')), PORT: env.PORT });
      assert.equal(portTaken.code, 1, portTaken.output);
      assertOneLine(portTaken.output, new RegExp(`Port ${env.PORT} on 127\\.0\\.0\\.1 is already in use by another process: stop it, or set PORT to a free port`));
      assert.equal((await fetch(`${running.baseUrl}/readyz`)).status, 200, 'the running Koban is untouched');
    } finally {
      running.child.kill('SIGTERM');
      assert.equal(await exitCode(running), 0, running.output());
    }
  });

  test('an unreachable DATABASE_URL (and its stack only at LOG_LEVEL=debug)', async () => {
    const url = `postgres://postgres:secret@127.0.0.1:${await freePort()}/nowhere`;
    const env = { ...baseEnv, DATABASE_URL: url, PORT: String(await freePort()) };
    const result = await failedStart(env);
    assert.equal(result.code, 1, result.output);
    assertOneLine(result.output, /Cannot reach the ledger database at DATABASE_URL \(postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/nowhere\): .*ECONNREFUSED.*fix DATABASE_URL/);
    assert.doesNotMatch(result.output, /secret/, 'the password is not shown');

    const debug = await failedStart({ ...env, LOG_LEVEL: 'debug' });
    assert.equal(debug.code, 1);
    assert.match(debug.output, /"stack"/, 'LOG_LEVEL=debug logs the stack');
  });

  test('KOBAN_BUS=nats with no broker at NATS_URL', async () => {
    const result = await failedStart({ ...baseEnv, DATABASE_URL: database.url, KOBAN_BUS: 'nats', NATS_URL: `nats://127.0.0.1:${await freePort()}`, PORT: String(await freePort()) });
    assert.equal(result.code, 1, result.output);
    assertOneLine(result.output, /NATS_URL=nats:\/\/127\.0\.0\.1:\d+.*(start nats-server|fix NATS_URL|KOBAN_BUS=postgres)/);
  });
});

describe('koban start when its embedded PostgreSQL dies', () => {
  test('it notices by itself, says so, stops, and exits 1; the next start recovers', async () => {
    const env = await embeddedEnv('dies');
    const koban = await startKoban(env);
    assert.equal((await fetch(`${koban.baseUrl}/readyz`)).status, 200);
    const postgres = await postmasterPid(env.KOBAN_DATA_DIR!);
    process.kill(postgres, 'SIGKILL');
    assert.equal(await exitCode(koban), 1, koban.output());
    assert.match(koban.output(), new RegExp(`embedded PostgreSQL stopped unexpectedly \\(pid ${postgres} killed by SIGKILL\\): Koban cannot serve without it and stops`));
    assert.doesNotMatch(koban.output(), /"msg":"shutdown complete"/);

    const again = await startKoban(env);
    again.child.kill('SIGINT');
    assert.equal(await exitCode(again), 0, again.output());
    assert.match(again.output(), /"msg":"shutdown complete"/);
  });

  test('a SIGINT right after it died exits 1 naming the step that failed, not "shutdown complete"', async () => {
    const env = await embeddedEnv('dies-then-sigint');
    const koban = await startKoban(env);
    const postgres = await postmasterPid(env.KOBAN_DATA_DIR!);
    process.kill(postgres, 'SIGKILL');
    koban.child.kill('SIGINT');
    assert.equal(await exitCode(koban), 1, koban.output());
    // Whichever Koban saw first, the death or the signal, the failed step names it.
    assert.match(
      koban.output(),
      new RegExp(`"msg":"shutdown failed: stop embedded PostgreSQL failed: embedded PostgreSQL had already stopped unexpectedly \\(pid ${postgres} killed by SIGKILL\\)"`),
    );
    assert.doesNotMatch(koban.output(), /"msg":"shutdown complete"/);
  });
});
