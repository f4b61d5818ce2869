// Goal: the koban command answers --help on every command, migrates one service or all into their own databases or schemas, and exits 64 on bad usage and 78 on bad configuration.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';

const KOBAN = path.join(import.meta.dirname, '..', 'cli', 'koban.ts');
const COMMANDS = ['start', 'serve', 'migrate', 'audit'];

let database: TestDatabase;
let env: NodeJS.ProcessEnv;

before(async () => {
  database = await createTestDatabase('e2e_cli');
  const { DATABASE_URL: _server, LEDGER_DATABASE_URL: _ledger, BUS_DATABASE_URL: _bus, KOBAN_TEST_SERVER_URL: _test, ...inherited } = process.env;
  env = { ...inherited, LOG_LEVEL: 'info' };
});
after(async () => {
  await database?.drop();
});

function koban(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [KOBAN, ...args], { env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function tables(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ name: string }>(
      `SELECT table_schema || '.' || table_name AS name FROM information_schema.tables WHERE table_name IN ('transactions', 'topics', 'payments', 'events', 'schema_migrations') ORDER BY 1`,
    );
    return result.rows.map((row) => row.name);
  } finally {
    await client.end();
  }
}

describe('koban', () => {
  test('--help on the program and on every command, exit 0', async () => {
    const top = await koban(['--help']);
    assert.equal(top.code, 0);
    for (const command of COMMANDS) assert.match(top.stdout, new RegExp(`^  ${command}\\b`, 'm'), `lists ${command}`);
    for (const command of COMMANDS) {
      const help = await koban([command, '--help']);
      assert.equal(help.code, 0, command);
      assert.match(help.stdout, new RegExp(`^Usage: koban ${command}`, 'm'));
    }
  });

  test('bad usage exits 64: no command, an unknown one, an unknown service', async () => {
    for (const args of [[], ['launch'], ['serve', 'payments']]) {
      const result = await koban(args);
      assert.equal(result.code, 64, `${args.join(' ')}: ${result.stderr}`);
    }
  });

  test('bad configuration exits 78 naming the variable: a renamed setting, serve without a database, a retention of 0 days, a malformed failpoint', async () => {
    const renamed = await koban(['start'], { KOBAN_WRITE_LANES: '2' });
    assert.equal(renamed.code, 78);
    assert.match(renamed.stderr, /KOBAN_WRITE_LANES was renamed KOBAN_WRITE_BATCHES_IN_FLIGHT/);
    const nowhere = await koban(['serve', 'bus']);
    assert.equal(nowhere.code, 78);
    assert.match(nowhere.stderr, /bus has no database: set BUS_DATABASE_URL/);
    const noRetention = await koban(['start'], { KOBAN_RETENTION_DAYS: '0' });
    assert.equal(noRetention.code, 78);
    assert.match(noRetention.stderr, /KOBAN_RETENTION_DAYS="0": must be > 0; set it to days/);
    const failpoint = await koban(['serve', 'bus'], { BUS_DATABASE_URL: 'postgres://127.0.0.1:1/none', KOBAN_FAILPOINTS: 'outbox.after_publsh=crash' });
    assert.equal(failpoint.code, 78);
    assert.match(failpoint.stderr, /KOBAN_FAILPOINTS="outbox.after_publsh=crash": entry 1 "outbox.after_publsh=crash": unknown failpoint "outbox.after_publsh"/);
  });

  test('migrate ledger puts its tables in its own database; migrate (all) with DATABASE_URL too gives the other services a schema each beside it', async () => {
    const ledgerOnly = await koban(['migrate', 'ledger'], { LEDGER_DATABASE_URL: database.url });
    assert.equal(ledgerOnly.code, 0, ledgerOnly.stderr);
    assert.deepEqual(await tables(database.url), ['public.schema_migrations', 'public.transactions']);

    const all = await koban(['migrate'], { DATABASE_URL: database.url, LEDGER_DATABASE_URL: database.url, KOBAN_TYPO_SETTING: '1' });
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(await tables(database.url), [
      'koban_accounts.schema_migrations',
      'koban_accounts_outbox.events',
      'koban_accounts_outbox.schema_migrations',
      'koban_bus.schema_migrations',
      'koban_bus.topics',
      'koban_notifications.schema_migrations',
      'koban_points.schema_migrations',
      'koban_quicpay.payments',
      'koban_quicpay.schema_migrations',
      'koban_quicpay_outbox.events',
      'koban_quicpay_outbox.schema_migrations',
      'koban_visa.payments',
      'koban_visa.schema_migrations',
      'koban_visa_outbox.events',
      'koban_visa_outbox.schema_migrations',
      'public.schema_migrations',
      'public.transactions',
    ]);
    assert.match(all.stderr, /KOBAN_TYPO_SETTING is not a Koban setting and is ignored/, 'unknown variables are reported, on stderr');
    assert.equal(all.stdout, '', 'commands keep stdout for their output');
    // The ledger's migrations ran in the first command, the bus's in the second: each logged under its own name, once per line.
    const lines = `${ledgerOnly.stderr}\n${all.stderr}`.split('\n').filter((line) => line.includes('"msg":"applying migration"'));
    assert.ok(lines.some((line) => line.includes('"service":"ledger"')) && lines.some((line) => line.includes('"service":"bus"')), 'each service logs its migrations');
    for (const line of lines) assert.equal(line.split('"service":').length, 2, `one service name per line: ${line}`);
  });
});
