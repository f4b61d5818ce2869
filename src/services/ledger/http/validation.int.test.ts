// Goal: every malformed or out-of-range request is a 400 naming the field (or 415), and stores nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../../test/support/koban.ts';
import { REQUEST_BODY_BYTES_MAX } from '../domain/limits.ts';

let koban: TestKoban;
before(async () => {
  koban = await startTestKoban({ label: 'validation' });
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

const valid = { transaction_id: 'tx-1', type: 'add', user_id: 'user-1', balance_type: 'points', amount: 100 };

type Case = { name: string; payload: string; field: string; contentType?: string; status?: number; code?: string };
const json = (value: unknown) => JSON.stringify(value);
const without = (key: keyof typeof valid) => {
  const copy: Record<string, unknown> = { ...valid };
  delete copy[key];
  return copy;
};

const cases: Case[] = [
  { name: 'malformed JSON', payload: '{"transaction_id": "tx-1", "type": ', field: 'body' },
  { name: 'empty body', payload: '', field: 'body' },
  { name: 'a JSON array instead of an object', payload: json([valid]), field: 'body' },
  { name: 'a JSON string instead of an object', payload: json('add'), field: 'body' },
  { name: 'float amount', payload: json({ ...valid, amount: 10.5 }), field: 'amount' },
  { name: 'amount as a string', payload: json({ ...valid, amount: '100' }), field: 'amount' },
  { name: 'amount as a boolean', payload: json({ ...valid, amount: true }), field: 'amount' },
  { name: 'amount null', payload: json({ ...valid, amount: null }), field: 'amount' },
  { name: 'negative amount', payload: json({ ...valid, amount: -5 }), field: 'amount' },
  { name: 'zero amount', payload: json({ ...valid, amount: 0 }), field: 'amount' },
  { name: 'amount 10^15 + 1', payload: json({ ...valid, amount: 1_000_000_000_000_001 }), field: 'amount' },
  { name: 'amount far beyond 2^53', payload: '{"transaction_id":"tx-1","type":"add","user_id":"user-1","balance_type":"points","amount":123456789012345678901234567890}', field: 'amount' },
  { name: 'amount in exponent form above the limit', payload: '{"transaction_id":"tx-1","type":"add","user_id":"user-1","balance_type":"points","amount":1e300}', field: 'amount' },
  { name: 'missing transaction_id', payload: json(without('transaction_id')), field: 'transaction_id' },
  { name: 'missing type', payload: json(without('type')), field: 'type' },
  { name: 'missing user_id', payload: json(without('user_id')), field: 'user_id' },
  { name: 'missing balance_type', payload: json(without('balance_type')), field: 'balance_type' },
  { name: 'missing amount', payload: json(without('amount')), field: 'amount' },
  { name: 'unknown field', payload: json({ ...valid, currency: 'JPY' }), field: 'currency' },
  { name: 'unknown type', payload: json({ ...valid, type: 'refund_all' }), field: 'type' },
  { name: 'unknown balance type', payload: json({ ...valid, balance_type: 'gold' }), field: 'balance_type' },
  { name: 'empty transaction_id', payload: json({ ...valid, transaction_id: '' }), field: 'transaction_id' },
  { name: 'transaction_id of 129 characters', payload: json({ ...valid, transaction_id: 'x'.repeat(129) }), field: 'transaction_id' },
  { name: 'transaction_id with a space', payload: json({ ...valid, transaction_id: 'tx 1' }), field: 'transaction_id' },
  { name: 'transaction_id with a slash', payload: json({ ...valid, transaction_id: 'tx/1' }), field: 'transaction_id' },
  { name: 'transaction_id with non-ASCII', payload: json({ ...valid, transaction_id: 'tx-１' }), field: 'transaction_id' },
  { name: 'transaction_id as a number', payload: json({ ...valid, transaction_id: 1 }), field: 'transaction_id' },
  { name: 'user_id with a newline', payload: json({ ...valid, user_id: 'user\n1' }), field: 'user_id' },
  { name: 'user_id of 129 characters', payload: json({ ...valid, user_id: 'u'.repeat(129) }), field: 'user_id' },
  { name: 'description as a number', payload: json({ ...valid, description: 5 }), field: 'description' },
  { name: 'description too long', payload: json({ ...valid, description: 'd'.repeat(1025) }), field: 'description' },
  { name: 'metadata as an array', payload: json({ ...valid, metadata: ['a'] }), field: 'metadata' },
  { name: 'metadata as a string', payload: json({ ...valid, metadata: 'note' }), field: 'metadata' },
  { name: 'metadata over 4 KiB', payload: json({ ...valid, metadata: { note: 'm'.repeat(4200) } }), field: 'metadata' },
  { name: 'a NUL character in description', payload: json({ ...valid, description: 'a\u0000b' }), field: 'description' },
  { name: 'a lone surrogate in description', payload: json({ ...valid, description: 'a\ud800b' }), field: 'description' },
  { name: 'a NUL character in a metadata value', payload: json({ ...valid, metadata: { note: 'a\u0000b' } }), field: 'metadata' },
  { name: 'a lone surrogate in a metadata key', payload: json({ ...valid, metadata: { ['k\udc00']: 1 } }), field: 'metadata' },
  { name: 'expires_at in year 0000', payload: json({ ...valid, expires_at: '0000-01-01T00:00:00Z' }), field: 'expires_at' },
  { name: 'pending_expires_at on a leap second', payload: json({ ...valid, pending: true, pending_expires_at: '2026-12-31T23:59:60Z' }), field: 'pending_expires_at' },
  { name: 'a __proto__ key', payload: '{"transaction_id":"tx-1","type":"add","user_id":"user-1","balance_type":"points","amount":1,"__proto__":{"x":1}}', field: '__proto__' },
  { name: 'a repeated key', payload: '{"transaction_id":"tx-1","type":"add","user_id":"user-1","balance_type":"points","amount":1,"amount":7}', field: 'amount' },
  { name: 'an oversized body', payload: json({ ...valid, description: 'x'.repeat(REQUEST_BODY_BYTES_MAX) }), field: 'body', status: 413, code: 'request_too_large' },
  { name: 'a body that is not JSON', payload: 'transaction_id=tx-1', field: 'body', contentType: 'text/plain', status: 415, code: 'unsupported_media_type' },
];

describe('POST /v1/transactions rejects bad input', () => {
  for (const testCase of cases) {
    test(`${testCase.name} → ${testCase.status ?? 400} naming ${testCase.field}`, async () => {
      const response = await koban.app.inject({
        method: 'POST',
        url: '/v1/transactions',
        headers: { 'content-type': testCase.contentType ?? 'application/json' },
        payload: testCase.payload,
      });
      assert.equal(response.statusCode, testCase.status ?? 400, response.body);
      const error = response.json().error;
      assert.equal(error.code, testCase.code ?? 'invalid_request');
      assert.equal(error.retryable, false);
      assert.equal(typeof error.message, 'string');
      if (!testCase.status) assert.equal(error.details.field, testCase.field, `field named: ${response.body}`);
    });
  }

  test('nothing was stored by any rejected request', async () => {
    const lookup = await koban.app.inject({ method: 'GET', url: '/v1/transactions/tx-1' });
    assert.equal(lookup.statusCode, 404);
    const balances = await koban.app.inject({ method: 'GET', url: '/v1/users/user-1/balances' });
    assert.deepEqual(
      balances.json().data.map((balance: { available: number }) => balance.available),
      [0, 0],
    );
    const report = await koban.ledger.audit();
    assert.equal(report.ok, true);
  });

  test('the valid request itself is accepted (the table above is not rejecting everything)', async () => {
    const response = await koban.app.inject({ method: 'POST', url: '/v1/transactions', payload: { ...valid, transaction_id: 'tx-valid' } });
    assert.equal(response.statusCode, 201, response.body);
  });
});

describe('reads reject bad parameters', () => {
  const reads: Array<[string, string, string]> = [
    ['transaction id with a bad character', '/v1/transactions/bad%20id', 'transaction_id'],
    ['bad percent-encoding', '/v1/transactions/%E0%A4%A', 'transaction_id'],
    ['user id too long', `/v1/users/${'u'.repeat(129)}/balances`, 'user_id'],
    ['unknown balance type', '/v1/users/user-1/balances/gold', 'balance_type'],
    ['limit zero', '/v1/users/user-1/transactions?limit=0', 'limit'],
    ['limit above the maximum', '/v1/users/user-1/transactions?limit=201', 'limit'],
    ['limit not a number', '/v1/users/user-1/transactions?limit=ten', 'limit'],
    ['limit a float', '/v1/users/user-1/transactions?limit=2.5', 'limit'],
    ['unknown query parameter', '/v1/users/user-1/transactions?sort=asc', 'sort'],
    ['unknown balance type filter', '/v1/users/user-1/transactions?balance_type=gold', 'balance_type'],
    ['a cursor this API never issued', `/v1/users/user-1/transactions?cursor=${Buffer.from('k-1').toString('base64url')}`, 'cursor'],
    ['a cursor with bad characters', '/v1/users/user-1/transactions?cursor=%24%24', 'cursor'],
  ];
  for (const [name, url, field] of reads) {
    test(`${name} → 400 naming ${field}`, async () => {
      const response = await koban.app.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 400, response.body);
      assert.equal(response.json().error.code, 'invalid_request');
      assert.equal(response.json().error.details.field, field);
    });
  }

  test('an unknown route is 404 not_found in the catalogue shape', async () => {
    const response = await koban.app.inject({ method: 'GET', url: '/v1/nothing-here' });
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'not_found');
  });
});
