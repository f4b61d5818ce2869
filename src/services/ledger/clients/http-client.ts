// LedgerApi over HTTP. Retryable failures (503, 504, lost connections) are
// retried with the same ids, which idempotency makes safe, honouring
// Retry-After; every failure surfaces as the error an in-process caller gets
// (KobanError: catalogue code, status, retryable, details). Sent with undici's
// request API on a keep-alive pool, not fetch: a card authorization makes one
// call, and fetch's WHATWG objects cost about 4× the CPU per call.
import { Pool } from 'undici';
import { KobanError, type ErrorBody, type ErrorCode } from '../../../platform/errors.ts';
import { type LedgerApi, type TransactionList, type TransactionListQuery, type WriteResult, isLedgerError, isLedgerErrorCode } from '../../../contracts/ledger/ledger-api.ts';
import type { Balance, PostRequest, Transaction, TransactionRequest, VoidRequest } from '../../../contracts/ledger/types.ts';
import { checkPathBalanceType, checkPathIds } from '../domain/validation.ts';

export const CLIENT_ATTEMPTS_MAX = 5;
export const CLIENT_BACKOFF_BASE_MS = 100;
export const CLIENT_BACKOFF_MAX_MS = 5_000;
export const CLIENT_REQUEST_TIMEOUT_MS = 10_000;
/** Longest wait a Retry-After header can impose between attempts; a longer one is cut to this. */
export const CLIENT_RETRY_AFTER_MAX_MS = 30_000;
/** Connections kept open to the ledger at most; more calls at once queue for one (a card route runs 32 at most). */
export const CLIENT_CONNECTIONS_MAX = 64;

/** The server's answer to a replay, as in routes.ts. */
const REPLAY_HEADER = 'idempotent-replayed';
/** Failures before anything reached the ledger: retrying cannot apply anything twice, and giving up means nothing happened. */
const NOT_SENT_ERROR_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

export type LedgerClientOptions = {
  baseUrl: string;
  attemptsMax?: number;
  backoffBaseMs?: number;
  /** Per attempt, for the answer's headers and again for its body; undici's timers keep it to within a second. */
  requestTimeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
};


type Reply = { body: unknown; replayed: boolean };

