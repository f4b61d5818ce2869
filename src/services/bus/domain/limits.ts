// Every limit of the event bus, named, with its unit.
import { TOPIC_NAME_PATTERN } from '../../../contracts/events/limits.ts';

/** Topic and subscription names: lower-case, safe as NATS stream, subject token and durable names. */
export const NAME_PATTERN = TOPIC_NAME_PATTERN;

/**
 * A NATS namespace (KOBAN_NATS_NAMESPACE): the prefix of this deployment's
 * stream names (`<namespace>_<topic>`) and subjects (`<namespace>.<topic>.…`).
 * No `_` (it ends the prefix in a stream name, so no two namespaces can make
 * the same name) and no `.` (a subject token); at most 32 characters.
 */
export const NATS_NAMESPACE_PATTERN = '^[a-z][a-z0-9-]{0,31}$';
export const NATS_NAMESPACE_DEFAULT = 'koban';

/** Keys in one filter policy, and values across all its conditions (SNS's own limits). */
export const FILTER_KEYS_MAX = 5;
export const FILTER_VALUES_MAX = 150;

// Subscription defaults; each subscription may declare its own.
export const MAX_DELIVERIES_DEFAULT = 5;
export const MAX_DELIVERIES_LIMIT = 100;
/** How long a handler may hold a message before it is redelivered elsewhere. */
export const ACK_WAIT_MS_DEFAULT = 30_000;
export const ACK_WAIT_MS_MIN = 50;
export const ACK_WAIT_MS_MAX = 12 * 60 * 60 * 1000;
export const RETRY_BACKOFF_INITIAL_MS_DEFAULT = 1_000;
export const RETRY_BACKOFF_MAX_MS_DEFAULT = 5 * 60 * 1000;

// Consumer defaults; each consumer may choose its own.
/** Messages one consumer holds unacknowledged at once. */
export const IN_FLIGHT_MAX_DEFAULT = 64;
export const IN_FLIGHT_MAX_LIMIT = 10_000;
/** Messages claimed (postgres) or pulled (nats) in one round trip. */
export const BATCH_SIZE_MAX_DEFAULT = 64;
/** With nothing announced, a consumer still looks for due retries and expired leases this often. */
export const IDLE_POLL_MS_DEFAULT = 1_000;
/** A consumer whose broker fails waits this long, doubling up to the max, before trying again. */
export const BROKER_RETRY_INITIAL_MS = 50;
export const BROKER_RETRY_MAX_MS = 5_000;
/** Stored last_error text, in characters. */
export const LAST_ERROR_LENGTH_MAX = 2_000;

/** Dead letters per page, and redriven by one call without ids. */
export const DEAD_LETTER_PAGE_LIMIT_DEFAULT = 50;
export const DEAD_LETTER_PAGE_LIMIT_MAX = 200;
export const REDRIVE_IDS_MAX = 1_000;

/** Messages in one publish-batch request (an outbox relay's batch). */
export const PUBLISH_BATCH_MESSAGES_MAX = 256;
/** Body of one publish-batch request, in bytes: the HTTP client splits a batch that would be larger. */
export const PUBLISH_BATCH_BYTES_MAX = 512 * 1024;
