// Goal: settings are validated once, defaults are sane, values are frozen, and a bad value, a renamed setting or an unknown variable is reported with how to fix it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closestName, ConfigError, PLATFORM_SETTINGS, platformConfig, readSettings, type Setting, serviceSettings, unknownVariables } from './config.ts';

const WIDGET_SETTINGS: readonly Setting[] = [
  ...PLATFORM_SETTINGS,
  ...serviceSettings('widget', 3009),
  { key: 'KOBAN_WIDGET_BATCH_SIZE_MAX', schema: { type: 'integer', minimum: 1, maximum: 100, default: 10 }, hint: 'an integer, 1–100', formerly: ['KOBAN_WIDGET_LANES'] },
];

test('defaults: localhost:3000, embedded PostgreSQL, info, frozen', () => {
  const settings = readSettings(WIDGET_SETTINGS, {});
  const platform = platformConfig(settings);
  assert.equal(platform.host, '127.0.0.1');
  assert.equal(platform.port, 3000);
  assert.equal(platform.logLevel, 'info');
  assert.equal(platform.sharedDatabaseUrl, undefined);
  assert.ok(platform.dataDir.endsWith('.koban'));
  assert.equal(settings.WIDGET_PORT, 3009);
  assert.equal(settings.WIDGET_DATABASE_URL, undefined);
  assert.equal(settings.KOBAN_WIDGET_BATCH_SIZE_MAX, 10);
  assert.deepEqual(platform.retention, { retentionMs: 7 * 86_400_000, intervalMs: 60_000 });
  assert.ok(Object.isFrozen(settings));
  assert.ok(Object.isFrozen(platform));
  assert.throws(() => {
    (settings as Record<string, unknown>).PORT = 1;
  }, TypeError);
});

test('numbers are parsed; an empty variable means unset', () => {
  const settings = readSettings(WIDGET_SETTINGS, { PORT: '8080', WIDGET_PORT: '0', KOBAN_REQUEST_LOG_SAMPLE_RATE: '0.5', DATABASE_URL: '' });
  assert.equal(settings.PORT, 8080);
  assert.equal(settings.WIDGET_PORT, 0);
  assert.equal(platformConfig(settings).requestLogSampleRate, 0.5);
  assert.equal(settings.DATABASE_URL, undefined);
  // A fraction of a day: a short retention for a soak run.
  assert.equal(platformConfig(readSettings(WIDGET_SETTINGS, { KOBAN_RETENTION_DAYS: '0.001' })).retention.retentionMs, 86_400);
});

const bad: Array<[Record<string, string>, RegExp]> = [
  [{ PORT: 'eighty' }, /PORT="eighty": must be integer; set it to a TCP port/],
  [{ PORT: '70000' }, /PORT="70000"/],
  [{ WIDGET_PORT: '-1' }, /WIDGET_PORT="-1".*widget service/],
  [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL="loud".*one of fatal/],
  [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL="mysql:\/\/x".*postgres:\/\//],
  [{ WIDGET_DATABASE_URL: 'x' }, /WIDGET_DATABASE_URL="x".*widget database/],
  [{ KOBAN_REQUEST_LOG_SAMPLE_RATE: '2' }, /KOBAN_REQUEST_LOG_SAMPLE_RATE="2".*fraction/],
  [{ KOBAN_RETENTION_DAYS: '0' }, /KOBAN_RETENTION_DAYS="0": must be > 0; set it to days, more than 0/],
  [{ KOBAN_RETENTION_DAYS: '-7' }, /KOBAN_RETENTION_DAYS="-7": must be > 0/],
  [{ KOBAN_RETENTION_DAYS: '7d' }, /KOBAN_RETENTION_DAYS="7d": must be number/],
  [{ KOBAN_RETENTION_DAYS: '40000' }, /KOBAN_RETENTION_DAYS="40000": must be <= 36500/],
  [{ KOBAN_RETENTION_INTERVAL_MS: '1.5' }, /KOBAN_RETENTION_INTERVAL_MS="1.5": must be integer; set it to milliseconds/],
  [{ KOBAN_WIDGET_LANES: '4' }, /KOBAN_WIDGET_LANES was renamed KOBAN_WIDGET_BATCH_SIZE_MAX: rename the variable/],
];
for (const [env, message] of bad) {
  test(`refuses ${JSON.stringify(env)} with a fix-it message`, () => {
    assert.throws(() => readSettings(WIDGET_SETTINGS, env), (error: unknown) => error instanceof ConfigError && message.test(error.message));
  });
}

test('every problem is reported at once', () => {
  assert.throws(
    () => readSettings(WIDGET_SETTINGS, { PORT: 'x', LOG_LEVEL: 'y', KOBAN_WIDGET_LANES: '1' }),
    (error: unknown) => error instanceof ConfigError && /PORT/.test(error.message) && /LOG_LEVEL/.test(error.message) && /KOBAN_WIDGET_LANES/.test(error.message),
  );
});

test('a setting declared twice is a programming error, not a configuration one', () => {
  assert.throws(() => readSettings([...PLATFORM_SETTINGS, PLATFORM_SETTINGS[0]!], {}), (error: unknown) => !(error instanceof ConfigError) && /HOST is declared twice/.test(String(error)));
});

test('unknown variables under Koban prefixes are listed with the closest known name', () => {
  const env = { KOBAN_DATA_DIRR: 'x', WIDGET_DATABASE_URI: 'postgres://x/y', KOBAN_NOTHING_LIKE_IT: '1', KOBAN_WIDGET_LANES: '1', PATH: '/bin', WIDGET_PORT: '1' };
  assert.deepEqual(unknownVariables(WIDGET_SETTINGS, env, ['KOBAN_', 'WIDGET_']), [
    { key: 'KOBAN_DATA_DIRR', suggestion: 'KOBAN_DATA_DIR' },
    { key: 'KOBAN_NOTHING_LIKE_IT', suggestion: undefined },
    { key: 'WIDGET_DATABASE_URI', suggestion: 'WIDGET_DATABASE_URL' },
  ]);
});

test('closest name: swaps and typos count, distant names do not', () => {
  const names = ['KOBAN_WRITE_TIMEOUT_MS', 'KOBAN_BALANCE_TYPES'];
  assert.equal(closestName('KOBAN_WRITE_TIMOEUT_MS', names), 'KOBAN_WRITE_TIMEOUT_MS');
  assert.equal(closestName('KOBAN_BALANCE_TYPE', names), 'KOBAN_BALANCE_TYPES');
  assert.equal(closestName('KOBAN_BUS', names), undefined);
});
