// Goal: configuration is validated once, defaults are sane, and a bad value stops start-up with a message that says how to fix it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from './config.ts';

test('defaults: localhost:3000, embedded PostgreSQL, cash and points', () => {
  const config = loadConfig({});
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.port, 3000);
  assert.equal(config.ledgerDatabaseUrl, undefined);
  assert.deepEqual(config.balanceTypes, ['cash', 'points']);
  assert.ok(config.dataDir.endsWith('.koban'));
  assert.ok(Object.isFrozen(config));
});

test('LEDGER_DATABASE_URL wins over DATABASE_URL; numbers are parsed', () => {
  const config = loadConfig({ DATABASE_URL: 'postgres://a/db', LEDGER_DATABASE_URL: 'postgresql://b/ledger', PORT: '8080', KOBAN_BALANCE_TYPES: 'cash,points,miles' });
  assert.equal(config.ledgerDatabaseUrl, 'postgresql://b/ledger');
  assert.equal(config.port, 8080);
  assert.deepEqual(config.balanceTypes, ['cash', 'points', 'miles']);
  assert.equal(loadConfig({ DATABASE_URL: 'postgres://a/db' }).ledgerDatabaseUrl, 'postgres://a/db');
});

const bad: Array<[Record<string, string>, RegExp]> = [
  [{ PORT: 'eighty' }, /PORT="eighty": must be integer; set it to a TCP port/],
  [{ PORT: '70000' }, /PORT="70000"/],
  [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL="loud".*one of fatal/],
  [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL="mysql:\/\/x".*postgres:\/\//],
  [{ KOBAN_BALANCE_TYPES: 'Cash, points' }, /KOBAN_BALANCE_TYPES=.*comma-separated/],
  [{ KOBAN_WRITE_TIMEOUT_MS: '5' }, /KOBAN_WRITE_TIMEOUT_MS="5"/],
];
for (const [env, message] of bad) {
  test(`refuses ${JSON.stringify(env)} with a fix-it message`, () => {
    assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && message.test(error.message));
  });
}

test('every bad value is reported at once', () => {
  assert.throws(
    () => loadConfig({ PORT: 'x', LOG_LEVEL: 'y' }),
    (error: unknown) => error instanceof ConfigError && /PORT/.test(error.message) && /LOG_LEVEL/.test(error.message),
  );
});
