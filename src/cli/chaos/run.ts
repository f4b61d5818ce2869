// One chaos run: start the topology, drive the seeded traffic through the
// chaos client while the injector works through the fault schedule, stop the
// traffic, drain (bounded), redrive dead letters once, drain again, and check
// the end state — the simulation's model and the bus's delivery records.
import { randomUUID } from 'node:crypto';
import type { Violation } from '../simulate/check.ts';
import { checkAnswers, checkDelivery, checkEndState, drain, redriveDeadLetters } from '../simulate/check.ts';
import { driveUser, type DriveStats, type Mismatch } from '../simulate/driver.ts';
import { planSimulation } from '../simulate/plan.ts';
import { ACCOUNTS_OUTBOX_SCHEMA } from '../../services/accounts/store/postgres/postgres-account-store.ts';
import { paymentsOutboxSchema } from '../../services/payments/store/postgres/postgres-payment-store.ts';
import { DEFAULT_EARNING_RULES } from '../../services/points/domain/default-rules.ts';
import { isolatedEnv, ServedProcesses } from '../served-processes.ts';
import { chaosClient } from './client.ts';
import { SOAK_CHECK_MARGIN_MS, SOAK_RETENTION_MS, type SoakHook, soakServiceEnv } from './soak.ts';
import { Fleet } from './fleet.ts';
import { type BusKind, countByKind, type Fault, type FaultKind, planFaults, type Profile } from './schedule.ts';
import { type Broker, CHAOS_PROCESSES, createDatabases, givenPostgres, type Postgres, postgresBroker, serviceEnvironments, sleep, startOwnNats, startOwnPostgres, startOwnSnsSqs } from './topology.ts';

/** Holds lapse after this long: planned expiries happen within the run, and a capture delayed by a restart still finds its hold. */
const CHAOS_HOLD_TIMEOUT_MS = 30_000;
const WELCOME_CASH = 500;
const REFERRAL_BONUS_POINTS = 300;
/** A user's traffic starts within this share of the duration, so the faults meet traffic throughout. */
const TRAFFIC_SPREAD = 0.85;
/** How late a failpoint may be seen firing after its window closed (the line is read asynchronously). */
const OBSERVATION_SLACK_MS = 2_000;

/** The services are started within this long (one after another; about 10 s on a quiet 2-core machine); traffic starts when it is over. */
const CHAOS_BOOT_ALLOWANCE_MS = 25_000;

export type ChaosOptions = Readonly<{ seed: number; durationMs: number; payments: number; users: number; bus: BusKind; profile: Profile; concurrency: number; databaseUrl?: string; logDir?: string }>;

export type ChaosHooks = {
  /** Called every interval with what a soak samples (wired by `--profile soak`: soak.ts). */
  soak?: SoakHook;
  /** After the drain and before the checks (a test tampers with the end state here to see the checks fail). */
  beforeCheck?: (context: { databaseUrls: Record<string, string> }) => Promise<void>;
};

export type ChaosReport = {
  seed: number;
  payments: number;
  requests: number;
  approvals: number;
  declines: number;
  scheduled: Record<FaultKind, number>;
  injected: Record<FaultKind, number>;
  client: ReturnType<typeof chaosClient>['stats'];
  plannedResends: number;
  trafficMs: number;
  drainMs: number;
  redriven: number;
  violations: Violation[];
  notes: string[];
};

