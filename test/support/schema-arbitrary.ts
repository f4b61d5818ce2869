// fast-check arbitraries derived from the JSON Schemas of an OpenAPI document:
// values a schema accepts (valid-shaped requests), and the places in a value
// where a mutation can break it. Only the keywords Koban's schemas use are
// read: $ref, enum, const, type (one or a list), string length, pattern and
// format, integer bounds, array items and sizes, object properties, required
// (and if/then's required, over-approximated as always required),
// additionalProperties and maxProperties.
import fc from 'fast-check';

export type Schema = {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  format?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  items?: Schema;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  maxProperties?: number;
  then?: { required?: string[] };
  [keyword: string]: unknown;
};

/** Longest generated string, array or free-form object: enough to reach the edges that matter, small enough to stay fast. */
const GENERATED_LENGTH_MAX = 40;
const GENERATED_ITEMS_MAX = 4;
const FREE_KEYS_MAX = 3;

export type ArbitraryOptions = {
  /** Resolves a local `$ref` ("#/components/schemas/X"). */
  resolve: (ref: string) => Schema;
  /** Values worth reusing (ids of seeded state): each string schema picks among those it accepts, and among a few of its own, more often than anew, so that requests meet each other's state. */
  known: readonly string[];
  /** Property names whose value comes from here instead of the schema (e.g. URLs the test must not contact). */
  overrides?: Readonly<Record<string, fc.Arbitrary<unknown>>>;
  seed: number;
};

export function deref(schema: Schema, options: Pick<ArbitraryOptions, 'resolve'>): Schema {
  return schema.$ref ? deref(options.resolve(schema.$ref), options) : schema;
}

/** The schema with every local $ref replaced by what it names (Koban's schemas have no cycles). */
export function inlineRefs(input: unknown, options: Pick<ArbitraryOptions, 'resolve'>): unknown {
  if (Array.isArray(input)) return input.map((item) => inlineRefs(item, options));
  if (input === null || typeof input !== 'object') return input;
  const schema = input as Schema;
  if (typeof schema.$ref === 'string') return inlineRefs(options.resolve(schema.$ref), options);
  return Object.fromEntries(Object.entries(schema).map(([key, value]) => [key, inlineRefs(value, options)]));
}

function typesOf(schema: Schema): string[] {
  if (schema.type === undefined) return [];
  return Array.isArray(schema.type) ? schema.type : [schema.type];
}

/** JSON Schema's pattern as a JS regex; `u` so that \u escapes and classes read as Ajv reads them. */
export function patternOf(schema: Schema): RegExp | undefined {
  return schema.pattern === undefined ? undefined : new RegExp(schema.pattern, 'u');
}

/** Length in code points, as JSON Schema (and Ajv) count it. */
function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function fitsLength(schema: Schema, text: string): boolean {
  const length = codePoints(text);
  return length >= (schema.minLength ?? 0) && length <= (schema.maxLength ?? Number.POSITIVE_INFINITY);
}

function stringArbitrary(schema: Schema, options: ArbitraryOptions): fc.Arbitrary<string> {
  const pattern = patternOf(schema);
  let fresh: fc.Arbitrary<string>;
  if (schema.format === 'date-time') {
    const nowMs = Date.now();
    const DAY_MS = 86_400_000;
    // Mostly the near future (deadlines and expiries a request can use), sometimes any instant.
    fresh = fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 60_000, max: 30 * DAY_MS }).map((offsetMs) => new Date(nowMs + offsetMs).toISOString()) },
      { weight: 1, arbitrary: fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true }).map((date) => date.toISOString()) },
    );
  } else if (schema.format === 'uri' || schema.format === 'uri-reference') {
    fresh = fc.webUrl();
  } else if (pattern) {
    // fast-check cannot generate from lookaheads: generate without them, keep what the whole pattern accepts.
    const generable = new RegExp(schema.pattern!.replace(/\(\?[!=][^()]*\)/g, ''), 'u');
    fresh = fc.stringMatching(generable);
  } else {
    const maxLength = Math.min(schema.maxLength ?? GENERATED_LENGTH_MAX, GENERATED_LENGTH_MAX);
    fresh = fc.oneof(
      fc.string({ minLength: schema.minLength ?? 0, maxLength, unit: 'grapheme-ascii' }),
      fc.string({ minLength: schema.minLength ?? 0, maxLength, unit: 'grapheme' }),
      ...(schema.maxLength !== undefined && schema.maxLength <= 4096 ? [fc.constant('m'.repeat(schema.maxLength))] : []),
    );
  }
  const accepts = (text: string) => fitsLength(schema, text) && (pattern === undefined || pattern.test(text)) && !text.includes('\u0000');
  fresh = fresh.filter(accepts);
  // Known ids are offered only where a pattern says what an id looks like (a format is not checked here).
  const pool = [...new Set([...(pattern && schema.format === undefined ? options.known.filter(accepts) : []), ...fc.sample(fresh, { numRuns: 3, seed: options.seed })])];
  return fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...pool) }, { weight: 1, arbitrary: fresh });
}

