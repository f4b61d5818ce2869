// Text PostgreSQL can store as it was sent: no NUL (text and jsonb refuse it)
// and no lone UTF-16 surrogate (jsonb refuses it; text would store U+FFFD).
// Checked as code points (Ajv compiles patterns with the `u` flag).
export const STORABLE_TEXT_PATTERN = '^[^\\u0000\\ud800-\\udfff]*$';