export async function runChaos(options: ChaosOptions, log: (line: string) => void, hooks: ChaosHooks = {}): Promise<ChaosReport> {
  const notes: string[] = [];
  const runTag = randomUUID().replaceAll('-', '').slice(0, 10);
  const postgres: Postgres = options.databaseUrl === undefined ? await startOwnPostgres() : givenPostgres(options.databaseUrl);
  if (!postgres.own) notes.push('PostgreSQL given by --database-url: no PostgreSQL restarts (the run restarts only a server it started)');
  let broker: Broker | undefined;
  const processes = new ServedProcesses();
  let databases: Awaited<ReturnType<typeof createDatabases>> | undefined;
  let fleet: Fleet | undefined;
  // Interrupted (Ctrl-C, a CI timeout), the run still leaves nothing behind: its services, broker and PostgreSQL go with it.
  const onSignal = (signal: NodeJS.Signals) => {
    log(`chaos: ${signal}: stopping every process the run started`);
    processes.killAll();
    void Promise.allSettled([broker?.stop(), postgres.stop()]).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    broker = options.bus === 'nats' ? await startOwnNats(runTag) : options.bus === 'sns-sqs' ? await startOwnSnsSqs(runTag) : postgresBroker();
    databases = await createDatabases(postgres.serverUrl, runTag);
    const { env, endpoints } = await serviceEnvironments({
      bus: broker,
      databaseUrls: databases.urls,
      base: isolatedEnv({
        // info: the runner waits for each service's "listening" line.
        LOG_LEVEL: 'info',
        VISA_HOLD_TIMEOUT_MS: String(CHAOS_HOLD_TIMEOUT_MS),
        QUICPAY_HOLD_TIMEOUT_MS: String(CHAOS_HOLD_TIMEOUT_MS),
        VISA_EXPIRY_SWEEP_INTERVAL_MS: '500',
        QUICPAY_EXPIRY_SWEEP_INTERVAL_MS: '500',
        POINTS_WELCOME_CASH_AMOUNT: String(WELCOME_CASH),
        POINTS_REFERRAL_BONUS_POINTS: String(REFERRAL_BONUS_POINTS),
        ...(options.profile === 'soak' ? soakServiceEnv() : {}),
      }),
    });
    const faults = planFaults({ seed: options.seed, durationMs: options.durationMs, profile: options.profile, bus: options.bus, ownPostgres: postgres.own, processes: CHAOS_PROCESSES });
    fleet = new Fleet(processes, env, faults, options.logDir);
    // Traffic starts at a moment fixed before the first spawn, so every process is started with every
    // failpoint window of the run already in its settings: arming one never needs a restart (a restart takes
    // seconds, long enough to miss a window).
    const trafficEpochMs = Date.now() + CHAOS_BOOT_ALLOWANCE_MS;
    fleet.startEpochMs = trafficEpochMs;
    // The ledger (and the bus's API beside it) first: the others reach it as they start.
    for (const role of CHAOS_PROCESSES) await fleet.start(role.name);
    const bootLeftMs = trafficEpochMs - Date.now();
    if (bootLeftMs > 0) await sleep(bootLeftMs);
    else notes.push(`the services took ${CHAOS_BOOT_ALLOWANCE_MS - bootLeftMs} ms to start, more than the ${CHAOS_BOOT_ALLOWANCE_MS} ms allowed: traffic and faults began late`);

    const plan = planSimulation({ seed: options.seed, payments: options.payments, users: options.users, expiries: true, welcomeCash: WELCOME_CASH });
    const client = chaosClient(options.seed);
    const stats: DriveStats = { requests: 0, resends: 0, declines: 0, approvals: 0, welcomeWaitMs: [] };
    const mismatches: Mismatch[] = [];
    const answers = new Map<string, string>();
    log(`chaos: seed ${options.seed}, ${plan.payments.length} payments over ${plan.users.length} users, ${options.bus} bus, ${options.profile} profile, ${Math.round(options.durationMs / 1000)} s, ${faults.length} faults scheduled`);

    // The traffic epoch on the monotonic clock (now, unless the start ran late).
    const startedAt = performance.now() - Math.max(0, Date.now() - trafficEpochMs);
    let trafficDone = false;
    const executed: Array<{ fault: Fault; ok: boolean; timeoutsBefore?: number; timeoutsAfter?: number; error?: string }> = [];
    const injector = (async () => {
      const pending: Array<Promise<void>> = [];
      for (const fault of faults) {
        const wait = startedAt + fault.at_ms - performance.now();
        if (wait > 0) await sleep(wait);
        if (trafficDone) break;
        log(`  ${(fault.at_ms / 1000).toFixed(1)} s: ${fault.kind} on ${fault.target}${fault.window_ms ? ` (${fault.window_ms} ms)` : ''}${fault.failpoint ? ` ${fault.failpoint}${fault.scope ? `@${fault.scope}` : ''}` : ''}${fault.skew_ms ? ` skew ${fault.skew_ms} ms` : ''}`);
        pending.push(inject(fault, fleet!, postgres, broker!, client, executed).then(() => {
          const failed = executed.find((entry) => entry.fault === fault && !entry.ok);
          if (failed) log(`  ${fault.kind} on ${fault.target} failed: ${failed.error}`);
        }));
      }
      await Promise.allSettled(pending);
    })();
    const progress = setInterval(() => log(`  ${((performance.now() - startedAt) / 1000).toFixed(0)} s: ${stats.approvals + stats.declines} authorizations answered, ${client.stats.resends} resends, ${queue.length} users not started`), 10_000);
    const sampler = hooks.soak
      ? setInterval(() => {
          void hooks.soak!.sample({ elapsedMs: performance.now() - startedAt, pids: { ...fleet!.pids(), postgres: postgres.pid(), broker: broker?.pid() }, databaseUrls: databases!.urls, latenciesMs: client.takeLatencies() });
        }, hooks.soak.intervalMs)
      : undefined;

    const queue = plan.users.map((user, index) => ({ user, notBefore: startedAt + (index * options.durationMs * TRAFFIC_SPREAD) / plan.users.length }));
    await Promise.all(
      Array.from({ length: Math.min(options.concurrency, queue.length) }, async () => {
        for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
          const wait = next.notBefore - performance.now();
          if (wait > 0) await sleep(wait);
          const found = await driveUser(
            endpoints,
            next.user,
            {
              welcomeCash: WELCOME_CASH,
              resend: (step) => step.kind !== 'reward' && step.kind !== 'referral' && step.id.endsWith('7'),
              onStep: () => {},
              send: client.send,
              onAnswer: (step, outcome) => {
                if (step.kind === 'authorize' && step.incremental_of === undefined) answers.set(step.id, outcome);
              },
              welcomeWaitMs: 120_000,
            },
            stats,
          );
          mismatches.push(...found);
        }
      }),
    );
    trafficDone = true;
    clearInterval(progress);
    const trafficMs = performance.now() - startedAt;
    log(`traffic done in ${(trafficMs / 1000).toFixed(1)} s; waiting for the faults under way, then draining…`);
    await injector;
    // Failpoint windows live in the processes' settings, not in the injector: one still open after the traffic
    // would crash its process in the middle of the drain (a relay crash 3 s before the end of a long run did,
    // and the drain's next request failed). Wait for the last to close; settle() then waits for its respawn.
    const windowsClosedAt = Math.max(0, ...faults.filter((fault) => fault.failpoint !== undefined).map((fault) => fleet!.windowStart(fault) + fault.window_ms));
    if (windowsClosedAt > Date.now()) await sleep(windowsClosedAt - Date.now());
    // A skewed clock is put right before the drain: the checks are about the faults' effects, not a skew left on.
    for (const name of fleet.names()) await fleet.skew(name, 0).catch(() => {});
    await fleet.settle();
    if (sampler) clearInterval(sampler);

    const violations: Violation[] = mismatches.map((mismatch) => ({ what: `${mismatch.user_id}: ${mismatch.step}`, expected: mismatch.expected, got: mismatch.got }));
    const first = await drain(endpoints, plan, violations, { deadLettersAreViolations: false });
    const redriven = await redriveDeadLetters(endpoints);
    // Whatever is still dead after the one redrive is reported, with its subscription.
    const second = await drain(endpoints, plan, violations);
    const drainMs = first.drainMs + second.drainMs;
    await hooks.beforeCheck?.({ databaseUrls: databases.urls });
    await checkEndState(endpoints, plan, { rules: DEFAULT_EARNING_RULES, referralBonusPoints: REFERRAL_BONUS_POINTS, occurredAt: new Date().toISOString() }, violations);
    await checkAnswers(endpoints, plan, answers, violations);
    await checkDelivery({ producers: {
          visa: { url: databases.urls.visa!, outboxSchema: paymentsOutboxSchema('visa') },
          quicpay: { url: databases.urls.quicpay!, outboxSchema: paymentsOutboxSchema('quicpay') },
          accounts: { url: databases.urls.accounts!, outboxSchema: ACCOUNTS_OUTBOX_SCHEMA },
        }, bus: databases.urls.bus!, notifications: databases.urls.notifications!, busKind: options.bus,
        // Under a soak's short retention the bus may have pruned what was acknowledged a retention ago (less a margin for its sweeps during the check).
        ...(options.profile === 'soak' ? { busRecordsSince: new Date(Date.now() - SOAK_RETENTION_MS + SOAK_CHECK_MARGIN_MS) } : {}) }, violations);
    for (const failure of fleet.respawnFailures) violations.push({ what: 'a process that died', expected: 'restarted', got: failure });
    for (const failed of executed.filter((entry) => !entry.ok)) notes.push(`fault ${failed.fault.kind} on ${failed.fault.target} at ${failed.fault.at_ms} ms not injected: ${failed.error}`);
    if (options.bus === 'nats') notes.push('the nats bus keeps no per-event record of handling: "no event lost" is checked through the effects (grants, notices, cash) and its dead letters');
    return {
      seed: options.seed,
      payments: plan.payments.length,
      requests: client.stats.requests,
      approvals: stats.approvals,
      declines: stats.declines,
      scheduled: countByKind(faults),
      injected: countInjected(executed, fleet),
      client: client.stats,
      plannedResends: stats.resends,
      trafficMs,
      drainMs,
      redriven,
      violations,
      notes,
    };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await fleet?.stopAll().catch(() => {});
    processes.killAll();
    await databases?.drop().catch(() => {});
    await broker?.stop().catch(() => {});
    await postgres.stop();
  }
}

