// Goal: `npm run bench:ledger` — load the ledger API of a real Koban server process (add, consume, replay, hold+post, one hot account), compare with pgbench on the same PostgreSQL, show where the time goes, and check that no money was lost.
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import path from 'node:path';
import { Pool } from 'undici';
import { type CpuFigures, cpuWindow } from './lib/cpu-window.ts';
import { type KobanProcess, startKoban } from './lib/koban-process.ts';
import { type LoadResult, type Plan, type Unexpected, newUnexpected, runAll, runClosedLoop } from './lib/load.ts';
import { type MoneyCheck, MoneyTally, type TransactionBody, checkMoney } from './lib/money-check.ts';
import { PgObserver, type PgWindowFigures } from './lib/pg-observer.ts';
import { type PgbenchFigures, findPgbench, pgbenchInit, pgbenchRun, pgbenchScale, pgbenchVersion } from './lib/pgbench.ts';
import { type PgServer, createDatabase, databaseUrl, dropDatabase, providePgServer, serverVersion, withClient } from './lib/pg-server.ts';
import { readHostCpuTicks } from './lib/proc.ts';
import { sleep } from './lib/net.ts';
import * as ledgerLimits from '../src/services/ledger/domain/limits.ts';
import { errorCode, fixed, formatTable, percentOfCore, round, runClock, usPer } from './lib/report.ts';
import { PGBENCH_SCENARIO, readRunSettings } from './lib/settings.ts';
import { guardRun, runMain } from './lib/run-guard.ts';
import { median, medianItem, medianPairedRatio } from './lib/rounds.ts';
import { ledgerConfig } from '../src/services/ledger/module.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');

const DURATION_S_DEFAULT = 5;
/** Every scenario and the pgbench reference are measured this many times, interleaved; figures are medians over rounds. */
const ROUNDS_DEFAULT = 3;
const CONCURRENCIES_DEFAULT = '1,16,64';
/** Traffic before each measured window, sent and checked but not timed. */
const WARMUP_MS = 1_500;

/** The issue's targets. */
const TARGET_CONSUME_OVER_PGBENCH_MIN = 2;
const TARGET_CONCURRENCIES = [16, 64] as const;
const TARGET_HOT_OVER_UNIFORM_MIN = 0.8;
const TARGET_P99_MS_MAX = 25;

/** Every balance the benchmark moves is of this type, so that adds feed the lots consumes draw from. */
const BALANCE_TYPE = 'points';
/** Uniform adds go to one of this many users. */
const ADD_USERS_COUNT = 10_000;
/** Add amounts are uniform in 1..this, in minor units. */
const ADD_AMOUNT_MAX = 1_000;
/** One add in this many carries an expires_at (a time-limited lot); the rest never expire. */
const ADD_EXPIRING_ONE_IN = 2;
/** expires_at of a time-limited add: at least this far ahead, plus up to LOT_EXPIRY_SPREAD_MS — nothing expires during the run. */
const LOT_EXPIRY_MIN_MS = 30 * 24 * 60 * 60 * 1000;
const LOT_EXPIRY_SPREAD_MS = 3 * 365 * 24 * 60 * 60 * 1000;
/** Uniform consumes and holds draw from one of this many users, each funded first with one add of CONSUME_FUND_AMOUNT (every other one time-limited). */
const CONSUME_USERS_COUNT = 10_000;
const CONSUME_FUND_AMOUNT = 1_000_000;
/** Consume amounts are uniform in 1..this. */
const CONSUME_AMOUNT_MAX = 100;
/** Hold amounts are uniform in HOLD_AMOUNT_MIN..HOLD_AMOUNT_MAX; a partial post takes half (rounded down), so at least 2. */
const HOLD_AMOUNT_MIN = 2;
const HOLD_AMOUNT_MAX = 100;
/**
 * The hot account is funded with a few large adds: time-limited lots (each
 * expiring HOT_EXPIRING_LOT_STEP_MS after the previous one) that consumes
 * cross soonest-expiring first, then lots without expiry, large enough never
 * to run dry.
 */
const HOT_EXPIRING_LOTS = 6;
const HOT_EXPIRING_LOT_AMOUNT = 50_000;
const HOT_EXPIRING_LOT_STEP_MS = 30 * 24 * 60 * 60 * 1000;
const HOT_PERMANENT_LOTS = 2;
const HOT_PERMANENT_LOT_AMOUNT = 1_000_000_000_000;
const FUNDING_CONCURRENCY = 32;
/** Committed adds kept for replay, with the body first answered. */
const REPLAY_CORPUS_MAX = 200_000;

const HTTP_HEADERS_TIMEOUT_MS = 30_000;
const HTTP_BODY_TIMEOUT_MS = 30_000;
/** Koban's default (src/services/ledger/module.ts), shown in the report when KOBAN_SWEEP_INTERVAL_MS is unset. */
const KOBAN_SWEEP_INTERVAL_MS_DEFAULT = 1_000;

/** Whole-run watchdog: start-up (embedded server, pgbench -i, funding) plus the load plus checks. */
const STARTUP_BUDGET_MS = 300_000;
const SCENARIO_SLACK_MS = 15_000;
const PGBENCH_SLACK_MS = 60_000;
const CHECK_BUDGET_MS = 600_000;

/** Before the load, the machine's CPU use is read over this long: work of others on it skews every figure. */
const HOST_PROBE_MS = 2_000;

const BYTES_PER_MIB = 1024 * 1024;
const MS_PER_S = 1000;
const MS_PER_DAY = 24 * 60 * 60 * MS_PER_S;
/** Verdict thresholds, in % of one core (or of the whole machine for the host). */
const SATURATED_PERCENT = 85;
const HOST_SATURATED_PERCENT = 90;
/** Average active Koban backends at or above which PostgreSQL always has a batch to work on. */
const ACTIVE_ALWAYS = 0.9;

