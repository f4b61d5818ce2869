// Goal: the body parser refuses what JSON.parse alone lets through (repeated keys, prototype keys), names the key, and otherwise returns exactly what JSON.parse does.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isKobanError } from '../errors.ts';
import { FIELD_ECHO_LENGTH_MAX, JSON_NESTING_DEPTH_MAX, keysWritten, parseStrictJson } from './strict-json.ts';

function refusal(text: string): { field: unknown; reason: unknown; message: string } {
  try {
    parseStrictJson(text);
  } catch (error) {
    assert.ok(isKobanError(error), String(error));
    assert.equal(error.code, 'invalid_request');
    return { field: error.details?.field, reason: error.details?.reason, message: error.message };
  }
  assert.fail(`accepted: ${JSON.stringify(text)}`);
}

describe('repeated keys', () => {
  const cases: Array<[string, string, string]> = [
    ['at the top', '{"amount":1,"amount":7}', 'amount'],
    ['with an equal value', '{"amount":1,"amount":1}', 'amount'],
    ['spelled with an escape', '{"amount":1,"\\u0061mount":7}', 'amount'],
    ['in a nested object', '{"metadata":{"a":1,"b":{"c":1,"c":2}}}', 'metadata.b.c'],
    ['in an object in an array', '{"ids":[{"x":1},{"y":1,"y":2}]}', 'ids.1.y'],
    ['in a top-level array', '[1,{"k":"v","k":"w"}]', '1.k'],
    ['with whitespace everywhere', ' { "a" : 1 ,\n\t"a"\r\n:\n2 } ', 'a'],
    ['after strings holding quotes, colons and backslashes', '{"s":"\\":\\\\","t":"a\\\\\\"b:","s":0}', 's'],
    ['the empty key (no path to name)', '{"":1,"":2}', 'body'],
  ];
  for (const [name, text, field] of cases) {
    test(`${name} → named ${field}`, () => {
      const { field: named, reason, message } = refusal(text);
      assert.equal(reason, 'duplicate_key');
      assert.equal(named, field);
      assert.match(message, /more than once/);
    });
  }

  test('a key as long as the body is cut in the error', () => {
    const key = 'k'.repeat(10_000);
    const { field, message } = refusal(`{"${key}":1,"${key}":2}`);
    assert.equal(String(field).length, FIELD_ECHO_LENGTH_MAX);
    assert.ok(message.length < FIELD_ECHO_LENGTH_MAX + 100, message);
  });


  test('an object is refused exactly when a key repeats, however the keys are spelled', () => {
    // Few distinct keys, so that repeats are common; some written with escapes.
    const key = fc.constantFrom('a', 'b', 'é', '"', '\\');
    const spelled = (name: string, escaped: boolean) =>
      escaped ? `"${[...name].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(name);
    fc.assert(
      fc.property(fc.array(fc.tuple(key, fc.boolean(), fc.jsonValue()), { maxLength: 5 }), fc.boolean(), (entries, nested) => {
        const object = `{${entries.map(([name, escaped, value]) => `${spelled(name, escaped)}:${JSON.stringify(value)}`).join(',')}}`;
        const text = nested ? `{"outer":[0,${object}]}` : object;
        const repeats = new Set(entries.map(([name]) => name)).size < entries.length;
        if (!repeats) return;
        const { reason, field } = refusal(text);
        assert.equal(reason, 'duplicate_key');
        assert.match(String(field), nested ? /^outer\.1\./ : /^[^.]/);
      }),
      { numRuns: 300 },
    );
  });

  test('the same key in sibling or nested objects is not a repeat', () => {
    assert.deepEqual(parseStrictJson('{"a":{"a":1},"b":[{"a":1},{"a":2}],"c":"a"}'), { a: { a: 1 }, b: [{ a: 1 }, { a: 2 }], c: 'a' });
  });
});

describe('keys that reach a prototype', () => {
  for (const [text, field] of [
    ['{"__proto__":{"admin":true}}', '__proto__'],
    ['{"metadata":{"__proto__":1}}', 'metadata.__proto__'],
    ['{"metadata":{"constructor":{"prototype":{"x":1}}}}', 'metadata.constructor'],
  ] as const) {
    test(`${text} → refused as a valid but forbidden key, named ${field}`, () => {
      const { field: named, reason, message } = refusal(text);
      assert.equal(reason, 'forbidden_key');
      assert.equal(named, field);
      assert.doesNotMatch(message, /not valid JSON/);
      assert.match(message, /valid JSON but refused/);
    });
  }

  test('constructor as a plain key is data, not a threat', () => {
    assert.deepEqual(parseStrictJson('{"constructor":"x","prototype":1}'), { constructor: 'x', prototype: 1 });
  });
});

describe('nesting', () => {
  const nested = (depth: number) => `${'{"a":'.repeat(depth - 1)}[]${'}'.repeat(depth - 1)}`;
  test(`${JSON_NESTING_DEPTH_MAX} levels are accepted, one more is refused, with or without escaped keys`, () => {
    assert.ok(parseStrictJson(nested(JSON_NESTING_DEPTH_MAX)));
    assert.equal(refusal(nested(JSON_NESTING_DEPTH_MAX + 1)).reason, 'too_deep');
    assert.equal(refusal(nested(JSON_NESTING_DEPTH_MAX + 1).replace('"a"', '"\\u0061"')).reason, 'too_deep');
    const deepArrays = refusal(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    assert.equal(deepArrays.reason, 'too_deep');
    assert.ok(String(deepArrays.field).length <= FIELD_ECHO_LENGTH_MAX);
  });
});

describe('everything else is JSON.parse', () => {
  test('malformed and empty bodies are refused as not JSON, with a bounded message', () => {
    for (const text of ['{"a":', '{"a":1,}', "{'a':1}", 'x'.repeat(100_000)]) {
      const { reason, message } = refusal(text);
      assert.equal(reason, 'invalid_json');
      assert.ok(message.length <= 250, message);
    }
    assert.equal(refusal('').reason, 'empty');
    assert.equal(refusal('\ufeff').reason, 'empty');
  });

  test('a leading byte order mark is ignored, as RFC 8259 allows', () => {
    assert.deepEqual(parseStrictJson('\ufeff{"a":1}'), { a: 1 });
  });

  test('any JSON without repeated or prototype keys reads back as the value written', () => {
    const safeKey = fc.string().filter((key) => key !== '__proto__' && key !== 'constructor');
    const json = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, fc.string(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), tie('array'), tie('object')),
      array: fc.array(tie('value'), { maxLength: 4 }),
      object: fc.dictionary(safeKey, tie('value'), { maxKeys: 4 }),
    }));
    fc.assert(
      fc.property(json.value, fc.constantFrom('', ' ', '\n  '), (value, space) => {
        // Compared with the value written, not with JSON.parse's reading, which V8 can get wrong (below).
        const text = JSON.stringify(value, null, space);
        assert.equal(JSON.stringify(parseStrictJson(text)), JSON.stringify(value));
      }),
      { numRuns: 500 },
    );
  });

  test('escaped keys are read as written, even after a body that trips V8 (JSON.parse reads "\\"" as \\ after a key "\\\\")', () => {
    // The sequence that makes V8's JSON.parse (Node 24) decode the second key wrongly.
    JSON.parse('{"x":0,"\\\\":1}');
    JSON.parse('{"x":0,"\\\\":1}');
    assert.deepEqual(Object.keys(parseStrictJson('{"x":0,"\\"":2}') as object), ['x', '"']);
    assert.deepEqual(parseStrictJson('{"caf\\u00e9":{"\\n":[1,"\\"",{"\\"":null}]}}'), { café: { '\n': [1, '"', { '"': null }] } });
  });

  test('the key count sees a key written with an escape after backslashes in earlier values and many plain keys, and only keys', () => {
    const plain = Array.from({ length: 50 }, (_, index) => `"k${index}":"v\\\\${index}"`).join(',');
    assert.deepEqual(keysWritten(`{"note":"a\\"b",${plain},"\\"":2}`), { count: 52, escaped: true });
    assert.deepEqual(keysWritten(`{"note":"a\\"b",${plain}}`), { count: 51, escaped: false });
    assert.deepEqual(keysWritten(`{"a\\u0062":1,${plain}}`), { count: 51, escaped: true });
    assert.deepEqual(keysWritten('{"a":[{"b":"\\\\"},{"c":{"d\\n":"x"}}]}'), { count: 4, escaped: true });
    assert.deepEqual(keysWritten('{"a":"b","c":["d:","e"]}'), { count: 2, escaped: false });
  });
});
