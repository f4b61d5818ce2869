// What a PostgreSQL failure means to the caller (retry now, retry later, or
// nothing). No driver import: a service core may classify its store's errors
// without loading pg.

export const DUPLICATE_DATABASE = '42P04';
export const UNIQUE_VIOLATION = '23505';
const DEADLOCK_DETECTED = '40P01';
const SERIALIZATION_FAILURE = '40001';
const QUERY_CANCELED = '57014';
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300', '53400']);
const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH']);

export function pgErrorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

/**
 * What a failed statement means to the caller:
 * - `conflict`: the transaction lost a race (deadlock, unique key, serialization); re-running it is safe and will see the winner;
 * - `unavailable`: the server is down or refused us; retry later;
 * - `timeout`: the statement ran out of time; retry later;
 * - `fatal`: a bug or bad data; retrying will not help.
 */
export function classifyPgError(error: unknown): 'conflict' | 'unavailable' | 'timeout' | 'fatal' {
  const code = pgErrorCode(error);
  if (code === DEADLOCK_DETECTED || code === SERIALIZATION_FAILURE || code === UNIQUE_VIOLATION) return 'conflict';
  if (code === QUERY_CANCELED) return 'timeout';
  if (code !== undefined && (UNAVAILABLE_CODES.has(code) || NETWORK_ERROR_CODES.has(code) || code.startsWith('08'))) return 'unavailable';
  // FATAL ends the session (refused connection, database closed, shutdown): the server, not the request, is the problem.
  if (typeof error === 'object' && error !== null && 'severity' in error && (error.severity === 'FATAL' || error.severity === 'PANIC')) return 'unavailable';
  const message = error instanceof Error ? error.message : '';
  if (/Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(message)) {
    return 'unavailable';
  }
  return 'fatal';
}
