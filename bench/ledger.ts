// Goal: `npm run bench:ledger` — load the balance API of a real Koban server process, compare it with pgbench on the same PostgreSQL, and check that no money was lost.
import { randomBytes, randomInt } from 'node:crypto';
import path from 'node:path';
import { Pool } from 'undici';
import { type KobanProcess, readHostCpuTicks, startKoban } from './lib/koban-process.ts';
import { type LoadResult, type Plan, type Unexpected, newUnexpected, runAll, runClosedLoop } from './lib/load.ts';
import { PGBENCH_SCALE, type PgbenchFigures, findPgbench, pgbenchInit, pgbenchRun, pgbenchVersion } from './lib/pgbench.ts';
import { type PgServer, createDatabase, databaseUrl, dropDatabase, providePgServer, serverVersion, withClient } from './lib/pg-server.ts';
import { formatTable } from './lib/report.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');

const DURATION_S_DEFAULT = 8;
const DURATION_S_MAX = 600;
const CONCURRENCIES_DEFAULT = '1,16,64';
const CONCURRENCY_MAX = 1_000;
/** Traffic before each measured window, sent and checked but not timed. */
const WARMUP_MS = 1_500;

/** Scenario (a): adds go to one of this many users, uniformly. */
const ADD_USERS_COUNT = 10_000;
/** Scenario (a): amounts are uniform in 1..this, in minor units. */
const ADD_AMOUNT_MAX = 1_000;
const BALANCE_TYPES = ['cash', 'points'] as const;
/** Scenario (b): users consumed from, each funded first with CONSUME_FUND_AMOUNT points. */
const CONSUME_USERS_COUNT = 1_000;
const CONSUME_FUND_AMOUNT = 1_000_000;
const CONSUME_AMOUNT = 1;
const CONSUME_BALANCE_TYPE = 'points';
const FUNDING_CONCURRENCY = 32;
/** Scenario (c): committed adds kept for replay, with the body first answered. */
const REPLAY_CORPUS_MAX = 200_000;

/** The money check reads every touched balance back through GET /v1/users/{id}/balances/{type} with this many connections. */
const BALANCE_API_CONCURRENCY = 32;
/** Column of a user's stored balance, newest schema first (the ledger schema is evolving). */
const BALANCE_COLUMNS = ['posted', 'balance'] as const;
const HTTP_HEADERS_TIMEOUT_MS = 30_000;
const HTTP_BODY_TIMEOUT_MS = 30_000;

/** Whole-run watchdog: start-up (embedded server, pgbench -i) plus the load plus checks. */
const STARTUP_BUDGET_MS = 300_000;
const SCENARIO_SLACK_MS = 15_000;
const PGBENCH_SLACK_MS = 60_000;
const CHECK_BUDGET_MS = 120_000;
/** After the watchdog aborts, the cleanup gets this long before a hard exit. */
const CLEANUP_GRACE_MS = 60_000;

const BYTES_PER_MIB = 1024 * 1024;

class InterruptedError extends Error {
  override name = 'InterruptedError';
}

type ScenarioName = 'add' | 'consume' | 'replay';
const SCENARIOS: readonly ScenarioName[] = ['add', 'consume', 'replay'];

type TransactionBody = {
  transaction_id: string;
  type: 'add' | 'consume';
  user_id: string;
  balance_type: string;
  amount: number;
};

type Settings = {
  durationS: number;
  concurrencies: number[];
  kobanNodeArgs: string[];
  keepDatabases: boolean;
  databaseUrl: string | undefined;
};

type ScenarioRow = {
  scenario: ScenarioName;
  concurrency: number;
  koban: LoadResult;
  kobanCpuUsPerRequest: number;
  kobanCpuPercentOfOneCore: number;
  /** CPU of this process (the load generator) during the window. */
  benchCpuPercentOfOneCore: number;
  hostCpuBusyPercent: number;
};

/** What the benchmark believes it committed, from the 201 answers it got. */
class MoneyTally {
  created = 0;
  addsCreated = 0;
  consumesCreated = 0;
  addedAmount = 0;
  consumedAmount = 0;
  readonly balances = new Map<string, { userId: string; balanceType: string; amount: number }>();

