#!/usr/bin/env node
// `npm run simulate -- --payments N [--seed S] [--users U]`: realistic traffic
// on both card routes, rewards, referrals and new accounts, then a check of
// the end state against a model (cash, payments, points grants, notices, the
// ledger's audit, no dead letters). Exit 0 when everything matches, 1 on any
// mismatch, 64 on bad usage. By default it starts its own Koban (every service
// in this process, embedded PostgreSQL in a temporary directory, holds that
// lapse after a few seconds so expiries happen); `--url` drives a running one.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SingleBar } from 'cli-progress';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { freePort } from '../platform/net.ts';
import { createRootLogger } from '../platform/logger.ts';
import { loadEarningRulesFile } from '../services/points/rules-file.ts';
import { createKoban, readConfiguration } from './app.ts';
import { checkEndState, drain, type Violation } from './simulate/check.ts';
import { driveUser, type DriveStats, type Endpoints, type Mismatch, RESEND_PERCENT } from './simulate/driver.ts';
import { planSimulation, type Step } from './simulate/plan.ts';
import { DEFAULT_EARNING_RULES } from '../services/points/domain/default-rules.ts';

const EX_USAGE = 64;
/** Holds lapse this soon when the simulation runs its own Koban: expiries happen within the run. */
const SIMULATED_HOLD_TIMEOUT_MS = 15_000;
/** Payments in one run: enough for a soak, small enough to plan in memory. */
const SIMULATE_PAYMENTS_MAX = 1_000_000;
const VIOLATIONS_PRINTED_MAX = 40;

const integer = (name: string, min: number, max: number) => (value: string) => {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(`${name} must be an integer ${min}–${max}`);
  return parsed;
};

const program = new Command('simulate')
  .description('Send realistic card, reward, referral and account traffic to Koban, then check every balance, grant and notice against a model.')
  .addOption(new Option('--payments <n>', 'card payments to send').argParser(integer('--payments', 1, SIMULATE_PAYMENTS_MAX)).default(1_000))
  .addOption(new Option('--seed <s>', 'seed of the traffic (the same seed sends the same traffic)').argParser(integer('--seed', 0, 2 ** 31 - 1)))
  .addOption(new Option('--users <u>', 'users the payments spread over (default: one per 10 payments, at least 10)').argParser(integer('--users', 1, 100_000)))
  .addOption(new Option('--concurrency <c>', 'users driven at once').argParser(integer('--concurrency', 1, 512)).default(16))
  .addOption(new Option('--url <url>', 'drive a running Koban at this URL (every service there; <SERVICE>_URL overrides one) instead of starting one'))
  .addOption(new Option('--hold-timeout-ms <ms>', 'with --url: the routes\' hold timeout, to include expiries (left out otherwise)').argParser(integer('--hold-timeout-ms', 1_000, 600_000)))
  .exitOverride()
  .showHelpAfterError('(add --help for usage)');

type Options = { payments: number; seed?: number; users?: number; concurrency: number; url?: string; holdTimeoutMs?: number };

