// Goal: the domain's request checks catch what only an in-process caller can send (values JSON cannot carry), judge instants against the given now, and leave the caller's objects as they were.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KobanError } from '../../../platform/errors.ts';
import type { TransactionRequest } from '../../../contracts/ledger/types.ts';
import { EXPIRY_HORIZON_MAX_MS, METADATA_BYTES_MAX } from './limits.ts';
import { LedgerValidator, checkPathBalanceType, checkPathIds } from './validation.ts';

const validator = new LedgerValidator(['cash', 'points']);
const NOW_MS = Date.parse('2026-01-01T00:00:00Z');
const valid: TransactionRequest = { transaction_id: 'tx-1', type: 'add', user_id: 'u-1', balance_type: 'points', amount: 100 };

function rejectsNaming(field: string, run: () => void): KobanError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof KobanError, `rejected with a KobanError, got ${String(caught)}`);
  assert.equal(caught.code, 'invalid_request');
  assert.equal(caught.details?.field, field, caught.message);
  return caught;
}

describe('values only an in-process caller can send', () => {
  const metadataCases: Array<[string, unknown]> = [
    ['a BigInt inside metadata', { n: 10n }],
    ['metadata that refers to itself', (() => {
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      return cyclic;
    })()],
    ['a Date as metadata (stored as a string, not an object)', new Date(NOW_MS)],
    ['an object whose toJSON is not an object', { toJSON: () => 'flat' }],
  ];
  for (const [name, metadata] of metadataCases) {
    test(`${name} → invalid_request naming metadata`, () => {
      rejectsNaming('metadata', () => validator.transactionRequest({ ...valid, metadata: metadata as Record<string, unknown> }, NOW_MS));
    });
  }

  test('a BigInt amount, Infinity, NaN and -0 are not amounts', () => {
    for (const amount of [10n, Number.POSITIVE_INFINITY, Number.NaN, -0]) {
      rejectsNaming('amount', () => validator.transactionRequest({ ...valid, amount: amount as number }, NOW_MS));
    }
  });

  test('a NUL escaped as text is not a NUL: metadata with a literal backslash-u0000 is kept', () => {
    validator.transactionRequest({ ...valid, metadata: { path: 'C:\\u0000', pair: '😀', escaped: '\\\\u0000' } }, NOW_MS);
    rejectsNaming('metadata', () => validator.transactionRequest({ ...valid, metadata: { path: '\\\u0000' } }, NOW_MS));
  });

  test('metadata at exactly METADATA_BYTES_MAX bytes passes, one more byte does not', () => {
    const padding = METADATA_BYTES_MAX - JSON.stringify({ note: '' }).length;
    validator.transactionRequest({ ...valid, metadata: { note: 'm'.repeat(padding) } }, NOW_MS);
    rejectsNaming('metadata', () => validator.transactionRequest({ ...valid, metadata: { note: 'm'.repeat(padding + 1) } }, NOW_MS));
  });

  test('the caller\'s objects are not changed (no defaults written into them)', () => {
    const request = { ...valid, metadata: { a: 1 } };
    const copy = structuredClone(request);
    validator.transactionRequest(request, NOW_MS);
    assert.deepEqual(request, copy);
    const query = {};
    validator.transactionList('u-1', query);
    assert.deepEqual(query, {}, 'limit gets no default written in');
  });
});

describe('force', () => {
  test('applies to consumes (posted or held) and posts of holds; anywhere else it names force, and it must be a boolean', () => {
    validator.transactionRequest({ ...valid, type: 'consume', force: true }, NOW_MS);
    validator.transactionRequest({ ...valid, type: 'consume', pending: true, force: true }, NOW_MS);
    validator.transactionRequest({ ...valid, force: false }, NOW_MS);
    validator.postRequest('hold-1', { balance_type: 'points', amount: 5, force: true });
    rejectsNaming('force', () => validator.transactionRequest({ ...valid, force: true }, NOW_MS));
    rejectsNaming('force', () => validator.transactionRequest({ ...valid, type: 'refund', refund_of: 'c-1', force: true }, NOW_MS));
    rejectsNaming('force', () => validator.transactionRequest({ ...valid, type: 'consume', force: 1 as unknown as boolean }, NOW_MS));
    rejectsNaming('force', () => validator.postRequest('hold-1', { balance_type: 'points', force: 'yes' as unknown as boolean }));
    rejectsNaming('force', () => validator.voidRequest('hold-1', { balance_type: 'points', force: true } as never));
  });
});

describe('instants are judged against the now given', () => {
  test('the horizon is counted from now, to the millisecond', () => {
    const edge = new Date(NOW_MS + EXPIRY_HORIZON_MAX_MS).toISOString();
    const beyond = new Date(NOW_MS + EXPIRY_HORIZON_MAX_MS + 1).toISOString();
    validator.transactionRequest({ ...valid, expires_at: edge }, NOW_MS);
    const error = rejectsNaming('expires_at', () => validator.transactionRequest({ ...valid, expires_at: beyond }, NOW_MS));
    assert.equal(error.details?.horizon_days, EXPIRY_HORIZON_MAX_MS / 86_400_000);
    validator.transactionRequest({ ...valid, expires_at: beyond }, NOW_MS + 1);
  });

  test('an instant in the past passes here (the ledger refuses it at creation, so that a replay still replays)', () => {
    validator.transactionRequest({ ...valid, expires_at: '2020-01-01T00:00:00Z' }, NOW_MS);
  });
});

describe('path checks for an HTTP client', () => {
  test('ids a URL cannot carry are refused as the service refuses them', () => {
    for (const id of ['', '.', '..', 'a/b', 'x'.repeat(129)]) {
      const error = rejectsNaming('transaction_id', () => checkPathIds({ transaction_id: id }));
      assert.equal(error.details?.in, 'path');
    }
    checkPathIds({ transaction_id: '...', user_id: 'a.b' });
    for (const balanceType of ['', '.', '..']) rejectsNaming('balance_type', () => checkPathBalanceType(balanceType));
    checkPathBalanceType('gold');
  });
});
