// Goal: the failures other ledgers are known for do not happen here — a transaction row and the balances it moves are written in one database transaction (a connection killed between the statements leaves neither), and a refund retried (identical resends, concurrent ones, a resend after a lost answer) is applied once. (An expired hold that a later post must not commit: holds.int.test.ts; at the card routes: payments.expiry.int.test.ts and src/e2e/clock-skew.e2e.test.ts.)
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { installFailpoints, parseFailpoints } from '../../platform/failpoints.ts';

const CONDITION_TIMEOUT_MS = 10_000;
const POLL_INTERVAL_MS = 20;

let koban: TestKoban;
let admin: pg.Client;

before(async () => {
  koban = await startTestKoban({ label: 'ledger_known_failures', env: { KOBAN_SWEEP_INTERVAL_MS: '0' } });
  admin = new pg.Client({ connectionString: koban.database.url });
  await admin.connect();
});
after(async () => {
  installFailpoints([]);
  await admin?.end();
  await koban.stop();
  await koban.database.drop();
});

type Json = Record<string, unknown>;
const send = (body: Json) => koban.app.inject({ method: 'POST', url: '/v1/transactions', payload: body });
const balance = async (userId: string) => (await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/cash` })).json() as { posted: number; available: number };
const rowsOf = async (transactionId: string) => (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM transactions WHERE transaction_id = $1', [transactionId])).rows[0]!.n;

async function assertAudited(): Promise<void> {
  const report = await koban.ledger.audit();
  assert.equal(report.ok, true, JSON.stringify(report));
}

describe('a transaction row and its balances: one database transaction', () => {
  test('the connection killed after the transaction row is written, before the commit: neither the row nor any balance change stays; the resend applies it once', async () => {
    assert.equal((await send({ transaction_id: 'kf-fund', type: 'add', user_id: 'kf-atomic', balance_type: 'cash', amount: 1_000 })).statusCode, 201);
    // Holds the writing connection inside its transaction, right after the row is inserted, until it is killed.
    await admin.query(`CREATE FUNCTION kf_stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$`);
    await admin.query(`CREATE TRIGGER kf_stall AFTER INSERT ON transactions FOR EACH ROW WHEN (NEW.transaction_id = 'kf-killed') EXECUTE FUNCTION kf_stall()`);
    try {
      const request = { transaction_id: 'kf-killed', type: 'consume', user_id: 'kf-atomic', balance_type: 'cash', amount: 400 };
      const pending = send(request);
      const deadline = Date.now() + CONDITION_TIMEOUT_MS;
      let killed = false;
      while (!killed) {
        assert.ok(Date.now() < deadline, 'the write never reached the stalled insert');
        const result = await admin.query<{ killed: boolean }>(
          `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()`,
        );
        killed = result.rows.some((row) => row.killed);
        if (!killed) await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
      }
      const answer = await pending;
      assert.ok(answer.statusCode >= 500, `the caller is told the write failed: ${answer.body}`);
      assert.equal(answer.json().error.retryable, true, 'and that a retry can help');
      assert.equal(await rowsOf('kf-killed'), 0, 'no transaction row');
      assert.deepEqual([(await balance('kf-atomic')).posted, (await balance('kf-atomic')).available], [1_000, 1_000], 'no balance change');
      await assertAudited();
    } finally {
      await admin.query('DROP TRIGGER kf_stall ON transactions');
      await admin.query('DROP FUNCTION kf_stall()');
    }
    const retried = await send({ transaction_id: 'kf-killed', type: 'consume', user_id: 'kf-atomic', balance_type: 'cash', amount: 400 });
    assert.equal(retried.statusCode, 201, retried.body);
    assert.equal((await balance('kf-atomic')).posted, 600);
    assert.equal(await rowsOf('kf-killed'), 1);
    await assertAudited();
  });
});

describe('a refund retried is applied once', () => {
  const refund = { transaction_id: 'kf-refund', type: 'refund', refund_of: 'kf-spend', user_id: 'kf-refunds', balance_type: 'cash', amount: 300 };

  before(async () => {
    assert.equal((await send({ transaction_id: 'kf-refund-fund', type: 'add', user_id: 'kf-refunds', balance_type: 'cash', amount: 1_000 })).statusCode, 201);
    assert.equal((await send({ transaction_id: 'kf-spend', type: 'consume', user_id: 'kf-refunds', balance_type: 'cash', amount: 800 })).statusCode, 201);
  });

  test('an answer lost after the commit: the resend replays the refund, one effect', async () => {
    installFailpoints(parseFailpoints('ledger.after_commit=throw'));
    let lost;
    try {
      lost = await send(refund);
    } finally {
      installFailpoints([]);
    }
    assert.equal(lost.statusCode, 500, 'the caller never got the answer');
    assert.equal(await rowsOf('kf-refund'), 1, 'yet the refund committed');
    const resent = await send(refund);
    assert.equal(resent.statusCode, 200, resent.body);
    assert.equal(resent.headers['idempotent-replayed'], 'true');
    assert.equal(resent.json().balance_after, 500);
    assert.equal((await balance('kf-refunds')).posted, 500);
  });

  test('identical resends, 20 of them at once: all replay the same bytes, no second effect; the rest of the consume stays refundable once', async () => {
    const first = await send(refund);
    const answers = await Promise.all(Array.from({ length: 20 }, () => send(refund)));
    for (const answer of answers) {
      assert.equal(answer.statusCode, 200);
      assert.equal(answer.body, first.body);
    }
    assert.equal((await balance('kf-refunds')).posted, 500);
    assert.equal(await rowsOf('kf-refund'), 1);
    // A second refund under a new id takes what remains (500), not more: the replays took nothing.
    const tooMuch = await send({ ...refund, transaction_id: 'kf-refund-2', amount: 501 });
    assert.equal(tooMuch.json().error.code, 'exceeds_refundable_amount', tooMuch.body);
    assert.equal((await send({ ...refund, transaction_id: 'kf-refund-2', amount: 500 })).statusCode, 201);
    assert.equal((await balance('kf-refunds')).posted, 1_000);
    await assertAudited();
  });

  test('a new refund id racing itself 20 times at once: one effect, identical bodies', async () => {
    assert.equal((await send({ transaction_id: 'kf-spend-2', type: 'consume', user_id: 'kf-refunds', balance_type: 'cash', amount: 200 })).statusCode, 201);
    const racing = { ...refund, transaction_id: 'kf-refund-race', refund_of: 'kf-spend-2', amount: 150 };
    const answers = await Promise.all(Array.from({ length: 20 }, () => send(racing)));
    assert.deepEqual(answers.map((answer) => answer.statusCode).sort(), [...Array(19).fill(200), 201]);
    assert.equal(new Set(answers.map((answer) => answer.body)).size, 1);
    assert.equal((await balance('kf-refunds')).posted, 950);
    await assertAudited();
  });
});
