// JSON request bodies, parsed strictly. Refused although JSON.parse takes them:
// a key repeated in one object (JSON.parse keeps the last, another parser may
// keep the first: two readers of one request must not disagree), keys that
// reach an object's prototype in JavaScript (`__proto__`, and `constructor`
// holding `prototype`), and nesting deeper than any request needs (code that
// walks a body recursively must not run out of stack).
//
// JSON.parse does the parsing on the common path: fast, and the number
// semantics the API documents. Repeated keys are found by counting: the keys
// the text writes (a scan from string to string with indexOf) against the keys
// JSON.parse kept. Only when they differ does a slower reader find which key
// repeats, to name it.
//
// One exception: V8's JSON.parse can decode an escaped object key wrongly
// (`"\""` read as `\` once an earlier body had the key `"\\"`; a V8 bug, open
// in Node 24). A body with an escape in any key is therefore read by the
// slower reader here, which decodes each key as a string on its own.
//
// Why not a library: the maintained parsers that see repeated keys are
// character-by-character JavaScript parsers (lossless-json, momoa). Measured
// once, lossless-json 4.3 took about 3 times as long as this on a typical
// ledger body and 18 times on a 15 KiB one, and it lets a repeat with an equal
// value through. This costs about 1–2 µs over JSON.parse on a typical body
// (bench/strict-json.ts).
import { KobanError } from '../errors.ts';

/** Longest key path echoed back in an error; longer ones are cut (a key can be as long as the body). */
export const FIELD_ECHO_LENGTH_MAX = 100;
/** Objects and arrays nested deeper than this are refused (the ledger's metadata and an event's data need a few levels). */
export const JSON_NESTING_DEPTH_MAX = 64;
/** Longest excerpt of the JSON parser's own message echoed back. */
const PARSER_MESSAGE_LENGTH_MAX = 200;

const BACKSLASH = 0x5c;
const BYTE_ORDER_MARK = 0xfeff;
const COLON = 0x3a;

/** Parses a JSON body; throws `invalid_request` naming the field for anything refused. */
export function parseStrictJson(body: string): unknown {
  // RFC 8259 lets a parser ignore a byte order mark; Fastify's default parser did.
  const text = body.charCodeAt(0) === BYTE_ORDER_MARK ? body.slice(1) : body;
  if (text.length === 0) throw new KobanError('invalid_request', 'The body is empty; send a JSON object', { field: 'body', in: 'body', reason: 'empty' });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // V8's message says where, with a short excerpt of the text; bounded all the same.
    const detail = boundedText(error instanceof Error ? error.message : String(error), PARSER_MESSAGE_LENGTH_MAX);
    throw new KobanError('invalid_request', `The body is not valid JSON: ${detail}`, { field: 'body', in: 'body', reason: 'invalid_json' });
  }
  if (typeof value !== 'object' || value === null) return value;
  const written = keysWritten(text);
  // From here on `text` is known to be valid JSON, which the scans below rely on.
  // The reader refuses what the counting saw (a repeated key, a prototype key, deep nesting), naming the key.
  if (written.escaped || keysKept(value) !== written.count) return new Reader(text).document();
  return value;
}

/** `text` cut to `max` characters, marked when cut. */
export function boundedText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * How many keys JSON.parse kept, over every object in `root`, or -1 if a key
 * reaches a prototype or the nesting is too deep: the reader then says where.
 * Iterative (JSON.parse accepts nesting deeper than a recursion should go),
 * and keeps no paths: this runs on every request.
 */
function keysKept(root: object): number {
  let count = 0;
  const values: object[] = [root];
  const depths: number[] = [1];
  while (values.length > 0) {
    const value = values.pop()!;
    const depth = depths.pop()!;
    if (depth > JSON_NESTING_DEPTH_MAX) return -1;
    if (Array.isArray(value)) {
      for (let index = 0; index < value.length; index++) {
        const item: unknown = value[index];
        if (typeof item === 'object' && item !== null) {
          values.push(item);
          depths.push(depth + 1);
        }
      }
      continue;
    }
    for (const key in value) {
      count++;
      if (key === '__proto__') return -1;
      const item = (value as Record<string, unknown>)[key];
      if (typeof item === 'object' && item !== null) {
        if (key === 'constructor' && Object.hasOwn(item, 'prototype')) return -1;
        values.push(item);
        depths.push(depth + 1);
      }
    }
  }
  return count;
}

/** How many keys `text`, valid JSON, writes (the strings followed by a colon), and whether any is written with an escape. Exported for its tests. */
export function keysWritten(text: string): { count: number; escaped: boolean } {
  let count = 0;
  let escaped = false;
  // The first backslash at or after the current string, kept ahead of the scan, so the whole count stays
  // linear in the body (a search back from each key to the start was quadratic: 196 ms for a bus batch of 256 events).
  let backslash = text.indexOf('\\');
  let from = text.indexOf('"');
  while (from !== -1) {
    const end = stringEnd(text, from);
    let next = end + 1;
    while (isWhitespace(text.charCodeAt(next))) next++;
    if (text.charCodeAt(next) === COLON) {
      count++;
      if (!escaped && backslash !== -1) {
        if (backslash < from) backslash = text.indexOf('\\', from);
        if (backslash !== -1 && backslash < end) escaped = true;
      }
    }
    from = text.indexOf('"', next);
  }
  return { count, escaped };
}

