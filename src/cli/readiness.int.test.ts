// Goal: /readyz answers 503 `unavailable` naming the dependency that stopped answering (a service's database, the NATS broker, SNS/SQS) while /livez stays 200, and 200 again once it is back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import net from 'node:net';
import { startTestKoban, type TestKoban } from '../../test/support/koban.ts';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.ts';
import { TcpProxy } from '../services/bus/testing/tcp-proxy.ts';
import { EMULATOR_CREDENTIALS, startEmbeddedEmulator } from '../services/bus/adapters/sns-sqs/embedded-emulator.ts';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const NATS_PROBE_TIMEOUT_MS = 1_000;

type Readiness = { status: number; retryAfter: string | undefined; body: { status?: string; checks?: Record<string, unknown>; error?: { code: string; message: string; details: { failed: string[] } } } };

async function readyz(koban: TestKoban): Promise<Readiness> {
  const response = await koban.app.inject({ method: 'GET', url: '/readyz' });
  return { status: response.statusCode, retryAfter: response.headers['retry-after'] as string | undefined, body: response.json() };
}

function natsAnswers(): Promise<boolean> {
  const url = new URL(NATS_URL);
  return new Promise((resolve) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port || 4222), timeout: NATS_PROBE_TIMEOUT_MS });
    const done = (answers: boolean) => {
      socket.destroy();
      resolve(answers);
    };
    socket.once('connect', () => done(true)).once('error', () => done(false)).once('timeout', () => done(false));
  });
}

let database: TestDatabase;
before(async () => {
  database = await createTestDatabase('readiness');
});
after(async () => {
  await database?.drop();
});

describe('/readyz', () => {
  test("names the ledger's database when it stops answering; /livez stays 200", async () => {
    const url = new URL(database.url);
    const proxy = new TcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    await proxy.up();
    url.port = String(proxy.port);
    const koban = await startTestKoban({ label: 'readiness', database, env: { LEDGER_DATABASE_URL: url.toString() } });
    try {
      const ready = await readyz(koban);
      assert.equal(ready.status, 200);
      assert.deepEqual(ready.body, {
        status: 'ready',
        checks: { 'ledger.database': { status: 'ok' }, 'bus.database': { status: 'ok' }, 'visa.database': { status: 'ok' }, 'quicpay.database': { status: 'ok' }, 'accounts.database': { status: 'ok' }, 'points.database': { status: 'ok' }, 'notifications.database': { status: 'ok' } },
      });

      await proxy.down();
      const down = await readyz(koban);
      assert.equal(down.status, 503);
      assert.equal(down.body.error?.code, 'unavailable');
      assert.deepEqual(down.body.error?.details.failed, ['ledger.database']);
      assert.match(down.body.error!.message, /^Not ready: ledger\.database \(/);
      assert.equal(down.retryAfter, '1');
      assert.equal((await koban.app.inject({ method: 'GET', url: '/livez' })).statusCode, 200, 'the process itself is alive');

      await proxy.up();
      assert.equal((await readyz(koban)).status, 200, 'ready again once the database answers');
    } finally {
      await proxy.up();
      await koban.stop();
      await proxy.down();
    }
  });

  test('names the broker when SNS and SQS stop answering', async (t) => {
    const emulator = await startEmbeddedEmulator().catch(() => undefined);
    if (emulator === undefined) {
      t.skip('the SNS+SQS emulator could not start');
      return;
    }
    const proxy = new TcpProxy({ host: emulator.host, port: emulator.port });
    await proxy.up();
    // The SDK reads credentials from its default chain: the environment, for the emulator's.
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = EMULATOR_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = EMULATOR_CREDENTIALS.secretAccessKey;
    let koban: TestKoban | undefined;
    try {
      koban = await startTestKoban({
        label: 'readiness-sns',
        database,
        env: { KOBAN_BUS: 'sns-sqs', KOBAN_SNS_SQS_ENDPOINT: `http://127.0.0.1:${proxy.port}`, KOBAN_SNS_SQS_NAMESPACE: `ready${process.pid}` },
      });
      const ready = await readyz(koban);
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      assert.deepEqual(ready.body.checks?.['bus.broker'], { status: 'ok' });

      await proxy.down();
      const down = await readyz(koban);
      assert.equal(down.status, 503);
      assert.deepEqual(down.body.error?.details.failed, ['bus.broker']);

      await proxy.up();
      assert.equal((await readyz(koban)).status, 200, 'ready again once SNS and SQS answer');
    } finally {
      await proxy.up();
      await koban?.stop();
      await proxy.down();
      await emulator.stop();
      for (const [key, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });

  test('names the broker when NATS stops answering', async (t) => {
    if (!(await natsAnswers())) {
      t.skip(`no NATS server at ${NATS_URL}`);
      return;
    }
    const nats = new URL(NATS_URL);
    const proxy = new TcpProxy({ host: nats.hostname, port: Number(nats.port || 4222) });
    await proxy.up();
    const koban = await startTestKoban({ label: 'readiness-nats', database, env: { KOBAN_BUS: 'nats', NATS_URL: `nats://127.0.0.1:${proxy.port}` } });
    try {
      const ready = await readyz(koban);
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      assert.deepEqual(ready.body.checks?.['bus.broker'], { status: 'ok' });

      await proxy.down();
      const down = await readyz(koban);
      assert.equal(down.status, 503);
      assert.deepEqual(down.body.error?.details.failed, ['bus.broker']);
    } finally {
      await proxy.up();
      await koban.stop();
      await proxy.down();
    }
  });
});
