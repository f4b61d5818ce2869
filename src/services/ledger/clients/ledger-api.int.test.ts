// Goal: both LedgerApi implementations — the HTTP client against a real server and the in-process adapter — reject the same bad inputs with the same error, store nothing for them, and return the same results for good ones.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../../test/support/koban.ts';
import type { LedgerApi } from '../../../contracts/ledger/ledger-api.ts';
import { KobanError } from '../../../platform/errors.ts';
import { METADATA_BYTES_MAX } from '../domain/limits.ts';
import { LedgerClient } from './http-client.ts';
import { InProcessLedgerClient } from './in-process.ts';

let koban: TestKoban;
let http: LedgerClient;
let inProcess: InProcessLedgerClient;

/** A hold every post/void case names: a case that slipped through would post or void it. */
const HOLD = 'parity-hold';
const HOLDER = 'parity-holder';

before(async () => {
  koban = await startTestKoban({ label: 'ledger_api' });
  const url = await koban.app.listen({ host: '127.0.0.1', port: 0 });
  // One attempt: none of these errors is retryable, and a retry would hide a difference.
  http = new LedgerClient({ baseUrl: url, attemptsMax: 1 });
  inProcess = new InProcessLedgerClient(koban.ledger);
  await inProcess.submit({ transaction_id: 'parity-fund', type: 'add', user_id: HOLDER, balance_type: 'points', amount: 1000 });
  await inProcess.submit({ transaction_id: HOLD, type: 'consume', user_id: HOLDER, balance_type: 'points', amount: 300, pending: true });
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

// Typed loosely on purpose: these are what a caller could send at run time, types or not.
type Loose = Record<string, unknown>;
const valid: Loose = { transaction_id: 'parity-tx', type: 'add', user_id: 'parity-user', balance_type: 'points', amount: 100 };
const without = (key: string) => Object.fromEntries(Object.entries(valid).filter(([name]) => name !== key));
const inAYear = new Date(Date.now() + 365 * 86_400_000).toISOString();
const in20Years = new Date(Date.now() + 20 * 365 * 86_400_000).toISOString();

type Case = { name: string; field: string; call: (api: LedgerApi) => Promise<unknown> };
const submit = (name: string, field: string, request: Loose): Case => ({ name, field, call: (api) => api.submit(request as never) });
const post = (name: string, field: string, id: string, request: Loose): Case => ({ name, field, call: (api) => api.post(id, request as never) });
const voidHold = (name: string, field: string, id: string, request: Loose): Case => ({ name, field, call: (api) => api.void(id, request as never) });

const cases: Case[] = [
  submit('amount as a string', 'amount', { ...valid, amount: '100' }),
  submit('amount as a boolean', 'amount', { ...valid, amount: true }),
  submit('amount null', 'amount', { ...valid, amount: null }),
  submit('float amount', 'amount', { ...valid, amount: 10.5 }),
  submit('amount 1e300', 'amount', { ...valid, amount: 1e300 }),
  submit('amount -1', 'amount', { ...valid, amount: -1 }),
  submit('amount 0', 'amount', { ...valid, amount: 0 }),
  submit('amount 10^15 + 1', 'amount', { ...valid, amount: 1_000_000_000_000_001 }),
  submit('amount NaN (null on the wire)', 'amount', { ...valid, amount: Number.NaN }),
  submit('missing amount', 'amount', without('amount')),
  submit('missing transaction_id', 'transaction_id', without('transaction_id')),
  submit('missing balance_type', 'balance_type', without('balance_type')),
  submit('transaction_id of 129 characters', 'transaction_id', { ...valid, transaction_id: 'x'.repeat(129) }),
  submit('transaction_id with NUL', 'transaction_id', { ...valid, transaction_id: 'tx\u00001' }),
  submit('transaction_id with a space', 'transaction_id', { ...valid, transaction_id: 'tx 1' }),
  submit('transaction_id empty', 'transaction_id', { ...valid, transaction_id: '' }),
  submit('transaction_id ".."', 'transaction_id', { ...valid, transaction_id: '..' }),
  submit('transaction_id in the ledger\'s own prefix', 'transaction_id', { ...valid, transaction_id: 'sys:expire-1' }),
  submit('transaction_id as a number', 'transaction_id', { ...valid, transaction_id: 7 }),
  submit('user_id of 129 characters', 'user_id', { ...valid, user_id: 'u'.repeat(129) }),
  submit('user_id with NUL', 'user_id', { ...valid, user_id: 'u\u0000' }),
  submit('unknown balance type', 'balance_type', { ...valid, balance_type: 'gold' }),
  submit('balance type in capitals', 'balance_type', { ...valid, balance_type: 'POINTS' }),
  submit('unknown type', 'type', { ...valid, type: 'expire' }),
  submit('unknown field', 'currency', { ...valid, currency: 'JPY' }),
  submit('pending as a string', 'pending', { ...valid, pending: 'true' }),
  submit('description too long', 'description', { ...valid, description: 'd'.repeat(1025) }),
  submit('description with NUL', 'description', { ...valid, description: 'a\u0000b' }),
  submit('description with a lone surrogate', 'description', { ...valid, description: 'a\ud800b' }),
  submit('metadata as an array', 'metadata', { ...valid, metadata: ['a'] }),
  submit('metadata null', 'metadata', { ...valid, metadata: null }),
  submit('metadata over 4 KiB', 'metadata', { ...valid, metadata: { note: 'm'.repeat(METADATA_BYTES_MAX) } }),
  submit('metadata over 4 KiB in multi-byte characters', 'metadata', { ...valid, metadata: { note: '円'.repeat(METADATA_BYTES_MAX / 3) } }),
  submit('metadata with NUL in a nested value', 'metadata', { ...valid, metadata: { a: { b: ['x\u0000'] } } }),
  submit('metadata with a lone surrogate in a key', 'metadata', { ...valid, metadata: { ['k\udc00']: 1 } }),
  submit('expires_at not a date', 'expires_at', { ...valid, expires_at: 'tomorrow' }),
  submit('expires_at without a time zone', 'expires_at', { ...valid, expires_at: '2030-01-01T00:00:00' }),
  submit('expires_at on 30 February', 'expires_at', { ...valid, expires_at: '2030-02-30T00:00:00Z' }),
  submit('expires_at as a number', 'expires_at', { ...valid, expires_at: 1_900_000_000_000 }),
  submit('expires_at in year 0000', 'expires_at', { ...valid, expires_at: '0000-01-01T00:00:00Z' }),
  submit('expires_at beyond the horizon', 'expires_at', { ...valid, expires_at: in20Years }),
  submit('expires_at in the past', 'expires_at', { ...valid, expires_at: '2020-01-01T00:00:00Z' }),
  submit('pending_expires_at on a leap second', 'pending_expires_at', { ...valid, pending: true, pending_expires_at: '2030-12-31T23:59:60Z' }),
  submit('expires_at on a consume', 'expires_at', { ...valid, type: 'consume', expires_at: inAYear }),
  submit('pending_expires_at without pending', 'pending_expires_at', { ...valid, pending_expires_at: inAYear }),
  submit('a refund without refund_of', 'refund_of', { ...valid, type: 'refund' }),
  submit('refund_of on an add', 'refund_of', { ...valid, refund_of: 'parity-fund' }),
  submit('a refund as a hold', 'pending', { ...valid, type: 'refund', refund_of: 'parity-fund', pending: true }),
  submit('a request that is an array', 'body', [valid] as unknown as Loose),
  submit('force on an add', 'force', { ...valid, force: true }),
  submit('force on a refund', 'force', { ...valid, type: 'refund', refund_of: 'parity-fund', force: true }),
  submit('force as a string', 'force', { ...valid, type: 'consume', force: 'true' }),
  post('post: hold id with NUL', 'transaction_id', 'hold\u0000', { balance_type: 'points' }),
  post('post: hold id of 129 characters', 'transaction_id', 'h'.repeat(129), { balance_type: 'points' }),
  post('post: hold id ".."', 'transaction_id', '..', { balance_type: 'points' }),
  post('post: hold id empty', 'transaction_id', '', { balance_type: 'points' }),
  post('post: missing balance_type', 'balance_type', HOLD, {}),
  post('post: unknown balance type', 'balance_type', HOLD, { balance_type: 'gold' }),
  post('post: float amount', 'amount', HOLD, { balance_type: 'points', amount: 1.5 }),
  post('post: amount 0', 'amount', HOLD, { balance_type: 'points', amount: 0 }),
  post('post: amount as a string', 'amount', HOLD, { balance_type: 'points', amount: '5' }),
  post('post: unknown field', 'reason', HOLD, { balance_type: 'points', reason: 'x' }),
  post('post: force as a number', 'force', HOLD, { balance_type: 'points', amount: 400, force: 1 }),
  voidHold('void: force (voids take none)', 'force', HOLD, { balance_type: 'points', force: true }),
  voidHold('void: hold id with a slash', 'transaction_id', 'a/b', { balance_type: 'points' }),
  voidHold('void: hold id "."', 'transaction_id', '.', { balance_type: 'points' }),
  voidHold('void: missing balance_type', 'balance_type', HOLD, {}),
  voidHold('void: an amount (voids take none)', 'amount', HOLD, { balance_type: 'points', amount: 300 }),
  { name: 'getTransactions: id ".."', field: 'transaction_id', call: (api) => api.getTransactions('..') },
  { name: 'getTransactions: id with a space', field: 'transaction_id', call: (api) => api.getTransactions('a b') },
  { name: 'getBalance: unknown balance type', field: 'balance_type', call: (api) => api.getBalance('u-1', 'gold') },
  { name: 'getBalance: balance type ".."', field: 'balance_type', call: (api) => api.getBalance('u-1', '..') },
  { name: 'getBalance: user id with NUL', field: 'user_id', call: (api) => api.getBalance('u\u0000', 'points') },
  { name: 'listBalances: user id of 129 characters', field: 'user_id', call: (api) => api.listBalances('u'.repeat(129)) },
  { name: 'listTransactions: limit 0', field: 'limit', call: (api) => api.listTransactions('u-1', { limit: 0 }) },
  { name: 'listTransactions: limit 2.5', field: 'limit', call: (api) => api.listTransactions('u-1', { limit: 2.5 }) },
  { name: 'listTransactions: limit 201', field: 'limit', call: (api) => api.listTransactions('u-1', { limit: 201 }) },
  { name: 'listTransactions: unknown balance type', field: 'balance_type', call: (api) => api.listTransactions('u-1', { balance_type: 'gold' }) },
  { name: 'listTransactions: unknown query key', field: 'sort', call: (api) => api.listTransactions('u-1', { sort: 'asc' } as never) },
  { name: 'listTransactions: a cursor never issued', field: 'cursor', call: (api) => api.listTransactions('u-1', { cursor: Buffer.from('k-1').toString('base64url') }) },
];

async function rejection(call: Promise<unknown>): Promise<KobanError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof KobanError, `a KobanError, not ${String(error)}`);
    return error;
  }
  assert.fail('accepted');
}