/**
 * Restarts of one server run one after another: two at once (a restart drawn while one was still bringing it
 * back) would start two servers on one store. The schedule keeps them apart; this holds when a restart overruns.
 */
const restartsUnderWay = new WeakMap<object, Promise<void>>();
function oneAtATime(server: object, restart: () => Promise<void>): Promise<void> {
  const next = (restartsUnderWay.get(server) ?? Promise.resolve()).catch(() => {}).then(restart);
  restartsUnderWay.set(server, next);
  return next;
}

async function inject(
  fault: Fault,
  fleet: Fleet,
  postgres: Postgres,
  broker: Broker,
  client: ReturnType<typeof chaosClient>,
  executed: Array<{ fault: Fault; ok: boolean; timeoutsBefore?: number; timeoutsAfter?: number; error?: string }>,
): Promise<void> {
  try {
    switch (fault.kind) {
      case 'service_kill':
        await fleet.kill(fault.target);
        break;
      case 'postgres_restart':
        await oneAtATime(postgres, () => postgres.restart(fault.window_ms));
        break;
      case 'broker_restart':
        await oneAtATime(broker, () => broker.restart(fault.window_ms));
        break;
      case 'client_timeout': {
        const timeoutsBefore = client.stats.timeouts;
        client.shortTimeoutsUntil = performance.now() + fault.window_ms;
        await sleep(fault.window_ms + 100);
        executed.push({ fault, ok: true, timeoutsBefore, timeoutsAfter: client.stats.timeouts });
        return;
      }
      case 'relay_crash':
      case 'consumer_crash':
      case 'poison_window':
        if (!(await fleet.arm(fault))) throw new Error('its window was not armed: the process was started again inside it, after an earlier fault');
        break;
      case 'clock_skew':
        await fleet.skew(fault.target, fault.skew_ms!);
        await sleep(fault.window_ms);
        await fleet.skew(fault.target, 0);
        break;
    }
    executed.push({ fault, ok: true });
  } catch (error) {
    executed.push({ fault, ok: false, error: (error as Error).message.slice(0, 500) });
  }
}