/** Index of the quote closing the string that opens at `open`: the next quote not escaped by an odd run of backslashes. */
function stringEnd(text: string, open: number): number {
  let close = text.indexOf('"', open + 1);
  for (;;) {
    let backslashes = 0;
    while (text.charCodeAt(close - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return close;
    close = text.indexOf('"', close + 1);
  }
}

function isWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

/**
 * Reads `text`, already known to be valid JSON, into a value: each key
 * decoded as a string on its own, each primitive by JSON.parse of its text
 * (the same numbers and strings as the fast path), and every refusal made as
 * soon as it is met, naming its key. Recursive, to the nesting limit only.
 */
class Reader {
  readonly #text: string;
  #position = 0;

  constructor(text: string) {
    this.#text = text;
  }

  document(): unknown {
    return this.#value('', 1);
  }

  #value(path: string, depth: number): unknown {
    this.#skipWhitespace();
    const code = this.#text.charCodeAt(this.#position);
    if (code === 0x7b /* { */ || code === 0x5b /* [ */) {
      if (depth > JSON_NESTING_DEPTH_MAX) throw tooDeep(path);
      return code === 0x7b ? this.#object(path, depth) : this.#array(path, depth);
    }
    const start = this.#position;
    if (code === 0x22 /* " */) {
      this.#position = stringEnd(this.#text, start) + 1;
    } else {
      // A number, true, false or null: up to the next delimiter.
      while (this.#position < this.#text.length && !isDelimiter(this.#text.charCodeAt(this.#position))) this.#position++;
    }
    return JSON.parse(this.#text.slice(start, this.#position));
  }

  #object(path: string, depth: number): Record<string, unknown> {
    const object: Record<string, unknown> = {};
    this.#position++;
    this.#skipWhitespace();
    while (this.#text.charCodeAt(this.#position) !== 0x7d /* } */) {
      this.#skipWhitespace();
      const start = this.#position;
      this.#position = stringEnd(this.#text, start) + 1;
      const raw = this.#text.slice(start, this.#position);
      const key = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
      if (Object.hasOwn(object, key)) throw repeated(joinPath(path, key));
      this.#skipWhitespace();
      this.#position++; // the colon
      const item = this.#value(joinPath(path, key), depth + 1);
      checkKey(path, key, item);
      object[key] = item;
      this.#skipWhitespace();
      if (this.#text.charCodeAt(this.#position) === 0x2c /* , */) this.#position++;
    }
    this.#position++;
    return object;
  }

  #array(path: string, depth: number): unknown[] {
    const array: unknown[] = [];
    this.#position++;
    this.#skipWhitespace();
    while (this.#text.charCodeAt(this.#position) !== 0x5d /* ] */) {
      array.push(this.#value(joinPath(path, String(array.length)), depth + 1));
      this.#skipWhitespace();
      if (this.#text.charCodeAt(this.#position) === 0x2c /* , */) this.#position++;
    }
    this.#position++;
    return array;
  }

  #skipWhitespace(): void {
    while (isWhitespace(this.#text.charCodeAt(this.#position))) this.#position++;
  }
}

function isDelimiter(code: number): boolean {
  return code === 0x2c /* , */ || code === 0x5d /* ] */ || code === 0x7d /* } */ || isWhitespace(code);
}

/** Refuses the keys that reach a prototype: valid JSON, so said as such, not as a syntax error. */
function checkKey(path: string, key: string, value: unknown): void {
  if (key === '__proto__' || (key === 'constructor' && typeof value === 'object' && value !== null && Object.hasOwn(value, 'prototype'))) {
    const field = boundedText(joinPath(path, key), FIELD_ECHO_LENGTH_MAX);
    const what = key === '__proto__' ? '__proto__' : 'constructor.prototype';
    throw new KobanError('invalid_request', `${field} is valid JSON but refused: a key ${what} can alter objects in JavaScript`, { field, in: 'body', reason: 'forbidden_key' });
  }
}

function repeated(path: string): KobanError {
  // The empty key has no path to show.
  const field = path === '' ? 'body' : boundedText(path, FIELD_ECHO_LENGTH_MAX);
  const what = field === 'body' ? 'A key' : `The key ${field}`;
  return new KobanError('invalid_request', `${what} appears more than once in one object; send each key once`, { field, in: 'body', reason: 'duplicate_key' });
}

function tooDeep(path: string): KobanError {
  const field = path === '' ? 'body' : boundedText(path, FIELD_ECHO_LENGTH_MAX);
  return new KobanError('invalid_request', `${field} nests objects and arrays deeper than ${JSON_NESTING_DEPTH_MAX} levels`, {
    field,
    in: 'body',
    reason: 'too_deep',
    limit: JSON_NESTING_DEPTH_MAX,
  });
}

function joinPath(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}
