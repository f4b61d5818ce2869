// Limits of the published event envelope, named, with their units: producers,
// the bus and consumers all hold events to them.

/** Event ids: 1–128 characters of [A-Za-z0-9._:/@+=-] (safe as a NATS header and a database key). */
export const EVENT_ID_PATTERN = '^[A-Za-z0-9._:/@+=-]{1,128}$';
/** A whole event serialized as JSON, in bytes of UTF-8; also the publish endpoint's body limit. */
export const EVENT_BYTES_MAX = 64 * 1024;
/** Extension (filterable) attributes on one event. */
export const EXTENSION_ATTRIBUTES_MAX = 16;
/** Length of one extension attribute value, in characters. */
export const ATTRIBUTE_LENGTH_MAX = 256;
/** Objects and arrays nested in one event, the envelope itself being the first: deeper JSON is refused, not risked on a serializer's stack. */
export const EVENT_NESTING_DEPTH_MAX = 32;
/** Topic names: lower-case, safe as a NATS stream name, a subject token and a database key. */
export const TOPIC_NAME_PATTERN = '^[a-z][a-z0-9_-]{0,62}$';
/** A name or path quoted in an error message is cut to this many characters: messages never echo unbounded input. */
export const QUOTED_NAME_LENGTH_MAX = 128;
/** A user id in event data: what the ledger accepts as a user id. */
export const EVENT_USER_ID_PATTERN = '^(?!\\.\\.?$)[A-Za-z0-9._:-]{1,128}$';
/** A partner's or the referral program's own id (purchase, referral): short enough that ids derived from it fit the ledger's 128. */
export const EVENT_REFERENCE_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
