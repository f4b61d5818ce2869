// Goal: each service's database is placed by one rule (its own URL, else a schema of DATABASE_URL, else embedded PostgreSQL), and a half-configured process is refused with the variables to set.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, PLATFORM_SETTINGS, readSettings, serviceSettings } from './config.ts';
import { checkPeers, planDatabases, type ServiceModule } from './service-module.ts';

function module(name: string): ServiceModule {
  return {
    name,
    title: name,
    description: name,
    defaultPort: 0,
    settings: [],
    database: `koban_${name}`,
    bodyLimitBytes: 1024,
    migrate: async () => {},
    start: async () => ({ api: undefined, registerRoutes: () => {}, stop: async () => {} }),
  };
}
const MODULES = [module('ledger'), module('bus')];
const settingsOf = (env: Record<string, string>) => readSettings([...PLATFORM_SETTINGS, ...MODULES.flatMap((m) => serviceSettings(m.name, m.defaultPort))], env);

test('no URL at all: every service on embedded PostgreSQL, a database each', () => {
  const plans = planDatabases(MODULES, settingsOf({}), { embeddedAllowed: true });
  assert.deepEqual(Object.fromEntries(plans), { ledger: { kind: 'embedded', database: 'koban_ledger' }, bus: { kind: 'embedded', database: 'koban_bus' } });
});

test("a service's own URL wins; DATABASE_URL gives the others a schema each", () => {
  const plans = planDatabases(MODULES, settingsOf({ LEDGER_DATABASE_URL: 'postgres://h/ledger', DATABASE_URL: 'postgres://h/all' }), { embeddedAllowed: false });
  assert.deepEqual(Object.fromEntries(plans), {
    ledger: { kind: 'own', url: 'postgres://h/ledger' },
    bus: { kind: 'shared', url: 'postgres://h/all', schema: 'koban_bus' },
  });
});

test('every service its own URL', () => {
  const plans = planDatabases(MODULES, settingsOf({ LEDGER_DATABASE_URL: 'postgres://h/l', BUS_DATABASE_URL: 'postgres://h/b' }), { embeddedAllowed: false });
  assert.deepEqual([...plans.values()].map((plan) => plan.kind), ['own', 'own']);
});

test('some URLs but none for one service: refused, naming what to set, rather than half on embedded PostgreSQL', () => {
  assert.throws(
    () => planDatabases(MODULES, settingsOf({ LEDGER_DATABASE_URL: 'postgres://h/l' }), { embeddedAllowed: true }),
    (error: unknown) => error instanceof ConfigError && /bus has no database: set BUS_DATABASE_URL.*or DATABASE_URL/.test(error.message) && !/ledger has/.test(error.message),
  );
});

test('koban serve without a URL: refused, embedded PostgreSQL is for koban start', () => {
  assert.throws(
    () => planDatabases([module('ledger')], settingsOf({}), { embeddedAllowed: false }),
    (error: unknown) => error instanceof ConfigError && /koban start/.test(error.message) && /LEDGER_DATABASE_URL/.test(error.message),
  );
});

test('a service calling others: each must run earlier in the process or have <NAME>_URL, all missing ones named at once', () => {
  const visa: ServiceModule = {
    ...module('visa'),
    peers: [
      { name: 'ledger', why: 'moves cash through the ledger' },
      { name: 'bus', why: 'publishes through the bus' },
    ],
  };
  const settings = (env: Record<string, string>) => readSettings([...PLATFORM_SETTINGS, ...[...MODULES, visa].flatMap((m) => serviceSettings(m.name, m.defaultPort))], env);
  assert.doesNotThrow(() => checkPeers([...MODULES, visa], settings({})), 'both run before it');
  assert.doesNotThrow(() => checkPeers([visa], settings({ LEDGER_URL: 'http://h:1', BUS_URL: 'http://h:2' })), 'both reachable by URL');
  assert.doesNotThrow(() => checkPeers([module('ledger'), visa], settings({ BUS_URL: 'http://h:2' })), 'one of each');
  assert.throws(
    () => checkPeers([visa], settings({ BUS_URL: 'http://h:2' })),
    (error: unknown) => error instanceof ConfigError && /^visa moves cash through the ledger: set LEDGER_URL /.test(error.message) && !/BUS_URL/.test(error.message) && !error.message.includes('\n'),
  );
  assert.throws(
    () => checkPeers([visa], settings({})),
    (error: unknown) => error instanceof ConfigError && /set LEDGER_URL and BUS_URL to where they run.*koban serve ledger bus visa/.test(error.message),
  );
  assert.throws(
    () => checkPeers([visa, module('ledger')], settings({ BUS_URL: 'http://h:2' })),
    (error: unknown) => error instanceof ConfigError && /LEDGER_URL/.test(error.message),
    'a peer started after it is no peer yet',
  );
});
