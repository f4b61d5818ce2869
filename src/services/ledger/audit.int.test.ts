// Goal: the audit really detects books that do not balance, and the ledger refuses to delete or rewrite history.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { DEBT_MAX } from './domain/limits.ts';

let koban: TestKoban;
let sql: pg.Client;
before(async () => {
  koban = await startTestKoban({ label: 'audit' });
  sql = new pg.Client({ connectionString: koban.database.url });
  await sql.connect();
});
after(async () => {
  await sql.end();
  await koban.stop();
  await koban.database.drop();
});

const post = (payload: Record<string, unknown>) => koban.app.inject({ method: 'POST', url: '/v1/transactions', payload });

describe('audit', () => {
  test('GET /v1/audit reports balanced books after real traffic', async () => {
    await post({ transaction_id: 'a-1', type: 'add', user_id: 'ivy', balance_type: 'points', amount: 70 });
    await post({ transaction_id: 'a-2', type: 'consume', user_id: 'ivy', balance_type: 'points', amount: 20 });
    await post({ transaction_id: 'a-3', type: 'add', user_id: 'jon', balance_type: 'cash', amount: 5 });
    const response = await koban.app.inject({ method: 'GET', url: '/v1/audit' });
    assert.equal(response.statusCode, 200);
    const report = response.json();
    assert.equal(report.ok, true);
    assert.equal(report.misrouted_transactions, 0);
    assert.equal(report.inconsistent_lots, 0);
    assert.equal(report.dangling_references, 0);
    const points = report.balance_types.find((entry: { balance_type: string }) => entry.balance_type === 'points');
    assert.deepEqual(points, { balance_type: 'points', sum: 0, accounts_checked: 4, mismatches: [] }, 'ivy plus the issuance, redemption and expiry accounts');
  });

  test('a stored balance that disagrees with its transactions is reported', async () => {
    await sql.query(`UPDATE accounts SET posted = posted + 1 WHERE owner_kind = 'user' AND owner_id = 'ivy' AND balance_type = 'points'`);
    try {
      const report = await koban.ledger.audit();
      assert.equal(report.ok, false);
      const points = report.balance_types.find((entry) => entry.balance_type === 'points')!;
      assert.equal(points.sum, 1);
      assert.deepEqual(
        points.mismatches.map(({ owner, field, stored, derived }) => ({ owner, field, stored, derived })),
        [
          { owner: 'user:ivy', field: 'posted', stored: 51, derived: 50 },
          { owner: 'user:ivy', field: 'lots', stored: 51, derived: 50 },
        ],
      );
    } finally {
      await sql.query(`UPDATE accounts SET posted = posted - 1 WHERE owner_kind = 'user' AND owner_id = 'ivy' AND balance_type = 'points'`);
    }
    assert.equal((await koban.ledger.audit()).ok, true);
  });
  test('npm run audit exits 1 on books that do not balance, and 0 once they do', async () => {
    const runAudit = () =>
      new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['src/cli/koban.ts', 'audit'], {
          cwd: path.resolve(import.meta.dirname, '../../..'),
          env: { ...process.env, LEDGER_DATABASE_URL: koban.database.url, LOG_LEVEL: 'warn' },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.once('error', reject);
        child.once('exit', (code) => resolve({ code, stderr }));
      });
    await sql.query(`UPDATE accounts SET posted = posted + 1 WHERE owner_kind = 'user' AND owner_id = 'ivy' AND balance_type = 'points'`);
    try {
      const unbalanced = await runAudit();
      assert.match(unbalanced.stderr, /MISMATCH/);
      assert.equal(unbalanced.code, 1, unbalanced.stderr);
    } finally {
      await sql.query(`UPDATE accounts SET posted = posted - 1 WHERE owner_kind = 'user' AND owner_id = 'ivy' AND balance_type = 'points'`);
    }
    const balanced = await runAudit();
    assert.match(balanced.stderr, /audit: OK/);
    assert.equal(balanced.code, 0, balanced.stderr);
  });

  test('a transaction naming an account that does not exist is reported', async () => {
    // The write path has no foreign keys; this check stands in for them. Triggers
    // off for this session only: history is otherwise impossible to rewrite.
    const rewrite = async (creditAccountId: number) => {
      await sql.query('SET session_replication_role = replica');
      try {
        await sql.query(`UPDATE transactions SET credit_account_id = $1 WHERE transaction_id = 'a-3'`, [creditAccountId]);
      } finally {
        await sql.query('SET session_replication_role = DEFAULT');
      }
    };
    const original = (await sql.query<{ credit_account_id: number }>(`SELECT credit_account_id FROM transactions WHERE transaction_id = 'a-3'`)).rows[0]!;
    await rewrite(-1);
    try {
      const report = await koban.ledger.audit();
      assert.equal(report.dangling_references, 1);
      assert.equal(report.ok, false);
    } finally {
      await rewrite(original.credit_account_id);
    }
    assert.equal((await koban.ledger.audit()).ok, true);
  });
});

describe('append-only history', () => {
  for (const statement of [
    'DELETE FROM transactions',
    'UPDATE transactions SET amount = amount + 1',
    "UPDATE transactions SET status = 'voided'",
    'TRUNCATE transactions CASCADE',
    'DELETE FROM accounts',
    'DELETE FROM lots',
    'UPDATE lots SET amount = amount + 1',
    'UPDATE lot_draws SET amount = amount + 1',
  ]) {
    test(`${statement} is refused`, async () => {
      await assert.rejects(sql.query(statement), /append-only/);
    });
  }
  // Forced debits may take a balance below zero, never below −DEBT_MAX (before them: never below zero).
  test('a user balance can never go below −DEBT_MAX, even by a direct write', async () => {
    await assert.rejects(sql.query(`UPDATE accounts SET posted = ${-DEBT_MAX - 1}, pending_debit = 0 WHERE owner_kind = 'user' AND owner_id = 'jon'`), /user_balances_in_range/);
    await assert.rejects(sql.query(`UPDATE accounts SET pending_debit = posted + ${DEBT_MAX + 1} WHERE owner_kind = 'user' AND owner_id = 'jon'`), /user_balances_in_range/);
    await assert.rejects(sql.query(`UPDATE accounts SET pending_debit = -1 WHERE owner_kind = 'user' AND owner_id = 'jon'`), /user_balances_in_range/);
  });
});
