// Every limit and default of the notifications service, named, with its unit.

/** Languages a notice is rendered in; the first is the default unless NOTIFICATIONS_DEFAULT_LANGUAGE says otherwise. */
export const LANGUAGES = ['ja', 'en'] as const;
export type Language = (typeof LANGUAGES)[number];
export const DEFAULT_LANGUAGE: Language = 'ja';

/** Notices per page of `GET /v1/users/{user_id}/notices`. */
export const NOTICE_PAGE_LIMIT_DEFAULT = 20;
export const NOTICE_PAGE_LIMIT_MAX = 100;
/** Dead deliveries per page, and ids in one redrive. */
export const DEAD_LETTER_PAGE_LIMIT_DEFAULT = 50;
export const DEAD_LETTER_PAGE_LIMIT_MAX = 200;
export const REDRIVE_IDS_MAX = 1_000;
/** A cursor as this service returns it (base64url of the platform's keyset cursor). */
export const CURSOR_LENGTH_MAX = 64;
export const CURSOR_PATTERN = '^[A-Za-z0-9_-]{1,64}$';

/** A user id in a path: what the ledger and the events accept. */
export const USER_ID_PATTERN = '^(?!\\.\\.?$)[A-Za-z0-9._:-]{1,128}$';
/** A webhook endpoint: http(s), no whitespace; longer URLs are a mistake, not an endpoint. */
export const WEBHOOK_URL_PATTERN = '^https?://[^\\s/?#]+(/[^\\s]*)?$';
export const WEBHOOK_URL_LENGTH_MAX = 2_048;
/** The signing secret, in characters: shorter is guessable. */
export const WEBHOOK_SECRET_LENGTH_MIN = 16;

/** How long one webhook request may take before it counts as failed. */
export const WEBHOOK_TIMEOUT_MS_DEFAULT = 5_000;
export const WEBHOOK_TIMEOUT_MS_MAX = 60_000;
/** Attempts (the first included) before a delivery becomes a dead letter. */
export const WEBHOOK_ATTEMPTS_MAX_DEFAULT = 8;
export const WEBHOOK_ATTEMPTS_MAX_LIMIT = 50;
/** First retry delay; doubles per attempt up to the max, with jitter. */
export const WEBHOOK_RETRY_INITIAL_MS_DEFAULT = 1_000;
export const WEBHOOK_RETRY_MAX_MS_DEFAULT = 60 * 60 * 1000;
/**
 * A claimed delivery's lease beyond its timeout: if the process dies while
 * sending, the delivery is claimed again after timeout + this (at least once).
 */
export const DELIVERY_LEASE_MARGIN_MS = 5_000;
/** Deliveries sent at once by one worker: a hanging endpoint holds one slot, not the others. */
export const DELIVERY_CONCURRENCY_DEFAULT = 16;
export const DELIVERY_CONCURRENCY_LIMIT = 256;
/** With nothing announced, the worker still looks for due retries this often. */
export const DELIVERY_IDLE_POLL_MS = 1_000;
/** After the database fails, the worker waits this long before trying again. */
export const DELIVERY_FAILURE_PAUSE_MS = 1_000;
/** Stored last_error text, in characters. */
export const LAST_ERROR_LENGTH_MAX = 1_000;

/** The bus subscriptions' retry policy for events that fail (poison, database down). */
export const CONSUMER_MAX_DELIVERIES_DEFAULT = 5;
export const CONSUMER_RETRY_INITIAL_MS_DEFAULT = 1_000;
