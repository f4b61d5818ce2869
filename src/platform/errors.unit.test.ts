// Goal: the error catalogue in code and the one documented in docs/errors.md never drift apart.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ERROR_CATALOGUE, KobanError } from './errors.ts';

const DOC_PATH = path.join(import.meta.dirname, '..', '..', 'docs', 'errors.md');

test('docs/errors.md lists exactly the codes in the catalogue, with the same status and retryable flag', async () => {
  const doc = await readFile(DOC_PATH, 'utf8');
  const documented = new Map<string, { status: number; retryable: boolean }>();
  for (const match of doc.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| (yes|no) \|/gm)) {
    documented.set(match[1]!, { status: Number(match[2]), retryable: match[3] === 'yes' });
  }
  const inCode = new Map(Object.entries(ERROR_CATALOGUE).map(([code, entry]) => [code, { status: entry.status, retryable: entry.retryable }]));
  assert.deepEqual(Object.fromEntries(documented), Object.fromEntries(inCode));
});

test('only 503 and 504 are retryable, and every status is an error status', () => {
  for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
    assert.ok(entry.status >= 400 && entry.status < 600, code);
    assert.equal(entry.retryable, entry.status === 503 || entry.status === 504, code);
  }
});

test('a KobanError renders the catalogue shape', () => {
  const error = new KobanError('insufficient_balance', 'not enough', { available: 1, requested: 2 });
  assert.equal(error.status, 422);
  assert.deepEqual(error.toBody(), { error: { code: 'insufficient_balance', message: 'not enough', retryable: false, details: { available: 1, requested: 2 } } });
  assert.deepEqual(new KobanError('timeout', 'slow').toBody(), { error: { code: 'timeout', message: 'slow', retryable: true } });
});