  record(body: TransactionBody): void {
    this.created++;
    const signed = body.type === 'add' ? body.amount : -body.amount;
    if (body.type === 'add') {
      this.addsCreated++;
      this.addedAmount += body.amount;
    } else {
      this.consumesCreated++;
      this.consumedAmount += body.amount;
    }
    const key = accountKey(body.user_id, body.balance_type);
    const account = this.balances.get(key);
    if (account) account.amount += signed;
    else this.balances.set(key, { userId: body.user_id, balanceType: body.balance_type, amount: signed });
  }
}

function accountKey(userId: string, balanceType: string): string {
  return `${userId}\u0000${balanceType}`;
}

function readSettings(env: NodeJS.ProcessEnv): Settings {
  const durationText = env.BENCH_DURATION_S || String(DURATION_S_DEFAULT);
  const durationS = Number(durationText);
  if (!Number.isInteger(durationS) || durationS < 1 || durationS > DURATION_S_MAX) {
    throw new Error(`BENCH_DURATION_S=${JSON.stringify(durationText)}: set it to whole seconds, 1–${DURATION_S_MAX}`);
  }
  const concurrencyText = env.BENCH_CONCURRENCY || CONCURRENCIES_DEFAULT;
  const concurrencies = concurrencyText.split(',').map((part) => Number(part.trim()));
  if (concurrencies.length === 0 || concurrencies.some((c) => !Number.isInteger(c) || c < 1 || c > CONCURRENCY_MAX)) {
    throw new Error(`BENCH_CONCURRENCY=${JSON.stringify(concurrencyText)}: set it to a comma-separated list of integers 1–${CONCURRENCY_MAX}, e.g. 1,16,64`);
  }
  return {
    durationS,
    concurrencies,
    kobanNodeArgs: (env.BENCH_KOBAN_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== ''),
    keepDatabases: env.BENCH_KEEP_DBS === '1',
    databaseUrl: env.DATABASE_URL || undefined,
  };
}

const startedAt = performance.now();
function log(message: string): void {
  const elapsedS = ((performance.now() - startedAt) / 1000).toFixed(1).padStart(6);
  console.log(`[${elapsedS} s] ${message}`);
}

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

