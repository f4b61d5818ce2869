// Goal: KOBAN_FAILPOINTS is read exactly as the contract says — every action, p, windows and scope — and any malformed entry is refused naming it, so a chaos run never tests nothing by a typo.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, PLATFORM_SETTINGS, platformConfig, readSettings } from './config.ts';
import { dueAction, FAILPOINT_DELAY_MS_MAX, FAILPOINT_ENTRIES_MAX, failpoint, FailpointsError, installFailpoints, parseFailpoints } from './failpoints.ts';

test('unset or blank: no rules', () => {
  assert.deepEqual(parseFailpoints(''), []);
  assert.deepEqual(parseFailpoints('   '), []);
});

test('every action, with defaults: p=1 and an open window', () => {
  assert.deepEqual(parseFailpoints('outbox.after_publish=crash, consumer.handle=throw,ledger.after_commit=delay:250'), [
    { name: 'outbox.after_publish', scope: undefined, action: { kind: 'crash' }, probability: 1, fromMs: undefined, untilMs: undefined },
    { name: 'consumer.handle', scope: undefined, action: { kind: 'throw' }, probability: 1, fromMs: undefined, untilMs: undefined },
    { name: 'ledger.after_commit', scope: undefined, action: { kind: 'delay', ms: 250 }, probability: 1, fromMs: undefined, untilMs: undefined },
  ]);
  assert.deepEqual(parseFailpoints(`ledger.after_commit=delay:0,ledger.after_commit=delay:${FAILPOINT_DELAY_MS_MAX}`).map((rule) => rule.action), [
    { kind: 'delay', ms: 0 },
    { kind: 'delay', ms: FAILPOINT_DELAY_MS_MAX },
  ]);
});

test('scope, probability and window', () => {
  const [rule] = parseFailpoints('consumer.after_handle@points-payments=crash;p=0.25;from=1000;until=2000');
  assert.deepEqual(rule, { name: 'consumer.after_handle', scope: 'points-payments', action: { kind: 'crash' }, probability: 0.25, fromMs: 1000, untilMs: 2000 });
  assert.equal(parseFailpoints('consumer.handle=throw;p=0')[0]!.probability, 0);
  assert.equal(parseFailpoints('consumer.handle=throw;p=1.0')[0]!.probability, 1);
  assert.equal(parseFailpoints('consumer.handle=throw;p=.5')[0]!.probability, 0.5);
  assert.equal(parseFailpoints('consumer.handle=throw;until=5')[0]!.untilMs, 5);
});

const malformed: Array<[string, RegExp]> = [
  ['consumer.handle', /entry 1 "consumer.handle": expected <name>\[@<scope>\]=<action>/],
  ['consumer.handel=throw', /unknown failpoint "consumer.handel"; one of outbox.after_publish, consumer.handle/],
  ['=throw', /unknown failpoint ""/],
  ['consumer.handle@=throw', /scope "" must be/],
  ['consumer.handle@a b=throw', /scope "a b" must be/],
  ['consumer.handle=explode', /action "explode": expected crash, throw or delay:<ms>/],
  ['consumer.handle=delay', /action "delay"/],
  ['consumer.handle=delay:-1', /action "delay:-1"/],
  ['consumer.handle=delay:1.5', /action "delay:1.5"/],
  [`consumer.handle=delay:${FAILPOINT_DELAY_MS_MAX + 1}`, /action "delay:600001"/],
  ['consumer.handle=throw;p=1.5', /p=1.5: expected a probability 0–1/],
  ['consumer.handle=throw;p=-0.1', /p=-0.1/],
  ['consumer.handle=throw;p=', /p=: expected a probability/],
  ['consumer.handle=throw;p=NaN', /p=NaN/],
  ['consumer.handle=throw;from=yesterday', /from=yesterday: expected an instant in epoch milliseconds/],
  ['consumer.handle=throw;until=1e12', /until=1e12/],
  ['consumer.handle=throw;from=2000;until=1000', /until=1000 must be after from=2000/],
  ['consumer.handle=throw;from=1000;until=1000', /until=1000 must be after from=1000/],
  ['consumer.handle=throw;p=0.5;p=0.6', /option p given twice/],
  ['consumer.handle=throw;every=2', /unknown option "every"/],
  ['consumer.handle=throw;p', /option "p": expected p=, from= or until=/],
  ['consumer.handle=throw;', /option "": expected/],
  ['consumer.handle=throw,', /entry 2 "": empty entry/],
  ['consumer.handle=throw,,ledger.after_commit=crash', /entry 2 "": empty entry/],
  ['ledger.after_commit=crash,outbox.after_publish=oops', /entry 2 "outbox.after_publish=oops": action "oops"/],
];
for (const [text, message] of malformed) {
  test(`refuses ${JSON.stringify(text)}`, () => {
    assert.throws(() => parseFailpoints(text), (error: unknown) => error instanceof FailpointsError && message.test(error.message));
  });
}

