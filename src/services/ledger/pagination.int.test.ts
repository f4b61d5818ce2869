// Goal: cursor pagination of a user's history neither skips nor repeats rows while writes continue, and two Koban processes on one database still apply each operation once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

let koban: TestKoban;
let second: TestKoban;
before(async () => {
  koban = await startTestKoban({ label: 'pagination' });
  second = await startTestKoban({ label: 'pagination', database: koban.database });
});
after(async () => {
  await second.stop();
  await koban.stop();
  await koban.database.drop();
});

function add(instance: TestKoban, transactionId: string, userId: string, amount = 1, balanceType = 'points') {
  return instance.app.inject({ method: 'POST', url: '/v1/transactions', payload: { transaction_id: transactionId, type: 'add', user_id: userId, balance_type: balanceType, amount } });
}

type Page = { data: Array<{ transaction_id: string; balance_type: string }>; next_cursor: string | null };

async function page(userId: string, query: string): Promise<Page> {
  const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/transactions?${query}` });
  assert.equal(response.statusCode, 200, response.body);
  return response.json();
}

describe('GET /v1/users/{user_id}/transactions', () => {
  test('pages newest first, and a walk during concurrent inserts sees every earlier row exactly once', async () => {
    const existing = 230;
    for (let i = 0; i < existing; i += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, j) => add(koban, `old-${String(i + j).padStart(4, '0')}`, 'walker')));
    }
    let inserting = true;
    let inserted = 0;
    const writer = (async () => {
      while (inserting) {
        const response = await add(koban, `new-${inserted}`, 'walker');
        assert.equal(response.statusCode, 201);
        inserted++;
      }
    })();

    const seen: string[] = [];
    const pageSizes: number[] = [];
    let cursor: string | null = null;
    do {
      const result: Page = await page('walker', `limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...result.data.map((transaction) => transaction.transaction_id));
      pageSizes.push(result.data.length);
      cursor = result.next_cursor;
      // Give the writer room to commit between pages.
      await new Promise((resolve) => setTimeout(resolve, 2));
    } while (cursor !== null);
    inserting = false;
    await writer;

    assert.ok(inserted > 0, 'writes really went on during the walk');
    assert.equal(new Set(seen).size, seen.length, 'no row repeated');
    const olds = seen.filter((id) => id.startsWith('old-'));
    assert.equal(olds.length, existing, 'no earlier row skipped');
    assert.deepEqual(olds, [...olds].sort().reverse(), 'newest first');
    // Every page but the last is full, and the last is not empty: a cursor is given only when more rows follow.
    const last = pageSizes.pop()!;
    assert.deepEqual(pageSizes, Array(pageSizes.length).fill(7));
    assert.ok(last >= 1 && last <= 7, `last page holds ${last}`);
  });

  test('the balance type filter and the limit are honoured; the last page has no cursor', async () => {
    await add(koban, 'f-1', 'filter', 1, 'cash');
    await add(koban, 'f-2', 'filter', 1, 'points');
    await add(koban, 'f-3', 'filter', 1, 'cash');
    const cash = await page('filter', 'balance_type=cash&limit=1');
    assert.deepEqual(cash.data.map((t) => t.transaction_id), ['f-3']);
    assert.notEqual(cash.next_cursor, null);
    const rest = await page('filter', `balance_type=cash&limit=1&cursor=${cash.next_cursor}`);
    assert.deepEqual(rest.data.map((t) => t.transaction_id), ['f-1']);
    assert.equal(rest.next_cursor, null);
    const all = await page('filter', '');
    assert.deepEqual(all.data.map((t) => t.transaction_id), ['f-3', 'f-2', 'f-1']);
  });

  test('a user with no transactions gets an empty page', async () => {
    assert.deepEqual(await page('nobody', ''), { data: [], next_cursor: null });
  });
});

describe('two processes writing to one ledger database', () => {
  test('identical requests split across both have one effect and identical bodies', async () => {
    const request = { transaction_id: 'twin-1', type: 'add', user_id: 'twins', balance_type: 'cash', amount: 70 };
    const responses = await Promise.all(
      Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? koban : second).app.inject({ method: 'POST', url: '/v1/transactions', payload: request })),
    );
    assert.equal(responses.filter((response) => response.statusCode === 201).length, 1);
    assert.equal(responses.filter((response) => response.statusCode === 200).length, 99);
    assert.equal(new Set(responses.map((response) => response.body)).size, 1);
    const balance = await koban.app.inject({ method: 'GET', url: '/v1/users/twins/balances/cash' });
    assert.deepEqual(balance.json(), { user_id: 'twins', balance_type: 'cash', available: 70, posted: 70, pending_debit: 0, pending_credit: 0, expiring: [] }, 'one effect');
  });

  test('consumes split across both never overdraw', async () => {
    await add(koban, 'duo-fund', 'duo', 300, 'cash');
    const responses = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        (i % 2 === 0 ? koban : second).app.inject({
          method: 'POST',
          url: '/v1/transactions',
          payload: { transaction_id: `duo-buy-${i}`, type: 'consume', user_id: 'duo', balance_type: 'cash', amount: 10 },
        }),
      ),
    );
    assert.equal(responses.filter((response) => response.statusCode === 201).length, 30);
    assert.equal(responses.filter((response) => response.statusCode === 422).length, 30);
    const balance = await koban.app.inject({ method: 'GET', url: '/v1/users/duo/balances/cash' });
    assert.deepEqual(balance.json(), { user_id: 'duo', balance_type: 'cash', available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] });
    assert.equal((await koban.ledger.audit()).ok, true);
  });
});
