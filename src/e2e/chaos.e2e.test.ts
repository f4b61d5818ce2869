// Goal: `npm run chaos` as CI runs it — the short profile on the postgres bus, on NATS (its own nats-server) and on SNS+SQS (its own emulator process, restarted with its state kept) injects the faults the run can make happen (kills, PostgreSQL and broker restarts, client timeouts, clock skew) under seeded traffic, drains, checks and exits 0; the checks can fail: an end state tampered with after the drain (a grant deleted, a notice deleted) is reported as violations; bad usage exits 64.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import pg from 'pg';
import { runChaos } from '../cli/chaos/run.ts';
import { natsServerBinary } from '../cli/chaos/topology.ts';

const CHAOS = path.join(import.meta.dirname, '..', 'cli', 'chaos.ts');
const RUN_TIMEOUT_MS = 240_000;

function run(args: string[]): Promise<{ code: number | null; output: string }> {
  // Its own PostgreSQL and broker: nothing inherited may point it elsewhere.
  const { DATABASE_URL: _shared, NATS_URL: _nats, ...env } = process.env;
  const child = spawn(process.execPath, [CHAOS, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  return new Promise((resolve) => child.once('close', (code) => (clearTimeout(timer), resolve({ code, output }))));
}

const injected = (output: string, kind: string) => Number(new RegExp(`^  ${kind} +(\\d+) of`, 'm').exec(output)?.[1] ?? -1);

describe('npm run chaos, short profile', { concurrency: false }, () => {
  for (const bus of ['postgres', 'nats', 'sns-sqs'] as const) {
    const skip = bus === 'nats' && natsServerBinary() === undefined ? 'nats-server is not installed (on PATH or /usr/sbin): the chaos run on NATS starts its own' : false;
    test(`on the ${bus} bus: every fault the run makes itself happened, 0 violations, exit 0`, { skip, timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
      const { code, output } = await run(['--profile', 'short', '--bus', bus, '--seed', '20261201', '--duration', '40', '--payments', '300']);
      assert.equal(code, 0, output);
      assert.match(output, /chaos: OK — 0 violations \(seed 20261201\)/);
      for (const kind of ['service_kill', 'postgres_restart', 'client_timeout', 'clock_skew', ...(bus === 'postgres' ? [] : ['broker_restart'])]) assert.ok(injected(output, kind) >= 1, `${kind} injected:\n${output}`);
      assert.match(output, /retries and resends: [1-9]\d* resends/);
    });
  }
});

test('the checks can fail: a grant and a notice deleted after the drain are reported', { timeout: RUN_TIMEOUT_MS }, async () => {
  const report = await runChaos({ seed: 5, durationMs: 10_000, payments: 40, users: 10, bus: 'postgres', profile: 'short', concurrency: 10 }, () => {}, {
    async beforeCheck({ databaseUrls }) {
      const edit = async (url: string, sql: string) => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          assert.equal((await client.query(sql)).rowCount, 1, sql);
        } finally {
          await client.end();
        }
      };
      await edit(databaseUrls.points!, "DELETE FROM point_grants WHERE grant_id = (SELECT grant_id FROM point_grants WHERE source = 'payment' ORDER BY seq LIMIT 1)");
      await edit(databaseUrls.notifications!, "WITH gone AS (DELETE FROM deliveries WHERE notice_seq = (SELECT max(seq) FROM notices WHERE topic = 'payments')) DELETE FROM notices WHERE seq = (SELECT max(seq) FROM notices WHERE topic = 'payments')");
    },
  });
  const whats = report.violations.map((violation) => violation.what);
  assert.ok(whats.some((what) => /^grant payment:/.test(what)), `a missing grant reported: ${JSON.stringify(report.violations, null, 1)}`);
  assert.ok(whats.some((what) => /^notices of event /.test(what)), `a missing notice reported: ${JSON.stringify(report.violations, null, 1)}`);
});

test('bad usage: exit 64 naming the option', async () => {
  const { code, output } = await run(['--bus', 'kafka']);
  assert.equal(code, 64, output);
  assert.match(output, /--bus/);
});
