// Goal: text PostgreSQL cannot store (NUL, a lone surrogate) in any text field of any ledger request body is a 400 naming the field, over HTTP, and nothing is stored or batched.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../../test/support/koban.ts';

let koban: TestKoban;
before(async () => {
  koban = await startTestKoban({ label: 'unstorable_text' });
  // A hold to post and void, so that those routes reach their body checks with a real hold behind them.
  const hold = await koban.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: { transaction_id: 'hold-1', type: 'add', user_id: 'user-1', balance_type: 'points', amount: 10, pending: true },
  });
  assert.equal(hold.statusCode, 201, hold.body);
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

/** What PostgreSQL refuses: NUL in text and jsonb, a lone surrogate in jsonb (and text would store U+FFFD instead). */
const UNSTORABLE: Array<[string, string]> = [
  ['NUL', 'a\u0000b'],
  ['a lone high surrogate', 'a\ud800b'],
  ['a lone low surrogate', '\udc00'],
  ['a surrogate pair reversed', '\udc00\ud800'],
];

const add = { transaction_id: 'text-1', type: 'add', user_id: 'user-1', balance_type: 'points', amount: 5 };

type Field = { route: string; url: string; field: string; where?: string; body: (text: string) => Record<string, unknown> };

/** Every text field of every ledger route that takes a body, with where the text goes. */
const FIELDS: Field[] = [
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'transaction_id', body: (text) => ({ ...add, transaction_id: text }) },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'type', body: (text) => ({ ...add, type: text }) },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'user_id', body: (text) => ({ ...add, user_id: text }) },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'balance_type', body: (text) => ({ ...add, balance_type: text }) },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'description', body: (text) => ({ ...add, description: text }) },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'metadata', where: 'a value', body: (text) => ({ ...add, metadata: { note: text } }) },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'metadata', where: 'a key', body: (text) => ({ ...add, metadata: { [`k${text}`]: 1 } }) },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'metadata', where: 'a nested value', body: (text) => ({ ...add, metadata: { list: [{ deep: [text] }] } }) },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'expires_at', body: (text) => ({ ...add, expires_at: `2030-01-01T00:00:00Z${text}` }) },
  {
    route: 'POST /v1/transactions',
    url: '/v1/transactions',
    field: 'pending_expires_at',
    body: (text) => ({ ...add, pending: true, pending_expires_at: `2030-01-01T00:00:00Z${text}` }),
  },
  { route: 'POST /v1/transactions', url: '/v1/transactions', field: 'refund_of', body: (text) => ({ ...add, type: 'refund', refund_of: text }) },
  { route: 'POST /v1/transactions/:transaction_id/post', url: '/v1/transactions/hold-1/post', field: 'balance_type', body: (text) => ({ balance_type: text }) },
  { route: 'POST /v1/transactions/:transaction_id/void', url: '/v1/transactions/hold-1/void', field: 'balance_type', body: (text) => ({ balance_type: text }) },
];

describe('unstorable text in a ledger request body is a 400 naming the field', () => {
  for (const { route, url, field, where, body } of FIELDS) {
    for (const [what, text] of UNSTORABLE) {
      test(`${route}: ${what} in ${field}${where ? ` (${where})` : ''} → 400 naming ${field}`, async () => {
        // JSON.stringify writes NUL and lone surrogates as \u escapes, as any client must.
        const payload = JSON.stringify(body(text));
        const response = await koban.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload });
        assert.equal(response.statusCode, 400, response.body);
        const error = response.json().error;
        assert.equal(error.code, 'invalid_request');
        assert.equal(error.details.field, field, response.body);
      });
    }
  }
});

describe('nothing was stored', () => {
  test('the hold is still pending, no other transaction exists, and the books balance', async () => {
    const hold = await koban.app.inject({ method: 'GET', url: '/v1/transactions/hold-1' });
    assert.equal(hold.json().data[0].status, 'pending');
    const listed = await koban.app.inject({ method: 'GET', url: '/v1/users/user-1/transactions' });
    assert.deepEqual(
      listed.json().data.map((transaction: { transaction_id: string }) => transaction.transaction_id),
      ['hold-1'],
    );
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test('the same bodies with storable text are accepted (the table refuses for the reason it names)', async () => {
    const description = await koban.app.inject({ method: 'POST', url: '/v1/transactions', payload: { ...add, description: 'a\ud83d\ude00b (a pair is fine)', metadata: { 'k€': ['ok'] } } });
    assert.equal(description.statusCode, 201, description.body);
    const posted = await koban.app.inject({ method: 'POST', url: '/v1/transactions/hold-1/post', payload: { balance_type: 'points' } });
    assert.equal(posted.statusCode, 201, posted.body);
  });
});
