// Goal: a malformed network message to any card endpoint is a 400 invalid_request naming the field, and stores nothing — no payment, message, intent or outbox event — and moves no cash.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { errorOf, type Json, MERCHANT, PaymentHarness } from './testing/harness.ts';

const clock = new ManualClock('2026-03-02T01:00:00.000Z');
let koban: TestKoban;
let h: PaymentHarness;

const USER = 'b-user';
const AMOUNT_MAX = 1_000_000_000_000_000;

before(async () => {
  koban = await startTestKoban({ label: 'pay_bad_input', clock, env: { VISA_EXPIRY_SWEEP_INTERVAL_MS: '0', QUICPAY_EXPIRY_SWEEP_INTERVAL_MS: '0', KOBAN_SWEEP_INTERVAL_MS: '0' } });
  h = new PaymentHarness(koban);
  await h.fund(USER, 10_000);
});
after(async () => {
  await h.close();
  await koban.stop();
  await koban.database.drop();
});

/** A valid message per endpoint: each row below breaks one thing in it. */
const VALID: Record<string, Json> = {
  '/v1/visa/authorizations': { authorization_id: 'b-a', user_id: USER, amount: 100, currency: 'JPY', merchant: MERCHANT },
  '/v1/visa/advices': { authorization_id: 'b-adv', user_id: USER, amount: 100, currency: 'JPY', merchant: MERCHANT },
  '/v1/visa/sales-drafts': { sales_draft_id: 'b-s', authorization_id: 'b-a', user_id: USER, amount: 100, currency: 'JPY', merchant: MERCHANT, final: true },
  '/v1/visa/reversals': { reversal_id: 'b-r', authorization_id: 'b-a', user_id: USER, amount: 100 },
  '/v1/visa/refunds': { refund_id: 'b-f', sales_draft_id: 'b-s', user_id: USER, amount: 100 },
  '/v1/quicpay/messages': { message_type: 'authorization', transaction_number: 'b-q', member_id: USER, amount: 100, merchant: MERCHANT },
};
const ENDPOINTS = Object.keys(VALID);
const ID_FIELD: Record<string, string> = {
  '/v1/visa/authorizations': 'authorization_id',
  '/v1/visa/advices': 'authorization_id',
  '/v1/visa/sales-drafts': 'sales_draft_id',
  '/v1/visa/reversals': 'reversal_id',
  '/v1/visa/refunds': 'refund_id',
  '/v1/quicpay/messages': 'transaction_number',
};
const USER_FIELD = (endpoint: string) => (endpoint.startsWith('/v1/quicpay') ? 'member_id' : 'user_id');
const hasMerchant = (endpoint: string) => 'merchant' in VALID[endpoint]!;

type Row = { name: string; endpoint: string; field: string } & ({ body: Json } | { raw: string });

const set = (endpoint: string, changes: Json): Json => ({ ...VALID[endpoint], ...changes });
const without = (endpoint: string, field: string): Json => Object.fromEntries(Object.entries(VALID[endpoint]!).filter(([key]) => key !== field));
/** The valid message as raw JSON with one string's value replaced by JSON text (escapes JSON.stringify would not write). */
const rawWith = (endpoint: string, path: string[], jsonText: string): string => {
  const marker = '__RAW__';
  const body = structuredClone(VALID[endpoint]!) as Json;
  let target = body;
  for (const key of path.slice(0, -1)) target = target[key] as Json;
  target[path.at(-1)!] = marker;
  return JSON.stringify(body).replace(`"${marker}"`, jsonText);
};

