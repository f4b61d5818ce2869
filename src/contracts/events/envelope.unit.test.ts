// Goal: the envelope validator accepts CloudEvents 1.0 JSON and rejects every malformed event with the offending field named.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isErrorCode, type KobanError } from '../../platform/errors.ts';
import { filterAttributes, validateEvent } from './envelope.ts';
import { EVENT_BYTES_MAX } from './limits.ts';

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
