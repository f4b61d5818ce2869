// Ledger transaction ids derived from what a grant is about, so that a
// redelivered event, a replayed decision or a second process asks the ledger
// for the same transaction, and the ledger's idempotency makes it happen once.
import { createHash } from 'node:crypto';

/** The ledger's caller id alphabet and length (its CALLER_TRANSACTION_ID_PATTERN, without the reserved `sys:` prefix). */
const LEDGER_ID_PATTERN = /^[A-Za-z0-9._:-]+$/;
const LEDGER_ID_LENGTH_MAX = 128;
/** Room kept after the base for a step suffix such as `:confirm:1000`. */
const STEP_SUFFIX_LENGTH_MAX = 16;
/** Hex digits of the digest that stands for a base that cannot be used as is: 160 bits, no collision in practice. */
const DIGEST_HEX_LENGTH = 40;

/**
 * `wanted` if the ledger takes it (with room for a step suffix), else its
 * prefix (up to the first `:`) and a digest of the whole: a payment id or user
 * id may be longer than the ledger allows or use other characters.
 */
export function ledgerIdBase(wanted: string): string {
  if (wanted.length + STEP_SUFFIX_LENGTH_MAX <= LEDGER_ID_LENGTH_MAX && LEDGER_ID_PATTERN.test(wanted)) return wanted;
  const prefix = wanted.slice(0, wanted.indexOf(':'));
  return `${prefix}:h.${createHash('sha256').update(wanted).digest('hex').slice(0, DIGEST_HEX_LENGTH)}`;
}
