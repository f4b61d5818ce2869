// Every limit of the ledger, named, with its unit.

/** Smallest amount of one transaction, in minor units (yen, points). */
export const AMOUNT_MIN = 1;
/** Largest amount of one transaction, in minor units: 10^15. */
export const AMOUNT_MAX = 1_000_000_000_000_000;
/** Largest balance an account may hold; keeps every figure an exact JSON number. SQL: ledger_balance_max() (a test checks they agree). */
export const BALANCE_MAX = Number.MAX_SAFE_INTEGER;

/** Furthest below zero a forced debit may take an available balance (a debt), in minor units: 10^15. SQL: ledger_debt_max(). */
export const DEBT_MAX = AMOUNT_MAX;

/** Longest transaction or user id, in characters (all ASCII). */
export const ID_LENGTH_MAX = 128;
/** Transaction ids the ledger gives its own transactions (expiries) start with this. */
export const SYSTEM_TRANSACTION_ID_PREFIX = 'sys:';
/**
 * Transaction and user ids: 1–128 characters of [A-Za-z0-9._:-], but not `.`
 * or `..`: a URL path cannot carry those (clients resolve them as dot segments).
 */
export const ID_PATTERN = `^(?!\\.\\.?$)[A-Za-z0-9._:-]{1,${ID_LENGTH_MAX}}$`;
/** Caller-chosen transaction ids: the same, minus the prefix reserved for the ledger's own. */
export const CALLER_TRANSACTION_ID_PATTERN = `^(?!${SYSTEM_TRANSACTION_ID_PREFIX})(?!\\.\\.?$)[A-Za-z0-9._:-]{1,${ID_LENGTH_MAX}}$`;

export const DESCRIPTION_LENGTH_MAX = 1024;
/** Serialized size of `metadata`, in bytes of UTF-8 JSON. */
export const METADATA_BYTES_MAX = 4 * 1024;
/** Largest request body accepted, in bytes. */
export const REQUEST_BODY_BYTES_MAX = 16 * 1024;

export const PAGE_LIMIT_DEFAULT = 50;
export const PAGE_LIMIT_MAX = 200;

/** Operations committed together in one database transaction (group commit). */
export const WRITE_BATCH_SIZE_MAX = 256;
/**
 * Operations a batch needs to be written beside one already in flight. Below
 * this, they wait for that batch and go in the next one: a batch costs the
 * database about as much as 5 operations before it does any (measured), so
 * small batches side by side spend the CPU that larger ones would save.
 */
export const WRITE_PARALLEL_BATCH_SIZE_MIN = 8;
/** Operations waiting for the writer before new ones are refused with `unavailable`. */
export const WRITE_QUEUE_DEPTH_MAX = 20_000;
/** Holds whose user this process remembers, so that post and void know the account they write without a query. */
export const HOLD_OWNERS_CACHED_MAX = 100_000;
/** Times a batch that lost a race (deadlock, unique key) is re-run before giving up. */
export const WRITE_CONFLICT_RETRIES_MAX = 5;

/** How long a hold lasts when the caller gives no `pending_expires_at`: 7 days. */
export const HOLD_TIMEOUT_DEFAULT_MS = 7 * 24 * 60 * 60 * 1000;
/** Furthest into the future an `expires_at` or `pending_expires_at` may be: about 10 years. */
export const EXPIRY_HORIZON_MAX_MS = 3653 * 24 * 60 * 60 * 1000;
/** Earliest instant a request may name (the Unix epoch): earlier ones are never in the future, and year 0 is no PostgreSQL date. */
export const INSTANT_MIN_MS = 0;
/** Upcoming expirations listed on a balance (the SQL in ledger_balance uses the same number). */
export const EXPIRING_LISTED_MAX = 20;
/** Accounts swept per sweeper round trip (the interval is configuration: KOBAN_SWEEP_INTERVAL_MS). */
export const SWEEP_BATCH_SIZE_MAX = 256;
