// Goal: the notifications settings are checked together at start-up (a webhook URL needs the signing secret; the retry cap is not below the first wait), with a message naming what to set, and its two subscriptions carry the retry policy the settings give.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, readSettings } from '../../platform/config.ts';
import { NOTIFICATIONS_SETTINGS, notificationsConfig, notificationsTopology } from './module.ts';

const settingsOf = (env: Record<string, string>) => readSettings(NOTIFICATIONS_SETTINGS, env);

test("the defaults: Japanese, webhooks off, users' webhooks kept to public addresses, 8 attempts from 1 s", () => {
  const config = notificationsConfig(settingsOf({}));
  assert.equal(config.defaultLanguage, 'ja');
  assert.equal(config.webhookUrl, undefined);
  assert.equal(config.webhookSecret, undefined);
  assert.equal(config.userWebhookPrivateAllowed, false);
  assert.deepEqual(config.retry, { attemptsMax: 8, retryInitialMs: 1_000, retryMaxMs: 3_600_000 });
});

test('a global webhook without a secret, or a retry cap below the first wait, is refused naming the variables', () => {
  assert.throws(() => notificationsConfig(settingsOf({ NOTIFICATIONS_WEBHOOK_URL: 'https://example.com/hook' })), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /NOTIFICATIONS_WEBHOOK_URL is set but NOTIFICATIONS_WEBHOOK_SECRET is not/);
    return true;
  });
  assert.throws(
    () => notificationsConfig(settingsOf({ NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS: '5000', NOTIFICATIONS_WEBHOOK_RETRY_MAX_MS: '1000' })),
    /NOTIFICATIONS_WEBHOOK_RETRY_MAX_MS=1000 is below NOTIFICATIONS_WEBHOOK_RETRY_INITIAL_MS=5000/,
  );
});

test('bad single values are refused by the settings schema', () => {
  assert.throws(() => settingsOf({ NOTIFICATIONS_DEFAULT_LANGUAGE: 'fr' }), /NOTIFICATIONS_DEFAULT_LANGUAGE="fr"/);
  assert.throws(() => settingsOf({ NOTIFICATIONS_WEBHOOK_SECRET: 'short' }), /NOTIFICATIONS_WEBHOOK_SECRET/);
  assert.throws(() => settingsOf({ NOTIFICATIONS_WEBHOOK_URL: 'ftp://example.com' }), /NOTIFICATIONS_WEBHOOK_URL/);
  assert.throws(() => settingsOf({ NOTIFICATIONS_WEBHOOK_TIMEOUT_MS: '0' }), /NOTIFICATIONS_WEBHOOK_TIMEOUT_MS/);
  assert.throws(() => settingsOf({ NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED: 'yes' }), /NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED="yes".*true or false/);
});

test('NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED reads true and false', () => {
  assert.equal(notificationsConfig(settingsOf({ NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED: 'true' })).userWebhookPrivateAllowed, true);
  assert.equal(notificationsConfig(settingsOf({ NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED: 'false' })).userWebhookPrivateAllowed, false);
});

test('one subscription per topic it reads, with the retry policy of its settings', () => {
  const topology = notificationsTopology({ consumerMaxDeliveries: 3, consumerRetryInitialMs: 10 });
  assert.deepEqual(topology.topics, ['payments', 'accounts']);
  assert.deepEqual(
    topology.subscriptions.map(({ name, topic, maxDeliveries, retryBackoffInitialMs }) => ({ name, topic, maxDeliveries, retryBackoffInitialMs })),
    [
      { name: 'notifications-payments', topic: 'payments', maxDeliveries: 3, retryBackoffInitialMs: 10 },
      { name: 'notifications-accounts', topic: 'accounts', maxDeliveries: 3, retryBackoffInitialMs: 10 },
    ],
  );
});