async function main(): Promise<number> {
  const settings = readSettings(process.env);
  const abort = new AbortController();
  const { signal } = abort;
  const runId = randomBytes(4).toString('hex');

  const loadBudgetMs = settings.concurrencies.length * (SCENARIOS.length * (WARMUP_MS + settings.durationS * 1000 + SCENARIO_SLACK_MS) + settings.durationS * 1000 + PGBENCH_SLACK_MS);
  const deadlineMs = STARTUP_BUDGET_MS + loadBudgetMs + CHECK_BUDGET_MS;
  const watchdog = setTimeout(() => {
    console.error(`benchmark exceeded its ${deadlineMs} ms budget; aborting`);
    abort.abort(new Error('benchmark deadline exceeded'));
    setTimeout(() => process.exit(3), CLEANUP_GRACE_MS).unref();
  }, deadlineMs);
  watchdog.unref();

  let interrupted = false;
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    process.on(name, () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      console.error(`${name}: stopping the benchmark and cleaning up (send again to exit at once)`);
      abort.abort(new InterruptedError(`interrupted by ${name}`));
      setTimeout(() => process.exit(130), CLEANUP_GRACE_MS).unref();
    });
  }

  const cleanups: Array<{ what: string; run: () => Promise<unknown> }> = [];
  let koban: KobanProcess | undefined;
  const killKobanOnExit = () => {
    if (koban?.alive()) process.kill(koban.pid, 'SIGKILL');
  };
  process.on('exit', killKobanOnExit);

  try {
    log(`settings: duration ${settings.durationS} s per run after ${WARMUP_MS} ms warm-up, concurrency ${settings.concurrencies.join(',')}`);
    const server: PgServer = await providePgServer(settings.databaseUrl);
    cleanups.push({ what: 'stop PostgreSQL', run: () => server.stop() });
    const pgVersion = await serverVersion(server.serverUrl);
    log(`PostgreSQL ${pgVersion} (${server.kind}: ${server.where})`);

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

    const pgbenchBin = await findPgbench();
    let pgbenchNote: string;
    if (pgbenchBin) {
      pgbenchNote = await pgbenchVersion(pgbenchBin, signal);
      log(`${pgbenchNote}: pgbench -i -s ${PGBENCH_SCALE} …`);
      const initStartedAt = performance.now();
      await pgbenchInit(pgbenchBin, pgbenchDbUrl, signal);
      log(`pgbench -i done in ${((performance.now() - initStartedAt) / 1000).toFixed(1)} s`);
    } else {
      pgbenchNote = 'pgbench not found on PATH: the pgbench reference was SKIPPED (install it with `apt-get install postgresql-client`)';
      log(pgbenchNote);
    }

    koban = await startKoban({ repoRoot: REPO_ROOT, ledgerDatabaseUrl: kobanDbUrl, extraNodeArgs: settings.kobanNodeArgs, env: process.env });
    const kobanProcess = koban;
    cleanups.push({ what: 'stop Koban', run: () => kobanProcess.stop() });
    log(`Koban server pid ${koban.pid} healthy at ${koban.origin}${settings.kobanNodeArgs.length ? ` (node ${settings.kobanNodeArgs.join(' ')})` : ''}`);

    const pool = new Pool(koban.origin, {
      connections: Math.max(...settings.concurrencies, FUNDING_CONCURRENCY, BALANCE_API_CONCURRENCY),
      pipelining: 1,
      headersTimeout: HTTP_HEADERS_TIMEOUT_MS,
      bodyTimeout: HTTP_BODY_TIMEOUT_MS,
    });
    cleanups.push({ what: 'close HTTP pool', run: () => pool.close() });

    const tally = new MoneyTally();
    const allUnexpected = newUnexpected();
    let sequence = 0;
    const nextTransactionId = () => `bench-${runId}-${(sequence++).toString(36)}`;

    /** A POST /v1/transactions expecting 201; counts it in the tally; `onCreated` sees the body and answer. */
    const createPlan = (body: TransactionBody, onCreated?: (requestJson: string, responseJson: string) => void): Plan => {
      const requestJson = JSON.stringify(body);
      return {
        method: 'POST',
        path: '/v1/transactions',
        body: requestJson,
        check: (answer) => {
          if (answer.status !== 201) return `${body.type}: ${answer.status} ${errorCode(answer.body)}`;
          tally.record(body);
          onCreated?.(requestJson, answer.body);
          return null;
        },
      };
    };

    // Fund the consume scenario's users.
    const fundingPlans = Array.from({ length: CONSUME_USERS_COUNT }, (_, index) =>
      createPlan({ transaction_id: nextTransactionId(), type: 'add', user_id: consumeUser(runId, index), balance_type: CONSUME_BALANCE_TYPE, amount: CONSUME_FUND_AMOUNT }),
    );
    const funding = await runAll(pool, fundingPlans, FUNDING_CONCURRENCY, signal);
    mergeUnexpected(allUnexpected, funding);
    log(`funded ${CONSUME_USERS_COUNT} users with ${CONSUME_FUND_AMOUNT} ${CONSUME_BALANCE_TYPE} each (${funding.total} unexpected answers)`);

    const replayCorpus: Array<{ request: string; response: string }> = [];
    const plans: Record<ScenarioName, () => Plan> = {
      add: () =>
        createPlan(
          {
            transaction_id: nextTransactionId(),
            type: 'add',
            user_id: `bench-u-${runId}-${randomInt(ADD_USERS_COUNT)}`,
            balance_type: pick(BALANCE_TYPES),
            amount: 1 + randomInt(ADD_AMOUNT_MAX),
          },
          (request, response) => {
            if (replayCorpus.length < REPLAY_CORPUS_MAX) replayCorpus.push({ request, response });
          },
        ),
      consume: () =>
        createPlan({
          transaction_id: nextTransactionId(),
          type: 'consume',
          user_id: consumeUser(runId, randomInt(CONSUME_USERS_COUNT)),
          balance_type: CONSUME_BALANCE_TYPE,
          amount: CONSUME_AMOUNT,
        }),
      replay: () => {
        const original = pick(replayCorpus);
        return {
          method: 'POST',
          path: '/v1/transactions',
          body: original.request,
          check: (answer) => {
            if (answer.status !== 200) return `replay: ${answer.status} ${errorCode(answer.body)}`;
            if (answer.headers['idempotent-replayed'] !== 'true') return 'replay: 200 without Idempotent-Replayed: true';
            if (answer.body !== original.response) return 'replay: 200 with a body different from the first answer';
            return null;
          },
        };
      },
    };

    const rows: ScenarioRow[] = [];
    const pgbenchByConcurrency = new Map<number, PgbenchFigures | { error: string }>();
    for (const concurrency of settings.concurrencies) {
      for (const scenario of SCENARIOS) {
        if (scenario === 'replay' && replayCorpus.length === 0) throw new Error('no committed add to replay: scenario (a) produced no 201');
        let kobanCpuAtStart: number | undefined;
        let benchCpuAtStart: NodeJS.CpuUsage | undefined;
        let hostAtStart: ReturnType<typeof readHostCpuTicks>;
        let kobanCpuMs = Number.NaN;
        let benchCpuMs = Number.NaN;
        let hostBusyPercent = Number.NaN;
        const result = await runClosedLoop(pool, {
          concurrency,
          warmupMs: WARMUP_MS,
          durationMs: settings.durationS * 1000,
          nextPlan: plans[scenario],
          signal,
          onWindowStart: () => {
            kobanCpuAtStart = kobanProcess.cpuMs();
            benchCpuAtStart = process.cpuUsage();
            hostAtStart = readHostCpuTicks();
          },
          onWindowEnd: () => {
            const kobanCpuAtEnd = kobanProcess.cpuMs();
            const benchCpu = process.cpuUsage(benchCpuAtStart);
            const hostAtEnd = readHostCpuTicks();
            if (kobanCpuAtStart !== undefined && kobanCpuAtEnd !== undefined) kobanCpuMs = kobanCpuAtEnd - kobanCpuAtStart;
            benchCpuMs = (benchCpu.user + benchCpu.system) / 1000;
            if (hostAtStart && hostAtEnd) hostBusyPercent = (100 * (hostAtEnd.busy - hostAtStart.busy)) / (hostAtEnd.total - hostAtStart.total);
          },
        });
        assertAlive(kobanProcess, `${scenario} c=${concurrency}`);
        mergeUnexpected(allUnexpected, result.unexpected);
        const row: ScenarioRow = {
          scenario,
          concurrency,
          koban: result,
          kobanCpuUsPerRequest: (kobanCpuMs * 1000) / result.requests,
          kobanCpuPercentOfOneCore: (100 * kobanCpuMs) / (settings.durationS * 1000),
          benchCpuPercentOfOneCore: (100 * benchCpuMs) / (settings.durationS * 1000),
          hostCpuBusyPercent: hostBusyPercent,
        };
        rows.push(row);
        log(
          `${scenario.padEnd(7)} c=${String(concurrency).padEnd(3)} ${fixed(result.requestsPerS, 0).padStart(7)} req/s  p50 ${fixed(result.p50Ms, 2)} ms  p99 ${fixed(result.p99Ms, 2)} ms  ` +
            `Koban CPU ${fixed(row.kobanCpuPercentOfOneCore, 0)}% of a core (${fixed(row.kobanCpuUsPerRequest, 0)} µs/req), load generator ${fixed(row.benchCpuPercentOfOneCore, 0)}%, host ${fixed(hostBusyPercent, 0)}% busy  unexpected ${result.unexpected.total}` +
            (result.unexpected.total > 0 ? ` [${describeUnexpected(result.unexpected)}]` : ''),
        );
      }
      if (pgbenchBin) {
        try {
          const figures = await pgbenchRun(pgbenchBin, pgbenchDbUrl, concurrency, settings.durationS, signal);
          pgbenchByConcurrency.set(concurrency, figures);
          log(`pgbench c=${concurrency}: ${fixed(figures.tps, 0)} tps, latency average ${fixed(figures.latencyAvgMs, 2)} ms, ${figures.failedTransactions} failed`);
        } catch (error) {
          signal.throwIfAborted();
          pgbenchByConcurrency.set(concurrency, { error: (error as Error).message });
          log(`pgbench c=${concurrency} FAILED: ${(error as Error).message}`);
        }
      }
    }

    assertAlive(kobanProcess, 'the pgbench reference runs');
    log('checking money: API answers vs the database …');
    const money = await checkMoney(pool, kobanDbUrl, tally, runId, signal);
    for (const line of money.lines) log(line);

    const peakRssBytes = koban.peakRssBytes();
    const kobanCpuTotalMs = koban.cpuMs();
    const exit = await koban.stop();
    log(`Koban server stopped (${exit}); peak RSS ${peakRssBytes === undefined ? 'unknown' : fixed(peakRssBytes / BYTES_PER_MIB, 1)} MiB, CPU ${fixed((kobanCpuTotalMs ?? Number.NaN) / 1000, 1)} s in total`);

    // Report.
    const table = formatTable(
      ['scenario', 'concurrency', 'koban req/s', 'p50 ms', 'p99 ms', 'unexpected', 'koban CPU µs/req', 'host CPU busy %', 'pgbench tps', 'pgbench avg ms', 'ratio koban/pgbench'],
      rows.map((row) => {
        const reference = pgbenchByConcurrency.get(row.concurrency);
        const tps = reference && 'tps' in reference ? reference.tps : undefined;
        return [
          row.scenario,
          String(row.concurrency),
          fixed(row.koban.requestsPerS, 0),
          fixed(row.koban.p50Ms, 2),
          fixed(row.koban.p99Ms, 2),
          String(row.koban.unexpected.total),
          fixed(row.kobanCpuUsPerRequest, 0),
          fixed(row.hostCpuBusyPercent, 0),
          tps === undefined ? (reference ? 'failed' : 'skipped') : fixed(tps, 0),
          reference && 'latencyAvgMs' in reference ? fixed(reference.latencyAvgMs, 2) : '-',
          tps === undefined ? '-' : fixed(row.koban.requestsPerS / tps, 2),
        ];
      }),
    );
    const peakRssMiB = peakRssBytes === undefined ? undefined : peakRssBytes / BYTES_PER_MIB;
    console.log('');
    console.log(`Koban ledger benchmark — PostgreSQL ${pgVersion}, ${server.kind === 'embedded' ? 'embedded (temporary cluster)' : `DATABASE_URL (${server.where})`}`);
    console.log(
      `${settings.durationS} s measured per row after ${WARMUP_MS} ms warm-up; closed loop over HTTP/1.1 keep-alive (undici); ` +
        `load generator, Koban and PostgreSQL share this machine's ${navigatorCores()} cores`,
    );
    console.log(`reference: ${pgbenchBin ? `${pgbenchNote}, tpcb-like, scale ${PGBENCH_SCALE}, -j min(C,2), no vacuum (-n), same server` : pgbenchNote}`);
    console.log('');
    console.log(table);
    console.log('');
    console.log(`Koban server peak RSS (VmHWM): ${peakRssMiB === undefined ? 'unknown' : `${fixed(peakRssMiB, 1)} MiB`}`);
    if (allUnexpected.total > 0) {
      console.log(`UNEXPECTED answers: ${allUnexpected.total} (${describeUnexpected(allUnexpected)})`);
      for (const sample of allUnexpected.samples) console.log(`  e.g. ${sample}`);
    } else {
      console.log('unexpected answers: 0');
    }
    const pass = money.pass && allUnexpected.total === 0;
    console.log(`money check: ${money.pass ? 'PASS' : 'FAIL'}${money.pass ? '' : ` (${money.lines.filter((line) => line.startsWith('FAIL')).join('; ')})`}`);
    console.log('');
    console.log('figures as JSON (one line):');
    console.log(
      JSON.stringify({
        benchmark: 'koban-ledger',
        at: new Date().toISOString(),
        postgres: { version: pgVersion, source: server.kind },
        settings: { duration_s: settings.durationS, warmup_ms: WARMUP_MS, concurrencies: settings.concurrencies, cores: navigatorCores() },
        koban: {
          peak_rss_mib: peakRssMiB === undefined ? null : round(peakRssMiB, 1),
          cpu_total_s: kobanCpuTotalMs === undefined ? null : round(kobanCpuTotalMs / 1000, 2),
          exit,
        },
        pgbench: pgbenchBin ? { version: pgbenchNote, scale: PGBENCH_SCALE, mode: 'tpcb-like' } : { skipped: pgbenchNote },
        rows: rows.map((row) => {
          const reference = pgbenchByConcurrency.get(row.concurrency);
          const tps = reference && 'tps' in reference ? reference.tps : undefined;
          return {
            scenario: row.scenario,
            concurrency: row.concurrency,
            koban_requests: row.koban.requests,
            koban_rps: round(row.koban.requestsPerS, 1),
            koban_p50_ms: round(row.koban.p50Ms, 3),
            koban_p99_ms: round(row.koban.p99Ms, 3),
            koban_max_ms: round(row.koban.maxMs, 3),
            koban_cpu_us_per_request: round(row.kobanCpuUsPerRequest, 1),
            koban_cpu_percent_of_one_core: round(row.kobanCpuPercentOfOneCore, 1),
            load_generator_cpu_percent_of_one_core: round(row.benchCpuPercentOfOneCore, 1),
            host_cpu_busy_percent: round(row.hostCpuBusyPercent, 1),
            unexpected: row.koban.unexpected.total,
            pgbench_tps: tps === undefined ? null : round(tps, 1),
            pgbench_latency_avg_ms: reference && 'latencyAvgMs' in reference ? reference.latencyAvgMs : null,
            pgbench_error: reference && 'error' in reference ? reference.error : undefined,
            ratio_koban_pgbench: tps === undefined ? null : round(row.koban.requestsPerS / tps, 3),
          };
        }),
        unexpected_total: allUnexpected.total,
        money: { pass: money.pass, ...money.figures },
      }),
    );
    console.log(`RESULT: ${pass ? 'PASS' : 'FAIL'}`);
    return pass ? 0 : 1;
  } finally {
    clearTimeout(watchdog);
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

function assertAlive(koban: KobanProcess, during: string): void {
  if (!koban.alive()) throw new Error(`the Koban server exited unexpectedly during ${during}; last output:\n${koban.recentOutput()}`);
}

function consumeUser(runId: string, index: number): string {
  return `bench-c-${runId}-${index}`;
}

/** The catalogue error code of an error body, or a short snippet. */
function errorCode(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown } };
    if (typeof parsed.error?.code === 'string') return parsed.error.code;
  } catch {
    // not JSON
  }
  return body.slice(0, 80);
}

