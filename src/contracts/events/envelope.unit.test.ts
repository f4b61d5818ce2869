// Goal: the envelope validator accepts CloudEvents 1.0 JSON and rejects every malformed event with the offending field named.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isErrorCode, type KobanError } from '../../platform/errors.ts';
import { checkTopicName, filterAttributes, validateEvent } from './envelope.ts';
import { EVENT_BYTES_MAX, EVENT_NESTING_DEPTH_MAX, QUOTED_NAME_LENGTH_MAX } from './limits.ts';

const clock = { now: () => new Date('2026-04-01T09:00:00.000Z') };
const valid = {
  specversion: '1.0',
  id: 'visa:auth:8f2c',
  source: '/payments/visa',
  type: 'koban.payment.authorized',
  subject: 'user-42',
  time: '2026-04-01T08:59:59.123+09:00',
  datacontenttype: 'application/json',
  data: { amount: 1200, currency: 'JPY' },
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  network: 'visa',
};

function rejects(input: unknown, field: string): void {
  assert.throws(
    () => validateEvent(input, clock),
    (error: unknown) => isErrorCode(error, 'invalid_request') && (error as KobanError).details?.field === field,
    `expected invalid_request naming ${field}`,
  );
}

describe('envelope validator', () => {
  test('a complete event is returned as given', () => {
    assert.deepEqual(validateEvent(valid, clock), valid);
  });

  test('time is stamped from the injected clock when left out', () => {
    const { time: _time, ...withoutTime } = valid;
    assert.equal(validateEvent(withoutTime, clock).time, '2026-04-01T09:00:00.000Z');
  });

  test('required attributes are named when missing', () => {
    for (const field of ['specversion', 'id', 'source', 'type']) {
      const { [field]: _omitted, ...rest } = valid as Record<string, unknown>;
      rejects(rest, field);
    }
  });

  test('wrong types and values are rejected, never coerced', () => {
    rejects({ ...valid, specversion: '0.3' }, 'specversion');
    rejects({ ...valid, specversion: 1 }, 'specversion');
    rejects({ ...valid, id: '' }, 'id');
    rejects({ ...valid, id: 'has space' }, 'id');
    rejects({ ...valid, id: 'x'.repeat(129) }, 'id');
    rejects({ ...valid, id: 42 }, 'id');
    rejects({ ...valid, source: '' }, 'source');
    rejects({ ...valid, type: 7 }, 'type');
    rejects({ ...valid, time: 'yesterday' }, 'time');
    rejects({ ...valid, time: '2026-04-01T09:00:00' }, 'time');
    rejects({ ...valid, datacontenttype: 'text/xml' }, 'datacontenttype');
    rejects({ ...valid, subject: '' }, 'subject');
  });

  test('traceparent must be W3C trace context version 00 with non-zero ids', () => {
    rejects({ ...valid, traceparent: 'abc' }, 'traceparent');
    rejects({ ...valid, traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' }, 'traceparent');
    rejects({ ...valid, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01' }, 'traceparent');
    rejects({ ...valid, traceparent: '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01' }, 'traceparent');
  });

  test('extension attributes are lower-case alphanumeric names with string values', () => {
    assert.equal(validateEvent({ ...valid, campaign: 'spring2026' }, clock).campaign, 'spring2026');
    rejects({ ...valid, Network: 'visa' }, 'Network');
    rejects({ ...valid, card_network: 'visa' }, 'card_network');
    rejects({ ...valid, abcdefghijklmnopqrstu: 'x' }, 'abcdefghijklmnopqrstu');
    rejects({ ...valid, amount: 1200 }, 'amount');
    rejects({ ...valid, network: 'x'.repeat(257) }, 'network');
    rejects({ ...valid, data_base64: 'AAAA' }, 'data_base64');
  });

  test('the body must be an object and not too large', () => {
    rejects([valid], 'body');
    rejects('event', 'body');
    rejects(null, 'body');
    rejects({ ...valid, data: 'x'.repeat(EVENT_BYTES_MAX) }, 'data');
  });

  describe('text PostgreSQL cannot store is refused, naming the field', () => {
    const unstorable = { NUL: 'a\u0000b', 'lone high surrogate': 'a\ud800', 'lone low surrogate': '\udc00b', 'swapped pair': '\udc00\ud800' };
    const places: Array<[string, (text: string) => Record<string, unknown>, string]> = [
      ['type', (text) => ({ ...valid, type: text }), 'type'],
      ['subject', (text) => ({ ...valid, subject: text }), 'subject'],
      ['tracestate', (text) => ({ ...valid, tracestate: text }), 'tracestate'],
      ['an extension value', (text) => ({ ...valid, network: text }), 'network'],
      ['data as a string', (text) => ({ ...valid, data: text }), 'data'],
      ['a value inside data', (text) => ({ ...valid, data: { merchant: { name: text } } }), 'data.merchant.name'],
      ['an array item inside data', (text) => ({ ...valid, data: { tags: ['ok', text] } }), 'data.tags.1'],
      ['a key of data', (text) => ({ ...valid, data: { [`k${text}`]: 1 } }), 'data'],
      ['a key nested inside data', (text) => ({ ...valid, data: { merchant: { [text]: 'x' } } }), 'data.merchant'],
    ];
    for (const [kind, text] of Object.entries(unstorable)) {
      for (const [place, build, field] of places) {
        test(`${kind} in ${place}`, () => rejects(build(text), field));
      }
    }

    test('the message escapes what it quotes and never echoes unbounded input', () => {
      const longKey = 'k'.repeat(10_000);
      assert.throws(
        () => validateEvent({ ...valid, data: { [longKey]: { bad: '\u0000' } } }, clock),
        (error: unknown) => {
          const { message, details } = error as KobanError;
          assert.ok(message.length < QUOTED_NAME_LENGTH_MAX + 200, `message of ${message.length} characters`);
          assert.ok(String(details?.field).length <= QUOTED_NAME_LENGTH_MAX + 1);
          assert.ok(!message.includes('\u0000'), 'no raw NUL in the message');
          return isErrorCode(error, 'invalid_request');
        },
      );
    });

    test('well-formed text is kept as given: surrogate pairs, other control characters, a backslash before u0000', () => {
      const text = 'points 🎉 \t\u0001 \\u0000 \ud83d\ude00';
      const event = { ...valid, subject: text, data: { [text]: [text] } };
      assert.deepEqual(validateEvent(event, clock), event);
    });
  });

  test('data is JSON data: values JSON cannot carry are refused, not silently changed', () => {
    rejects({ ...valid, data: { amount: Number.NaN } }, 'data.amount');
    rejects({ ...valid, data: { amount: Number.POSITIVE_INFINITY } }, 'data.amount');
    rejects({ ...valid, data: { at: new Date(0) } }, 'data.at');
    rejects({ ...valid, data: { big: 10n } }, 'data.big');
    rejects({ ...valid, data: [1, undefined] }, 'data.1');
    rejects({ ...valid, data: new Map() }, 'data');
    // An absent optional field of an in-process caller is left out, as JSON does.
    assert.deepEqual(validateEvent({ ...valid, data: { amount: 1, note: undefined } }, clock).data, { amount: 1, note: undefined });
    assert.equal(JSON.stringify(validateEvent({ ...valid, data: Object.assign(Object.create(null), { a: 1 }) }, clock).data), '{"a":1}');
  });

  test(`data nests at most ${EVENT_NESTING_DEPTH_MAX} levels counting the envelope, checked without recursion`, () => {
    const nested = (levels: number) => JSON.parse('['.repeat(levels) + ']'.repeat(levels)) as unknown;
    assert.doesNotThrow(() => validateEvent({ ...valid, data: nested(EVENT_NESTING_DEPTH_MAX - 1) }, clock));
    rejects({ ...valid, data: nested(EVENT_NESTING_DEPTH_MAX) }, `data${'.0'.repeat(EVENT_NESTING_DEPTH_MAX - 1)}`);
    // Deep enough to overflow a recursive serializer: still a named 400, not a crash.
    rejects({ ...valid, data: nested(30_000) }, `data${'.0'.repeat(EVENT_NESTING_DEPTH_MAX - 1)}`);
  });

  test('topic names are checked before any query', () => {
    assert.equal(checkTopicName('payments'), 'payments');
    for (const bad of ['', 'Payments', 'a\u0000', '\ud800', 'x'.repeat(64), 'has space', 42]) {
      assert.throws(() => checkTopicName(bad), (error: unknown) => isErrorCode(error, 'invalid_request') && (error as KobanError).details?.field === 'topic', String(bad));
    }
  });

  test('filter attributes are the string context attributes and extensions, without id and time', () => {
    assert.deepEqual(filterAttributes(validateEvent(valid, clock)), {
      source: '/payments/visa',
      type: 'koban.payment.authorized',
      subject: 'user-42',
      datacontenttype: 'application/json',
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      network: 'visa',
    });
  });
});
