// Every limit of the payment services, named, with its unit.

/** Network message ids (authorization, sales draft, reversal, refund ids): short enough that the ledger ids derived from two of them stay under its 128. */
export const NETWORK_ID_PATTERN = '^[A-Za-z0-9_-]{1,48}$';
/** User ids as the ledger takes them. */
export const USER_ID_PATTERN = '^(?!\\.\\.?$)[A-Za-z0-9._:-]{1,128}$';
/** Largest amount of one message, in minor units: the ledger's own maximum. */
export const MESSAGE_AMOUNT_MAX = 1_000_000_000_000_000;
/** Merchant names as networks send them, in characters. */
export const MERCHANT_NAME_LENGTH_MAX = 256;
export const MERCHANT_ID_LENGTH_MAX = 64;
/** Largest request body a payment route accepts, in bytes. */
export const PAYMENT_BODY_BYTES_MAX = 8 * 1024;
/** Payments expired per sweeper round trip. */
export const EXPIRY_SWEEP_BATCH_SIZE_MAX = 100;
/** The default largest authorization per route, in yen. */
export const AUTHORIZATION_AMOUNT_MAX_DEFAULT = 1_000_000;
/** How long a hold lasts before the authorization expires: 7 days. */
export const HOLD_TIMEOUT_MS_DEFAULT = 7 * 24 * 60 * 60 * 1000;
/** How often the sweeper looks for lapsed authorizations. */
export const EXPIRY_SWEEP_INTERVAL_MS_DEFAULT = 1000;
/** The currency the wallet holds cash in. */
export const WALLET_CURRENCY = 'JPY';
/** A journalled decision no message has finished after this long is finished by the sweeper. */
export const INTENT_STALLED_AFTER_MS = 5_000;
/**
 * Connections of a route's pool by default: a message holds one from its
 * payment's lock to its commit, the ledger's write included, so the pool
 * bounds the messages decided at once (measured: 10 capped a 2-core machine
 * near 470 authorizations/s, the connections mostly waiting on the ledger).
 */
export const ROUTE_POOL_SIZE_DEFAULT = 32;
