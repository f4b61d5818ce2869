// Goal: the whole process's configuration (platform and every service's settings) reads once; old variable names keep working, a renamed one stops start-up, and a misspelt one is reported with the right name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../platform/config.ts';
import { allSettings, readConfiguration } from './app.ts';
import { SERVICES } from './services.ts';

test('every service declares its database URL and port, and no key twice', () => {
  const keys = allSettings().map((setting) => setting.key);
  assert.equal(new Set(keys).size, keys.length);
  for (const module of SERVICES) {
    const prefix = module.name.toUpperCase();
    assert.ok(keys.includes(`${prefix}_DATABASE_URL`) && keys.includes(`${prefix}_PORT`), module.name);
  }
});

test('the names in use before services had modules still work', () => {
  const { settings, platform } = readConfiguration({
    LEDGER_DATABASE_URL: 'postgres://h/l',
    BUS_DATABASE_URL: 'postgres://h/b',
    PORT: '8080',
    KOBAN_BUS: 'nats',
    KOBAN_WRITE_BATCHES_IN_FLIGHT: '4',
    KOBAN_BALANCE_TYPES: 'cash,points,miles',
  });
  assert.equal(platform.port, 8080);
  assert.equal(settings.LEDGER_DATABASE_URL, 'postgres://h/l');
  assert.equal(settings.BUS_DATABASE_URL, 'postgres://h/b');
  assert.equal(settings.KOBAN_BUS, 'nats');
  assert.equal(settings.KOBAN_WRITE_BATCHES_IN_FLIGHT, 4);
  assert.ok(Object.isFrozen(settings));
});

test('KOBAN_WRITE_LANES, renamed, stops start-up with the new name', () => {
  assert.throws(
    () => readConfiguration({ KOBAN_WRITE_LANES: '4' }),
    (error: unknown) => error instanceof ConfigError && /KOBAN_WRITE_LANES was renamed KOBAN_WRITE_BATCHES_IN_FLIGHT/.test(error.message),
  );
});

test('misspelt KOBAN_, LEDGER_ and BUS_ variables are reported with the closest name; others are not', () => {
  const { unknown } = readConfiguration({ KOBAN_WRITE_BATCHES_INFLIGHT: '2', LEDGER_DATABSE_URL: 'x', BUS_PROT: '1', DBUS_SESSION_BUS_ADDRESS: 'x', HOME: '/root' });
  assert.deepEqual(unknown, [
    { key: 'BUS_PROT', suggestion: 'BUS_PORT' },
    { key: 'KOBAN_WRITE_BATCHES_INFLIGHT', suggestion: 'KOBAN_WRITE_BATCHES_IN_FLIGHT' },
    { key: 'LEDGER_DATABSE_URL', suggestion: 'LEDGER_DATABASE_URL' },
  ]);
});
