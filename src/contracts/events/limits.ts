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
