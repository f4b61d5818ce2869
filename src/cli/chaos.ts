#!/usr/bin/env node
// `npm run chaos -- [--profile short|long] [--bus postgres|nats|sns-sqs] [--seed S] [--duration SECONDS] [--payments N]`:
// every service as its own process on the run's own PostgreSQL (and broker),
// seeded card and partner traffic from a client that times out and resends,
// and seeded faults meanwhile (kills, PostgreSQL and broker restarts, relay and
// consumer crashes, poison windows, client timeouts, clock skew); then a drain,
// one redrive of dead letters, and the end-state checks. Exit 0 when nothing
// is violated, 1 on any violation, 64 on bad usage. The seed replays the run.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { type ChaosOptions, runChaos } from './chaos/run.ts';
import { SOAK_DURATION_MIN_S, SOAK_SAMPLE_INTERVAL_MS, SoakRecorder } from './chaos/soak.ts';
import { FAULT_KINDS, supportedKinds } from './chaos/schedule.ts';
import { natsServerBinary } from './chaos/topology.ts';

const EX_USAGE = 64;
const VIOLATIONS_PRINTED_MAX = 40;
const CHAOS_PAYMENTS_MAX = 1_000_000;

/** Each profile's defaults: short fits CI (about a minute of traffic), long is the bar (≥ 20,000 payments, ≥ 50 faults of each kind). */
export const PROFILES = {
  short: { durationS: 50, payments: 400 },
  long: { durationS: 1_500, payments: 20_000 },
  // About ten minutes of steady traffic at the long profile's rate, no faults.
  soak: { durationS: 600, payments: 8_000 },
} as const;

const integer = (name: string, min: number, max: number) => (value: string) => {
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(`${name} must be an integer ${min}–${max}`);
  return parsed;
};

export function chaosProgram(): Command {
  return new Command('chaos')
    .description('Run every Koban service as its own process under seeded faults and realistic traffic, then check that nothing was lost, doubled or contradicted.')
    .addOption(new Option('--profile <profile>', 'short (CI), long (≥ 20,000 payments, ≥ 50 faults of each kind) or soak (10 minutes of steady traffic, no faults; fails on unbounded growth of memory, latency or pruned tables)').choices(Object.keys(PROFILES)).default('short'))
    .addOption(new Option('--bus <bus>', 'the bus the services use (nats: the run starts its own nats-server; sns-sqs: its own SNS+SQS emulator)').choices(['postgres', 'nats', 'sns-sqs']).default('postgres'))
    .addOption(new Option('--seed <s>', 'seed of the traffic and the fault schedule (the same seed replays both)').argParser(integer('--seed', 0, 2 ** 31 - 1)))
    .addOption(new Option('--duration <seconds>', "seconds of traffic (default: the profile's)").argParser(integer('--duration', 5, 86_400)))
    .addOption(new Option('--payments <n>', "card payments to send (default: the profile's)").argParser(integer('--payments', 1, CHAOS_PAYMENTS_MAX)))
    .addOption(new Option('--concurrency <c>', 'users driven at once').argParser(integer('--concurrency', 1, 512)).default(32))
    .addOption(new Option('--log-dir <dir>', "write each service process's output to <dir>/<process>.log (appended across its restarts), to read after a violation; a soak writes its table, chart and samples there too (default ./chaos-soak-<seed>)"))
    .addOption(new Option('--database-url <url>', 'use this PostgreSQL server (databases of its own are created on it) instead of starting one; no PostgreSQL restarts then'))
    .exitOverride()
    .showHelpAfterError('(add --help for usage)');
}

type CliOptions = { profile: keyof typeof PROFILES; bus: ChaosOptions['bus']; seed?: number; duration?: number; payments?: number; concurrency: number; databaseUrl?: string; logDir?: string };