/**
 * Faults that happened: the runner's own acts when they succeeded; a client-timeout window in which
 * requests did time out; a failpoint fault only when its process logged "failpoint fired" (or, for a
 * poison window, the error it threw) or died by SIGKILL inside its window.
 */
function countInjected(executed: ReadonlyArray<{ fault: Fault; ok: boolean; timeoutsBefore?: number; timeoutsAfter?: number }>, fleet: Fleet): Record<FaultKind, number> {
  const happened: Array<{ kind: FaultKind }> = [];
  for (const entry of executed) {
    if (!entry.ok) continue;
    const fault = entry.fault;
    switch (fault.kind) {
      case 'client_timeout':
        if ((entry.timeoutsAfter ?? 0) > (entry.timeoutsBefore ?? 0)) happened.push(fault);
        break;
      case 'relay_crash':
      case 'consumer_crash':
      case 'poison_window': {
        const from = fleet.windowStart(fault);
        const until = from + fault.window_ms + OBSERVATION_SLACK_MS;
        const seen = fleet.observations.some(
          (observation) =>
            observation.target === fault.target &&
            observation.at >= from &&
            observation.at <= until &&
            (fault.kind === 'poison_window' ? observation.what === 'thrown' : observation.what === 'killed' || (observation.what === 'fired' && observation.failpoint === fault.failpoint)),
        );
        if (seen) happened.push(fault);
        break;
      }
      default:
        happened.push(fault);
    }
  }
  return countByKind(happened);
}
