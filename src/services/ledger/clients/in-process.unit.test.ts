// Goal: the in-process adapter hands a caller only catalogue errors, as the HTTP client does: a bug behind it is `internal`, a catalogue error passes unchanged.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LedgerApi } from '../../../contracts/ledger/ledger-api.ts';
import { KobanError } from '../../../platform/errors.ts';
import { InProcessLedgerClient } from './in-process.ts';

const failing = (error: unknown): LedgerApi => {
  const fail = async (): Promise<never> => {
    throw error;
  };
  return { submit: fail, post: fail, void: fail, getTransactions: fail, getBalance: fail, listBalances: fail, listTransactions: fail };
};

test('an unexpected error behind the adapter is internal, with the original as its cause', async () => {
  const bug = new TypeError('cannot read properties of undefined');
  const client = new InProcessLedgerClient(failing(bug));
  await assert.rejects(client.getBalance('u-1', 'points'), (error: unknown) => {
    assert.ok(error instanceof KobanError);
    assert.equal(error.code, 'internal');
    assert.equal(error.status, 500);
    assert.equal(error.retryable, false);
    assert.equal(error.cause, bug);
    return true;
  });
});

test('a catalogue error passes through as it was thrown', async () => {
  const refused = new KobanError('insufficient_balance', 'not enough', { available: 3, requested: 5 });
  const client = new InProcessLedgerClient(failing(refused));
  for (const call of [
    () => client.submit({ transaction_id: 't', type: 'consume', user_id: 'u', balance_type: 'points', amount: 5 }),
    () => client.post('t', { balance_type: 'points' }),
    () => client.void('t', { balance_type: 'points' }),
    () => client.getTransactions('t'),
    () => client.listBalances('u'),
    () => client.listTransactions('u'),
  ]) {
    await assert.rejects(call(), (error: unknown) => error === refused);
  }
});
