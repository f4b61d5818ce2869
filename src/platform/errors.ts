// The one error catalogue. Every error Koban returns is one of these codes,
// with its HTTP status and whether retrying the same request can help.
// docs/errors.md documents the same table; a unit test keeps the two in step,
// and another that each code is raised only by the service that owns it.

/**
 * Who raises a code: `any` service (and the HTTP shell) for the generic ones,
 * else the one service whose rule it names; a test holds every service to it.
 */
export type ErrorOwner = 'any' | 'ledger' | 'bus' | 'payments';

export const ERROR_CATALOGUE = {
  invalid_request: {
    owner: 'any',
    status: 400,
    retryable: false,
    description: 'The request is malformed (not JSON, a repeated key), has a field of the wrong type or out of range, or an unknown field. `details.field` names the field, `details.in` where it travels.',
  },
  not_found: { owner: 'any', status: 404, retryable: false, description: 'No such resource (transaction, route), or no consume under `refund_of` (then `details.field` is `refund_of`).' },
  method_not_allowed: { owner: 'any', status: 405, retryable: false, description: 'The path exists, but not with this method. The `Allow` header (and `details.allow`) lists the methods it takes.' },
  request_timeout: { owner: 'any', status: 408, retryable: false, description: 'The request did not arrive in full within the time the server allows. `details.limit_ms` gives it.' },
  idempotency_conflict: {
    owner: 'any',
    status: 409,
    retryable: false,
    description:
      'The id was already used with different content: a transaction id for this balance type, or an event id on this topic (every attribute but `time` counts). `details.fields` lists every field that differs.',
  },
  not_pending: { owner: 'ledger', status: 409, retryable: false, description: 'Post or void of a transaction that is not a hold (it was posted at once).' },
  pending_already_posted: { owner: 'ledger', status: 409, retryable: false, description: 'Void of a hold that was already posted.' },
  pending_already_voided: { owner: 'ledger', status: 409, retryable: false, description: 'Post of a hold that was already voided.' },
  pending_expired: {
    owner: 'ledger',
    status: 409,
    retryable: false,
    description: 'Post or void of a hold after its deadline (`pending_expires_at`); from that instant it behaves as voided.',
  },
  request_too_large: { owner: 'any', status: 413, retryable: false, description: 'The body is larger than the endpoint accepts. `details.limit_bytes` gives the limit.' },
  unsupported_media_type: { owner: 'any', status: 415, retryable: false, description: 'The request body is not `application/json`.' },
  insufficient_balance: {
    owner: 'ledger',
    status: 422,
    retryable: false,
    description: 'A consume exceeds the available balance. Nothing was stored: the same request may succeed later, once the balance allows.',
  },
  exceeds_pending_amount: { owner: 'ledger', status: 422, retryable: false, description: 'Post of more than the hold reserved. `details.pending_amount` is the most that can be posted.' },
  exceeds_refundable_amount: {
    owner: 'ledger',
    status: 422,
    retryable: false,
    description: 'A refund larger than what remains refundable of its consume. `details.refundable` says how much remains.',
  },
  not_refundable: { owner: 'ledger', status: 422, retryable: false, description: '`refund_of` names a transaction that cannot be refunded this way (not a consume, or another user\'s).' },
  balance_limit_exceeded: {
    owner: 'ledger',
    status: 422,
    retryable: false,
    description: 'An add would take the balance above the largest balance Koban keeps (2^53 − 1 minor units), or a forced consume or post below the largest debt it keeps (10^15 minor units below zero).',
  },
  authorization_closed: {
    owner: 'payments',
    status: 409,
    retryable: false,
    description: 'A reversal or incremental authorization of a payment that holds nothing any more: declined, captured in full, reversed or expired. `details.status` is the payment\'s status.',
  },
  cancel_window_closed: {
    owner: 'payments',
    status: 409,
    retryable: false,
    description: 'A QUICPay+ cancel of a captured payment on a later day than its sales: send a refund instead. `details.captured_on` is the sales date (JST).',
  },
  exceeds_held_amount: { owner: 'payments', status: 422, retryable: false, description: 'A reversal of more than the payment still holds. `details.held_amount` is the most that can be released.' },
  exceeds_captured_amount: {
    owner: 'payments',
    status: 422,
    retryable: false,
    description: 'A refund of more than remains refundable of what was captured (of that sales draft, or of the payment). `details.refundable` says how much remains.',
  },
  unsupported_currency: {
    owner: 'payments',
    status: 422,
    retryable: false,
    description: 'A capture, advice or refund in a currency the payment or the wallet does not hold (an authorization in one is declined instead). `details.supported` lists the currencies.',
  },
  headers_too_large: { owner: 'any', status: 431, retryable: false, description: 'The request line and headers together are larger than the server accepts; a long query string counts. `details.limit_bytes` gives the limit.' },
  internal: { owner: 'any', status: 500, retryable: false, description: 'An unexpected error; it is logged with the request id.' },
  unavailable: {
    owner: 'any',
    status: 503,
    retryable: true,
    description: 'The service, its database or its message broker is unavailable or overloaded, or shutting down. Retry after `Retry-After` seconds with the same id (transaction, message or event).',
  },
  timeout: {
    owner: 'any',
    status: 504,
    retryable: true,
    description: 'The operation did not finish in time; it may or may not have taken effect. Retry with the same transaction id: idempotency makes that safe.',
  },
} as const satisfies Record<string, { owner: ErrorOwner; status: number; retryable: boolean; description: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** Seconds a client should wait before retrying a retryable error. */
export const RETRY_AFTER_SECONDS = 1;

export type ErrorDetails = Record<string, unknown>;

export class KobanError extends Error {
  override name = 'KobanError';
  readonly code: ErrorCode;
  readonly details: ErrorDetails | undefined;

  constructor(code: ErrorCode, message: string, details?: ErrorDetails, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status;
  }

  get retryable(): boolean {
    return ERROR_CATALOGUE[this.code].retryable;
  }

  toBody(): ErrorBody {
    return {
      error: {
        code: this.code,
        message: this.message,
        retryable: this.retryable,
        ...(this.details === undefined ? {} : { details: this.details }),
      },
    };
  }
}

export type ErrorBody = {
  error: { code: ErrorCode; message: string; retryable: boolean; details?: ErrorDetails };
};

export function isKobanError(error: unknown): error is KobanError {
  return error instanceof KobanError;
}

export function isErrorCode(error: unknown, code: ErrorCode): error is KobanError {
  return isKobanError(error) && error.code === code;
}

export function invalidRequest(field: string, message: string, details?: ErrorDetails): KobanError {
  return new KobanError('invalid_request', message, { field, ...details });
}