const shape = (error: KobanError) => ({ code: error.code, status: error.status, retryable: error.retryable, message: error.message, details: error.details });

describe('LedgerApi over HTTP and in process: the same bad inputs, the same errors', () => {
  for (const testCase of cases) {
    test(`${testCase.name} → invalid_request naming ${testCase.field}`, async () => {
      const overHttp = await rejection(testCase.call(http));
      const local = await rejection(testCase.call(inProcess));
      assert.equal(local.code, 'invalid_request', local.message);
      assert.equal(local.details?.field, testCase.field, local.message);
      assert.deepEqual(shape(overHttp), shape(local));
    });
  }

  test('nothing was stored and the hold was neither posted nor voided', async () => {
    await assert.rejects(inProcess.getTransactions('parity-tx'), (error: unknown) => error instanceof KobanError && error.code === 'not_found');
    assert.deepEqual((await http.listTransactions('parity-user')).data, []);
    const [hold] = await http.getTransactions(HOLD);
    assert.equal(hold?.status, 'pending');
    assert.equal((await http.listTransactions(HOLDER)).data.length, 2, 'the fund and the hold, nothing else');
    assert.equal((await koban.ledger.audit()).ok, true);
  });

  test('the valid request is accepted by both (the table is not rejecting everything)', async () => {
    assert.equal((await http.submit({ ...valid, transaction_id: 'parity-ok-1' } as never)).replayed, false);
    assert.equal((await inProcess.submit({ ...valid, transaction_id: 'parity-ok-2' } as never)).replayed, false);
  });
});

