// The webhook signature, as Stripe signs its webhooks: HMAC-SHA256 of
// `<unix seconds>.<body>` with the shared secret, sent as
// `Koban-Signature: t=<unix seconds>,v1=<hex>`. The timestamp is signed too,
// so a receiver can refuse an old (replayed) request; `v1` names the scheme so
// a new one can be sent beside it.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'Koban-Signature';
/** What a receiver may tolerate between `t` and its own clock by default. */
export const SIGNATURE_TOLERANCE_SECONDS_DEFAULT = 300;

export function signatureOf(secret: string, timestampSeconds: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestampSeconds}.${body}`, 'utf8').digest('hex');
}

/** The header's value for `body` sent at `timestampSeconds`. */
export function signatureHeader(secret: string, timestampSeconds: number, body: string): string {
  return `t=${timestampSeconds},v1=${signatureOf(secret, timestampSeconds, body)}`;
}

/**
 * What a receiver does (and the tests do): parse the header, recompute, compare
 * in constant time, and check the timestamp is within `toleranceSeconds` of now.
 */
export function verifySignature(
  secret: string,
  header: string | undefined,
  body: string,
  nowSeconds: number,
  toleranceSeconds = SIGNATURE_TOLERANCE_SECONDS_DEFAULT,
): { ok: true; timestamp: number } | { ok: false; reason: string } {
  if (header === undefined) return { ok: false, reason: 'no signature header' };
  const parts = new Map<string, string[]>();
  for (const part of header.split(',')) {
    const at = part.indexOf('=');
    if (at <= 0) return { ok: false, reason: 'malformed signature header' };
    const key = part.slice(0, at).trim();
    parts.set(key, [...(parts.get(key) ?? []), part.slice(at + 1).trim()]);
  }
  const t = parts.get('t')?.[0];
  if (t === undefined || !/^\d{1,12}$/.test(t)) return { ok: false, reason: 'no timestamp' };
  const timestamp = Number(t);
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return { ok: false, reason: 'timestamp outside the tolerance' };
  const expected = Buffer.from(signatureOf(secret, timestamp, body), 'hex');
  const matches = (parts.get('v1') ?? []).some((candidate) => {
    const given = Buffer.from(candidate, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  return matches ? { ok: true, timestamp } : { ok: false, reason: 'no v1 signature matches' };
}