function integerArbitrary(schema: Schema): fc.Arbitrary<number> {
  const min = Math.max(schema.minimum ?? Number.MIN_SAFE_INTEGER, Number.MIN_SAFE_INTEGER);
  const max = Math.min(schema.maximum ?? Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  // Mostly small (amounts a seeded balance covers), sometimes anywhere in range, sometimes a bound.
  const smallMax = Math.min(max, min + 1_000);
  return fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min, max: smallMax }) },
    { weight: 1, arbitrary: fc.bigInt({ min: BigInt(min), max: BigInt(max) }).map(Number) },
    { weight: 1, arbitrary: fc.constantFrom(min, max) },
  );
}

/** Free-form JSON (metadata, event data): small, and without NUL (refused everywhere). */
export function freeJson(): fc.Arbitrary<unknown> {
  return fc.jsonValue({ maxDepth: 2 }).filter((value) => !JSON.stringify(value).includes('\\u0000'));
}

const freeKey = fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/);

function objectArbitrary(schema: Schema, options: ArbitraryOptions): fc.Arbitrary<Record<string, unknown>> {
  const properties = schema.properties ?? {};
  const required = new Set([...(schema.required ?? []), ...(schema.then?.required ?? [])]);
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, property] of Object.entries(properties)) model[name] = options.overrides?.[name] ?? schemaArbitrary(property, options);
  const known = fc.record(model, { requiredKeys: [...required].filter((name) => name in properties) });
  if (schema.additionalProperties === false) return known;
  const extraValue = typeof schema.additionalProperties === 'object' ? schemaArbitrary(schema.additionalProperties, options) : freeJson();
  const room = Math.max(0, (schema.maxProperties ?? Number.POSITIVE_INFINITY) - Object.keys(properties).length);
  const extras = fc.dictionary(
    freeKey.filter((key) => !(key in properties)),
    extraValue,
    { maxKeys: Math.min(FREE_KEYS_MAX, room) },
  );
  return fc.tuple(known, extras).map(([fixed, extra]) => ({ ...extra, ...fixed }));
}

/** Values the schema accepts. */
export function schemaArbitrary(input: Schema, options: ArbitraryOptions): fc.Arbitrary<unknown> {
  const schema = deref(input, options);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const types = typesOf(schema);
  if (types.length > 1) return fc.oneof(...types.map((type) => schemaArbitrary({ ...schema, type }, options)));
  switch (types[0]) {
    case 'string':
      return stringArbitrary(schema, options);
    case 'integer':
      return integerArbitrary(schema);
    case 'number':
      return fc.double({ min: schema.minimum ?? -1e9, max: schema.maximum ?? 1e9, noNaN: true, noDefaultInfinity: true });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const items = schemaArbitrary(schema.items ?? {}, options);
      const constraints = { minLength: schema.minItems ?? 0, maxLength: Math.max(schema.minItems ?? 0, Math.min(schema.maxItems ?? GENERATED_ITEMS_MAX, GENERATED_ITEMS_MAX)) };
      return schema.uniqueItems ? fc.uniqueArray(items, { ...constraints, selector: (item) => JSON.stringify(item) }) : fc.array(items, constraints);
    }
    case 'object':
      return objectArbitrary(schema, options);
    default:
      if (schema.properties) return objectArbitrary(schema, options);
      return freeJson();
  }
}

/** A place in a value: the path to it and the schema that governs it (undefined inside free-form JSON). */
export type Location = { path: Array<string | number>; schema: Schema | undefined; value: unknown };

/** Every place in `value` that `schema` governs, the root included; free-form parts (metadata, data) are listed with no schema. */
export function locations(value: unknown, input: Schema | undefined, options: Pick<ArbitraryOptions, 'resolve'>, path: Array<string | number> = []): Location[] {
  const schema = input === undefined ? undefined : deref(input, options);
  const here: Location = { path, schema, value };
  if (Array.isArray(value)) {
    return [here, ...value.flatMap((item, index) => locations(item, schema ? (schema.items ?? {}) : undefined, options, [...path, index]))];
  }
  if (value !== null && typeof value === 'object') {
    return [
      here,
      ...Object.entries(value).flatMap(([key, item]) => {
        const child = schema === undefined ? undefined : (schema.properties?.[key] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined));
        return locations(item, child, options, [...path, key]);
      }),
    ];
  }
  return [here];
}

/** A deep copy of `value` with the place at `path` replaced (or removed, when `replacement` is REMOVE). */
export const REMOVE = Symbol('remove');
export function replaceAt(value: unknown, path: ReadonlyArray<string | number>, replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const [head, ...rest] = path;
  if (Array.isArray(value)) {
    const copy = [...value];
    if (rest.length === 0 && replacement === REMOVE) copy.splice(head as number, 1);
    else copy[head as number] = replaceAt(copy[head as number], rest, replacement);
    return copy;
  }
  const copy = { ...(value as Record<string, unknown>) };
  if (rest.length === 0 && replacement === REMOVE) delete copy[head as string];
  else copy[head as string] = replaceAt(copy[head as string], rest, replacement);
  return copy;
}
