// Goal: add/consume take effect exactly once per (transaction_id, balance_type) under retries, races and restarts, and never overdraw.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

let koban: TestKoban;

before(async () => {
  koban = await startTestKoban({ label: 'ledger' });
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

type Json = Record<string, unknown>;

function post(body: Json) {
  return koban.app.inject({ method: 'POST', url: '/v1/transactions', payload: body });
}

/** Asserts the whole balance: these tests make no holds and no expiring lots, so posted equals available and nothing is pending. */
async function assertBalance(userId: string, balanceType: string, amount: number, message?: string): Promise<void> {
  const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/${balanceType}` });
  assert.equal(response.statusCode, 200, response.body);
  assert.deepEqual(
    response.json(),
    { user_id: userId, balance_type: balanceType, available: amount, posted: amount, pending_debit: 0, pending_credit: 0, expiring: [] },
    message,
  );
}

async function transactionCount(userId: string): Promise<number> {
  const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/transactions?limit=200` });
  assert.equal(response.statusCode, 200);
  return (response.json().data as unknown[]).length;
}

async function assertAuditOk(): Promise<void> {
  const report = await koban.ledger.audit();
  assert.equal(report.ok, true, JSON.stringify(report));
  // Both configured types hold accounts by now, so the loop below has something to check.
  assert.deepEqual(report.balance_types.map((entry) => entry.balance_type).sort(), ['cash', 'points']);
  for (const entry of report.balance_types) assert.equal(entry.sum, 0, entry.balance_type);
}

describe('add and consume', () => {
  test('an add returns 201 with the stored transaction and moves the balance', async () => {
    const sentAtMs = Date.now();
    const response = await post({ transaction_id: 'add-1', type: 'add', user_id: 'alice', balance_type: 'points', amount: 500, description: 'welcome', metadata: { campaign: 'spring' } });
    assert.equal(response.statusCode, 201);
    assert.equal(response.headers['idempotent-replayed'], undefined);
    const body = response.json();
    assert.deepEqual(
      { ...body, created_at: undefined },
      {
        transaction_id: 'add-1',
        type: 'add',
        user_id: 'alice',
        balance_type: 'points',
        amount: 500,
        status: 'posted',
        pending: false,
        posted_amount: 500,
        pending_expires_at: null,
        resolved_at: null,
        expires_at: null,
        refund_of: null,
        force: false,
        lots: null,
        description: 'welcome',
        metadata: { campaign: 'spring' },
        balance_after: 500,
        created_at: undefined,
      },
    );
    const createdAtMs = Date.parse(body.created_at);
    assert.ok(createdAtMs >= sentAtMs && createdAtMs <= Date.now(), `created_at ${body.created_at} is the time of the request`);
    await assertBalance('alice', 'points', 500);
    await assertBalance('alice', 'cash', 0, 'balance types are separate');
  });

  test('a consume within the balance returns 201 and lowers it', async () => {
    await post({ transaction_id: 'bob-fund', type: 'add', user_id: 'bob', balance_type: 'cash', amount: 1000 });
    const response = await post({ transaction_id: 'bob-spend', type: 'consume', user_id: 'bob', balance_type: 'cash', amount: 300 });
    assert.equal(response.statusCode, 201);
    assert.equal(response.json().balance_after, 700);
    await assertBalance('bob', 'cash', 700);
  });

  test('the same transaction id under two balance types is two operations', async () => {
    const points = await post({ transaction_id: 'pay-77', type: 'add', user_id: 'carol', balance_type: 'points', amount: 10 });
    const cash = await post({ transaction_id: 'pay-77', type: 'add', user_id: 'carol', balance_type: 'cash', amount: 2000 });
    assert.equal(points.statusCode, 201);
    assert.equal(cash.statusCode, 201);
    const lookup = await koban.app.inject({ method: 'GET', url: '/v1/transactions/pay-77' });
    assert.equal(lookup.statusCode, 200);
    assert.deepEqual(
      lookup.json().data.map((t: Json) => [t.balance_type, t.amount]),
      [
        ['points', 10],
        ['cash', 2000],
      ],
    );
  });

  test('consume beyond the balance is 422 insufficient_balance, stores nothing, and may succeed later', async () => {
    await post({ transaction_id: 'dan-fund', type: 'add', user_id: 'dan', balance_type: 'points', amount: 100 });
    const refused = await post({ transaction_id: 'dan-buy', type: 'consume', user_id: 'dan', balance_type: 'points', amount: 150 });
    assert.equal(refused.statusCode, 422);
    assert.deepEqual(refused.json().error, {
      code: 'insufficient_balance',
      message: 'Available points balance 100 is less than 150',
      retryable: false,
      details: { available: 100, requested: 150 },
    });
    assert.equal(refused.headers['retry-after'], undefined, 'not retryable, so no Retry-After');
    assert.equal((await koban.app.inject({ method: 'GET', url: '/v1/transactions/dan-buy' })).statusCode, 404);
    await assertBalance('dan', 'points', 100);

    await post({ transaction_id: 'dan-topup', type: 'add', user_id: 'dan', balance_type: 'points', amount: 50 });
    const retried = await post({ transaction_id: 'dan-buy', type: 'consume', user_id: 'dan', balance_type: 'points', amount: 150 });
    assert.equal(retried.statusCode, 201, 'only successes are stored, so the same id succeeds once the balance allows');
    await assertBalance('dan', 'points', 0);
  });

  test('consume from a user never seen is insufficient, not an error', async () => {
    const response = await post({ transaction_id: 'ghost-buy', type: 'consume', user_id: 'ghost', balance_type: 'points', amount: 1 });
    assert.equal(response.statusCode, 422);
    assert.equal(response.json().error.details.available, 0);
  });

  test('the largest amount is accepted, and a balance above 2^53-1 is refused', async () => {
    const big = 1_000_000_000_000_000;
    for (let i = 0; i < 9; i++) {
      assert.equal((await post({ transaction_id: `whale-${i}`, type: 'add', user_id: 'whale', balance_type: 'cash', amount: big })).statusCode, 201);
    }
    const over = await post({ transaction_id: 'whale-9', type: 'add', user_id: 'whale', balance_type: 'cash', amount: big });
    assert.equal(over.statusCode, 422);
    assert.equal(over.json().error.code, 'balance_limit_exceeded');
    await assertBalance('whale', 'cash', 9 * big);
  });
});

