// Telling a network's resend from a reuse of its id with other content.
import { isDeepStrictEqual } from 'node:util';

/** The fields (dotted for nested objects, e.g. `merchant.name`) whose values differ between two messages. */
export function differingFields(before: unknown, after: unknown, prefix = ''): string[] {
  if (!isPlainObject(before) || !isPlainObject(after)) return isDeepStrictEqual(before, after) ? [] : [prefix.slice(0, -1) || 'body'];
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return keys.flatMap((key) => {
    const [a, b] = [before[key], after[key]];
    if (isPlainObject(a) && isPlainObject(b)) return differingFields(a, b, `${prefix}${key}.`);
    return isDeepStrictEqual(a, b) ? [] : [`${prefix}${key}`];
  });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
