// Goal: a malformed create — a user id missing, of the wrong type, too long, with NUL or a lone surrogate, an unknown or repeated field, a body that is not a JSON object or too large — is refused with a catalogue error naming the field, and stores no account and no event; a malformed id in a read is refused the same way.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { ACCOUNT_BODY_BYTES_MAX, USER_ID_LENGTH_MAX } from './domain/limits.ts';
import { AccountsHarness, type Json, type Response } from './testing/harness.ts';

let koban: TestKoban;
let h: AccountsHarness;

before(async () => {
  koban = await startTestKoban({ label: 'accounts_bad_input' });
  h = new AccountsHarness(koban);
});
after(async () => {
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

type Row = { name: string; field: string; code?: 'invalid_request' | 'request_too_large' | 'unsupported_media_type'; reason?: string } & (
  | { body: unknown }
  | { raw: string; contentType?: string }
);

const ROWS: Row[] = [
  { name: 'user_id missing', field: 'user_id', body: {} },
  { name: 'user_id a number', field: 'user_id', body: { user_id: 12345 } },
  { name: 'user_id null', field: 'user_id', body: { user_id: null } },
  { name: 'user_id an object', field: 'user_id', body: { user_id: { id: 'alice' } } },
  { name: 'user_id an array', field: 'user_id', body: { user_id: ['alice'] } },
  { name: 'user_id empty', field: 'user_id', body: { user_id: '' } },
  { name: `user_id too long (${USER_ID_LENGTH_MAX + 1}: its event id would not fit)`, field: 'user_id', body: { user_id: 'u'.repeat(USER_ID_LENGTH_MAX + 1) } },
  { name: 'user_id too long (129)', field: 'user_id', body: { user_id: 'u'.repeat(129) } },
  { name: 'user_id "."', field: 'user_id', body: { user_id: '.' } },
  { name: 'user_id ".."', field: 'user_id', body: { user_id: '..' } },
  { name: 'user_id with a space', field: 'user_id', body: { user_id: 'al ice' } },
  { name: 'user_id with a slash', field: 'user_id', body: { user_id: 'al/ice' } },
  { name: 'user_id with a non-ASCII letter', field: 'user_id', body: { user_id: 'alicé' } },
  { name: 'user_id with a NUL', field: 'user_id', raw: '{"user_id":"al\\u0000ice"}' },
  { name: 'user_id with a lone high surrogate', field: 'user_id', raw: '{"user_id":"al\\ud800ice"}' },
  { name: 'user_id with a lone low surrogate', field: 'user_id', raw: '{"user_id":"alice\\udc00"}' },
  { name: 'an unknown field', field: 'welcome_points', body: { user_id: 'alice', welcome_points: 500 } },
  { name: 'user_id repeated', field: 'user_id', reason: 'duplicate_key', raw: '{"user_id":"alice","user_id":"mallory"}' },
  { name: 'user_id repeated, spelled with an escape', field: 'user_id', reason: 'duplicate_key', raw: '{"user_id":"alice","\\u0075ser_id":"mallory"}' },
  { name: 'a __proto__ key', field: '__proto__', reason: 'forbidden_key', raw: '{"user_id":"alice","__proto__":{"admin":true}}' },
  { name: 'a JSON array', field: 'body', raw: '[{"user_id":"alice"}]' },
  { name: 'a JSON string', field: 'body', raw: '"alice"' },
  { name: 'not JSON', field: 'body', reason: 'invalid_json', raw: '{"user_id":' },
  { name: 'an empty body', field: 'body', raw: '' },
  {
    name: `a body over ${ACCOUNT_BODY_BYTES_MAX} bytes`,
    field: 'body',
    code: 'request_too_large',
    raw: JSON.stringify({ user_id: 'alice', padding: 'p'.repeat(ACCOUNT_BODY_BYTES_MAX) }),
  },
  { name: 'a body that is not JSON (text/plain)', field: 'content-type', code: 'unsupported_media_type', raw: '{"user_id":"alice"}', contentType: 'text/plain' },
];

const STATUS = { invalid_request: 400, request_too_large: 413, unsupported_media_type: 415 } as const;

function send(row: Row): Promise<Response> {
  if ('body' in row) return h.create(row.body);
  return koban.app.inject({ method: 'POST', url: '/v1/users', payload: row.raw, headers: { 'content-type': row.contentType ?? 'application/json' } }) as Promise<Response>;
}

describe('bad input to POST /v1/users', () => {
  for (const row of ROWS) {
    const code = row.code ?? 'invalid_request';
    test(`${row.name} → ${STATUS[code]} ${code} naming ${row.field}, nothing stored`, async () => {
      const before = await h.footprint();
      const response = await send(row);
      assert.equal(response.statusCode, STATUS[code], response.body);
      const error = response.json().error as { code: string; details: Json };
      assert.equal(error.code, code, response.body);
      assert.equal(error.details.field, row.field, response.body);
      if (row.reason !== undefined) assert.equal(error.details.reason, row.reason, response.body);
      if (code === 'request_too_large') assert.equal(error.details.limit_bytes, ACCOUNT_BODY_BYTES_MAX, response.body);
      assert.deepEqual(await h.footprint(), before);
    });
  }

  test('…and the valid body the rows break is accepted, with a body just under the limit too (each refusal above is for what its row changed)', async () => {
    const response = await h.create({ user_id: 'alice' });
    assert.equal(response.statusCode, 201, response.body);
    const longest = await h.create({ user_id: 'u'.repeat(USER_ID_LENGTH_MAX) });
    assert.equal(longest.statusCode, 201, longest.body);
    const padded = `{"user_id":"bob"}${' '.repeat(ACCOUNT_BODY_BYTES_MAX - 17)}`;
    assert.equal(Buffer.byteLength(padded), ACCOUNT_BODY_BYTES_MAX);
    assert.equal((await h.createRaw(padded)).statusCode, 201);
    assert.deepEqual(await h.footprint(), { accounts: 3, outbox: 3 });
  });
});

describe('bad input to GET /v1/users/{user_id}', () => {
  for (const [what, path] of [
    ['a space', 'al%20ice'],
    ['NUL', 'al%00ice'],
    ['a lone surrogate (not UTF-8)', 'al%ED%A0%80ice'],
    [`${USER_ID_LENGTH_MAX + 1} characters`, 'u'.repeat(USER_ID_LENGTH_MAX + 1)],
    ['"."', '.'],
  ] as const) {
    test(`${what} → 400 naming user_id in the path`, async () => {
      const response = (await koban.app.inject({ method: 'GET', url: `/v1/users/${path}` })) as Response;
      assert.equal(response.statusCode, 400, response.body);
      const error = response.json().error as { code: string; details: Json };
      assert.equal(error.code, 'invalid_request');
      assert.deepEqual([error.details.field, error.details.in], ['user_id', 'path'], response.body);
    });
  }
});