async function main(options: Options): Promise<number> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const users = options.users ?? Math.max(10, Math.ceil(options.payments / 10));
  const configuration = readConfiguration(process.env);
  const welcomeCash = configuration.settings.POINTS_WELCOME_CASH_AMOUNT as number;
  const referralBonusPoints = configuration.settings.POINTS_REFERRAL_BONUS_POINTS as number;
  const rulesFile = configuration.settings.POINTS_EARNING_RULES_FILE as string | undefined;
  const rules = rulesFile === undefined ? DEFAULT_EARNING_RULES : loadEarningRulesFile(rulesFile);
  const target = options.url === undefined ? await startOwnKoban() : { url: options.url.replace(/\/$/, ''), stop: async () => {} };
  const expiries = options.url === undefined || options.holdTimeoutMs !== undefined;
  try {
    const endpoints = endpointsFor(target.url);
    const plan = planSimulation({ seed, payments: options.payments, users, expiries, welcomeCash });
    const occurredAt = new Date().toISOString();
    const steps = plan.users.reduce((sum, user) => sum + user.steps.length, 0);
    console.log(`simulate: seed ${seed}, ${plan.payments.length} payments over ${users} users (${steps} messages), concurrency ${options.concurrency}, Koban at ${target.url}`);
    const bar = new SingleBar({ format: 'traffic [{bar}] {percentage}% | {value}/{total} messages | {eta_formatted} left', stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5_000 });
    bar.start(steps, 0);
    const stats: DriveStats = { requests: 0, resends: 0, declines: 0, approvals: 0, welcomeWaitMs: [] };
    const mismatches: Mismatch[] = [];
    const resendRng = seededPercent(seed);
    const queue = [...plan.users];
    const started = performance.now();
    await Promise.all(
      Array.from({ length: Math.min(options.concurrency, queue.length) }, async () => {
        for (let user = queue.shift(); user !== undefined; user = queue.shift()) {
          mismatches.push(...(await driveUser(endpoints, user, { welcomeCash, resend: (step: Step) => resendRng(step.id) < RESEND_PERCENT, onStep: () => bar.increment() }, stats)));
        }
      }),
    );
    bar.stop();
    const trafficMs = performance.now() - started;
    console.log(`sent in ${(trafficMs / 1000).toFixed(1)} s: ${stats.requests} requests (${Math.round(stats.requests / (trafficMs / 1000))}/s), ${stats.approvals} approved, ${stats.declines} declined, ${stats.resends} resent; ${plan.expiries} to expire, ${plan.rewards.length} rewards, ${plan.referrals.length} referrals; welcome cash visible after p50 ${percentile(stats.welcomeWaitMs, 50)} ms, p99 ${percentile(stats.welcomeWaitMs, 99)} ms`);
    const violations: Violation[] = mismatches.map((mismatch) => ({ what: `${mismatch.user_id}: ${mismatch.step}`, expected: mismatch.expected, got: mismatch.got }));
    console.log('draining: waiting for expiries, outboxes and subscriptions…');
    const drained = await drain(endpoints, plan, violations);
    console.log(`drained in ${(drained.drainMs / 1000).toFixed(1)} s; checking the end state…`);
    const counts = await checkEndState(endpoints, plan, { rules, referralBonusPoints, occurredAt }, violations);
    console.log(`checked ${counts.payments} payments (${counts.events} events), ${counts.users} users' cash and points, ${counts.grants} grants, ${counts.notices} notices, the ledger audit`);
    if (violations.length === 0) {
      console.log(`simulate: OK — every answer, balance, grant and notice matches the model (seed ${seed})`);
      return 0;
    }
    for (const violation of violations.slice(0, VIOLATIONS_PRINTED_MAX)) console.log(`  MISMATCH ${violation.what}: expected ${violation.expected}, got ${violation.got}`);
    if (violations.length > VIOLATIONS_PRINTED_MAX) console.log(`  … and ${violations.length - VIOLATIONS_PRINTED_MAX} more`);
    console.log(`simulate: ${violations.length} mismatches (seed ${seed}: rerun with --seed ${seed})`);
    return 1;
  } finally {
    await target.stop();
  }
}

function endpointsFor(url: string): Endpoints {
  const at = (name: string) => (process.env[`${name.toUpperCase()}_URL`] ?? url).replace(/\/$/, '');
  return { ledger: at('ledger'), bus: at('bus'), visa: at('visa'), quicpay: at('quicpay'), accounts: at('accounts'), points: at('points'), notifications: at('notifications') };
}

/** Every service in this process on embedded PostgreSQL in a fresh directory, holds lapsing within the run. */
async function startOwnKoban(): Promise<{ url: string; stop(): Promise<void> }> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'koban-simulate-'));
  // Run as root, embedded PostgreSQL runs as `postgres`, which must reach its data directory inside this one.
  await chmod(dataDir, 0o755);
  const configuration = readConfiguration({
    ...process.env,
    KOBAN_DATA_DIR: dataDir,
    KOBAN_EMBEDDED_PG_PORT: String(await freePort()),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    VISA_HOLD_TIMEOUT_MS: String(SIMULATED_HOLD_TIMEOUT_MS),
    QUICPAY_HOLD_TIMEOUT_MS: String(SIMULATED_HOLD_TIMEOUT_MS),
  });
  const koban = await createKoban(configuration, { root: createRootLogger(configuration.platform.logLevel, 'stderr') });
  const [address] = await koban.host.listen();
  return {
    url: address!.replace('0.0.0.0', '127.0.0.1'),
    async stop() {
      await koban.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A stable 0–99 per message id and seed: which messages are resent does not depend on timing. */
function seededPercent(seed: number): (id: string) => number {
  return (id) => {
    let hash = seed >>> 0;
    for (let index = 0; index < id.length; index += 1) hash = Math.imul(hash ^ id.charCodeAt(index), 16_777_619) >>> 0;
    return hash % 100;
  };
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!);
}

try {
  program.parse(process.argv);
  process.exitCode = await main(program.opts<Options>());
} catch (error) {
  if (error instanceof CommanderError) process.exitCode = error.exitCode === 0 ? 0 : EX_USAGE;
  else {
    console.error(`simulate: ${(error as Error).message}`);
    process.exitCode = 1;
  }
}