/** The run's options from the command line: the profile's defaults, overridden by what is given; a seed drawn when none is. */
export function chaosOptions(argv: readonly string[], randomSeed: () => number = () => Math.floor(Math.random() * 2 ** 31)): ChaosOptions {
  const program = chaosProgram();
  program.parse([...argv], { from: 'user' });
  const options = program.opts<CliOptions>();
  const profile = PROFILES[options.profile];
  if (options.profile === 'soak' && options.duration !== undefined && options.duration < SOAK_DURATION_MIN_S) {
    program.error(`error: option '--duration' of a soak must be at least ${SOAK_DURATION_MIN_S} seconds: a shorter soak judges growth before retention has levelled it off`, { exitCode: 64, code: 'chaos.soak_too_short' });
  }
  const payments = options.payments ?? profile.payments;
  return {
    seed: options.seed ?? randomSeed(),
    durationMs: (options.duration ?? profile.durationS) * 1_000,
    payments,
    users: Math.max(10, Math.ceil(payments / 10)),
    bus: options.bus,
    profile: options.profile,
    concurrency: options.concurrency,
    ...(options.databaseUrl === undefined ? {} : { databaseUrl: options.databaseUrl }),
    ...(options.logDir === undefined ? {} : { logDir: options.logDir }),
  };
}

async function main(options: ChaosOptions): Promise<number> {
  if (options.bus === 'nats' && natsServerBinary() === undefined) {
    console.error('chaos: --bus nats needs nats-server on PATH (or /usr/sbin/nats-server): the run starts its own so it can stop and start it');
    return EX_USAGE;
  }
  const soak = options.profile === 'soak' ? new SoakRecorder() : undefined;
  const report = await runChaos(options, (line) => console.log(line), soak === undefined ? {} : { soak: soak.hook() });
  if (soak !== undefined) {
    const judged = await soak.finish(options.logDir ?? `chaos-soak-${options.seed}`);
    console.log(`soak: ${soak.samples.length} samples every ${SOAK_SAMPLE_INTERVAL_MS / 1000} s (memory, latency and the tables retention prunes are judged; business tables are charted, not judged):\n${judged.table}`);
    console.log(`soak: wrote ${judged.files.join(', ')}`);
    report.violations.push(...judged.violations);
  }
  const kinds = supportedKinds({ bus: options.bus, ownPostgres: options.databaseUrl === undefined });
  console.log(`payments sent: ${report.payments} (${report.approvals} approved, ${report.declines} declined), ${report.requests} requests`);
  console.log(`faults injected (of scheduled), by kind:`);
  for (const kind of FAULT_KINDS) {
    const note = kinds.includes(kind) ? (kind === 'clock_skew' ? ' (set through KOBAN_CLOCK_SKEW_MS at restart)' : '') : ' (not supported on this run)';
    console.log(`  ${kind.padEnd(18)} ${String(report.injected[kind]).padStart(5)} of ${report.scheduled[kind]}${note}`);
  }
  const client = report.client;
  console.log(`retries and resends: ${client.resends} resends (${client.timeouts} client timeouts, ${client.timeoutsAfterCommit} of them after the server committed; ${client.dropped} dropped connections; ${client.unavailable} 5xx/retryable), ${report.plannedResends} planned duplicates, ${client.unanswered} unanswered`);
  console.log(`traffic ${(report.trafficMs / 1000).toFixed(1)} s; time to drain ${(report.drainMs / 1000).toFixed(1)} s; dead letters redriven once: ${report.redriven}`);
  for (const note of report.notes) console.log(`note: ${note}`);
  if (report.violations.length === 0) {
    console.log(`chaos: OK — 0 violations (seed ${report.seed})`);
    return 0;
  }
  for (const violation of report.violations.slice(0, VIOLATIONS_PRINTED_MAX)) console.log(`  VIOLATION ${violation.what}: expected ${violation.expected}, got ${violation.got} (seed ${report.seed})`);
  if (report.violations.length > VIOLATIONS_PRINTED_MAX) console.log(`  … and ${report.violations.length - VIOLATIONS_PRINTED_MAX} more${options.logDir === undefined ? ' (--log-dir keeps them all)' : ''}`);
  if (options.logDir !== undefined) {
    const file = path.join(options.logDir, 'violations.json');
    await mkdir(options.logDir, { recursive: true });
    await writeFile(file, JSON.stringify(report.violations, null, 1));
    console.log(`  every violation: ${file}`);
  }
  console.log(`chaos: ${report.violations.length} violations (seed ${report.seed}: rerun with --seed ${report.seed} --profile ${options.profile} --bus ${options.bus} to replay the schedule)`);
  return 1;
}

if (import.meta.main) {
  try {
    process.exitCode = await main(chaosOptions(process.argv.slice(2)));
  } catch (error) {
    if (error instanceof CommanderError) process.exitCode = error.exitCode === 0 ? 0 : EX_USAGE;
    else {
      console.error(`chaos: ${(error as Error).stack ?? (error as Error).message}`);
      process.exitCode = 1;
    }
  }
}
