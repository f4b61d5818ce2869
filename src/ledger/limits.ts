// Every limit of the ledger, named, with its unit.

/** Smallest amount of one transaction, in minor units (yen, points). */
export const AMOUNT_MIN = 1;
/** Largest amount of one transaction, in minor units: 10^15. */
export const AMOUNT_MAX = 1_000_000_000_000_000;
/** Largest balance an account may hold; keeps every figure an exact JSON number. */
export const BALANCE_MAX = Number.MAX_SAFE_INTEGER;

/** Transaction and user ids: 1–128 characters of [A-Za-z0-9._:-]. */
export const ID_PATTERN = '^[A-Za-z0-9._:-]{1,128}$';
export const ID_LENGTH_MAX = 128;

export const DESCRIPTION_LENGTH_MAX = 1024;
/** Serialized size of `metadata`, in bytes of UTF-8 JSON. */
export const METADATA_BYTES_MAX = 4 * 1024;
/** Largest request body accepted, in bytes. */
export const REQUEST_BODY_BYTES_MAX = 16 * 1024;

export const PAGE_LIMIT_DEFAULT = 50;
export const PAGE_LIMIT_MAX = 200;

/** Operations committed together in one database transaction (group commit). */
export const WRITE_BATCH_SIZE_MAX = 256;
/** Operations waiting for the writer before new ones are refused with `unavailable`. */
export const WRITE_QUEUE_DEPTH_MAX = 20_000;
/** Times a batch that lost a race (deadlock, unique key) is re-run before giving up. */
export const WRITE_CONFLICT_RETRIES_MAX = 5;
