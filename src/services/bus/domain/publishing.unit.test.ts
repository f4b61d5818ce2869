// Goal: the repeat rule every adapter applies: fingerprints ignore key order, formatting and `time`, and name exactly the top-level attributes whose content differs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import { differingFields, fingerprint, firstOccurrences, repeatStatus } from './publishing.ts';

const base: CloudEvent = {
  specversion: '1.0',
  id: 'e-1',
  source: '/shop',
  type: 'koban.reward.earned',
  time: '2026-04-01T09:00:00.000Z',
  network: 'visa',
  data: { amount: 1200, merchant: { name: 'Lawson', tags: ['a', 'b'] } },
};

test('the same content is the same fingerprint: key order at any depth, JSON layout and time do not count', () => {
  const relaid = JSON.parse(`{ "data" : { "merchant" : { "tags" : [ "a" , "b" ], "name" : "Lawson" }, "amount" : 1200.0 },
    "network": "visa", "time": "2030-01-01T00:00:00Z", "type": "koban.reward.earned", "source": "/shop", "id": "e-1", "specversion": "1.0" }`) as CloudEvent;
  assert.deepEqual(fingerprint(relaid), fingerprint(base));
  assert.equal(repeatStatus(fingerprint(base), fingerprint(relaid)), 'duplicate');
  // An attribute left undefined by an in-process caller is absent, as it is once serialized.
  assert.deepEqual(fingerprint({ ...base, subject: undefined }), fingerprint(base));
});

test('every differing top-level attribute is named, sorted: changed, added or removed', () => {
  const { network: _network, ...withoutNetwork } = base;
  assert.deepEqual(differingFields(fingerprint(base), fingerprint({ ...base, data: { ...(base.data as object), amount: 1201 } })), ['data']);
  assert.deepEqual(differingFields(fingerprint(base), fingerprint({ ...base, data: { amount: 1200, merchant: { name: 'Lawson', tags: ['b', 'a'] } } })), ['data'], 'array order counts');
  assert.deepEqual(differingFields(fingerprint(base), fingerprint({ ...base, type: 'x', subject: 'u', campaign: 'spring' })), ['campaign', 'subject', 'type']);
  assert.deepEqual(differingFields(fingerprint(base), fingerprint(withoutNetwork as CloudEvent)), ['network']);
  assert.deepEqual(differingFields(fingerprint(base), fingerprint({ ...base, data: '1200' })), ['data'], 'a string is not the number it spells');
  assert.deepEqual(repeatStatus(fingerprint(base), fingerprint({ ...base, source: '/other' })), { conflict: ['source'] });
});

test('in a batch, the first message of a topic and id is the one that may be stored', () => {
  const message = (topic: string, id: string) => ({ topic, event: { ...base, id } });
  assert.deepEqual(firstOccurrences([message('a', '1'), message('a', '1'), message('b', '1'), message('a', '2')]), [true, false, true, true]);
});
