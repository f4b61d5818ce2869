// Typed client of the balance API. Retryable failures (503, 504, lost
// connections) are retried with the same transaction id, which idempotency
// makes safe; everything else surfaces as a LedgerClientError.
import type { ErrorBody, ErrorCode } from '../../../platform/errors.ts';
import type { Balance, Transaction, TransactionRequest } from '../../../contracts/ledger/types.ts';

export const CLIENT_ATTEMPTS_MAX = 5;
export const CLIENT_BACKOFF_BASE_MS = 100;
export const CLIENT_BACKOFF_MAX_MS = 5_000;
export const CLIENT_REQUEST_TIMEOUT_MS = 10_000;

export type LedgerClientOptions = {
  baseUrl: string;
  attemptsMax?: number;
  backoffBaseMs?: number;
  requestTimeoutMs?: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
};

export type TransactionResult = { transaction: Transaction; replayed: boolean };
export type TransactionList = { data: Transaction[]; next_cursor: string | null };

export class LedgerClientError extends Error {
  override name = 'LedgerClientError';
  readonly status: number;
  readonly code: ErrorCode | 'network';
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(status: number, body: ErrorBody['error'] | { code: 'network'; message: string; retryable: boolean; details?: Record<string, unknown> }, options?: ErrorOptions) {
    super(body.message, options);
    this.status = status;
    this.code = body.code;
    this.retryable = body.retryable;
    this.details = body.details;
  }
}

export function isLedgerClientError(error: unknown, code?: LedgerClientError['code']): error is LedgerClientError {
  return error instanceof LedgerClientError && (code === undefined || error.code === code);
}

export class LedgerClient {
  readonly #baseUrl: string;
  readonly #attemptsMax: number;
  readonly #backoffBaseMs: number;
  readonly #requestTimeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(options: LedgerClientOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/$/, '');
    this.#attemptsMax = options.attemptsMax ?? CLIENT_ATTEMPTS_MAX;
    this.#backoffBaseMs = options.backoffBaseMs ?? CLIENT_BACKOFF_BASE_MS;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS;
    this.#fetch = options.fetch ?? fetch;
    this.#sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Add or consume; safe to call again with the same request after any failure. */
  async postTransaction(request: TransactionRequest): Promise<TransactionResult> {
    const response = await this.#send('POST', '/v1/transactions', request);
    return { transaction: (await response.json()) as Transaction, replayed: response.headers.get('idempotent-replayed') === 'true' };
  }

  async getTransaction(transactionId: string): Promise<Transaction[]> {
    const response = await this.#send('GET', `/v1/transactions/${encodeURIComponent(transactionId)}`);
    return ((await response.json()) as { data: Transaction[] }).data;
  }

  async getBalance(userId: string, balanceType: string): Promise<Balance> {
    const response = await this.#send('GET', `/v1/users/${encodeURIComponent(userId)}/balances/${encodeURIComponent(balanceType)}`);
    return (await response.json()) as Balance;
  }

  async listBalances(userId: string): Promise<Balance[]> {
    const response = await this.#send('GET', `/v1/users/${encodeURIComponent(userId)}/balances`);
    return ((await response.json()) as { data: Balance[] }).data;
  }

  async listTransactions(userId: string, query: { balanceType?: string; limit?: number; cursor?: string } = {}): Promise<TransactionList> {
    const search = new URLSearchParams();
    if (query.balanceType !== undefined) search.set('balance_type', query.balanceType);
    if (query.limit !== undefined) search.set('limit', String(query.limit));
    if (query.cursor !== undefined) search.set('cursor', query.cursor);
    const suffix = search.size > 0 ? `?${search}` : '';
    const response = await this.#send('GET', `/v1/users/${encodeURIComponent(userId)}/transactions${suffix}`);
    return (await response.json()) as TransactionList;
  }

  async #send(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      let error: LedgerClientError;
      let retryAfterMs: number | undefined;
      try {
        const response = await this.#fetch(`${this.#baseUrl}${path}`, {
          method,
          headers: body === undefined ? {} : { 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(this.#requestTimeoutMs),
        });
        if (response.ok) return response;
        const payload = (await response.json().catch(() => undefined)) as ErrorBody | undefined;
        error = new LedgerClientError(
          response.status,
          payload?.error ?? { code: response.status >= 500 ? 'unavailable' : 'invalid_request', message: `HTTP ${response.status}`, retryable: response.status === 503 || response.status === 504 },
        );
        const retryAfterSeconds = Number(response.headers.get('retry-after'));
        if (Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0) retryAfterMs = retryAfterSeconds * 1000;
      } catch (cause) {
        // The request may or may not have reached the server: a retry with the same id is the safe answer.
        error = new LedgerClientError(0, { code: 'network', message: `Could not reach the ledger: ${(cause as Error).message}`, retryable: true }, { cause });
      }
      if (!error.retryable || attempt >= this.#attemptsMax) throw error;
      await this.#sleep(retryAfterMs ?? this.#backoffMs(attempt));
    }
  }

  /** Exponential backoff with full jitter. */
  #backoffMs(attempt: number): number {
    return Math.random() * Math.min(CLIENT_BACKOFF_MAX_MS, this.#backoffBaseMs * 2 ** (attempt - 1));
  }
}
