// Goal: every operation of the OpenAPI document, fed requests generated from its own schemas — valid-shaped ones and broken mutations of them (wrong types, floats, huge and negative numbers, NUL and lone surrogates, unknown and missing fields, repeated keys, malformed and oversized bodies, bad path and query values) — never answers 5xx, answers every refusal in the catalogue's shape with a documented status, and changes nothing when it refuses.
// KOBAN_FUZZ_RUNS raises the runs per operation and KOBAN_FUZZ_SEED picks another seed; a failure prints the seed and path that replay it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import fc from 'fast-check';
import { ERROR_CATALOGUE, type ErrorCode } from '../platform/errors.ts';
import { databaseFingerprint, settledFingerprint } from '../../test/support/fingerprint.ts';
import { startTestKoban, type TestKoban } from '../../test/support/koban.ts';
import { type ArbitraryOptions, inlineRefs, locations, REMOVE, replaceAt, type Schema, schemaArbitrary } from '../../test/support/schema-arbitrary.ts';

/** Runs per operation and phase: bounded so that the file stays well under a minute. */
const RUNS = Number(process.env.KOBAN_FUZZ_RUNS ?? 25);
const SEED = Number(process.env.KOBAN_FUZZ_SEED ?? 20_260_1);
/** Larger than the largest body any endpoint accepts (the bus's batch). */
const OVERSIZED_BODY_BYTES = 1024 * 1024 + 1;
/** How long the seeded state may take to settle (relays and consumers at rest). */
const SETTLE_DEADLINE_MS = 20_000;
const SETTLE_INTERVAL_MS = 300;

type Parameter = { name: string; in: 'path' | 'query' | 'header'; required?: boolean; schema: Schema };
type Operation = {
  operationId: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, unknown>;
};
type Document = { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Schema> } };
type Entry = { id: string; method: string; path: string; operation: Operation; pointer: string };

/** A request as generated: decoded path and query values and a JSON body. */
type Request = { params: Record<string, string>; query: Record<string, string>; body?: unknown };
/** A request on the wire: what a mutation produces. */
type Wire = { what: string; url: string; payload?: string; contentType?: string };

/** Ids of the state the suite seeds, so that generated requests meet it (a post of a real hold, a refund of a real consume). */
const KNOWN: string[] = ['fuzz-user', 'fuzz-add-cash', 'fuzz-add-points', 'fuzz-hold', 'fuzz-consume', 'fuzzauth1', 'visa:fuzzauth1', 'rewards', 'payments', 'accounts', 'points-rewards'];

function pointerTo(...parts: Array<string | number>): string {
  return parts.map((part) => String(part).replaceAll('~', '~0').replaceAll('/', '~1')).join('/');
}

/** Percent-encodes any string, lone surrogates included (as the UTF-8 bytes of their code unit, which no decoder accepts). */
function encodeSegment(value: string): string {
  let out = '';
  for (const char of value) {
    const unit = char.codePointAt(0)!;
    if (unit >= 0xd800 && unit <= 0xdfff) out += `%${(0xe0 | (unit >> 12)).toString(16).toUpperCase()}%${(0x80 | ((unit >> 6) & 0x3f)).toString(16).toUpperCase()}%${(0x80 | (unit & 0x3f)).toString(16).toUpperCase()}`;
    else out += encodeURIComponent(char);
  }
  return out;
}