describe('LedgerApi over HTTP and in process: the same results', () => {
  test('a write made through one reads back identically through the other, replays included', async () => {
    const request = {
      transaction_id: 'same-1', type: 'add', user_id: 'same-user', balance_type: 'points', amount: 250,
      expires_at: inAYear, description: 'welcome 円', metadata: { campaign: 'spring', tiers: [1, 2], emoji: '😀' },
    } as const;
    const written = await inProcess.submit(request);
    const replayed = await http.submit(request);
    assert.equal(written.replayed, false);
    assert.equal(replayed.replayed, true);
    assert.deepEqual(replayed.transaction, written.transaction);
    assert.deepEqual(await http.getTransactions('same-1'), await inProcess.getTransactions('same-1'));
    assert.deepEqual(await http.getBalance('same-user', 'points'), await inProcess.getBalance('same-user', 'points'));
    assert.deepEqual(await http.listBalances('same-user'), await inProcess.listBalances('same-user'));
    assert.deepEqual(await http.listTransactions('same-user', { limit: 1 }), await inProcess.listTransactions('same-user', { limit: 1 }));
  });

  test('post and void through either, with the same domain errors after', async () => {
    await inProcess.submit({ transaction_id: 'same-fund', type: 'add', user_id: 'same-holder', balance_type: 'cash', amount: 1000 });
    await http.submit({ transaction_id: 'same-hold-a', type: 'consume', user_id: 'same-holder', balance_type: 'cash', amount: 400, pending: true });
    await inProcess.submit({ transaction_id: 'same-hold-b', type: 'consume', user_id: 'same-holder', balance_type: 'cash', amount: 100, pending: true });

    const posted = await http.post('same-hold-a', { balance_type: 'cash', amount: 150 });
    assert.equal(posted.transaction.status, 'posted');
    assert.equal(posted.transaction.posted_amount, 150);
    assert.deepEqual(await inProcess.post('same-hold-a', { balance_type: 'cash', amount: 150 }), { ...posted, replayed: true });

    const voided = await inProcess.void('same-hold-b', { balance_type: 'cash' });
    assert.equal(voided.transaction.status, 'voided');
    assert.deepEqual(await http.void('same-hold-b', { balance_type: 'cash' }), { ...voided, replayed: true });

    const afterPostHttp = await rejection(http.void('same-hold-a', { balance_type: 'cash' }));
    const afterPostLocal = await rejection(inProcess.void('same-hold-a', { balance_type: 'cash' }));
    assert.equal(afterPostLocal.code, 'pending_already_posted');
    assert.deepEqual(shape(afterPostHttp), shape(afterPostLocal));

    const brokeHttp = await rejection(http.submit({ transaction_id: 'same-over', type: 'consume', user_id: 'same-holder', balance_type: 'cash', amount: 10_000 }));
    const brokeLocal = await rejection(inProcess.submit({ transaction_id: 'same-over', type: 'consume', user_id: 'same-holder', balance_type: 'cash', amount: 10_000 }));
    assert.equal(brokeLocal.code, 'insufficient_balance');
    assert.deepEqual(shape(brokeHttp), shape(brokeLocal));
    assert.equal((await http.getBalance('same-holder', 'cash')).available, 1000 - 150);
  });

  test('forced consumes, holds and posts through either: force reaches the ledger, replays and conflicts alike', async () => {
    const forced = { transaction_id: 'same-advice', type: 'consume', user_id: 'same-debtor', balance_type: 'cash', amount: 70, force: true } as const;
    const written = await http.submit(forced);
    assert.equal(written.transaction.force, true);
    assert.equal(written.transaction.balance_after, -70);
    assert.deepEqual(await inProcess.submit(forced), { ...written, replayed: true });
    const conflictHttp = await rejection(http.submit({ ...forced, force: false }));
    const conflictLocal = await rejection(inProcess.submit({ ...forced, force: false }));
    assert.deepEqual(conflictLocal.details?.fields, ['force']);
    assert.deepEqual(shape(conflictHttp), shape(conflictLocal));

    await inProcess.submit({ transaction_id: 'same-auth', type: 'consume', user_id: 'same-debtor', balance_type: 'cash', amount: 30, pending: true, force: true });
    const overHttp = await rejection(http.post('same-auth', { balance_type: 'cash', amount: 50 }));
    const overLocal = await rejection(inProcess.post('same-auth', { balance_type: 'cash', amount: 50 }));
    assert.equal(overLocal.code, 'exceeds_pending_amount');
    assert.deepEqual(shape(overHttp), shape(overLocal));
    const posted = await inProcess.post('same-auth', { balance_type: 'cash', amount: 50, force: true });
    assert.equal(posted.transaction.posted_amount, 50);
    assert.deepEqual(await http.post('same-auth', { balance_type: 'cash', amount: 50, force: true }), { ...posted, replayed: true });
    assert.equal((await http.getBalance('same-debtor', 'cash')).available, -120);
    assert.deepEqual(await http.getBalance('same-debtor', 'cash'), await inProcess.getBalance('same-debtor', 'cash'));
  });
});