test(`at most ${FAILPOINT_ENTRIES_MAX} entries`, () => {
  const entry = 'consumer.handle=throw';
  assert.equal(parseFailpoints(Array(FAILPOINT_ENTRIES_MAX).fill(entry).join(',')).length, FAILPOINT_ENTRIES_MAX);
  assert.throws(() => parseFailpoints(Array(FAILPOINT_ENTRIES_MAX + 1).fill(entry).join(',')), /65 entries; at most 64/);
});

test('dueAction: name, scope, window (from inclusive, until exclusive) and probability', () => {
  const rules = parseFailpoints('consumer.handle@points-payments=throw;from=100;until=200,consumer.after_handle=delay:5;p=0.3');
  const never = () => 0.99;
  const always = () => 0;
  assert.deepEqual(dueAction(rules, 'consumer.handle', 'points-payments', 100, never), { kind: 'throw' });
  assert.deepEqual(dueAction(rules, 'consumer.handle', 'points-payments', 199, never), { kind: 'throw' });
  assert.equal(dueAction(rules, 'consumer.handle', 'points-payments', 99, always), undefined);
  assert.equal(dueAction(rules, 'consumer.handle', 'points-payments', 200, always), undefined);
  assert.equal(dueAction(rules, 'consumer.handle', 'notifications-payments', 150, always), undefined);
  assert.equal(dueAction(rules, 'consumer.handle', undefined, 150, always), undefined);
  assert.equal(dueAction(rules, 'ledger.after_commit', undefined, 150, always), undefined);
  // Unscoped: every scope; p=0.3 fires when the roll is under 0.3.
  assert.deepEqual(dueAction(rules, 'consumer.after_handle', 'anything', 0, () => 0.29), { kind: 'delay', ms: 5 });
  assert.equal(dueAction(rules, 'consumer.after_handle', 'anything', 0, () => 0.3), undefined);
  assert.equal(dueAction(parseFailpoints('consumer.handle=throw;p=0'), 'consumer.handle', 'x', 0, always), undefined);
});

test('failpoint: inert when nothing is installed; throw and delay act; crash is left to the process tests', async () => {
  try {
    installFailpoints([]);
    assert.equal(failpoint('consumer.handle', 'points-payments'), undefined);
    installFailpoints(parseFailpoints('consumer.handle@points-payments=throw,ledger.after_commit=delay:30'));
    assert.equal(failpoint('consumer.handle', 'notifications-payments'), undefined);
    assert.throws(() => failpoint('consumer.handle', 'points-payments'), /^Error: failpoint consumer.handle@points-payments threw$/);
    const started = performance.now();
    const delayed = failpoint('ledger.after_commit');
    assert.ok(delayed instanceof Promise);
    await delayed;
    assert.ok(performance.now() - started >= 25);
  } finally {
    installFailpoints([]);
  }
});

test('KOBAN_FAILPOINTS and KOBAN_CLOCK_SKEW_MS are platform settings: parsed into the platform config, a bad value refused naming the entry', () => {
  const platform = platformConfig(readSettings(PLATFORM_SETTINGS, { KOBAN_FAILPOINTS: 'ledger.after_commit=crash;p=0.5', KOBAN_CLOCK_SKEW_MS: '-5000' }));
  assert.equal(platform.failpoints.length, 1);
  assert.equal(platform.failpoints[0]!.probability, 0.5);
  assert.equal(platform.clockSkewMs, -5000);
  const defaults = platformConfig(readSettings(PLATFORM_SETTINGS, {}));
  assert.deepEqual(defaults.failpoints, []);
  assert.equal(defaults.clockSkewMs, 0);
  assert.throws(
    () => readSettings(PLATFORM_SETTINGS, { KOBAN_FAILPOINTS: 'ledger.after_commit=crash,consumer.handle=boom', KOBAN_CLOCK_SKEW_MS: '600000', PORT: 'x' }),
    (error: unknown) =>
      error instanceof ConfigError &&
      /KOBAN_FAILPOINTS="ledger.after_commit=crash,consumer.handle=boom": entry 2 "consumer.handle=boom": action "boom"/.test(error.message) &&
      /KOBAN_CLOCK_SKEW_MS="600000": must be <= 60000/.test(error.message) &&
      /PORT="x"/.test(error.message),
  );
});