/** The query string (with its `?`), each value encoded, unless already raw. */
function queryString(query: Record<string, string>, raw: Record<string, string> = {}): string {
  const parts = [...Object.entries(query).map(([name, value]) => `${name}=${encodeSegment(value)}`), ...Object.entries(raw).map(([name, value]) => `${name}=${value}`)];
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

function urlOf(entry: Entry, params: Record<string, string>, rawParams: Record<string, string> = {}): string {
  return entry.path.replace(/\{([a-z_]+)\}/g, (_match, name: string) => rawParams[name] ?? encodeSegment(params[name]!));
}

/** JSON text with the markers written by `raw()` replaced by text JSON.stringify cannot produce (numbers past double range, repeated keys). */
const RAW_MARKER = '\u0001raw:';
function rawText(value: unknown, raws: string[]): string {
  return JSON.stringify(value).replace(/"\\u0001raw:(\d+)"/g, (_match, index: string) => raws[Number(index)]!);
}

describe('the API, fuzzed from its OpenAPI document', () => {
  let koban: TestKoban;
  let document: Document;
  let ajv: Ajv2020;
  let coercing: Ajv2020;
  /** For a part of a body on its own. */
  let local: Ajv2020;
  const entries: Entry[] = [];
  const exercised = { valid: new Set<string>(), broken: new Set<string>() };
  const compiled = new Map<string, ValidateFunction>();
  /** Statuses seen per operation and phase, reported at the end: how much of each operation the requests reached. */
  const tally = new Map<string, Map<number, number>>();

  before(async () => {
    koban = await startTestKoban({ label: 'api_fuzz' });
    const response = await koban.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    document = response.json();
    ajv = new Ajv2020({ strict: false, allErrors: false });
    addFormats.default(ajv);
    ajv.addSchema(document, 'openapi.json');
    // Path and query values arrive as text and are coerced to their declared type, as the server does.
    coercing = new Ajv2020({ strict: false, coerceTypes: true });
    addFormats.default(coercing);
    local = new Ajv2020({ strict: false });
    addFormats.default(local);
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        entries.push({ id: operation.operationId, method, path, operation, pointer: pointerTo('paths', path, method) });
      }
    }
    await seed();
  });

  after(async () => {
    await koban?.stop();
    await koban?.database.drop();
  });

  async function seed() {
    const json = { 'content-type': 'application/json' };
    const requests: Array<[string, string, unknown]> = [
      ['POST', '/v1/users', { user_id: 'fuzz-user' }],
      ['POST', '/v1/transactions', { transaction_id: 'fuzz-add-cash', type: 'add', user_id: 'fuzz-user', balance_type: 'cash', amount: 1_000_000_000 }],
      ['POST', '/v1/transactions', { transaction_id: 'fuzz-add-points', type: 'add', user_id: 'fuzz-user', balance_type: 'points', amount: 1_000_000_000 }],
      ['POST', '/v1/transactions', { transaction_id: 'fuzz-hold', type: 'consume', user_id: 'fuzz-user', balance_type: 'points', amount: 100, pending: true }],
      ['POST', '/v1/transactions', { transaction_id: 'fuzz-consume', type: 'consume', user_id: 'fuzz-user', balance_type: 'points', amount: 100 }],
      ['POST', '/v1/visa/authorizations', { authorization_id: 'fuzzauth1', user_id: 'fuzz-user', amount: 1000, currency: 'JPY', merchant: { id: 'm-1', name: 'Shop', category_code: '5411' } }],
    ];
    for (const [method, url, body] of requests) {
      const response = await koban.app.inject({ method: method as 'POST', url, headers: json, payload: JSON.stringify(body) });
      assert.ok(response.statusCode < 300, `seed ${url}: ${response.statusCode} ${response.body}`);
    }
    // A cursor the ledger returned, so that generated pages can be real next pages.
    const page = await koban.app.inject({ method: 'GET', url: '/v1/users/fuzz-user/transactions?limit=1' });
    KNOWN.push(page.json().next_cursor);
  }

  function validator(key: string, make: () => ValidateFunction): ValidateFunction {
    let validate = compiled.get(key);
    if (!validate) {
      validate = make();
      compiled.set(key, validate);
    }
    return validate;
  }
  const resolve = (ref: string): Schema => {
    const match = /^#\/components\/schemas\/(\w+)$/.exec(ref);
    assert.ok(match && document.components.schemas[match[1]!], `a local $ref: ${ref}`);
    return document.components.schemas[match[1]!]!;
  };
  const bodyValidator = (entry: Entry, mediaType: string) =>
    validator(`body ${entry.id} ${mediaType}`, () => ajv.getSchema(`openapi.json#/${pointerTo('paths', entry.path, entry.method, 'requestBody', 'content', mediaType, 'schema')}`)!);
  const parameterValidator = (entry: Entry, parameter: Parameter) =>
    validator(`param ${entry.id} ${parameter.name}`, () => coercing.compile({ type: 'object', properties: { value: parameter.schema } }));
  const parameterAccepts = (entry: Entry, parameter: Parameter, decoded: string) => parameterValidator(entry, parameter)({ value: decoded });
  const localValidator = (schema: Schema) => validator(`local ${JSON.stringify(schema)}`, () => local.compile(inlineRefs(schema, { resolve }) as Schema));
  const arbitraryOptions: ArbitraryOptions = {
    resolve,
    known: KNOWN,
    seed: SEED,
    // Webhook deliveries go to a closed port on loopback, never to a generated host.
    overrides: { webhook_url: fc.constantFrom(null, 'http://127.0.0.1:9/fuzz-hook') },
  };

  function parametersOf(entry: Entry, place: 'path' | 'query'): Parameter[] {
    return (entry.operation.parameters ?? []).filter((parameter) => parameter.in === place);
  }
  function mediaTypeOf(entry: Entry): string | undefined {
    return Object.keys(entry.operation.requestBody?.content ?? {})[0];
  }

  /** Valid-shaped requests for the operation: path, query and body drawn from their schemas. */
  function requestArbitrary(entry: Entry): fc.Arbitrary<Request> {
    const options = arbitraryOptions;
    const params = Object.fromEntries(parametersOf(entry, 'path').map((parameter) => [parameter.name, schemaArbitrary(parameter.schema, options).map(String)]));
    const queryParameters = parametersOf(entry, 'query');
    const query = Object.fromEntries(queryParameters.map((parameter) => [parameter.name, schemaArbitrary(parameter.schema, options).map(String)]));
    const mediaType = mediaTypeOf(entry);
    return fc.record({
      params: fc.record(params),
      query: fc.record(query, { requiredKeys: queryParameters.filter((parameter) => parameter.required).map((parameter) => parameter.name) }),
      ...(mediaType ? { body: schemaArbitrary(entry.operation.requestBody!.content[mediaType]!.schema, options) } : {}),
    }) as fc.Arbitrary<Request>;
  }

  function wireOf(entry: Entry, request: Request, what = 'valid-shaped'): Wire {
    const mediaType = mediaTypeOf(entry);
    return {
      what,
      url: urlOf(entry, request.params) + queryString(request.query),
      ...(mediaType && request.body !== undefined ? { payload: JSON.stringify(request.body), contentType: mediaType } : {}),
    };
  }

  /** Sends the request; checks what every answer owes: no 5xx, a documented status, the declared shape, and for a refusal the catalogue's code, status and retryable flag. */
  async function send(entry: Entry, wire: Wire): Promise<number> {
    const response = await koban.app.inject({
      method: entry.method.toUpperCase() as 'GET',
      url: wire.url,
      ...(wire.payload === undefined ? {} : { payload: wire.payload, headers: { 'content-type': wire.contentType ?? 'application/json' } }),
    });
    const key = `${wire.what === 'valid-shaped' ? 'valid ' : 'broken'} ${entry.id}`;
    const counts = tally.get(key) ?? new Map<number, number>();
    tally.set(key, counts.set(response.statusCode, (counts.get(response.statusCode) ?? 0) + 1));
    const label = `${entry.id} (${wire.what}): ${entry.method.toUpperCase()} ${wire.url.slice(0, 300)} ${wire.payload?.slice(0, 600) ?? ''}\n→ ${response.statusCode} ${response.body.slice(0, 600)}`;
    assert.ok(response.statusCode < 500, `no 5xx: ${label}`);
    const status = String(response.statusCode);
    assert.ok(entry.operation.responses[status], `the status is documented: ${label}`);
    const validate = validator(`response ${entry.id} ${status}`, () => ajv.getSchema(`openapi.json#/${pointerTo('paths', entry.path, entry.method, 'responses', status, 'content', 'application/json', 'schema')}`)!);
    assert.ok(validate, `a schema for ${entry.id} ${status}`);
    let body: unknown;
    try {
      body = JSON.parse(response.body);
    } catch {
      assert.fail(`the body is JSON: ${label}`);
    }
    assert.ok(validate(body), `the body matches its schema (${ajv.errorsText(validate.errors)}): ${label}`);
    if (response.statusCode >= 400) {
      const error = (body as { error: { code: ErrorCode; retryable: boolean } }).error;
      assert.ok(Object.hasOwn(ERROR_CATALOGUE, error.code), `a catalogue code: ${label}`);
      assert.equal(ERROR_CATALOGUE[error.code].status, response.statusCode, `the code's status: ${label}`);
      assert.equal(ERROR_CATALOGUE[error.code].retryable, error.retryable, `the code's retryable flag: ${label}`);
    }
    return response.statusCode;
  }

  // ---- Mutations: each breaks a valid-shaped request in one way that the server must refuse.

  /** Values of every JSON type and the numbers an integer field must refuse; `raw` ones are written as text. */
  const WRONG_VALUES: ReadonlyArray<{ value: unknown; raw?: string; what: string }> = [
    { value: 'x', what: 'a string' },
    { value: 7, what: 'an integer' },
    { value: 2.5, what: 'a float' },
    { value: 1.5e-7, what: 'a tiny float' },
    { value: -1, what: 'a negative number' },
    { value: 0, what: 'zero' },
    { value: 1e16, what: 'a huge number' },
    { value: -1e16, what: 'a huge negative number' },
    { value: undefined, raw: '9007199254740993', what: 'an integer past 2^53' },
    { value: undefined, raw: '1e400', what: 'a number past double range' },
    { value: undefined, raw: '123456789012345678901234567890', what: 'a 30-digit integer' },
    { value: true, what: 'a boolean' },
    { value: null, what: 'null' },
    { value: [], what: 'an array' },
    { value: {}, what: 'an object' },
  ];
  const BAD_TEXT = ['\u0000', '\ud800', '\udfff', 'a\u0000b'];

  function bodyMutations(entry: Entry, request: Request): Array<fc.Arbitrary<Wire>> {
    const mediaType = mediaTypeOf(entry);
    if (!mediaType || request.body === undefined) return [];
    const url = urlOf(entry, request.params) + queryString(request.query);
    const schema = entry.operation.requestBody!.content[mediaType]!.schema;
    const options = { resolve };
    const places = locations(request.body, schema, options);
    const invalid = (body: unknown) => !bodyValidator(entry, mediaType)(body);
    const wire = (what: string, payload: string, contentType = mediaType): Wire => ({ what, url, payload, contentType });
    const mutations: Array<fc.Arbitrary<Wire>> = [];

    // A wrong value at a place the schema governs (the root included).
    const governed = places.filter((place) => place.schema !== undefined);
    const wrong = governed.flatMap((place) =>
      WRONG_VALUES.filter(({ value, raw }) => {
        if (raw !== undefined) return localValidator(place.schema!)(JSON.parse(raw)) === false;
        return !localValidator(place.schema!)(value) && invalid(replaceAt(request.body, place.path, value));
      }).map((candidate) => ({ place, candidate })),
    );
    if (wrong.length > 0) {
      mutations.push(
        fc.constantFrom(...wrong).map(({ place, candidate }) => {
          const replaced = candidate.raw === undefined ? replaceAt(request.body, place.path, candidate.value) : replaceAt(request.body, place.path, `${RAW_MARKER}0`);
          return wire(`${candidate.what} at ${place.path.join('.') || 'the root'}`, rawText(replaced, candidate.raw === undefined ? [] : [candidate.raw]));
        }),
      );
    }

    // NUL or a lone surrogate in any string, or in a key of free-form JSON (metadata, event data).
    const strings = places.filter((place) => typeof place.value === 'string' && place.path.length > 0);
    if (strings.length > 0) {
      mutations.push(
        fc.tuple(fc.constantFrom(...strings), fc.constantFrom(...BAD_TEXT), fc.nat()).map(([place, bad, at]) => {
          const text = place.value as string;
          const position = at % (text.length + 1);
          return wire(`${JSON.stringify(bad)} in ${place.path.join('.')}`, JSON.stringify(replaceAt(request.body, place.path, text.slice(0, position) + bad + text.slice(position))));
        }),
      );
    }
    const freeObjects = places.filter((place) => place.value !== null && typeof place.value === 'object' && !Array.isArray(place.value) && (place.schema === undefined || place.schema.additionalProperties === true || (place.schema.type === undefined && !place.schema.properties)));
    if (freeObjects.length > 0) {
      mutations.push(
        fc.tuple(fc.constantFrom(...freeObjects), fc.constantFrom(...BAD_TEXT)).map(([place, bad]) =>
          wire(`a key with ${JSON.stringify(bad)} in ${place.path.join('.')}`, JSON.stringify(replaceAt(request.body, place.path, { ...(place.value as object), [`k${bad}`]: 1 }))),
        ),
      );
    }

    // A string one past its length limit.
    const bounded = places.filter((place) => typeof place.value === 'string' && place.schema?.maxLength !== undefined);
    if (bounded.length > 0) {
      mutations.push(fc.constantFrom(...bounded).map((place) => wire(`${place.path.join('.')} one past maxLength`, JSON.stringify(replaceAt(request.body, place.path, 'a'.repeat(place.schema!.maxLength! + 1))))));
    }

    // A required field missing; an unknown field (or, where extensions are typed, one of the wrong type).
    const objects = governed.filter((place) => place.value !== null && typeof place.value === 'object' && !Array.isArray(place.value));
    const missing = objects.flatMap((place) => (place.schema!.required ?? []).filter((name) => Object.hasOwn(place.value as object, name)).map((name) => [...place.path, name]));
    const missingValid = missing.filter((path) => invalid(replaceAt(request.body, path, REMOVE)));
    if (missingValid.length > 0) {
      mutations.push(fc.constantFrom(...missingValid).map((path) => wire(`no ${path.join('.')}`, JSON.stringify(replaceAt(request.body, path, REMOVE)))));
    }
    const closed = objects.filter((place) => place.schema!.additionalProperties !== true && place.schema!.additionalProperties !== undefined);
    if (closed.length > 0) {
      mutations.push(
        fc.tuple(fc.constantFrom(...closed), fc.constantFrom('fuzz_unknown', 'Unknown', 'x'), fc.constantFrom<unknown>(7, 'x', {})).map(([place, key, value]) => {
          const body = replaceAt(request.body, [...place.path, key], value);
          return wire(`an unknown field ${key} in ${place.path.join('.') || 'the body'}`, JSON.stringify(body));
        }).filter((candidate) => invalid(JSON.parse(candidate.payload!))),
      );
    }

    // Text that is not the JSON it looks like: a repeated key, cut short, trailing junk, or not JSON at all.
    const keyed = places.filter((place) => place.value !== null && typeof place.value === 'object' && !Array.isArray(place.value) && Object.keys(place.value).length > 0);
    if (keyed.length > 0) {
      mutations.push(
        fc.tuple(fc.constantFrom(...keyed), fc.nat()).map(([place, pick]) => {
          const object = place.value as Record<string, unknown>;
          const keys = Object.keys(object);
          const key = keys[pick % keys.length]!;
          const repeated = `{${JSON.stringify(key)}:${JSON.stringify(object[key])},${JSON.stringify(object).slice(1)}`;
          return wire(`${key} repeated in ${place.path.join('.') || 'the body'}`, rawText(replaceAt(request.body, place.path, `${RAW_MARKER}0`), [repeated]));
        }),
      );
    }
    const text = JSON.stringify(request.body);
    mutations.push(
      fc.nat({ max: Math.max(0, text.length - 2) }).map((cut) => wire(`cut at ${cut + 1}`, text.slice(0, cut + 1))).filter((candidate) => !parses(candidate.payload!)),
      fc.constantFrom('x', ',', '}', ' {}', '\u0000', 'NaN').map((junk) => wire(`${JSON.stringify(junk)} after the body`, text + junk)),
      fc.constantFrom('NaN', 'Infinity', "{'a':1}", '{"a":1,}', '[1,]', '{"a":01}', '"\\x41"', '{"a":"\\ud800"').map((junk) => wire(`not JSON: ${junk}`, junk)),
      fc.constant(wire('an oversized body', `{"padding":"${'p'.repeat(OVERSIZED_BODY_BYTES)}"}`)),
      fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x').map((contentType) => wire(`sent as ${contentType}`, text, contentType)),
    );
    // Not an object at all, and (where a body is required) an empty one.
    mutations.push(fc.constantFrom('[]', '"x"', '7', 'null', 'true').map((payload) => wire(`the body ${payload}`, payload)));
    if (entry.operation.requestBody!.required) mutations.push(fc.constant(wire('an empty body', '')));
    return mutations;
  }

  /** Values for a path or query parameter that its schema refuses, as they would travel (percent-encoded, or raw junk). */
  function parameterJunk(entry: Entry, parameter: Parameter): fc.Arbitrary<{ raw: string; what: string }> {
    const fixed = ['%00', 'ok%00ok', '%ED%A0%80', 'a%ED%BF%BFb', '%E0%A4%A', '%', '%zz', 'a'.repeat(129), 'a'.repeat(2_000), '2.5', '-1', '0', '1e400', '99999999999999999999', 'NaN', 'gold', '%2F', '.', '..', 'sys%3Ax', '%20', 'A%0AB']
      .map((raw) => ({ raw, what: `${parameter.name}=${raw.slice(0, 40)}` }));
    const generated = fc.string({ unit: 'binary', minLength: 1, maxLength: 24 }).map((value) => ({ raw: encodeSegment(value), what: `${parameter.name}=${JSON.stringify(value)}` }));
    return fc
      .oneof({ weight: 2, arbitrary: fc.constantFrom(...fixed) }, { weight: 1, arbitrary: generated })
      .filter(({ raw }) => {
        let decoded: string;
        try {
          decoded = decodeURIComponent(raw);
        } catch {
          return true;
        }
        // A value the router would read as another route is not this operation's parameter.
        if (decoded === '' || (parameter.in === 'path' && (decoded === '.' || decoded === '..') && raw.length <= 2)) return false;
        return !parameterAccepts(entry, parameter, decoded) || decoded.includes('\u0000') || /[\ud800-\udfff]/u.test(decoded);
      });
  }

  function parameterMutations(entry: Entry, request: Request): Array<fc.Arbitrary<Wire>> {
    const mediaType = mediaTypeOf(entry);
    const payload = mediaType && request.body !== undefined ? { payload: JSON.stringify(request.body), contentType: mediaType } : {};
    const mutations: Array<fc.Arbitrary<Wire>> = [];
    for (const parameter of parametersOf(entry, 'path')) {
      mutations.push(
        parameterJunk(entry, parameter).map(({ raw, what }) => ({ what: `path ${what}`, url: urlOf(entry, request.params, { [parameter.name]: raw }) + queryString(request.query), ...payload })),
      );
    }
    for (const parameter of parametersOf(entry, 'query')) {
      const others = Object.fromEntries(Object.entries(request.query).filter(([name]) => name !== parameter.name));
      mutations.push(
        parameterJunk(entry, parameter).map(({ raw, what }) => ({ what: `query ${what}`, url: urlOf(entry, request.params) + queryString(others, { [parameter.name]: raw }), ...payload })),
      );
      // Given twice: a list where one value is declared.
      mutations.push(fc.constant({ what: `query ${parameter.name} twice`, url: `${urlOf(entry, request.params)}${queryString(others)}${Object.keys(others).length ? '&' : '?'}${parameter.name}=1&${parameter.name}=2`, ...payload }));
    }
    return mutations;
  }

  function parses(text: string): boolean {
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  }

  function brokenArbitrary(entry: Entry): fc.Arbitrary<Wire> | undefined {
    const hasInput = parametersOf(entry, 'path').length + parametersOf(entry, 'query').length > 0 || mediaTypeOf(entry) !== undefined;
    if (!hasInput) return undefined;
    return requestArbitrary(entry).chain((request) => fc.oneof(...bodyMutations(entry, request), ...parameterMutations(entry, request)));
  }

  const runOptions = (entry: Entry) => ({ numRuns: RUNS, seed: SEED + entries.indexOf(entry), endOnFailure: true });

  // Refusals first, on the seeded state at rest, so that nothing else writes while they run.
  test('broken requests to every operation are refused (4xx, in the catalogue shape) and change nothing', async () => {
    const before = await settledFingerprint(koban.database.url, { intervalMs: SETTLE_INTERVAL_MS, deadlineMs: SETTLE_DEADLINE_MS });
    for (const entry of entries) {
      const broken = brokenArbitrary(entry);
      if (!broken) continue;
      await fc.assert(
        fc.asyncProperty(broken, async (wire) => {
          const status = await send(entry, wire);
          assert.ok(status >= 400 && status < 500, `${entry.id} (${wire.what}) is refused, not answered ${status}: ${wire.url.slice(0, 200)} ${wire.payload?.slice(0, 300) ?? ''}`);
        }),
        runOptions(entry),
      );
      exercised.broken.add(entry.id);
    }
    assert.equal(await databaseFingerprint(koban.database.url), before, 'no table changed');
  });

  test('valid-shaped requests to every operation never answer 5xx, and every refusal is a catalogue error', async () => {
    for (const entry of entries) {
      const mediaType = mediaTypeOf(entry);
      await fc.assert(
        fc.asyncProperty(requestArbitrary(entry), async (request) => {
          // The generator's own check: what it calls valid, the document accepts.
          if (mediaType) assert.ok(bodyValidator(entry, mediaType)(request.body), `generated body is valid: ${JSON.stringify(request.body)}: ${ajv.errorsText(bodyValidator(entry, mediaType).errors)}`);
          for (const parameter of entry.operation.parameters ?? []) {
            const value = parameter.in === 'path' ? request.params[parameter.name] : request.query[parameter.name];
            if (value !== undefined) assert.ok(parameterAccepts(entry, parameter, value), `generated ${parameter.name} is valid: ${JSON.stringify(value)}`);
          }
          await send(entry, wireOf(entry, request));
        }),
        runOptions(entry),
      );
      exercised.valid.add(entry.id);
    }
    assert.equal((await koban.ledger.audit()).ok, true, 'the books balance');
  });

  test('every operation of the document was fuzzed', (t) => {
    for (const [key, counts] of [...tally].sort()) t.diagnostic(`${key}: ${[...counts].sort().map(([status, count]) => `${status}×${count}`).join(' ')}`);
    assert.ok(entries.length >= 30, `the document lists the operations: ${entries.length}`);
    for (const entry of entries) {
      assert.ok(exercised.valid.has(entry.id), `${entry.id} had valid-shaped requests`);
      const hasInput = (entry.operation.parameters ?? []).length > 0 || entry.operation.requestBody !== undefined;
      assert.equal(exercised.broken.has(entry.id), hasInput, `${entry.id} had broken requests (it takes input: ${hasInput})`);
    }
  });
});
