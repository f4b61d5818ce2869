// Goal: `npm run chaos` options — each profile's defaults, overrides by option, a drawn seed when none is given, and bad usage refused naming the option (the CLI exits 64 on it).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommanderError } from 'commander';
import { chaosOptions } from '../chaos.ts';

test('the short profile by default: 50 s, 400 payments over 40 users, postgres bus, the drawn seed', () => {
  assert.deepEqual(chaosOptions([], () => 99), { seed: 99, durationMs: 50_000, payments: 400, users: 40, bus: 'postgres', profile: 'short', concurrency: 32 });
});

test('long: at least 20,000 payments; options override the profile; --database-url is kept', () => {
  assert.equal(chaosOptions(['--profile', 'long']).payments, 20_000);
  assert.deepEqual(chaosOptions(['--profile', 'long', '--bus', 'nats', '--seed', '7', '--duration', '90', '--payments', '900', '--database-url', 'postgres://x@127.0.0.1/y']), {
    seed: 7,
    durationMs: 90_000,
    payments: 900,
    users: 90,
    bus: 'nats',
    profile: 'long',
    concurrency: 32,
    databaseUrl: 'postgres://x@127.0.0.1/y',
  });
});

test('a soak of 5 minutes or more is taken', () => {
  assert.equal(chaosOptions(['--profile', 'soak', '--duration', '300']).durationMs, 300_000);
  assert.equal(chaosOptions(['--profile', 'soak']).durationMs, 600_000);
});

test('bad usage is refused, naming the option', () => {
  const refused = (argv: string[], message: RegExp) =>
    assert.throws(
      () => chaosOptions(argv),
      (error: unknown) => error instanceof CommanderError && message.test(error.message),
    );
  const stderr = process.stderr.write;
  process.stderr.write = () => true;
  try {
    refused(['--payments', '0'], /--payments must be an integer 1–1000000/);
    refused(['--bus', 'kafka'], /--bus.*kafka/);
    refused(['--profile', 'medium'], /--profile.*medium/);
    refused(['--seed', '-1'], /--seed/);
    refused(['--profile', 'soak', '--duration', '150'], /--duration' of a soak must be at least 300 seconds/);
  } finally {
    process.stderr.write = stderr;
  }
});