const SCENARIOS = ['add', 'consume', 'replay', 'hold_post', 'hot_add', 'hot_consume'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const SCENARIO_LABELS: Record<ScenarioName, string> = {
  add: 'add (uniform)',
  consume: 'consume (uniform)',
  replay: 'replay',
  hold_post: 'hold+post pair',
  hot_add: 'add (hot account)',
  hot_consume: 'consume (hot account)',
};

type Settings = {
  durationS: number;
  rounds: number;
  concurrencies: number[];
  scenarios: ScenarioName[];
  runPgbench: boolean;
  kobanNodeArgs: string[];
  keepDatabases: boolean;
  databaseUrl: string | undefined;
};

type ScenarioRow = {
  round: number;
  scenario: ScenarioName;
  concurrency: number;
  koban: LoadResult;
  cpu: CpuFigures;
  pg: PgWindowFigures;
};

type PgbenchRow =
  | { round: number; concurrency: number; figures: PgbenchFigures; pg: PgWindowFigures | undefined; benchMs: number; hostBusyPercent: number }
  | { round: number; concurrency: number; error: string };

/** One scenario at one concurrency over every round. */
type ScenarioSummary = {
  scenario: ScenarioName;
  concurrency: number;
  rounds: ScenarioRow[];
  /** The round with the median throughput: its CPU and PostgreSQL figures stand for the scenario. */
  typical: ScenarioRow;
  /** Medians over rounds (max: the largest). */
  requestsPerS: number;
  unitsPerS: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  unexpected: number;
};

function readSettings(env: NodeJS.ProcessEnv): Settings {
  const { modes, ...rest } = readRunSettings(env, { modes: SCENARIOS, durationS: DURATION_S_DEFAULT, rounds: ROUNDS_DEFAULT, concurrencies: CONCURRENCIES_DEFAULT });
  return { ...rest, scenarios: modes };
}

const { elapsedS, log } = runClock();

function pick<T>(items: readonly T[]): T {
  return items[randomInt(items.length)]!;
}

/** Unexpected answers summed over several runs, for the final report. */
function mergeUnexpected(into: Unexpected, from: Unexpected): void {
  into.total += from.total;
  for (const [label, count] of from.counts) into.counts.set(label, (into.counts.get(label) ?? 0) + count);
  for (const sample of from.samples) if (into.samples.length < 10) into.samples.push(sample);
}

function describeUnexpected(unexpected: Unexpected): string {
  return [...unexpected.counts].map(([label, count]) => `${count}× ${label}`).join(', ');
}

/** Which source Koban runs from: the commit, and uncommitted changes under src/ (others may be editing it). */
function describeSource(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO_ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => line.slice(3));
    return dirty.length === 0 ? `commit ${head}, src/ clean` : `commit ${head} + uncommitted changes in ${dirty.length} src/ file(s): ${dirty.join(', ')}`;
  } catch {
    return 'unknown (git not available)';
  }
}