const ROWS: Row[] = ENDPOINTS.flatMap((endpoint): Row[] => {
  const id = ID_FIELD[endpoint]!;
  const user = USER_FIELD(endpoint);
  const rows: Row[] = [
    { name: 'amount as a string', endpoint, field: 'amount', body: set(endpoint, { amount: '100' }) },
    { name: 'amount as a float', endpoint, field: 'amount', body: set(endpoint, { amount: 2.5 }) },
    { name: 'amount zero', endpoint, field: 'amount', body: set(endpoint, { amount: 0 }) },
    { name: 'amount negative', endpoint, field: 'amount', body: set(endpoint, { amount: -100 }) },
    { name: 'amount above 10^15', endpoint, field: 'amount', body: set(endpoint, { amount: AMOUNT_MAX + 1 }) },
    { name: 'amount huge', endpoint, field: 'amount', body: set(endpoint, { amount: 1e300 }) },
    { name: 'amount null', endpoint, field: 'amount', body: set(endpoint, { amount: null }) },
    { name: 'an unknown field', endpoint, field: 'points', body: set(endpoint, { points: 5 }) },
    { name: `${id} missing`, endpoint, field: id, body: without(endpoint, id) },
    { name: `${user} missing`, endpoint, field: user, body: without(endpoint, user) },
    { name: `${id} as a number`, endpoint, field: id, body: set(endpoint, { [id]: 12345 }) },
    { name: `${id} breaking the pattern (a space)`, endpoint, field: id, body: set(endpoint, { [id]: 'b 1' }) },
    { name: `${id} breaking the pattern (a colon)`, endpoint, field: id, body: set(endpoint, { [id]: 'b:1' }) },
    { name: `${id} too long (49)`, endpoint, field: id, body: set(endpoint, { [id]: 'x'.repeat(49) }) },
    { name: `${id} empty`, endpoint, field: id, body: set(endpoint, { [id]: '' }) },
    { name: `${user} with a NUL`, endpoint, field: user, raw: rawWith(endpoint, [user], '"b\\u0000user"') },
    { name: `${user} as an object`, endpoint, field: user, body: set(endpoint, { [user]: { id: USER } }) },
  ];
  if (endpoint !== '/v1/visa/reversals') rows.push({ name: 'amount missing', endpoint, field: 'amount', body: without(endpoint, 'amount') });
  if (hasMerchant(endpoint)) {
    rows.push(
      { name: 'merchant.category_code of 3 digits', endpoint, field: 'merchant.category_code', body: set(endpoint, { merchant: { ...MERCHANT, category_code: '541' } }) },
      { name: 'merchant.category_code of 5 digits', endpoint, field: 'merchant.category_code', body: set(endpoint, { merchant: { ...MERCHANT, category_code: '54111' } }) },
      { name: 'merchant.category_code with a letter', endpoint, field: 'merchant.category_code', body: set(endpoint, { merchant: { ...MERCHANT, category_code: '54a1' } }) },
      { name: 'merchant.category_code as a number', endpoint, field: 'merchant.category_code', body: set(endpoint, { merchant: { ...MERCHANT, category_code: 5411 } }) },
      { name: 'merchant.name with a NUL', endpoint, field: 'merchant.name', raw: rawWith(endpoint, ['merchant', 'name'], '"Corner\\u0000Shop"') },
      { name: 'merchant.name with a lone high surrogate', endpoint, field: 'merchant.name', raw: rawWith(endpoint, ['merchant', 'name'], '"Corner\\ud800Shop"') },
      { name: 'merchant.id with a lone low surrogate', endpoint, field: 'merchant.id', raw: rawWith(endpoint, ['merchant', 'id'], '"shop\\udc00"') },
      { name: 'merchant.name too long', endpoint, field: 'merchant.name', body: set(endpoint, { merchant: { ...MERCHANT, name: 'n'.repeat(257) } }) },
      { name: 'merchant with an unknown field', endpoint, field: 'merchant.city', body: set(endpoint, { merchant: { ...MERCHANT, city: 'Tokyo' } }) },
      { name: 'merchant missing', endpoint, field: 'merchant', body: without(endpoint, 'merchant') },
    );
  }
  if ('currency' in VALID[endpoint]!) {
    rows.push(
      { name: 'currency lower case', endpoint, field: 'currency', body: set(endpoint, { currency: 'jpy' }) },
      { name: 'currency missing', endpoint, field: 'currency', body: without(endpoint, 'currency') },
    );
  }
  return rows;
});

ROWS.push(
  { name: 'final as a string', endpoint: '/v1/visa/sales-drafts', field: 'final', body: set('/v1/visa/sales-drafts', { final: 'false' }) },
  { name: 'incremental_of breaking the pattern', endpoint: '/v1/visa/authorizations', field: 'incremental_of', body: set('/v1/visa/authorizations', { incremental_of: 'a/b' }) },
  { name: 'an unknown message_type', endpoint: '/v1/quicpay/messages', field: 'message_type', body: set('/v1/quicpay/messages', { message_type: 'void' }) },
  ...(['sales', 'cancel', 'refund'] as const).map(
    (type): Row => ({ name: `${type} without original_transaction_number`, endpoint: '/v1/quicpay/messages', field: 'original_transaction_number', body: set('/v1/quicpay/messages', { message_type: type }) }),
  ),
  {
    name: 'original_transaction_number breaking the pattern',
    endpoint: '/v1/quicpay/messages',
    field: 'original_transaction_number',
    body: set('/v1/quicpay/messages', { message_type: 'sales', original_transaction_number: 'b q' }),
  },
  { name: 'terminal_id with a NUL', endpoint: '/v1/quicpay/messages', field: 'terminal_id', raw: rawWith('/v1/quicpay/messages', ['member_id'], `"${USER}","terminal_id":"T\\u0000"`) },
  { name: 'a JSON array', endpoint: '/v1/visa/authorizations', field: 'body', raw: '[]' },
  { name: 'not JSON', endpoint: '/v1/quicpay/messages', field: 'body', raw: '{"message_type":' },
);

describe('bad input to every card endpoint', () => {
  test('the valid messages the rows break are accepted, so each 400 below is for what the row changed', async () => {
    // Under ids of their own: each row compares what is stored just before and just after it.
    for (const endpoint of ['/v1/visa/authorizations', '/v1/quicpay/messages']) {
      const changed = set(endpoint, { [ID_FIELD[endpoint]!]: `ok-${endpoint.length}` });
      const response = await h.send(endpoint, changed);
      assert.equal(response.statusCode, 200, `${endpoint}: ${response.body}`);
    }
  });

  for (const row of ROWS) {
    test(`${row.endpoint}: ${row.name} → 400 naming ${row.field}, nothing stored`, async () => {
      const before = await h.footprint();
      const cash = await h.cash(USER);
      const response = 'raw' in row ? await h.sendRaw(row.endpoint, row.raw) : await h.send(row.endpoint, row.body);
      assert.equal(response.statusCode, 400, response.body);
      const error = errorOf(response);
      assert.equal(error.code, 'invalid_request', response.body);
      assert.equal(error.details.field, row.field, response.body);
      assert.deepEqual(await h.footprint(), before);
      assert.deepEqual(await h.cash(USER), cash);
    });
  }
});
