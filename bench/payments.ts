// Goal: `npm run bench:payments` — Visa authorizations per second over HTTP against Koban in one process
// (`koban start`, consumers included), the payment path alone in one process (`koban serve ledger bus visa`)
// and split (`koban serve ledger bus` + `koban serve visa`), beside pgbench on the same
// PostgreSQL in the same run, with p50/p99, where the time goes, and a money check (cash held = approvals).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { type CpuFigures, cpuWindow } from './lib/cpu-window.ts';
import { type KobanProcess, assertAlive, loadFailure, spawnKoban } from './lib/koban-process.ts';
import { RunCleanup } from './lib/run-cleanup.ts';
import type { ProbeDump, ProbeTally } from './lib/koban-probe.ts';
import { EMBEDDED_SERVICES, databaseUrlVariable, kobanChildEnv } from './lib/koban-services.ts';
import { type LoadResult, type Plan, type Unexpected, describeUnexpected, mergeUnexpected, newUnexpected, runClosedLoop, unexpectedLines } from './lib/load.ts';
import { freePort, pollUntil, sleep } from './lib/net.ts';
import { PgObserver, type PgWindowFigures, describeWaits } from './lib/pg-observer.ts';
import { type PgServer, databaseUrl, providePgServer, serverVersion, withClient } from './lib/pg-server.ts';
import { PgbenchReference, describePgSettings, hostBusyPercentOver } from './lib/reference.ts';
import { errorCode, fixed, formatTable, percentOfCore, ratioCeiling, round, runClock, usPer } from './lib/report.ts';
import { guardRun, runMain } from './lib/run-guard.ts';
import { median, medianItem, medianPairedRatio } from './lib/rounds.ts';
import { type RunSettings, readRunSettings } from './lib/settings.ts';
import { DECLINE_AMOUNT, DECLINE_ONE_IN, FUNDING_CONCURRENCY, authorizationPlan as visaAuthorizationPlan, drawAuthorization, fundUsers, readVisaOutbox } from './lib/visa-load.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');

const DURATION_S_DEFAULT = 5;
const ROUNDS_DEFAULT = 3;
const CONCURRENCIES_DEFAULT = '16,64';
/** Traffic before each measured window (a freshly started process included), sent and checked but not timed. */
const WARMUP_MS = 2_000;

/** The issue's targets. */
const TARGET_CONCURRENCY_THROUGHPUT = 64;
const TARGET_OVER_PGBENCH_MIN = 0.5;
const TARGET_CONCURRENCY_LATENCY = 16;
const TARGET_P99_MS_MAX = 50;

/** Authorizations go to one of this many users of each mode, each topped up first with FUND_AMOUNT of cash. */
const USERS_COUNT = 10_000;
const FUND_AMOUNT = 900_000;
/** Authorization amounts are uniform in this range, in yen: a user would need ~180 of them to run dry. */
const AUTH_AMOUNT_MIN = 100;
const AUTH_AMOUNT_MAX = 5_000;

const HTTP_HEADERS_TIMEOUT_MS = 30_000;
const HTTP_BODY_TIMEOUT_MS = 30_000;
const AUDIT_TIMEOUT_MS = 300_000;
/** After the load, the outbox relay gets this long to publish every payment event before the check counts what is left. */
const OUTBOX_DRAIN_WAIT_MS = 30_000;
const OUTBOX_POLL_INTERVAL_MS = 250;
/** A SIGUSR2 dump of the probe is awaited this long. */
const PROBE_DUMP_WAIT_MS = 5_000;
const PROBE_POLL_INTERVAL_MS = 10;
/** Statements listed per profiled row, most time per authorization first. */
const PROFILE_STATEMENTS_LISTED = 16;

const STARTUP_BUDGET_MS = 300_000;
const MODE_START_BUDGET_MS = 90_000;
const ROW_SLACK_MS = 15_000;
const PGBENCH_SLACK_MS = 60_000;
const CHECK_BUDGET_MS = 600_000;
const HOST_PROBE_MS = 2_000;

const MS_PER_S = 1000;
const BYTES_PER_MIB = 1024 * 1024;

const MODES = ['embedded', 'payments', 'split'] as const;
type Mode = (typeof MODES)[number];
const MODE_LABELS: Record<Mode, string> = {
  embedded: 'embedded (koban start: every service in one process, the points and notifications consumers included)',
  payments: 'payments (koban serve ledger bus visa: the payment path alone in one process, the ledger in process)',
  split: 'split (koban serve ledger bus | koban serve visa, over HTTP)',
};
/** Databases of a mode, one per service, all on the benchmark's server. `koban start` runs every service (QUICPay+ and the rest too). */
const SERVICES_OF: Record<Mode, readonly string[]> = { embedded: EMBEDDED_SERVICES, payments: ['ledger', 'bus', 'visa'], split: ['ledger', 'bus', 'visa'] };

type Settings = RunSettings<Mode> & { profile: boolean };

/** What the benchmark saw answered, per mode. */
class AuthTally {
  approved = { count: 0, amount: 0 };
  declined = { count: 0, amount: 0 };
  readonly heldByUser = new Map<string, number>();

  approve(userId: string, amount: number): void {
    this.approved.count++;
    this.approved.amount += amount;
    this.heldByUser.set(userId, (this.heldByUser.get(userId) ?? 0) + amount);
  }

  decline(amount: number): void {
    this.declined.count++;
    this.declined.amount += amount;
  }
}

type ModeState = {
  mode: Mode;
  /** Database name per service. */
  databases: Map<string, string>;
  users: string[];
  idPrefix: string;
  sent: number;
  funded: boolean;
  tally: AuthTally;
  unexpected: Unexpected;
  peakRssMiB: number[];
};