async function main(): Promise<number> {
  const settings = readSettings(process.env);
  const abort = new AbortController();
  const { signal } = abort;
  const runId = randomBytes(4).toString('hex');

  const perConcurrencyMs =
    settings.scenarios.length * (WARMUP_MS + settings.durationS * MS_PER_S + SCENARIO_SLACK_MS) + (settings.runPgbench ? settings.durationS * MS_PER_S + PGBENCH_SLACK_MS : 0);
  const deadlineMs = STARTUP_BUDGET_MS + settings.rounds * settings.concurrencies.length * perConcurrencyMs + CHECK_BUDGET_MS;
  const guard = guardRun(abort, deadlineMs);

  const cleanups: Array<{ what: string; run: () => Promise<unknown> }> = [];
  let koban: KobanProcess | undefined;
  const killKobanOnExit = () => {
    if (koban?.alive()) process.kill(koban.pid, 'SIGKILL');
  };
  process.on('exit', killKobanOnExit);

  try {
    const source = describeSource();
    const sweepIntervalMs = process.env.KOBAN_SWEEP_INTERVAL_MS || String(KOBAN_SWEEP_INTERVAL_MS_DEFAULT);
    log(
      `settings: scenarios ${[...settings.scenarios, ...(settings.runPgbench ? [PGBENCH_SCENARIO] : [])].join(',')}; ` +
        `duration ${settings.durationS} s per run after ${WARMUP_MS} ms warm-up; concurrency ${settings.concurrencies.join(',')}; ${settings.rounds} round(s)`,
    );
    log(`Koban source: ${source}`);
    const server: PgServer = await providePgServer(settings.databaseUrl);
    cleanups.push({ what: 'stop PostgreSQL', run: () => server.stop() });
    const pgVersion = await serverVersion(server.serverUrl);
    const pgSettings = await withClient(server.serverUrl, async (client) => {
      const result = await client.query<{ name: string; setting: string; unit: string | null }>(
        `SELECT name, setting, unit FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'wal_level', 'max_connections') ORDER BY name`,
      );
      return result.rows.map((row) => `${row.name}=${row.setting}${row.unit ? ` ${row.unit}` : ''}`).join(', ');
    });
    log(`PostgreSQL ${pgVersion} (${server.kind}: ${server.where}); ${pgSettings}`);

    const kobanDb = `koban_bench_${runId}`;
    const pgbenchDb = `koban_bench_pgbench_${runId}`;
    for (const name of [kobanDb, pgbenchDb]) {
      await createDatabase(server.serverUrl, name);
      if (server.kind === 'DATABASE_URL' && !settings.keepDatabases) {
        cleanups.push({ what: `drop database ${name}`, run: () => dropDatabase(server.serverUrl, name) });
      }
    }
    const kobanDbUrl = databaseUrl(server.serverUrl, kobanDb);
    const pgbenchDbUrl = databaseUrl(server.serverUrl, pgbenchDb);
    log(`databases: ${kobanDb} (Koban), ${pgbenchDb} (pgbench)${settings.keepDatabases ? ' — kept after the run (BENCH_KEEP_DBS=1)' : ''}`);

    const observer = await PgObserver.open(server.serverUrl);
    cleanups.push({ what: 'close the PostgreSQL observer', run: () => observer.close() });
    if (!observer.seesProcesses) log('PostgreSQL processes are not visible in /proc: its CPU is not reported');

    const pgbenchBin = settings.runPgbench ? await findPgbench() : undefined;
    const scale = pgbenchScale(settings.concurrencies);
    let pgbenchNote: string;
    if (!settings.runPgbench) {
      pgbenchNote = `pgbench reference not selected (BENCH_SCENARIOS)`;
      log(pgbenchNote);
    } else if (pgbenchBin) {
      pgbenchNote = await pgbenchVersion(pgbenchBin, signal);
      log(`${pgbenchNote}: pgbench -i -s ${scale} …`);
      const initStartedAt = performance.now();
      await pgbenchInit(pgbenchBin, pgbenchDbUrl, scale, signal);
      log(`pgbench -i done in ${((performance.now() - initStartedAt) / MS_PER_S).toFixed(1)} s`);
    } else {
      pgbenchNote = 'pgbench not found on PATH: the pgbench reference was SKIPPED (install it with `apt-get install postgresql-client`)';
      log(pgbenchNote);
    }

    const hostBefore = readHostCpuTicks();
    await sleep(HOST_PROBE_MS, signal);
    const hostAfter = readHostCpuTicks();
    const hostBusyBeforePercent = hostBefore && hostAfter ? (100 * (hostAfter.busy - hostBefore.busy)) / (hostAfter.total - hostBefore.total) : Number.NaN;
    log(`host CPU busy before the load (others' work): ${fixed(hostBusyBeforePercent, 0)}% of ${navigator.hardwareConcurrency} cores over ${HOST_PROBE_MS} ms`);

    koban = await startKoban({ repoRoot: REPO_ROOT, ledgerDatabaseUrl: kobanDbUrl, extraNodeArgs: settings.kobanNodeArgs, env: process.env });
    const kobanProcess = koban;
    cleanups.push({ what: 'stop Koban', run: () => kobanProcess.stop() });
    log(
      `Koban server pid ${koban.pid} healthy at ${koban.origin}${settings.kobanNodeArgs.length ? ` (node ${settings.kobanNodeArgs.join(' ')})` : ''}; ` +
        `KOBAN_SWEEP_INTERVAL_MS=${sweepIntervalMs}`,
    );

    const pool = new Pool(koban.origin, {
      connections: Math.max(...settings.concurrencies, FUNDING_CONCURRENCY),
      pipelining: 1,
      headersTimeout: HTTP_HEADERS_TIMEOUT_MS,
      bodyTimeout: HTTP_BODY_TIMEOUT_MS,
    });
    cleanups.push({ what: 'close HTTP pool', run: () => pool.close() });

    const tally = new MoneyTally();
    const allUnexpected = newUnexpected();
    let sequence = 0;
    const nextTransactionId = () => `bench-${runId}-${(sequence++).toString(36)}`;
    const hotUserId = `bench-hot-${runId}`;
    const replayCorpus: Array<{ request: string; response: string }> = [];
    const keepForReplay = (request: string, response: string) => {
      if (replayCorpus.length < REPLAY_CORPUS_MAX) replayCorpus.push({ request, response });
    };

    /** A POST /v1/transactions expecting 201; counts it in the tally; `onCreated` sees the body and answer. */
    const createPlan = (body: TransactionBody, onCreated?: (requestJson: string, responseJson: string) => void): Plan => {
      const requestJson = JSON.stringify(body);
      return {
        method: 'POST',
        path: '/v1/transactions',
        body: requestJson,
        check: (answer) => {
          if (answer.status !== 201) return `${body.type}${body.pending ? ' hold' : ''}: ${answer.status} ${errorCode(answer.body)}`;
          tally.recordCreate(body);
          onCreated?.(requestJson, answer.body);
          return null;
        },
      };
    };
    /** Adds as uniform and hot scenarios send them: only the user differs. */
    const addBody = (userId: string): TransactionBody => ({
      transaction_id: nextTransactionId(),
      type: 'add',
      user_id: userId,
      balance_type: BALANCE_TYPE,
      amount: 1 + randomInt(ADD_AMOUNT_MAX),
      ...(randomInt(ADD_EXPIRING_ONE_IN) === 0 ? { expires_at: new Date(Date.now() + LOT_EXPIRY_MIN_MS + randomInt(LOT_EXPIRY_SPREAD_MS)).toISOString() } : {}),
    });
    const consumeBody = (userId: string): TransactionBody => ({
      transaction_id: nextTransactionId(),
      type: 'consume',
      user_id: userId,
      balance_type: BALANCE_TYPE,
      amount: 1 + randomInt(CONSUME_AMOUNT_MAX),
    });
    let holdsSent = 0;
    /** A pending consume, then its post: in full for even holds, half of it for odd ones. */
    const holdPostUnit = (): Plan[] => {
      const hold: TransactionBody = {
        transaction_id: nextTransactionId(),
        type: 'consume',
        user_id: consumeUser(runId, randomInt(CONSUME_USERS_COUNT)),
        balance_type: BALANCE_TYPE,
        amount: HOLD_AMOUNT_MIN + randomInt(HOLD_AMOUNT_MAX - HOLD_AMOUNT_MIN + 1),
        pending: true,
      };
      const partial = holdsSent++ % 2 === 1;
      const postAmount = partial ? Math.floor(hold.amount / 2) : hold.amount;
      const post: Plan = {
        method: 'POST',
        path: `/v1/transactions/${encodeURIComponent(hold.transaction_id)}/post`,
        body: JSON.stringify(partial ? { balance_type: hold.balance_type, amount: postAmount } : { balance_type: hold.balance_type }),
        check: (answer) => {
          const what = `post ${partial ? 'partial' : 'full'}`;
          if (answer.status !== 201) return `${what}: ${answer.status} ${errorCode(answer.body)}`;
          const posted = JSON.parse(answer.body) as { status?: unknown; posted_amount?: unknown };
          tally.recordPost(hold, postAmount);
          if (posted.status !== 'posted' || posted.posted_amount !== postAmount) {
            return `${what}: 201 with status ${String(posted.status)}, posted_amount ${String(posted.posted_amount)} (expected posted, ${postAmount})`;
          }
          return null;
        },
      };
      return [createPlan(hold), post];
    };

    const needs = (...names: ScenarioName[]) => names.some((name) => settings.scenarios.includes(name));
    // Fund the uniform consume users (one lot each, every other one time-limited) and the hot account (a few large lots).
    const fundingPlans: Plan[] = [];
    if (needs('consume', 'hold_post', 'replay')) {
      for (let index = 0; index < CONSUME_USERS_COUNT; index++) {
        const body: TransactionBody = {
          transaction_id: nextTransactionId(),
          type: 'add',
          user_id: consumeUser(runId, index),
          balance_type: BALANCE_TYPE,
          amount: CONSUME_FUND_AMOUNT,
          ...(index % 2 === 0 ? { expires_at: new Date(Date.now() + LOT_EXPIRY_MIN_MS + randomInt(LOT_EXPIRY_SPREAD_MS)).toISOString() } : {}),
        };
        fundingPlans.push(createPlan(body, keepForReplay));
      }
    }
    const hotFunding: TransactionBody[] = [];
    if (needs('hot_add', 'hot_consume')) {
      for (let index = 0; index < HOT_EXPIRING_LOTS; index++) {
        hotFunding.push({
          transaction_id: nextTransactionId(),
          type: 'add',
          user_id: hotUserId,
          balance_type: BALANCE_TYPE,
          amount: HOT_EXPIRING_LOT_AMOUNT,
          expires_at: new Date(Date.now() + (index + 1) * HOT_EXPIRING_LOT_STEP_MS).toISOString(),
        });
      }
      for (let index = 0; index < HOT_PERMANENT_LOTS; index++) {
        hotFunding.push({ transaction_id: nextTransactionId(), type: 'add', user_id: hotUserId, balance_type: BALANCE_TYPE, amount: HOT_PERMANENT_LOT_AMOUNT });
      }
      fundingPlans.push(...hotFunding.map((body) => createPlan(body)));
    }
    if (fundingPlans.length > 0) {
      const fundingStartedAt = performance.now();
      const funding = await runAll(pool, fundingPlans, FUNDING_CONCURRENCY, signal);
      mergeUnexpected(allUnexpected, funding);
      log(
        `funded ${needs('consume', 'hold_post', 'replay') ? `${CONSUME_USERS_COUNT} users with ${CONSUME_FUND_AMOUNT} ${BALANCE_TYPE} each` : 'no uniform users'}` +
          `${hotFunding.length ? `, hot user ${hotUserId} with ${HOT_EXPIRING_LOTS} time-limited lots of ${HOT_EXPIRING_LOT_AMOUNT} and ${HOT_PERMANENT_LOTS} of ${HOT_PERMANENT_LOT_AMOUNT} without expiry` : ''} ` +
          `in ${((performance.now() - fundingStartedAt) / MS_PER_S).toFixed(1)} s (${funding.total} unexpected answers)`,
      );
    }

    const nextUnit: Record<ScenarioName, () => Plan[]> = {
      add: () => [createPlan(addBody(`bench-u-${runId}-${randomInt(ADD_USERS_COUNT)}`), keepForReplay)],
      consume: () => [createPlan(consumeBody(consumeUser(runId, randomInt(CONSUME_USERS_COUNT))))],
      replay: () => {
        const original = pick(replayCorpus);
        return [
          {
            method: 'POST',
            path: '/v1/transactions',
            body: original.request,
            check: (answer) => {
              if (answer.status !== 200) return `replay: ${answer.status} ${errorCode(answer.body)}`;
              if (answer.headers['idempotent-replayed'] !== 'true') return 'replay: 200 without Idempotent-Replayed: true';
              if (answer.body !== original.response) return 'replay: 200 with a body different from the first answer';
              return null;
            },
          },
        ];
      },
      hold_post: holdPostUnit,
      hot_add: () => [createPlan(addBody(hotUserId))],
      hot_consume: () => [createPlan(consumeBody(hotUserId))],
    };

    const rows: ScenarioRow[] = [];
    const pgbenchRows: PgbenchRow[] = [];
    for (let round = 1; round <= settings.rounds; round++) {
      for (const concurrency of settings.concurrencies) {
        for (const scenario of settings.scenarios) {
          if (scenario === 'replay' && replayCorpus.length === 0) throw new Error('no committed add to replay');
          const pgWindow = observer.window(kobanDb);
          const cpu = cpuWindow([kobanProcess]);
          const result = await runClosedLoop(pool, {
            concurrency,
            warmupMs: WARMUP_MS,
            durationMs: settings.durationS * MS_PER_S,
            nextUnit: nextUnit[scenario],
            signal,
            onWindowStart: () => {
              cpu.begin();
              pgWindow.begin();
            },
            onWindowEnd: () => {
              cpu.end();
              pgWindow.end();
            },
          }).catch((error: unknown) => {
            signal.throwIfAborted();
            // Say whether the server went away (and how) rather than only that requests failed.
            const exit = kobanProcess.exitDescription();
            throw new Error(`${scenario} c=${concurrency}: ${(error as Error).message}${exit ? ` — the Koban server had exited (${exit})` : ''}`, { cause: error });
          });
          const pg = await pgWindow.figures();
          assertAlive(kobanProcess, `${scenario} c=${concurrency}`);
          mergeUnexpected(allUnexpected, result.unexpected);
          const row: ScenarioRow = { round, scenario, concurrency, koban: result, cpu: cpu.figures(), pg };
          rows.push(row);
          const pairs = scenario === 'hold_post' ? ` (${fixed(result.unitsPerS, 0)} pairs/s)` : '';
          log(
            `${roundLabel(round, settings.rounds)}${scenario.padEnd(11)} c=${String(concurrency).padEnd(3)} ${fixed(result.requestsPerS, 0).padStart(6)} req/s${pairs}  p50 ${fixed(result.p50Ms, 2)} ms  p99 ${fixed(result.p99Ms, 2)} ms  ` +
              `Koban ${fixed(percentOfCore(row.cpu.kobanMs, settings.durationS), 0)}% (${fixed(usPer(row.cpu.kobanMs, result.requests), 0)} µs/req), ` +
              `PG backends ${fixed(percentOfCore(pg.cpu?.watchedBackendsMs ?? Number.NaN, settings.durationS), 0)}%, host ${fixed(row.cpu.hostBusyPercent, 0)}% busy  unexpected ${result.unexpected.total}` +
              (result.unexpected.total > 0 ? ` [${describeUnexpected(result.unexpected)}]` : ''),
          );
        }
        if (settings.runPgbench && pgbenchBin) {
          const pgWindow = observer.window(pgbenchDb);
          const cpu = cpuWindow([]);
          try {
            cpu.begin();
            pgWindow.begin();
            let figures: PgbenchFigures;
            try {
              figures = await pgbenchRun(pgbenchBin, pgbenchDbUrl, concurrency, settings.durationS, signal);
            } finally {
              cpu.end();
              pgWindow.end();
            }
            const pg = await pgWindow.figures();
            const cpuFigures = cpu.figures();
            pgbenchRows.push({ round, concurrency, figures, pg, benchMs: cpuFigures.benchMs, hostBusyPercent: cpuFigures.hostBusyPercent });
            log(
              `${roundLabel(round, settings.rounds)}pgbench c=${concurrency}: ${fixed(figures.tps, 0)} tps, latency average ${fixed(figures.latencyAvgMs, 2)} ms, ${figures.failedTransactions} failed; ` +
                `PG ${fixed(usPer(pg.cpu?.totalMs ?? Number.NaN, figures.transactions), 0)} µs CPU/txn`,
            );
          } catch (error) {
            signal.throwIfAborted();
            pgbenchRows.push({ round, concurrency, error: (error as Error).message });
            log(`${roundLabel(round, settings.rounds)}pgbench c=${concurrency} FAILED: ${(error as Error).message}`);
          }
        }
      }
    }

    assertAlive(kobanProcess, 'the pgbench reference runs');
    log('checking money: API answers vs the database, then GET /v1/audit …');
    const money: MoneyCheck = await checkMoney({
      pool,
      kobanDbUrl,
      tally,
      neverUserId: `bench-never-${runId}`,
      hotAccount: hotFunding.length ? { userId: hotUserId, balanceType: BALANCE_TYPE } : undefined,
      signal,
      errorCode,
    });
    for (const line of money.lines) log(line);

    const peakRssBytes = koban.peakRssBytes();
    const kobanCpuTotalMs = koban.cpuMs();
    const exit = await koban.stop();
    log(
      `Koban server stopped (${exit}); peak RSS ${peakRssBytes === undefined ? 'unknown' : fixed(peakRssBytes / BYTES_PER_MIB, 1)} MiB, ` +
        `CPU ${fixed((kobanCpuTotalMs ?? Number.NaN) / MS_PER_S, 1)} s in total`,
    );

    // Report: each figure is the median over rounds; ratios are taken round by round, then their median.
    type PgbenchMeasured = Extract<PgbenchRow, { figures: PgbenchFigures }>;
    const pgbenchMeasured = (concurrency: number) => pgbenchRows.filter((row): row is PgbenchMeasured => row.concurrency === concurrency && 'figures' in row);
    const pgbenchFailed = (concurrency: number) => pgbenchRows.some((row) => row.concurrency === concurrency && 'error' in row);
    const pgbenchTps = (concurrency: number) => {
      const measured = pgbenchMeasured(concurrency);
      return measured.length > 0 ? median(measured.map((row) => row.figures.tps)) : undefined;
    };
    const pgbenchTpsByRound = (concurrency: number) => new Map(pgbenchMeasured(concurrency).map((row) => [row.round, row.figures.tps]));
    const summaries: ScenarioSummary[] = [];
    for (const concurrency of settings.concurrencies) {
      for (const scenario of settings.scenarios) {
        const measured = rows.filter((row) => row.scenario === scenario && row.concurrency === concurrency);
        const typical = medianItem(measured, (row) => row.koban.requestsPerS);
        if (!typical) continue;
        summaries.push({
          scenario,
          concurrency,
          rounds: measured,
          typical,
          requestsPerS: median(measured.map((row) => row.koban.requestsPerS)),
          unitsPerS: median(measured.map((row) => row.koban.unitsPerS)),
          p50Ms: median(measured.map((row) => row.koban.p50Ms)),
          p99Ms: median(measured.map((row) => row.koban.p99Ms)),
          maxMs: Math.max(...measured.map((row) => row.koban.maxMs)),
          unexpected: measured.reduce((sum, row) => sum + row.koban.unexpected.total, 0),
        });
      }
    }
    const summaryFor = (scenario: ScenarioName, concurrency: number) => summaries.find((summary) => summary.scenario === scenario && summary.concurrency === concurrency);
    const byRound = (summary: ScenarioSummary) => new Map(summary.rounds.map((row) => [row.round, row.koban.requestsPerS]));
    const ratioToPgbench = (summary: ScenarioSummary) => medianPairedRatio(byRound(summary), pgbenchTpsByRound(summary.concurrency));
    /** "1433–1611" over the rounds, "-" for one round. */
    const range = (values: readonly number[], digits: number) => (values.length > 1 ? `${fixed(Math.min(...values), digits)}–${fixed(Math.max(...values), digits)}` : '-');
    const cores = navigator.hardwareConcurrency;
    const peakRssMiB = peakRssBytes === undefined ? undefined : peakRssBytes / BYTES_PER_MIB;

    console.log('');
    console.log(`Koban ledger benchmark — PostgreSQL ${pgVersion}, ${server.kind === 'embedded' ? 'embedded (temporary cluster)' : `DATABASE_URL (${server.where})`}; ${pgSettings}`);
    console.log(`Koban source: ${source}; ${describeKobanLimits()}; KOBAN_SWEEP_INTERVAL_MS=${sweepIntervalMs}`);
    console.log(
      `${settings.rounds} round(s), each measuring every scenario and then pgbench at each concurrency in turn; figures are medians over rounds, ` +
        `ratios the median of each round's ratio, CPU and PostgreSQL figures (section 4) those of the round with the median throughput`,
    );
    console.log(
      `${settings.durationS} s measured per row after ${WARMUP_MS} ms warm-up; closed loop over HTTP/1.1 keep-alive (undici); ` +
        `load generator, Koban and PostgreSQL share this machine's ${cores} cores, ${fixed(hostBusyBeforePercent, 0)}% busy with others' work just before the load`,
    );
    console.log(`reference: ${pgbenchBin ? `${pgbenchNote}, tpcb-like, scale ${scale} (≥ every concurrency), -j min(C,2), no vacuum (-n), same server` : pgbenchNote}`);
    console.log(
      `requests: ${BALANCE_TYPE} only; adds 1–${ADD_AMOUNT_MAX} (1 in ${ADD_EXPIRING_ONE_IN} time-limited), consumes 1–${CONSUME_AMOUNT_MAX}, holds ${HOLD_AMOUNT_MIN}–${HOLD_AMOUNT_MAX}; ` +
        `uniform = ${ADD_USERS_COUNT} users (adds) / ${CONSUME_USERS_COUNT} funded users (consumes, holds); hot = every request on one user`,
    );

    const singleSummaries = summaries.filter((summary) => summary.scenario !== 'hold_post');
    if (singleSummaries.length > 0) {
      console.log('');
      console.log('1. Requests (one request per unit)');
      console.log(
        formatTable(
          ['scenario', 'c', 'koban req/s', 'req/s range', 'p50 ms', 'p99 ms', 'max ms', 'unexpected', 'koban CPU µs/req', 'host CPU busy %', 'pgbench tps', 'pgbench avg ms', 'ratio koban/pgbench'],
          singleSummaries.map((summary) => {
            const tps = pgbenchTps(summary.concurrency);
            const typical = summary.typical;
            return [
              SCENARIO_LABELS[summary.scenario],
              String(summary.concurrency),
              fixed(summary.requestsPerS, 0),
              range(summary.rounds.map((row) => row.koban.requestsPerS), 0),
              fixed(summary.p50Ms, 2),
              fixed(summary.p99Ms, 2),
              fixed(summary.maxMs, 1),
              String(summary.unexpected),
              fixed(usPer(typical.cpu.kobanMs, typical.koban.requests), 0),
              fixed(typical.cpu.hostBusyPercent, 0),
              tps === undefined ? (pgbenchFailed(summary.concurrency) ? 'failed' : '-') : fixed(tps, 0),
              tps === undefined ? '-' : fixed(median(pgbenchMeasured(summary.concurrency).map((row) => row.figures.latencyAvgMs)), 2),
              tps === undefined ? '-' : fixed(ratioToPgbench(summary).ratio, 2),
            ];
          }),
        ),
      );
    }

    const pairSummaries = summaries.filter((summary) => summary.scenario === 'hold_post');
    if (pairSummaries.length > 0) {
      console.log('');
      console.log('2. Hold+post pairs: POST /v1/transactions {pending: true, type: consume}, then POST …/{id}/post — in full and half, alternately; latency of the pair');
      console.log(
        formatTable(
          ['c', 'pairs/s', 'pairs/s range', 'req/s', 'pair p50 ms', 'pair p99 ms', 'pair max ms', 'unexpected', 'koban CPU µs/pair', 'host CPU busy %', 'pgbench tps'],
          pairSummaries.map((summary) => [
            String(summary.concurrency),
            fixed(summary.unitsPerS, 0),
            range(summary.rounds.map((row) => row.koban.unitsPerS), 0),
            fixed(summary.requestsPerS, 0),
            fixed(summary.p50Ms, 2),
            fixed(summary.p99Ms, 2),
            fixed(summary.maxMs, 1),
            String(summary.unexpected),
            fixed(usPer(summary.typical.cpu.kobanMs, summary.typical.koban.units), 0),
            fixed(summary.typical.cpu.hostBusyPercent, 0),
            fixed(pgbenchTps(summary.concurrency) ?? Number.NaN, 0),
          ]),
        ),
      );
    }

    const hotPairs = (['add', 'consume'] as const).flatMap((operation) =>
      settings.concurrencies.map((concurrency) => ({
        operation,
        concurrency,
        uniform: summaryFor(operation, concurrency),
        hot: summaryFor(operation === 'add' ? 'hot_add' : 'hot_consume', concurrency),
      })),
    )
      .filter((pair) => pair.uniform !== undefined && pair.hot !== undefined)
      .map((pair) => ({ ...pair, ratio: medianPairedRatio(byRound(pair.hot!), byRound(pair.uniform!)).ratio }));
    if (hotPairs.length > 0) {
      console.log('');
      console.log('3. Hot account (every request on one user) vs uniform');
      console.log(
        formatTable(
          ['operation', 'c', 'uniform req/s', 'hot req/s', 'ratio hot/uniform', 'uniform p99 ms', 'hot p99 ms'],
          hotPairs.map((pair) => [
            pair.operation,
            String(pair.concurrency),
            fixed(pair.uniform!.requestsPerS, 0),
            fixed(pair.hot!.requestsPerS, 0),
            fixed(pair.ratio, 2),
            fixed(pair.uniform!.p99Ms, 2),
            fixed(pair.hot!.p99Ms, 2),
          ]),
        ),
      );
    }
    const fefo = money.figures;
    if (typeof fefo.hot_fefo_consumes === 'number') {
      console.log(
        `hot account lots: ${HOT_EXPIRING_LOTS} funding lots of ${HOT_EXPIRING_LOT_AMOUNT} expiring ${HOT_EXPIRING_LOT_STEP_MS / MS_PER_DAY} days apart, ` +
          `${HOT_PERMANENT_LOTS} of ${HOT_PERMANENT_LOT_AMOUNT} without expiry, and one per hot add; ` +
          `${fefo.hot_fefo_consumes} hot consumes drew from ${fefo.hot_fefo_lots_drawn} distinct lots, ${fefo.hot_fefo_multi_lot_consumes} of them across 2+ lots (FEFO)`,
      );
    }

    console.log('');
    console.log(`4. Where the time goes (CPU in % of one core over the measured window; µs per request)${settings.rounds > 1 ? ' — the round with the median throughput' : ''}`);
    console.log(
      formatTable(
        [
          'scenario', 'c', 'req/s', 'koban µs/req', 'koban %', 'koban main thread %', 'PG backends µs/req', 'PG backends %', 'PG other %',
          'load gen %', 'rest of host %', 'host busy %', 'write txns/s', 'ops/write txn', 'WAL B/req', 'PG active backends', 'PG waits (share of active samples)', 'looks bound by',
        ],
        [
          ...summaries.map(({ typical: row }) => {
            const pgCpu = row.pg.cpu;
            const kobanPercent = percentOfCore(row.cpu.kobanMs, settings.durationS);
            const pgPercent = percentOfCore(pgCpu?.totalMs ?? Number.NaN, settings.durationS);
            const benchPercent = percentOfCore(row.cpu.benchMs, settings.durationS);
            const hostCorePercent = row.cpu.hostBusyPercent * cores;
            return [
              row.scenario,
              String(row.concurrency),
              fixed(row.koban.requestsPerS, 0),
              fixed(usPer(row.cpu.kobanMs, row.koban.requests), 0),
              fixed(kobanPercent, 0),
              fixed(percentOfCore(row.cpu.kobanMainThreadMs, settings.durationS), 0),
              fixed(usPer(pgCpu?.watchedBackendsMs ?? Number.NaN, row.koban.requests), 0),
              fixed(percentOfCore(pgCpu?.watchedBackendsMs ?? Number.NaN, settings.durationS), 0),
              fixed(percentOfCore((pgCpu?.otherMs ?? Number.NaN) + (pgCpu?.autovacuumMs ?? Number.NaN), settings.durationS), 0),
              fixed(benchPercent, 0),
              fixed(Math.max(0, hostCorePercent - kobanPercent - pgPercent - benchPercent), 0),
              fixed(row.cpu.hostBusyPercent, 0),
              fixed(row.pg.writeTransactions / settings.durationS, 0),
              row.scenario === 'replay' || row.pg.writeTransactions === 0 ? '-' : fixed(row.koban.requests / row.pg.writeTransactions, 1),
              fixed(row.pg.walBytes / row.koban.requests, 0),
              fixed(row.pg.activeBackendsAvg, 2),
              describeWaits(row.pg),
              verdict(row, settings.durationS, cores),
            ];
          }),
          ...settings.concurrencies.flatMap((concurrency) => {
            const row = medianItem(pgbenchMeasured(concurrency), (measured) => measured.figures.tps);
            if (!row?.pg) return [];
            const pgCpu = row.pg.cpu;
            const pgPercent = percentOfCore(pgCpu?.totalMs ?? Number.NaN, settings.durationS);
            const benchPercent = percentOfCore(row.benchMs, settings.durationS);
            return [
              [
                'pgbench (tps)',
                String(row.concurrency),
                fixed(row.figures.tps, 0),
                '-',
                '-',
                '-',
                fixed(usPer(pgCpu?.watchedBackendsMs ?? Number.NaN, row.figures.transactions), 0),
                fixed(percentOfCore(pgCpu?.watchedBackendsMs ?? Number.NaN, settings.durationS), 0),
                fixed(percentOfCore((pgCpu?.otherMs ?? Number.NaN) + (pgCpu?.autovacuumMs ?? Number.NaN), settings.durationS), 0),
                fixed(benchPercent, 0),
                // pgbench itself is a separate process: it is in "rest of host".
                fixed(Math.max(0, row.hostBusyPercent * cores - pgPercent - benchPercent), 0),
                fixed(row.hostBusyPercent, 0),
                fixed(row.pg.writeTransactions / settings.durationS, 0),
                row.pg.writeTransactions > 0 ? fixed(row.figures.transactions / row.pg.writeTransactions, 1) : '-',
                fixed(row.pg.walBytes / row.figures.transactions, 0),
                fixed(row.pg.activeBackendsAvg, 2),
                describeWaits(row.pg),
                '-',
              ],
            ];
          }),
        ],
      ),
    );
    console.log(
      '   koban main thread: the event loop (JavaScript, JSON, HTTP); PG backends: the Koban database\'s connections; PG other: WAL writer, checkpointer, autovacuum, the probes; ' +
        'write txns: transaction ids PostgreSQL assigned (one per Koban batch that wrote; replays write nothing); PG active backends: average number running a statement, ' +
        'sampled every 25 ms from pg_stat_activity; rest of host: other processes on this machine (pgbench itself, other people\'s work).',
    );

    // Targets.
    const targetLines: Array<{ met: boolean | undefined; text: string }> = [];
    for (const concurrency of TARGET_CONCURRENCIES) {
      const consume = summaryFor('consume', concurrency);
      const tps = pgbenchTps(concurrency);
      const paired = consume ? ratioToPgbench(consume) : undefined;
      if (!consume || tps === undefined || !paired || paired.rounds === 0) {
        targetLines.push({ met: undefined, text: `uniform consume ≥ ${TARGET_CONSUME_OVER_PGBENCH_MIN}× pgbench tps at c=${concurrency}: not measured (needs consume and pgbench at c=${concurrency})` });
        continue;
      }
      const perRound = consume.rounds.map((row) => row.koban.requestsPerS / (pgbenchTpsByRound(concurrency).get(row.round) ?? Number.NaN));
      targetLines.push({
        met: paired.ratio >= TARGET_CONSUME_OVER_PGBENCH_MIN,
        text:
          `uniform consume ≥ ${TARGET_CONSUME_OVER_PGBENCH_MIN}× pgbench tps at c=${concurrency}: ${fixed(consume.requestsPerS, 0)} req/s vs ${fixed(tps, 0)} tps, ` +
          `median ratio ${fixed(paired.ratio, 2)}×${perRound.length > 1 ? ` (rounds: ${perRound.map((ratio) => fixed(ratio, 2)).join(', ')})` : ''}`,
      });
    }
    for (const operation of ['consume', 'add'] as const) {
      const pairs = hotPairs.filter((pair) => pair.operation === operation);
      if (pairs.length === 0) {
        targetLines.push({ met: undefined, text: `hot-account ${operation} ≥ ${TARGET_HOT_OVER_UNIFORM_MIN}× uniform: not measured (needs ${operation} and hot_${operation})` });
        continue;
      }
      const ratios = pairs.map((pair) => ({ concurrency: pair.concurrency, ratio: pair.ratio }));
      targetLines.push({
        met: ratios.every((entry) => entry.ratio >= TARGET_HOT_OVER_UNIFORM_MIN),
        text: `hot-account ${operation} ≥ ${TARGET_HOT_OVER_UNIFORM_MIN}× uniform at every concurrency: ${ratios.map((entry) => `c=${entry.concurrency} ${fixed(entry.ratio, 2)}×`).join(', ')}`,
      });
    }
    if (summaries.length > 0) {
      const over = summaries.filter((summary) => !(summary.p99Ms < TARGET_P99_MS_MAX));
      const worst = summaries.reduce((a, b) => (b.p99Ms > a.p99Ms ? b : a));
      targetLines.push({
        met: over.length === 0,
        text:
          `p99 < ${TARGET_P99_MS_MAX} ms in every row (median over rounds; hold+post: the whole pair): worst ${worst.scenario} c=${worst.concurrency} ${fixed(worst.p99Ms, 2)} ms` +
          (over.length ? `; over: ${over.map((summary) => `${summary.scenario} c=${summary.concurrency} ${fixed(summary.p99Ms, 1)}`).join(', ')}` : ''),
      });
      for (const concurrency of TARGET_CONCURRENCIES) {
        const atC = summaries.filter((summary) => summary.concurrency === concurrency);
        if (atC.length === 0) continue;
        const worstAtC = atC.reduce((a, b) => (b.p99Ms > a.p99Ms ? b : a));
        targetLines.push({
          met: worstAtC.p99Ms < TARGET_P99_MS_MAX,
          text: `  of which at c=${concurrency}: worst ${worstAtC.scenario} ${fixed(worstAtC.p99Ms, 2)} ms`,
        });
      }
    }
    console.log('');
    console.log('5. Targets (issue 3) — reported, not part of the exit code');
    for (const line of targetLines) console.log(`  ${line.met === undefined ? 'NOT MEASURED' : line.met ? 'MET    ' : 'NOT MET'}  ${line.text}`);

    console.log('');
    console.log(`Koban server peak RSS (VmHWM): ${peakRssMiB === undefined ? 'unknown' : `${fixed(peakRssMiB, 1)} MiB`}; load generator peak RSS ${fixed(process.resourceUsage().maxRSS / 1024, 1)} MiB`);
    if (allUnexpected.total > 0) {
      console.log(`UNEXPECTED answers: ${allUnexpected.total} (${describeUnexpected(allUnexpected)})`);
      for (const sample of allUnexpected.samples) console.log(`  e.g. ${sample}`);
    } else {
      console.log('unexpected answers: 0');
    }
    console.log(`money check: ${money.pass ? 'PASS' : 'FAIL'}`);
    for (const line of money.lines) console.log(`  ${line}`);
    const pass = money.pass && allUnexpected.total === 0;
    console.log(`total run time ${fixed(elapsedS(), 0)} s`);
    console.log('');
    console.log('figures as JSON (one line):');
    console.log(
      JSON.stringify({
        benchmark: 'koban-ledger',
        at: new Date().toISOString(),
        source,
        postgres: { version: pgVersion, source: server.kind, settings: pgSettings },
        settings: {
          duration_s: settings.durationS,
          rounds: settings.rounds,
          warmup_ms: WARMUP_MS,
          concurrencies: settings.concurrencies,
          scenarios: settings.scenarios,
          pgbench: settings.runPgbench,
          cores,
          koban_sweep_interval_ms: Number(sweepIntervalMs),
          koban_limits: describeKobanLimits(),
          host_busy_before_percent: round(hostBusyBeforePercent, 1),
        },
        koban: {
          peak_rss_mib: peakRssMiB === undefined ? null : round(peakRssMiB, 1),
          cpu_total_s: kobanCpuTotalMs === undefined ? null : round(kobanCpuTotalMs / MS_PER_S, 2),
          exit,
        },
        pgbench: pgbenchBin ? { version: pgbenchNote, scale, mode: 'tpcb-like' } : { skipped: pgbenchNote },
        summaries: summaries.map((summary) => {
          const tps = pgbenchTps(summary.concurrency);
          return {
            scenario: summary.scenario,
            concurrency: summary.concurrency,
            rounds: summary.rounds.length,
            koban_rps_median: round(summary.requestsPerS, 1),
            koban_rps_min: round(Math.min(...summary.rounds.map((row) => row.koban.requestsPerS)), 1),
            koban_rps_max: round(Math.max(...summary.rounds.map((row) => row.koban.requestsPerS)), 1),
            koban_units_per_s_median: round(summary.unitsPerS, 1),
            koban_p50_ms_median: round(summary.p50Ms, 3),
            koban_p99_ms_median: round(summary.p99Ms, 3),
            koban_max_ms: round(summary.maxMs, 3),
            pgbench_tps_median: tps === undefined ? null : round(tps, 1),
            ratio_koban_pgbench_median: tps === undefined ? null : round(ratioToPgbench(summary).ratio, 3),
          };
        }),
        rows: rows.map((row) => {
          const tps = pgbenchTpsByRound(row.concurrency).get(row.round);
          return {
            round: row.round,
            scenario: row.scenario,
            concurrency: row.concurrency,
            koban_units: row.koban.units,
            koban_requests: row.koban.requests,
            koban_units_per_s: round(row.koban.unitsPerS, 1),
            koban_rps: round(row.koban.requestsPerS, 1),
            koban_p50_ms: round(row.koban.p50Ms, 3),
            koban_p99_ms: round(row.koban.p99Ms, 3),
            koban_max_ms: round(row.koban.maxMs, 3),
            koban_cpu_us_per_request: round(usPer(row.cpu.kobanMs, row.koban.requests), 1),
            koban_cpu_percent_of_one_core: round(percentOfCore(row.cpu.kobanMs, settings.durationS), 1),
            koban_main_thread_percent_of_one_core: round(percentOfCore(row.cpu.kobanMainThreadMs, settings.durationS), 1),
            load_generator_cpu_percent_of_one_core: round(percentOfCore(row.cpu.benchMs, settings.durationS), 1),
            host_cpu_busy_percent: round(row.cpu.hostBusyPercent, 1),
            pg_cpu_total_ms: row.pg.cpu ? round(row.pg.cpu.totalMs, 0) : null,
            pg_backend_cpu_us_per_request: round(usPer(row.pg.cpu?.watchedBackendsMs ?? Number.NaN, row.koban.requests), 1),
            pg_write_transactions: row.pg.writeTransactions,
            pg_wal_bytes: row.pg.walBytes,
            pg_active_backends_avg: round(row.pg.activeBackendsAvg, 3),
            pg_waits: row.pg.waits.map((wait) => ({ wait: wait.wait, share: round(wait.share, 3) })),
            unexpected: row.koban.unexpected.total,
            pgbench_tps: tps === undefined ? null : round(tps, 1),
            ratio_koban_pgbench: tps === undefined ? null : round(row.koban.requestsPerS / tps, 3),
          };
        }),
        pgbench_rows: pgbenchRows.map((row) =>
          'figures' in row
            ? {
                round: row.round,
                concurrency: row.concurrency,
                tps: round(row.figures.tps, 1),
                latency_avg_ms: row.figures.latencyAvgMs,
                transactions: row.figures.transactions,
                failed: row.figures.failedTransactions,
                pg_cpu_us_per_txn: round(usPer(row.pg?.cpu?.totalMs ?? Number.NaN, row.figures.transactions), 1),
                pg_backend_cpu_us_per_txn: round(usPer(row.pg?.cpu?.watchedBackendsMs ?? Number.NaN, row.figures.transactions), 1),
                pg_active_backends_avg: round(row.pg?.activeBackendsAvg ?? Number.NaN, 3),
              }
            : row,
        ),
        targets: targetLines.map((line) => ({ met: line.met ?? null, text: line.text })),
        unexpected_total: allUnexpected.total,
        money: { pass: money.pass, ...money.figures },
        total_s: round(elapsedS(), 1),
      }),
    );
    console.log(`RESULT: ${pass ? 'PASS' : 'FAIL'}`);
    return pass ? 0 : 1;
  } finally {
    guard.disarm();
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup.run();
      } catch (error) {
        console.error(`cleanup "${cleanup.what}" failed: ${(error as Error).message}`);
      }
    }
    process.off('exit', killKobanOnExit);
  }
}