describe('idempotency', () => {
  const original = { transaction_id: 'idem-1', type: 'add', user_id: 'erin', balance_type: 'points', amount: 250, description: 'first', metadata: { order: 'A-1', lines: [1, 2] } };

  test('an identical repeat is 200, byte-identical, marked replayed, with no new effect', async () => {
    const first = await post(original);
    assert.equal(first.statusCode, 201);
    for (let i = 0; i < 3; i++) {
      const again = await post({ ...original, metadata: { lines: [1, 2], order: 'A-1' } });
      assert.equal(again.statusCode, 200);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.equal(again.body, first.body, 'replay returns the stored response byte for byte');
    }
    await assertBalance('erin', 'points', 250);
    assert.equal(await transactionCount('erin'), 1);
  });

  const changes: Array<[string, Json]> = [
    ['type', { type: 'consume' }],
    ['user_id', { user_id: 'mallory' }],
    ['amount', { amount: 251 }],
    ['description', { description: 'second' }],
    ['metadata', { metadata: { order: 'A-2', lines: [1, 2] } }],
  ];
  for (const [field, change] of changes) {
    test(`a repeat with a different ${field} is 409 idempotency_conflict naming ${field}`, async () => {
      const response = await post({ ...original, ...change });
      assert.equal(response.statusCode, 409);
      const error = response.json().error;
      assert.equal(error.code, 'idempotency_conflict');
      assert.equal(error.retryable, false);
      assert.deepEqual(error.details.fields, [field]);
      await assertBalance('erin', 'points', 250);
      await assertBalance('mallory', 'points', 0);
    });
  }

  test('omitting an optional field that was given is a conflict too, and every differing field is listed', async () => {
    const { description: _description, metadata: _metadata, ...bare } = original;
    const response = await post({ ...bare, amount: 1 });
    assert.equal(response.statusCode, 409);
    assert.deepEqual(response.json().error.details.fields, ['amount', 'description', 'metadata']);
  });

  test('200 concurrent identical requests produce one effect and identical bodies', async () => {
    const request = { transaction_id: 'storm-1', type: 'add', user_id: 'frank', balance_type: 'points', amount: 42, metadata: { n: 1 } };
    const responses = await Promise.all(Array.from({ length: 200 }, () => post(request)));
    const statuses = responses.map((response) => response.statusCode).sort();
    assert.equal(statuses.filter((status) => status === 201).length, 1, 'exactly one creates');
    assert.equal(statuses.filter((status) => status === 200).length, 199, 'the rest replay');
    assert.equal(new Set(responses.map((response) => response.body)).size, 1, 'all bodies identical');
    await assertBalance('frank', 'points', 42);
    assert.equal(await transactionCount('frank'), 1);
  });

  test('100 concurrent distinct consumes of 10 against 500: exactly 50 succeed, balance 0, never negative', async () => {
    await post({ transaction_id: 'gina-fund', type: 'add', user_id: 'gina', balance_type: 'cash', amount: 500 });
    const responses = await Promise.all(
      Array.from({ length: 100 }, (_, i) => post({ transaction_id: `gina-buy-${i}`, type: 'consume', user_id: 'gina', balance_type: 'cash', amount: 10 })),
    );
    const created = responses.filter((response) => response.statusCode === 201);
    const refused = responses.filter((response) => response.statusCode === 422);
    assert.equal(created.length, 50);
    assert.equal(refused.length, 50);
    for (const response of refused) assert.equal(response.json().error.code, 'insufficient_balance');
    const balancesAfter = created.map((response) => response.json().balance_after as number).sort((a, b) => a - b);
    assert.deepEqual(balancesAfter, Array.from({ length: 50 }, (_, i) => i * 10), 'each success saw a distinct, non-negative balance');
    await assertBalance('gina', 'cash', 0);
  });

  test('concurrent conflicting requests: one wins, the others conflict, one effect', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post({ transaction_id: 'race-1', type: 'add', user_id: 'hana', balance_type: 'points', amount: i + 1 })),
    );
    assert.equal(responses.filter((response) => response.statusCode === 201).length, 1);
    assert.equal(responses.filter((response) => response.statusCode === 409).length, 19);
    const winner = responses.find((response) => response.statusCode === 201)!.json();
    await assertBalance('hana', 'points', winner.amount);
  });
});

describe('reads', () => {
  test('an unknown transaction is 404 not_found', async () => {
    const response = await koban.app.inject({ method: 'GET', url: '/v1/transactions/nope' });
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'not_found');
  });

  test('a user never seen has zero of every configured balance type', async () => {
    const response = await koban.app.inject({ method: 'GET', url: '/v1/users/nobody/balances' });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), {
      data: [
        { user_id: 'nobody', balance_type: 'cash', available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] },
        { user_id: 'nobody', balance_type: 'points', available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] },
      ],
    });
  });

  test('the audit finds every stored balance equal to its transactions, and each balance type summing to zero', async () => {
    await assertAuditOk();
  });
});
