// Goal: the webhook signature is HMAC-SHA256 over `timestamp.body` in Stripe's header format, matching a vector computed independently (openssl), and verification refuses a changed body, another secret, a stale timestamp and a malformed header.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signatureHeader, signatureOf, verifySignature } from './signature.ts';

const SECRET = 'whsec_test_secret_0123';
const BODY = '{"a":1}';
const T = 1_700_000_000;
// printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_test_secret_0123'
const KNOWN = 'b1e06771f9a20c020fc4b9be257996790d615bbe4d030159b6a5669fdada024c';

test('matches the known vector', () => {
  assert.equal(signatureOf(SECRET, T, BODY), KNOWN);
  assert.equal(signatureHeader(SECRET, T, BODY), `t=${T},v1=${KNOWN}`);
});

test('a receiver accepts what was signed, within the tolerance', () => {
  assert.deepEqual(verifySignature(SECRET, signatureHeader(SECRET, T, BODY), BODY, T + 299), { ok: true, timestamp: T });
  // A second v1 (a secret being rotated) is fine as long as one matches.
  assert.equal(verifySignature(SECRET, `t=${T},v1=${'0'.repeat(64)},v1=${KNOWN}`, BODY, T).ok, true);
});

test('a receiver refuses a changed body, another secret, a stale timestamp, or a malformed header', () => {
  const header = signatureHeader(SECRET, T, BODY);
  assert.equal(verifySignature(SECRET, header, '{"a":2}', T).ok, false);
  assert.equal(verifySignature('another_secret_000000', header, BODY, T).ok, false);
  assert.deepEqual(verifySignature(SECRET, header, BODY, T + 301), { ok: false, reason: 'timestamp outside the tolerance' });
  assert.equal(verifySignature(SECRET, undefined, BODY, T).ok, false);
  assert.equal(verifySignature(SECRET, `v1=${KNOWN}`, BODY, T).ok, false);
  assert.equal(verifySignature(SECRET, 'garbage', BODY, T).ok, false);
  // The timestamp is signed: moving it breaks the signature.
  assert.equal(verifySignature(SECRET, `t=${T + 1},v1=${KNOWN}`, BODY, T).ok, false);
});
