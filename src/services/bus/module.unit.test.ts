// Goal: the bus's settings are checked at start-up: KOBAN_NATS_NAMESPACE defaults to koban, is taken when valid, and stops start-up naming itself when it could collide with another namespace or be refused by the server. The sns-sqs settings likewise.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, readSettings } from '../../platform/config.ts';
import { BUS_SETTINGS, busConfig } from './module.ts';

test('KOBAN_NATS_NAMESPACE: koban when unset or empty, as given when valid', () => {
  assert.equal(busConfig(readSettings(BUS_SETTINGS, {})).natsNamespace, 'koban');
  assert.equal(busConfig(readSettings(BUS_SETTINGS, { KOBAN_NATS_NAMESPACE: '' })).natsNamespace, 'koban');
  for (const good of ['staging', 'shop-42', 'a', `a${'b'.repeat(31)}`]) {
    assert.equal(busConfig(readSettings(BUS_SETTINGS, { KOBAN_NATS_NAMESPACE: good })).natsNamespace, good);
  }
});

test('KOBAN_NATS_NAMESPACE that could collide (_ ends the prefix of a stream name) or that NATS refuses stops start-up, named with its fix', () => {
  for (const bad of ['a_b', 'a.b', 'a>b', 'a*', 'Staging', '1abc', '-abc', 'has space', `a${'b'.repeat(32)}`]) {
    assert.throws(
      () => readSettings(BUS_SETTINGS, { KOBAN_NATS_NAMESPACE: bad }),
      (error: unknown) => error instanceof ConfigError && error.message.includes(`KOBAN_NATS_NAMESPACE=${JSON.stringify(bad)}`) && error.message.includes('no other deployment'),
      bad,
    );
  }
});

test('sns-sqs settings: defaults, an endpoint only when given, and a bad region, endpoint or namespace stops start-up naming the variable', () => {
  const defaults = busConfig(readSettings(BUS_SETTINGS, { KOBAN_BUS: 'sns-sqs' }));
  assert.equal(defaults.adapter, 'sns-sqs');
  assert.deepEqual({ ...defaults.snsSqs }, { region: 'us-east-1', namespace: 'koban' });
  const given = busConfig(readSettings(BUS_SETTINGS, { KOBAN_BUS: 'sns-sqs', AWS_REGION: 'ap-northeast-1', KOBAN_SNS_SQS_ENDPOINT: 'http://127.0.0.1:4566', KOBAN_SNS_SQS_NAMESPACE: 'prod' }));
  assert.deepEqual({ ...given.snsSqs }, { region: 'ap-northeast-1', endpoint: 'http://127.0.0.1:4566', namespace: 'prod' });
  for (const [key, bad] of [['AWS_REGION', 'Tokyo'], ['KOBAN_SNS_SQS_ENDPOINT', 'localhost:4566'], ['KOBAN_SNS_SQS_NAMESPACE', 'a_b']] as const) {
    assert.throws(
      () => readSettings(BUS_SETTINGS, { [key]: bad }),
      (error: unknown) => error instanceof ConfigError && error.message.includes(`${key}=${JSON.stringify(bad)}`),
      key,
    );
  }
});