/** Koban's group-commit settings: batches at once from the configuration the server process sees, sizes from its limits. */
function describeKobanLimits(): string {
  const limits = ledgerLimits as unknown as Record<string, unknown>;
  const batchesInFlight = ledgerConfig().writeBatchesInFlightMax;
  return (
    `up to ${batchesInFlight} batch(es) written at once (KOBAN_WRITE_BATCHES_IN_FLIGHT), a second one from ${String(limits.WRITE_PARALLEL_BATCH_SIZE_MIN ?? '?')} waiting operations, ` +
    `batch ≤ ${String(limits.WRITE_BATCH_SIZE_MAX ?? '?')} operations`
  );
}

function describeWaits(pg: PgWindowFigures): string {
  return pg.waits.map((wait) => `${wait.wait} ${Math.round(wait.share * 100)}%`).join(', ') || '-';
}

/**
 * A rough reading of one row: a machine out of CPU, or a Node main thread near
 * a full core, or PostgreSQL never without a running batch is the bottleneck;
 * when none is, each waits for the other (turn-taking: a batch goes to
 * PostgreSQL while Node idles, then Node answers while PostgreSQL idles).
 */
function verdict(row: ScenarioRow, durationS: number, cores: number): string {
  const main = percentOfCore(row.cpu.kobanMainThreadMs, durationS);
  const active = row.pg.activeBackendsAvg;
  if (row.cpu.hostBusyPercent >= HOST_SATURATED_PERCENT) {
    const kobanPercent = percentOfCore(row.cpu.kobanMs, durationS);
    const pgPercent = percentOfCore(row.pg.cpu?.totalMs ?? Number.NaN, durationS);
    const benchPercent = percentOfCore(row.cpu.benchMs, durationS);
    const biggest = (
      [
        ['Node', kobanPercent],
        ['PostgreSQL', pgPercent],
        ['load generator', benchPercent],
        ['other processes', row.cpu.hostBusyPercent * cores - kobanPercent - pgPercent - benchPercent],
      ] as const
    ).reduce((a, b) => (b[1] > a[1] ? b : a));
    return `all ${cores} cores busy (most: ${biggest[0]})`;
  }
  if (main >= SATURATED_PERCENT) return 'Node main thread';
  if (active >= ACTIVE_ALWAYS) {
    const topWait = row.pg.waits[0]?.wait ?? 'CPU';
    return `PostgreSQL (a batch always running; mostly ${topWait})`;
  }
  return `turn-taking (Node main ${fixed(main, 0)}%, PG busy ${fixed(active * 100, 0)}% of the time)`;
}

function roundLabel(round: number, rounds: number): string {
  return rounds > 1 ? `round ${round}/${rounds}  ` : '';
}

function assertAlive(koban: KobanProcess, during: string): void {
  if (!koban.alive()) throw new Error(`the Koban server exited unexpectedly during ${during}; last output:\n${koban.recentOutput()}`);
}

function consumeUser(runId: string, index: number): string {
  return `bench-c-${runId}-${index}`;
}

await runMain(main);
