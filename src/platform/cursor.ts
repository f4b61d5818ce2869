// Opaque page cursors for keyset pagination: the last row's key, base64url.
// Callers pass back what a page returned; anything else is a 400.
import { KobanError } from './errors.ts';

const CURSOR_PATTERN = /^k(\d{1,16})$/;

export function encodeCursor(key: number): string {
  return Buffer.from(`k${key}`).toString('base64url');
}

export function decodeCursor(cursor: string): number {
  const match = CURSOR_PATTERN.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw new KobanError('invalid_request', 'cursor is not one this API returned', { field: 'cursor', in: 'query' });
  return Number(match[1]);
}