export class LedgerClient implements LedgerApi {
  /** The path the ledger's API sits under at its origin ('' at the root), without a trailing slash. */
  readonly #basePath: string;
  readonly #pool: Pool;
  readonly #attemptsMax: number;
  readonly #backoffBaseMs: number;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(options: LedgerClientOptions) {
    const base = new URL(options.baseUrl);
    this.#basePath = base.pathname.replace(/\/$/, '');
    const requestTimeoutMs = options.requestTimeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS;
    // Idle keep-alive sockets do not hold the process open (undici unrefs them).
    this.#pool = new Pool(base.origin, { connections: CLIENT_CONNECTIONS_MAX, headersTimeout: requestTimeoutMs, bodyTimeout: requestTimeoutMs });
    this.#attemptsMax = options.attemptsMax ?? CLIENT_ATTEMPTS_MAX;
    this.#backoffBaseMs = options.backoffBaseMs ?? CLIENT_BACKOFF_BASE_MS;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Add, consume or refund; safe to call again with the same request after any failure. */
  async submit(request: TransactionRequest): Promise<WriteResult> {
    return toWriteResult(await this.#send('POST', '/v1/transactions', request));
  }

  async post(transactionId: string, request: PostRequest): Promise<WriteResult> {
    checkPathIds({ transaction_id: transactionId });
    return toWriteResult(await this.#send('POST', `/v1/transactions/${encodeURIComponent(transactionId)}/post`, request));
  }

  async void(transactionId: string, request: VoidRequest): Promise<WriteResult> {
    checkPathIds({ transaction_id: transactionId });
    return toWriteResult(await this.#send('POST', `/v1/transactions/${encodeURIComponent(transactionId)}/void`, request));
  }

  async getTransactions(transactionId: string): Promise<Transaction[]> {
    checkPathIds({ transaction_id: transactionId });
    return ((await this.#send('GET', `/v1/transactions/${encodeURIComponent(transactionId)}`)).body as { data: Transaction[] }).data;
  }

  async getBalance(userId: string, balanceType: string): Promise<Balance> {
    checkPathIds({ user_id: userId });
    checkPathBalanceType(balanceType);
    return (await this.#send('GET', `/v1/users/${encodeURIComponent(userId)}/balances/${encodeURIComponent(balanceType)}`)).body as Balance;
  }

  async listBalances(userId: string): Promise<Balance[]> {
    checkPathIds({ user_id: userId });
    return ((await this.#send('GET', `/v1/users/${encodeURIComponent(userId)}/balances`)).body as { data: Balance[] }).data;
  }

  async listTransactions(userId: string, query: TransactionListQuery = {}): Promise<TransactionList> {
    checkPathIds({ user_id: userId });
    // Every key goes out, known or not, so that the server judges the query as an in-process call would be judged.
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) search.set(key, String(value));
    const suffix = search.size > 0 ? `?${search}` : '';
    return (await this.#send('GET', `/v1/users/${encodeURIComponent(userId)}/transactions${suffix}`)).body as TransactionList;
  }

  async #send(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Reply> {
    const payload = body === undefined ? undefined : serialize(body);
    for (let attempt = 1; ; attempt++) {
      let error: KobanError;
      let retryAfterMs: number | undefined;
      try {
        const response = await this.#pool.request({
          path: `${this.#basePath}${path}`,
          method,
          ...(payload === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: payload }),
        });
        // Read inside the try: a body cut off mid-way (or too slow: bodyTimeout) is a lost response, retried like one.
        const text = await response.body.text();
        if (response.statusCode >= 200 && response.statusCode < 300) {
          return { body: JSON.parse(text), replayed: headerOf(response.headers, REPLAY_HEADER) === 'true' };
        }
        error = errorFromResponse(response.statusCode, text);
        retryAfterMs = parseRetryAfterMs(headerOf(response.headers, 'retry-after'));
      } catch (cause) {
        error = transportError(cause);
      }
      if (!error.retryable || attempt >= this.#attemptsMax) throw error;
      await this.#sleep(Math.min(retryAfterMs ?? this.#backoffMs(attempt), CLIENT_RETRY_AFTER_MAX_MS));
    }
  }

  /** Exponential backoff with full jitter. */
  #backoffMs(attempt: number): number {
    return Math.random() * Math.min(CLIENT_BACKOFF_MAX_MS, this.#backoffBaseMs * 2 ** (attempt - 1));
  }
}

function toWriteResult(reply: Reply): WriteResult {
  return { transaction: reply.body as Transaction, replayed: reply.replayed };
}

/** A request that cannot be JSON (a BigInt, a cycle) never leaves: no attempt could succeed. */
function serialize(body: unknown): string {
  try {
    return JSON.stringify(body);
  } catch (cause) {
    throw new KobanError('invalid_request', `The request cannot be sent as JSON: ${(cause as Error).message}`, { field: 'body' }, { cause });
  }
}

/** The ledger's error body as the error it describes; anything else (a proxy's page, a code this client does not know) judged by its status. */
function errorFromResponse(status: number, text: string): KobanError {
  let error: Partial<ErrorBody['error']> | undefined;
  try {
    error = (JSON.parse(text) as Partial<ErrorBody> | null)?.error;
  } catch {
    error = undefined;
  }
  if (error !== undefined && isLedgerErrorCode(error.code)) return new KobanError(error.code, String(error.message ?? `HTTP ${status}`), error.details);
  return new KobanError(codeForStatus(status), `HTTP ${status}${typeof error?.message === 'string' ? `: ${error.message}` : ''}`, {
    http_status: status,
    ...(typeof error?.code === 'string' ? { received_code: error.code } : {}),
  });
}

function codeForStatus(status: number): ErrorCode {
  if (status === 429 || status === 502 || status === 503) return 'unavailable';
  if (status === 408 || status === 504) return 'timeout';
  if (status === 404) return 'not_found';
  if (status === 415) return 'unsupported_media_type';
  return status >= 500 ? 'internal' : 'invalid_request';
}

/**
 * A request that got no answer. Refused before sending: `unavailable`,
 * nothing happened. Cut off or timed out after sending: `timeout`, it may have
 * taken effect — either way a retry with the same ids is safe.
 */
function transportError(cause: unknown): KobanError {
  const code = errorCode(cause) ?? errorCode((cause as { cause?: unknown } | undefined)?.cause);
  const message = cause instanceof Error ? cause.message : String(cause);
  if (code !== undefined && NOT_SENT_ERROR_CODES.has(code)) {
    return new KobanError('unavailable', `Could not reach the ledger: ${message} (${code})`, { transport: code }, { cause });
  }
  return new KobanError('timeout', `No answer from the ledger (${code ?? message}); it may have applied the request, so retry with the same ids`, { transport: code ?? 'no_response' }, { cause });
}

/** undici's codes for an answer that did not come in time, reported as one: TimeoutError. */
const TIMEOUT_ERROR_CODES: ReadonlySet<string> = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  if ('code' in error && typeof error.code === 'string' && TIMEOUT_ERROR_CODES.has(error.code)) return 'TimeoutError';
  return 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** A response header's value (undici gives names in lower case; a repeated header, its first value). */
function headerOf(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** Retry-After in seconds or as an HTTP date. */
function parseRetryAfterMs(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