type Running = {
  processes: KobanProcess[];
  visaPool: Pool;
  ledgerPool: Pool;
  probeFiles: string[];
  stop(): Promise<string[]>;
};

type ProbeFigures = { statements: Map<string, ProbeTally>; connects: Map<string, ProbeTally>; fetches: Map<string, ProbeTally> };

type Row = {
  round: number;
  mode: Mode;
  concurrency: number;
  koban: LoadResult;
  cpu: CpuFigures;
  pgVisa: PgWindowFigures;
  pgLedger: PgWindowFigures;
  approved: number;
  declined: number;
  probe: ProbeFigures | undefined;
};

type Summary = {
  mode: Mode;
  concurrency: number;
  rounds: Row[];
  typical: Row;
  authPerS: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
};

function readSettings(env: NodeJS.ProcessEnv): Settings {
  return {
    ...readRunSettings(env, { modes: MODES, durationS: DURATION_S_DEFAULT, rounds: ROUNDS_DEFAULT, concurrencies: CONCURRENCIES_DEFAULT }),
    profile: env.BENCH_PROFILE === '1',
  };
}

const { elapsedS, log } = runClock();

async function startMode(state: ModeState, serverUrl: string, settings: Settings, probeDir: string, round: number): Promise<Running> {
  const urlOf = (service: string) => databaseUrl(serverUrl, state.databases.get(service)!);
  const probeFiles: string[] = [];
  const nodeArgs = (label: string): { args: string[]; env: NodeJS.ProcessEnv } => {
    if (!settings.profile) return { args: settings.kobanNodeArgs, env: {} };
    const file = path.join(probeDir, `${state.mode}-${label}-r${round}`);
    probeFiles.push(file);
    return { args: [...settings.kobanNodeArgs, '--import', path.join(REPO_ROOT, 'bench/lib/koban-probe.ts')], env: { BENCH_PROBE_FILE: file } };
  };
  const processes: KobanProcess[] = [];
  const stopAll = async () => Promise.all(processes.map((koban) => koban.stop()));
  try {
    let visaOrigin: string;
    let ledgerOrigin: string;
    if (state.mode === 'embedded') {
      const port = await freePort();
      const node = nodeArgs('all');
      const env: NodeJS.ProcessEnv = { ...kobanChildEnv(), ...node.env, PORT: String(port) };
      for (const service of SERVICES_OF.embedded) env[databaseUrlVariable(service)] = urlOf(service);
      visaOrigin = ledgerOrigin = `http://127.0.0.1:${port}`;
      processes.push(await spawnKoban({ repoRoot: REPO_ROOT, args: ['start'], extraNodeArgs: node.args, env, origins: [visaOrigin], label: 'koban start' }));
    } else if (state.mode === 'payments') {
      // One process, a port per service: Visa reaches the ledger and the bus in process, as under koban start.
      const [ledgerPort, busPort, visaPort] = [await freePort(), await freePort(), await freePort()];
      ledgerOrigin = `http://127.0.0.1:${ledgerPort}`;
      visaOrigin = `http://127.0.0.1:${visaPort}`;
      const node = nodeArgs('payments');
      processes.push(
        await spawnKoban({
          repoRoot: REPO_ROOT,
          args: ['serve', 'ledger', 'bus', 'visa'],
          extraNodeArgs: node.args,
          env: {
            ...kobanChildEnv(),
            ...node.env,
            LEDGER_PORT: String(ledgerPort),
            BUS_PORT: String(busPort),
            VISA_PORT: String(visaPort),
            LEDGER_DATABASE_URL: urlOf('ledger'),
            BUS_DATABASE_URL: urlOf('bus'),
            VISA_DATABASE_URL: urlOf('visa'),
          },
          origins: [visaOrigin, ledgerOrigin, `http://127.0.0.1:${busPort}`],
          label: 'koban serve ledger bus visa',
        }),
      );
    } else {
      const [ledgerPort, busPort, visaPort] = [await freePort(), await freePort(), await freePort()];
      ledgerOrigin = `http://127.0.0.1:${ledgerPort}`;
      const busOrigin = `http://127.0.0.1:${busPort}`;
      visaOrigin = `http://127.0.0.1:${visaPort}`;
      const core = nodeArgs('ledger-bus');
      processes.push(
        await spawnKoban({
          repoRoot: REPO_ROOT,
          args: ['serve', 'ledger', 'bus'],
          extraNodeArgs: core.args,
          env: { ...kobanChildEnv(), ...core.env, LEDGER_PORT: String(ledgerPort), BUS_PORT: String(busPort), LEDGER_DATABASE_URL: urlOf('ledger'), BUS_DATABASE_URL: urlOf('bus') },
          origins: [ledgerOrigin, busOrigin],
          label: 'koban serve ledger bus',
        }),
      );
      const visa = nodeArgs('visa');
      processes.push(
        await spawnKoban({
          repoRoot: REPO_ROOT,
          args: ['serve', 'visa'],
          extraNodeArgs: visa.args,
          env: { ...kobanChildEnv(), ...visa.env, VISA_PORT: String(visaPort), VISA_DATABASE_URL: urlOf('visa'), LEDGER_URL: ledgerOrigin, BUS_URL: busOrigin },
          origins: [visaOrigin],
          label: 'koban serve visa',
        }),
      );
    }
    const poolOptions = { pipelining: 1, headersTimeout: HTTP_HEADERS_TIMEOUT_MS, bodyTimeout: HTTP_BODY_TIMEOUT_MS };
    const visaPool = new Pool(visaOrigin, { ...poolOptions, connections: Math.max(...settings.concurrencies) });
    const ledgerPool = new Pool(ledgerOrigin, { ...poolOptions, connections: FUNDING_CONCURRENCY });
    return {
      processes,
      visaPool,
      ledgerPool,
      probeFiles,
      async stop() {
        await Promise.allSettled([visaPool.close(), ledgerPool.close()]);
        for (const koban of processes) {
          const peak = koban.peakRssBytes();
          if (peak !== undefined) state.peakRssMiB.push(peak / BYTES_PER_MIB);
        }
        return stopAll();
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** One Visa authorization: a fresh id, a random user, an amount; a decline probe one in DECLINE_ONE_IN times. */
function authorizationPlan(state: ModeState): Plan {
  const auth = drawAuthorization(state.sent++, { users: state.users, idPrefix: state.idPrefix, amountMin: AUTH_AMOUNT_MIN, amountMax: AUTH_AMOUNT_MAX });
  const { user_id: userId, amount } = auth.body;
  return visaAuthorizationPlan(auth, FUND_AMOUNT, { approve: () => state.tally.approve(userId, amount), decline: () => state.tally.decline(amount) });
}

async function fund(state: ModeState, running: Running, signal: AbortSignal): Promise<void> {
  const unexpected = await fundUsers(running.ledgerPool, { users: state.users, idPrefix: state.idPrefix, amount: FUND_AMOUNT, signal });
  mergeUnexpected(state.unexpected, unexpected);
  if (unexpected.total > 0) throw new Error(`${unexpected.total} top-ups failed: ${unexpected.samples.join(' | ')}`);
  state.funded = true;
}

/** Asks each profiled process for its running totals; resolves with readers of the dumps once written. */
function probeMark(running: Running): () => Promise<ProbeFigures | undefined> {
  if (running.probeFiles.length === 0) return async () => undefined;
  const expected = running.processes.map((koban, index) => {
    const file = running.probeFiles[index]!;
    let seq = 1;
    while (existsSync(`${file}.${seq}`)) seq++;
    process.kill(koban.pid, 'SIGUSR2');
    return `${file}.${seq}`;
  });
  return async () => {
    const merged: ProbeFigures = { statements: new Map(), connects: new Map(), fetches: new Map() };
    for (const dumpFile of expected) {
      const deadline = performance.now() + PROBE_DUMP_WAIT_MS;
      while (!existsSync(dumpFile)) {
        if (performance.now() > deadline) return undefined;
        await sleep(PROBE_POLL_INTERVAL_MS);
      }
      const dump = JSON.parse(readFileSync(dumpFile, 'utf8')) as ProbeDump;
      for (const [map, from] of [[merged.statements, dump.statements], [merged.connects, dump.connects], [merged.fetches, dump.fetches]] as const) {
        for (const [key, tally] of Object.entries(from)) map.set(key, tally);
      }
    }
    return merged;
  };
}

function probeDifference(end: ProbeFigures, begin: ProbeFigures): ProbeFigures {
  const diff = (a: Map<string, ProbeTally>, b: Map<string, ProbeTally>) =>
    new Map([...a].map(([key, tally]) => [key, { count: tally.count - (b.get(key)?.count ?? 0), ms: tally.ms - (b.get(key)?.ms ?? 0) }]).filter(([, tally]) => (tally as ProbeTally).count > 0) as Array<[string, ProbeTally]>);
  return { statements: diff(end.statements, begin.statements), connects: diff(end.connects, begin.connects), fetches: diff(end.fetches, begin.fetches) };
}

type MoneyCheck = { pass: boolean; lines: string[] };

/**
 * Cash held in the ledger against what the benchmark saw approved: per user
 * and in total, the ledger's rows by status, Visa's payments and answers, the
 * intent journal, the outbox, and the ledger's own audit.
 */
async function checkMoney(state: ModeState, running: Running, serverUrl: string, signal: AbortSignal): Promise<MoneyCheck> {
  const lines: string[] = [];
  let pass = true;
  const expect = (ok: boolean, what: string) => {
    lines.push(`${ok ? 'PASS' : 'FAIL'} ${what}`);
    if (!ok) pass = false;
  };
  const { tally } = state;
  const ledgerUrl = databaseUrl(serverUrl, state.databases.get('ledger')!);
  const visaUrl = databaseUrl(serverUrl, state.databases.get('visa')!);

  const ledger = await withClient(ledgerUrl, async (client) => {
    const groups = await client.query<{ type: string; pending: boolean; status: string; n: string; amount: string }>(
      `SELECT type, pending, status, count(*)::text AS n, sum(amount)::text AS amount FROM transactions WHERE balance_type = 'cash' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
    );
    const accounts = await client.query<{ owner_id: string; posted: string; pending_debit: string; pending_credit: string }>(
      `SELECT owner_id, posted::text, pending_debit::text, pending_credit::text FROM accounts WHERE owner_kind = 'user' AND balance_type = 'cash'`,
    );
    return { groups: groups.rows, accounts: accounts.rows };
  });
  const visa = await withClient(visaUrl, async (client) => {
    const payments = await client.query<{ status: string; n: string; authorized: string; held: string }>(
      `SELECT status, count(*)::text AS n, coalesce(sum((state->>'authorized_total')::bigint), 0)::text AS authorized,
              coalesce(sum((SELECT sum((h->>'amount')::bigint) FROM jsonb_array_elements(state->'open_holds') h)), 0)::text AS held
         FROM payments GROUP BY status ORDER BY status`,
    );
    const messages = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM network_messages WHERE kind = 'authorization'`);
    // The journal holds only decisions in progress: after the load, none.
    const intents = await client.query<{ unfinished: string }>(`SELECT count(*)::text AS unfinished FROM payment_intents`);
    return { payments: payments.rows, messages: Number(messages.rows[0]!.n), intents: intents.rows[0]! };
  });

  // Per user and in total: cash held = what was approved; posted = the top-up, untouched.
  let heldSum = 0n;
  let postedSum = 0n;
  let mismatches = 0;
  const examples: string[] = [];
  for (const row of ledger.accounts) {
    heldSum += BigInt(row.pending_debit);
    postedSum += BigInt(row.posted);
    const want = tally.heldByUser.get(row.owner_id) ?? 0;
    if (BigInt(row.pending_debit) !== BigInt(want) || BigInt(row.posted) !== BigInt(FUND_AMOUNT) || row.pending_credit !== '0') {
      mismatches++;
      if (examples.length < 5) examples.push(`${row.owner_id}: posted ${row.posted}, pending_debit ${row.pending_debit}; expected ${FUND_AMOUNT}, ${want}`);
    }
  }
  expect(
    heldSum === BigInt(tally.approved.amount),
    `cash held in the ledger (sum of pending_debit) ${heldSum} = sum of approved amounts ${tally.approved.amount} (${tally.approved.count} approvals)`,
  );
  expect(
    ledger.accounts.length === state.users.length && mismatches === 0 && postedSum === BigInt(FUND_AMOUNT) * BigInt(state.users.length),
    `every user (${ledger.accounts.length} of ${state.users.length}) holds exactly its approvals and keeps its top-up of ${FUND_AMOUNT} posted${examples.length ? `: ${examples.join('; ')}` : ''}`,
  );
  const group = (key: string) => ledger.groups.find((row) => `${row.type}${row.pending ? '/hold' : ''}/${row.status}` === key);
  const holds = group('consume/hold/pending');
  const adds = group('add/posted');
  expect(
    ledger.groups.length === 2 && Number(holds?.n) === tally.approved.count && Number(holds?.amount) === tally.approved.amount && Number(adds?.n) === state.users.length,
    `ledger rows: ${ledger.groups.map((row) => `${row.type}${row.pending ? '/hold' : ''}/${row.status} ${row.n} for ${row.amount}`).join('; ')} — ` +
      `expected ${state.users.length} top-ups and ${tally.approved.count} open holds for ${tally.approved.amount}, nothing else (a decline leaves no row)`,
  );
  const authorized = visa.payments.find((row) => row.status === 'authorized');
  const declined = visa.payments.find((row) => row.status === 'declined');
  expect(
    visa.payments.length <= 2 &&
      Number(authorized?.n ?? 0) === tally.approved.count &&
      Number(authorized?.authorized ?? 0) === tally.approved.amount &&
      Number(authorized?.held ?? 0) === tally.approved.amount &&
      Number(declined?.n ?? 0) === tally.declined.count,
    `Visa payments: ${visa.payments.map((row) => `${row.status} ${row.n} (authorized ${row.authorized}, held ${row.held})`).join('; ')} — ` +
      `expected authorized ${tally.approved.count} for ${tally.approved.amount}, declined ${tally.declined.count}`,
  );
  expect(
    visa.messages === tally.approved.count + tally.declined.count && visa.intents.unfinished === '0',
    `Visa stored ${visa.messages} authorization answers for ${tally.approved.count + tally.declined.count} answered; ${visa.intents.unfinished} unfinished intents`,
  );

  // Every answer produced one event (approved or declined); the relay publishes them to the bus.
  const outbox = await pollUntil(() => readVisaOutbox(visaUrl), (reading) => reading.unpublished === 0, { waitMs: OUTBOX_DRAIN_WAIT_MS, intervalMs: OUTBOX_POLL_INTERVAL_MS, signal });
  expect(
    outbox.events === tally.approved.count + tally.declined.count && outbox.unpublished === 0,
    `outbox: ${outbox.events} payment events for ${tally.approved.count + tally.declined.count} answers, ${outbox.unpublished} unpublished after the relay's drain`,
  );

  let auditDetail: string;
  let auditOk = false;
  try {
    const response = await running.ledgerPool.request({ method: 'GET', path: '/v1/audit', headersTimeout: AUDIT_TIMEOUT_MS, bodyTimeout: AUDIT_TIMEOUT_MS, signal });
    const body = await response.body.text();
    if (response.statusCode === 200) {
      const report = JSON.parse(body) as { ok?: unknown; balance_types?: Array<{ balance_type: string; sum: number; accounts_checked: number; mismatches: unknown[] }> };
      auditOk = report.ok === true;
      auditDetail = `ok: ${String(report.ok)}; ${(report.balance_types ?? []).map((entry) => `${entry.balance_type}: sum ${entry.sum}, ${entry.accounts_checked} accounts, ${entry.mismatches.length} mismatches`).join('; ')}`;
    } else {
      auditDetail = `${response.statusCode} ${errorCode(body)}`;
    }
  } catch (error) {
    signal.throwIfAborted();
    auditDetail = `no answer: ${(error as Error).message}`;
  }
  expect(auditOk, `the ledger's GET /v1/audit → ${auditDetail}`);
  return { pass, lines };
}

async function main(): Promise<number> {
  const settings = readSettings(process.env);
  if (settings.modes.length === 0) throw new Error('BENCH_SCENARIOS names no mode: add embedded, payments and/or split');
  const abort = new AbortController();
  const { signal } = abort;
  const runId = randomBytes(4).toString('hex');

  const perRoundMs =
    settings.modes.length * (MODE_START_BUDGET_MS + settings.concurrencies.length * (WARMUP_MS + settings.durationS * MS_PER_S + ROW_SLACK_MS)) +
    (settings.runPgbench ? settings.concurrencies.length * (settings.durationS * MS_PER_S + PGBENCH_SLACK_MS) : 0);
  const deadlineMs = STARTUP_BUDGET_MS + settings.rounds * perRoundMs + CHECK_BUDGET_MS;
  const guard = guardRun(abort, deadlineMs);

  const cleanup = new RunCleanup();
  let running: Running | undefined;
  const probeDir = mkdtempSync(path.join(os.tmpdir(), 'koban-bench-probe-'));
  cleanup.add('remove probe files', async () => rmSync(probeDir, { recursive: true, force: true }));

  try {
    log(
      `settings: modes ${settings.modes.join(',')}${settings.runPgbench ? ' + pgbench' : ''}; ${settings.durationS} s per row after ${WARMUP_MS} ms warm-up; ` +
        `clients ${settings.concurrencies.join(',')}; ${settings.rounds} round(s)${settings.profile ? '; PROFILE: Koban runs with the statement probe (its figures carry the probe\'s cost)' : ''}`,
    );
    const server: PgServer = await providePgServer(settings.databaseUrl);
    cleanup.add('stop PostgreSQL', () => server.stop());
    const pgVersion = await serverVersion(server.serverUrl);
    const pgSettings = await describePgSettings(server.serverUrl);
    log(`PostgreSQL ${pgVersion} (${server.kind}: ${server.where}); ${pgSettings} — Koban (both modes) and pgbench all run on this one server`);

    const created: string[] = [];
    const create = async (name: string) => {
      await cleanup.createDatabase(server, name, settings.keepDatabases);
      created.push(name);
    };
    const states: ModeState[] = [];
    for (const mode of settings.modes) {
      const databases = new Map<string, string>();
      for (const service of SERVICES_OF[mode]) {
        const name = `koban_bench_pay_${runId}_${mode}_${service}`;
        await create(name);
        databases.set(service, name);
      }
      states.push({
        mode,
        databases,
        users: Array.from({ length: USERS_COUNT }, (_, index) => `bench-${runId}-${mode}-${index}`),
        idPrefix: `b${runId}${mode[0]}`,
        sent: 0,
        funded: false,
        tally: new AuthTally(),
        unexpected: newUnexpected(),
        peakRssMiB: [],
      });
    }
    const pgbenchDb = `koban_bench_pay_${runId}_pgbench`;
    if (settings.runPgbench) await create(pgbenchDb);
    log(`databases (one per service and mode, same server): ${created.join(', ')}`);

    // One connection per watched database: a window samples on its observer's connection.
    const observer = await PgObserver.open(server.serverUrl);
    cleanup.add('close the PostgreSQL observer', () => observer.close());
    const ledgerObserver = await PgObserver.open(server.serverUrl);
    cleanup.add('close the second PostgreSQL observer', () => ledgerObserver.close());
    const pgbench = await PgbenchReference.prepare({ selected: settings.runPgbench, serverUrl: server.serverUrl, database: pgbenchDb, concurrencies: settings.concurrencies, signal, log });

    const hostBusyBeforePercent = await hostBusyPercentOver(HOST_PROBE_MS, signal);
    log(`host CPU busy before the load (others' work): ${fixed(hostBusyBeforePercent, 0)}% of ${navigator.hardwareConcurrency} cores`);

    const rows: Row[] = [];
    const money = new Map<Mode, MoneyCheck>();
    for (let round = 1; round <= settings.rounds; round++) {
      // Each mode runs alone (the other is stopped, and both are while pgbench runs: connections and CPU are theirs); the order alternates between rounds.
      const order = round % 2 === 1 ? states : [...states].reverse();
      for (const state of order) {
        const startAt = performance.now();
        running = await startMode(state, server.serverUrl, settings, probeDir, round);
        const current = running;
        cleanup.track(current.processes);
        log(`round ${round}/${settings.rounds}: ${MODE_LABELS[state.mode]} — pids ${current.processes.map((koban) => koban.pid).join(', ')}, healthy in ${fixed((performance.now() - startAt) / MS_PER_S, 1)} s`);
        try {
          if (!state.funded) {
            const fundAt = performance.now();
            await fund(state, current, signal);
            log(`  topped up ${USERS_COUNT} users with ${FUND_AMOUNT} cash each through the ledger in ${fixed((performance.now() - fundAt) / MS_PER_S, 1)} s`);
          }
          for (const concurrency of settings.concurrencies) {
            const visaWindow = observer.window(state.databases.get('visa')!);
            const ledgerWindow = ledgerObserver.window(state.databases.get('ledger')!);
            const cpu = cpuWindow(current.processes);
            let probeBegin: (() => Promise<ProbeFigures | undefined>) | undefined;
            let probeEnd: (() => Promise<ProbeFigures | undefined>) | undefined;
            let tallyAtBegin = { approved: 0, declined: 0 };
            let tallyAtEnd = { approved: 0, declined: 0 };
            const result = await runClosedLoop(current.visaPool, {
              concurrency,
              warmupMs: WARMUP_MS,
              durationMs: settings.durationS * MS_PER_S,
              nextUnit: () => [authorizationPlan(state)],
              signal,
              onWindowStart: () => {
                cpu.begin();
                visaWindow.begin();
                ledgerWindow.begin();
                probeBegin = probeMark(current);
                tallyAtBegin = { approved: state.tally.approved.count, declined: state.tally.declined.count };
              },
              onWindowEnd: () => {
                cpu.end();
                visaWindow.end();
                ledgerWindow.end();
                probeEnd = probeMark(current);
                tallyAtEnd = { approved: state.tally.approved.count, declined: state.tally.declined.count };
              },
            }).catch((error: unknown) => {
              signal.throwIfAborted();
              throw loadFailure(`${state.mode} c=${concurrency}`, current.processes, error);
            });
            const [pgVisa, pgLedger] = [await visaWindow.figures(), await ledgerWindow.figures()];
            const [probeAtBegin, probeAtEnd] = [await probeBegin?.(), await probeEnd?.()];
            assertAlive(current.processes, `${state.mode} c=${concurrency}`);
            mergeUnexpected(state.unexpected, result.unexpected);
            const row: Row = {
              round,
              mode: state.mode,
              concurrency,
              koban: result,
              cpu: cpu.figures(),
              pgVisa,
              pgLedger,
              approved: tallyAtEnd.approved - tallyAtBegin.approved,
              declined: tallyAtEnd.declined - tallyAtBegin.declined,
              probe: probeAtBegin && probeAtEnd ? probeDifference(probeAtEnd, probeAtBegin) : undefined,
            };
            rows.push(row);
            log(
              `  ${state.mode.padEnd(8)} c=${String(concurrency).padEnd(3)} ${fixed(result.requestsPerS, 0).padStart(5)} auth/s  p50 ${fixed(result.p50Ms, 1)} ms  p99 ${fixed(result.p99Ms, 1)} ms  ` +
                `(${row.approved} approved, ${row.declined} declined in the window)  Koban ${fixed(usPer(row.cpu.kobanMs, result.requests), 0)} µs CPU/auth, ` +
                `PG backends ${fixed(usPer((pgVisa.cpu?.watchedBackendsMs ?? Number.NaN) + (pgLedger.cpu?.watchedBackendsMs ?? Number.NaN), result.requests), 0)} µs/auth, host ${fixed(row.cpu.hostBusyPercent, 0)}% busy  unexpected ${result.unexpected.total}` +
                (result.unexpected.total > 0 ? ` [${describeUnexpected(result.unexpected)}]` : ''),
            );
          }
          if (round === settings.rounds) {
            log(`  checking money (${state.mode}) …`);
            const check = await checkMoney(state, current, server.serverUrl, signal);
            money.set(state.mode, check);
            for (const line of check.lines) log(`    ${line}`);
          }
        } finally {
          const exits = await current.stop();
          running = undefined;
          cleanup.track([]);
          if (exits.some((exit) => exit !== 'exit code 0')) log(`  ${state.mode} stopped: ${exits.join(', ')}`);
        }
      }
      await pgbench.runRound(round, settings.rounds, settings.concurrencies, settings.durationS, observer, signal, log);
    }

    // Report.
    const pgbenchTps = (concurrency: number) => pgbench.tps(concurrency);
    const summaries: Summary[] = [];
    for (const concurrency of settings.concurrencies) {
      for (const mode of settings.modes) {
        const measured = rows.filter((row) => row.mode === mode && row.concurrency === concurrency);
        const typical = medianItem(measured, (row) => row.koban.requestsPerS);
        if (!typical) continue;
        summaries.push({
          mode,
          concurrency,
          rounds: measured,
          typical,
          authPerS: median(measured.map((row) => row.koban.requestsPerS)),
          p50Ms: median(measured.map((row) => row.koban.p50Ms)),
          p99Ms: median(measured.map((row) => row.koban.p99Ms)),
          maxMs: Math.max(...measured.map((row) => row.koban.maxMs)),
        });
      }
    }
    const ratioOf = (summary: Summary) =>
      medianPairedRatio(new Map(summary.rounds.map((row) => [row.round, row.koban.requestsPerS])), pgbench.tpsByRound(summary.concurrency));
    const range = (values: readonly number[]) => (values.length > 1 ? `${fixed(Math.min(...values), 0)}–${fixed(Math.max(...values), 0)}` : '-');
    const cores = navigator.hardwareConcurrency;

    console.log('');
    console.log(`Koban payments benchmark — Visa authorizations; PostgreSQL ${pgVersion}, ${server.kind === 'embedded' ? 'embedded (temporary cluster)' : `DATABASE_URL (${server.where})`}; ${pgSettings}`);
    console.log(
      `${settings.rounds} round(s); in each, every mode is started, measured at each client count and stopped, then pgbench runs at each client count (mode order alternates by round). ` +
        `Figures are medians over rounds; ratios the median of each round's ratio.`,
    );
    console.log(
      `${settings.durationS} s measured per row after ${WARMUP_MS} ms warm-up; closed loop over HTTP/1.1 keep-alive (undici Pool); load generator, Koban and PostgreSQL share ` +
        `this machine's ${cores} cores (${fixed(hostBusyBeforePercent, 0)}% busy with others' work just before). Each service has its own database on the one server pgbench uses.`,
    );
    console.log(
      `authorizations: a fresh authorization_id each, a user drawn from ${USERS_COUNT} per mode (each topped up with ${FUND_AMOUNT} cash first), ${AUTH_AMOUNT_MIN}–${AUTH_AMOUNT_MAX} yen; ` +
        `one in ${DECLINE_ONE_IN} asks ${DECLINE_AMOUNT} (more than anyone has: declined insufficient_balance)`,
    );
    console.log(`reference: ${pgbench.describe()}`);
    console.log('');
    console.log(
      formatTable(
        ['mode', 'clients', 'auth/s', 'auth/s range', 'p50 ms', 'p99 ms', 'max ms', 'pgbench tps', 'ratio', 'approved', 'declined'],
        summaries.map((summary) => {
          const tps = pgbenchTps(summary.concurrency);
          return [
            summary.mode,
            String(summary.concurrency),
            fixed(summary.authPerS, 0),
            range(summary.rounds.map((row) => row.koban.requestsPerS)),
            fixed(summary.p50Ms, 1),
            fixed(summary.p99Ms, 1),
            fixed(summary.maxMs, 1),
            fixed(tps, 0),
            fixed(ratioOf(summary).ratio, 2),
            String(summary.rounds.reduce((sum, row) => sum + row.approved, 0)),
            String(summary.rounds.reduce((sum, row) => sum + row.declined, 0)),
          ];
        }),
      ),
    );
    console.log('   approved / declined: answers to authorizations started in the measured windows of every round (declines are the 1-in-50 probes).');

    console.log('');
    console.log(`Where the time goes (the round with the median throughput; CPU in µs per authorization and % of one core)`);
    console.log(
      formatTable(
        ['mode', 'c', 'auth/s', 'mean latency ms', 'koban µs/auth', 'koban %', 'koban main threads %', 'PG visa db µs/auth', 'PG ledger db µs/auth', 'PG other %', 'PG all µs/auth', 'ceiling ratio', 'load gen %', 'host busy %', 'write txns/auth (server-wide)', 'PG waits, visa db', 'PG waits, ledger db'],
        summaries.map(({ typical: row }) => [
          row.mode,
          String(row.concurrency),
          fixed(row.koban.requestsPerS, 0),
          // Little's law over a closed loop: every client always has one authorization out.
          fixed((row.concurrency / row.koban.requestsPerS) * MS_PER_S, 1),
          fixed(usPer(row.cpu.kobanMs, row.koban.requests), 0),
          fixed(percentOfCore(row.cpu.kobanMs, row.koban.measuredS), 0),
          fixed(percentOfCore(row.cpu.kobanMainThreadMs, row.koban.measuredS), 0),
          fixed(usPer(row.pgVisa.cpu?.watchedBackendsMs ?? Number.NaN, row.koban.requests), 0),
          fixed(usPer(row.pgLedger.cpu?.watchedBackendsMs ?? Number.NaN, row.koban.requests), 0),
          fixed(percentOfCore((row.pgVisa.cpu?.totalMs ?? Number.NaN) - (row.pgVisa.cpu?.watchedBackendsMs ?? Number.NaN) - (row.pgLedger.cpu?.watchedBackendsMs ?? Number.NaN), row.koban.measuredS), 0),
          fixed(usPer(row.pgVisa.cpu?.totalMs ?? Number.NaN, row.koban.requests), 0),
          fixed(ratioCeiling(usPer(row.pgVisa.cpu?.totalMs ?? Number.NaN, row.koban.requests), navigator.hardwareConcurrency, pgbench.tps(row.concurrency)), 2),
          fixed(percentOfCore(row.cpu.benchMs, row.koban.measuredS), 0),
          fixed(row.cpu.hostBusyPercent, 0),
          fixed(row.pgVisa.writeTransactions / row.koban.requests, 2),
          describeWaits(row.pgVisa),
          describeWaits(row.pgLedger),
        ]),
      ),
    );
    console.log(
      '   PG … db µs/auth: CPU of that database\'s backends; PG other: WAL writer, checkpointer, other backends; PG all: every process of the server; ' +
        `ceiling ratio: authorizations/s ÷ pgbench tps if Koban and the load generator cost nothing and PostgreSQL kept all ${navigator.hardwareConcurrency} cores busy at its CPU per authorization; ` +
        'write txns: transaction ids assigned server-wide per authorization; ' +
        'PG waits: share of active-backend samples (every 25 ms, pg_stat_activity) per wait event, CPU when not waiting.',
    );
    for (const concurrency of settings.concurrencies) {
      const rowsAtC = pgbench.measured(concurrency);
      const typical = medianItem(rowsAtC, (row) => row.figures.tps);
      if (typical) {
        console.log(
          `   pgbench c=${concurrency}: ${fixed(typical.figures.tps, 0)} tps, PG backends ${fixed(usPer(typical.pg.cpu?.watchedBackendsMs ?? Number.NaN, typical.figures.transactions), 0)} µs CPU/txn, ` +
            `host ${fixed(percentOfCore(typical.pg.cpu?.totalMs ?? Number.NaN, settings.durationS), 0)}% of a core in PostgreSQL; waits ${describeWaits(typical.pg)}`,
        );
      }
    }

    const profiled = summaries.filter((summary) => summary.typical.probe !== undefined);
    for (const { typical: row } of profiled) {
      const probe = row.probe!;
      const per = (count: number) => count / row.koban.requests;
      console.log('');
      console.log(`Profile: ${row.mode} c=${row.concurrency} (round ${row.round}; ${row.koban.requests} authorizations in the window; times as the Koban process saw them, per authorization)`);
      const byApp = new Map<string, { count: number; ms: number }>();
      for (const [key, tally] of probe.statements) {
        const app = key.split('\t')[0]!;
        const total = byApp.get(app) ?? { count: 0, ms: 0 };
        total.count += tally.count;
        total.ms += tally.ms;
        byApp.set(app, total);
      }
      console.log(
        formatTable(
          ['what', 'per auth', 'avg ms each', 'ms per auth'],
          [
            ...[...probe.connects].map(([app, tally]) => [`wait for a pooled connection (${app})`, fixed(per(tally.count), 2), fixed(tally.ms / tally.count, 2), fixed(per(tally.ms), 2)]),
            ...[...byApp].map(([app, tally]) => [`statements (round trips) of ${app}`, fixed(per(tally.count), 2), fixed(tally.ms / tally.count, 2), fixed(per(tally.ms), 2)]),
            ...[...probe.fetches].map(([call, tally]) => [`HTTP call ${call}`, fixed(per(tally.count), 2), fixed(tally.ms / tally.count, 2), fixed(per(tally.ms), 2)]),
            ['client-side mean latency', '1', fixed((row.concurrency / row.koban.requestsPerS) * MS_PER_S, 2), fixed((row.concurrency / row.koban.requestsPerS) * MS_PER_S, 2)],
          ],
        ),
      );
      console.log(
        formatTable(
          ['pool', 'statement', 'per auth', 'avg ms', 'ms per auth'],
          [...probe.statements]
            .sort((a, b) => b[1].ms - a[1].ms)
            .slice(0, PROFILE_STATEMENTS_LISTED)
            .map(([key, tally]) => {
              const [app, text] = key.split('\t') as [string, string];
              return [app, text, fixed(per(tally.count), 2), fixed(tally.ms / tally.count, 2), fixed(per(tally.ms), 2)];
            }),
        ),
      );
    }

    // Targets and checks.
    const targetLines: Array<{ met: boolean | undefined; text: string }> = [];
    for (const mode of settings.modes) {
      const at64 = summaries.find((summary) => summary.mode === mode && summary.concurrency === TARGET_CONCURRENCY_THROUGHPUT);
      const ratio = at64 ? ratioOf(at64) : undefined;
      targetLines.push(
        at64 && ratio && ratio.rounds > 0
          ? {
              met: ratio.ratio >= TARGET_OVER_PGBENCH_MIN,
              text: `${mode}: authorizations/s ≥ ${TARGET_OVER_PGBENCH_MIN}× pgbench tps at ${TARGET_CONCURRENCY_THROUGHPUT} clients: ${fixed(at64.authPerS, 0)} vs ${fixed(pgbenchTps(TARGET_CONCURRENCY_THROUGHPUT), 0)} tps, median ratio ${fixed(ratio.ratio, 2)}`,
            }
          : { met: undefined, text: `${mode}: authorizations/s ≥ ${TARGET_OVER_PGBENCH_MIN}× pgbench tps at ${TARGET_CONCURRENCY_THROUGHPUT} clients: not measured` },
      );
      const at16 = summaries.find((summary) => summary.mode === mode && summary.concurrency === TARGET_CONCURRENCY_LATENCY);
      targetLines.push(
        at16
          ? { met: at16.p99Ms < TARGET_P99_MS_MAX, text: `${mode}: p99 < ${TARGET_P99_MS_MAX} ms at ${TARGET_CONCURRENCY_LATENCY} clients: ${fixed(at16.p99Ms, 1)} ms` }
          : { met: undefined, text: `${mode}: p99 < ${TARGET_P99_MS_MAX} ms at ${TARGET_CONCURRENCY_LATENCY} clients: not measured` },
      );
    }
    console.log('');
    console.log('Targets (issue 11) — reported, not part of the exit code');
    for (const line of targetLines) console.log(`  ${line.met === undefined ? 'NOT MEASURED' : line.met ? 'MET    ' : 'NOT MET'}  ${line.text}`);

    console.log('');
    let pass = true;
    for (const state of states) {
      const check = money.get(state.mode);
      const approved = state.tally.approved;
      const declined = state.tally.declined;
      console.log(
        `${state.mode}: ${approved.count + declined.count} authorizations answered in all (warm-ups included): ${approved.count} approved for ${approved.amount} yen, ${declined.count} declined; ` +
          `peak RSS ${state.peakRssMiB.length ? `${fixed(Math.max(...state.peakRssMiB), 0)} MiB per process` : 'unknown'}`,
      );
      if (state.unexpected.total > 0) pass = false;
      for (const line of unexpectedLines(state.unexpected)) console.log(`  ${line}`);
      console.log(`  money check: ${check === undefined ? 'NOT RUN' : check.pass ? 'PASS' : 'FAIL'}`);
      for (const line of check?.lines ?? []) console.log(`    ${line}`);
      if (!check?.pass) pass = false;
    }
    console.log('');
    console.log('figures as JSON (one line):');
    console.log(
      JSON.stringify({
        benchmark: 'koban-payments',
        at: new Date().toISOString(),
        postgres: { version: pgVersion, source: server.kind, settings: pgSettings },
        settings: { duration_s: settings.durationS, rounds: settings.rounds, warmup_ms: WARMUP_MS, concurrencies: settings.concurrencies, modes: settings.modes, profile: settings.profile, cores },
        pgbench: pgbench.available ? { version: pgbench.note, scale: pgbench.scale, mode: 'tpcb-like' } : { skipped: pgbench.note },
        summaries: summaries.map((summary) => ({
          mode: summary.mode,
          clients: summary.concurrency,
          auth_per_s_median: round(summary.authPerS, 1),
          p50_ms_median: round(summary.p50Ms, 2),
          p99_ms_median: round(summary.p99Ms, 2),
          pgbench_tps_median: round(pgbenchTps(summary.concurrency), 1),
          ratio_median: round(ratioOf(summary).ratio, 3),
        })),
        rows: rows.map((row) => ({
          round: row.round,
          mode: row.mode,
          clients: row.concurrency,
          auth_per_s: round(row.koban.requestsPerS, 1),
          p50_ms: round(row.koban.p50Ms, 2),
          p99_ms: round(row.koban.p99Ms, 2),
          approved: row.approved,
          declined: row.declined,
          koban_cpu_us_per_auth: round(usPer(row.cpu.kobanMs, row.koban.requests), 1),
          host_busy_percent: round(row.cpu.hostBusyPercent, 1),
        })),
        pgbench_rows: pgbench.rows.map((row) => ('figures' in row ? { round: row.round, clients: row.concurrency, tps: round(row.figures.tps, 1) } : row)),
        targets: targetLines.map((line) => ({ met: line.met ?? null, text: line.text })),
        money: Object.fromEntries([...money].map(([mode, check]) => [mode, check.pass])),
        total_s: round(elapsedS(), 1),
      }),
    );
    console.log(`RESULT: ${pass ? 'PASS' : 'FAIL'}`);
    return pass ? 0 : 1;
  } finally {
    guard.disarm();
    if (running) await running.stop().catch(() => undefined);
    await cleanup.runAll();
  }
}

await runMain(main);