type MoneyCheck = { pass: boolean; lines: string[]; figures: Record<string, number | string> };

/**
 * The 201s the benchmark saw against the database: one `transactions` row per
 * 201, sums per type, every user balance, and every touched balance read back
 * through the API.
 */
async function checkMoney(pool: Pool, kobanDbUrl: string, tally: MoneyTally, runId: string, signal: AbortSignal): Promise<MoneyCheck> {
  const lines: string[] = [];
  let pass = true;
  const expect = (ok: boolean, what: string) => {
    lines.push(`${ok ? 'PASS' : 'FAIL'} ${what}`);
    if (!ok) pass = false;
  };
  const expectedNet = BigInt(tally.addedAmount) - BigInt(tally.consumedAmount);

  const db = await withClient(kobanDbUrl, async (client) => {
    const columns = await client.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'accounts'`,
    );
    const present = new Set(columns.rows.map((row) => row.column_name));
    const balanceColumn = BALANCE_COLUMNS.find((column) => present.has(column));
    if (balanceColumn === undefined) throw new Error(`accounts has none of the balance columns ${BALANCE_COLUMNS.join(', ')}: update bench/ledger.ts`);
    const balance = client.escapeIdentifier(balanceColumn);
    const byType = await client.query<{ type: string; n: string; total: string }>(
      `SELECT type, count(*)::text AS n, coalesce(sum(amount), 0)::text AS total FROM transactions GROUP BY type`,
    );
    const rowsTotal = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM transactions`);
    const balanceSum = await client.query<{ total: string }>(`SELECT coalesce(sum(${balance}), 0)::text AS total FROM accounts WHERE owner_kind = 'user'`);
    const accounts = await client.query<{ owner_id: string; balance_type: string; balance: string }>(
      `SELECT owner_id, balance_type, ${balance}::text AS balance FROM accounts WHERE owner_kind = 'user'`,
    );
    return { balanceColumn, byType: byType.rows, rows: BigInt(rowsTotal.rows[0]?.n ?? '0'), balanceSum: BigInt(balanceSum.rows[0]?.total ?? '0'), accounts: accounts.rows };
  });

  expect(db.rows === BigInt(tally.created), `201 answers for add/consume = ${tally.created}, rows in transactions = ${db.rows}`);
  const addRow = db.byType.find((row) => row.type === 'add');
  const consumeRow = db.byType.find((row) => row.type === 'consume');
  expect(
    BigInt(addRow?.n ?? '0') === BigInt(tally.addsCreated) && BigInt(addRow?.total ?? '0') === BigInt(tally.addedAmount),
    `adds: ${tally.addsCreated} created for ${tally.addedAmount}; stored ${addRow?.n ?? 0} for ${addRow?.total ?? 0}`,
  );
  expect(
    BigInt(consumeRow?.n ?? '0') === BigInt(tally.consumesCreated) && BigInt(consumeRow?.total ?? '0') === BigInt(tally.consumedAmount),
    `consumes: ${tally.consumesCreated} created for ${tally.consumedAmount}; stored ${consumeRow?.n ?? 0} for ${consumeRow?.total ?? 0}`,
  );
  expect(db.balanceSum === expectedNet, `sum of user balances (accounts.${db.balanceColumn}) = ${db.balanceSum}, adds − consumes = ${expectedNet}`);

  let accountMismatches = 0;
  const mismatchExamples: string[] = [];
  const seen = new Set<string>();
  for (const row of db.accounts) {
    const key = accountKey(row.owner_id, row.balance_type);
    seen.add(key);
    const expected = tally.balances.get(key)?.amount ?? 0;
    if (BigInt(row.balance) !== BigInt(expected)) {
      accountMismatches++;
      if (mismatchExamples.length < 5) mismatchExamples.push(`${row.owner_id}/${row.balance_type}: stored ${row.balance}, expected ${expected}`);
    }
  }
  for (const [key, account] of tally.balances) {
    if (!seen.has(key) && account.amount !== 0) {
      accountMismatches++;
      if (mismatchExamples.length < 5) mismatchExamples.push(`${account.userId}/${account.balanceType}: no account, expected ${account.amount}`);
    }
  }
  expect(
    accountMismatches === 0,
    `every user balance in the database equals the benchmark's own tally (${db.accounts.length} accounts)${mismatchExamples.length ? `: ${mismatchExamples.join('; ')}` : ''}`,
  );

  // The same balances through the API: every account the benchmark touched, and one it never did.
  const accounts = [...tally.balances.values(), { userId: `bench-never-${runId}`, balanceType: 'cash', amount: 0 }];
  let apiSum = 0n;
  const apiUnexpected = await runAll(
    pool,
    accounts.map((account) => ({
      method: 'GET',
      path: `/v1/users/${encodeURIComponent(account.userId)}/balances/${account.balanceType}`,
      check: (answer) => {
        if (answer.status !== 200) return `GET balance: ${answer.status} ${errorCode(answer.body)}`;
        const balance = JSON.parse(answer.body) as { available?: unknown; posted?: unknown };
        if (typeof balance.posted === 'number') apiSum += BigInt(balance.posted);
        if (balance.available !== account.amount || balance.posted !== account.amount) {
          return `GET balance of ${account.userId}/${account.balanceType}: available ${String(balance.available)}, posted ${String(balance.posted)}, expected ${account.amount}`;
        }
        return null;
      },
    })),
    BALANCE_API_CONCURRENCY,
    signal,
  );
  expect(
    apiUnexpected.total === 0 && apiSum === expectedNet,
    `GET /v1/users/{id}/balances/{type} matches the tally for all ${accounts.length} accounts; their sum = ${apiSum}${apiUnexpected.total ? `: ${apiUnexpected.samples.join('; ')}` : ''}`,
  );

  return {
    pass,
    lines,
    figures: {
      created_201: tally.created,
      transactions_rows: Number(db.rows),
      adds_created: tally.addsCreated,
      consumes_created: tally.consumesCreated,
      added_amount: tally.addedAmount,
      consumed_amount: tally.consumedAmount,
      user_balance_sum: db.balanceSum.toString(),
      account_mismatches: accountMismatches,
      api_balance_mismatches: apiUnexpected.total,
      api_balance_sum: apiSum.toString(),
      balance_column: db.balanceColumn,
    },
  };
}

function navigatorCores(): number {
  return navigator.hardwareConcurrency;
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

function round(value: number, digits: number): number | null {
  if (!Number.isFinite(value)) return null;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

try {
  process.exitCode = await main();
} catch (error) {
  if (error instanceof InterruptedError) {
    console.error(`benchmark stopped: ${error.message}`);
    process.exitCode = 130;
  } else {
    console.error(`benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 2;
  }
}
// Everything is stopped by now; do not wait for stray handles (timers of aborted work, idle sockets).
process.exit(process.exitCode);
