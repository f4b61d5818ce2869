// Goal: `npm run bench:e2e` — the whole card flow under load: Visa authorizations per second with their
// captures following, authorization p50/p99, and the lag from an authorization's answer to its points grant,
// against Koban in one process (`koban start`, postgres bus) and split (`serve ledger bus` | `serve visa` |
// `serve points` | `serve notifications`, over NATS), beside pgbench on the same PostgreSQL in the same run; then a money and points
// check (cash = top-ups − captures − open holds; every approved authorization has exactly one grant).
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Pool } from 'undici';
import { KOBAN_TOPICS } from '../src/contracts/events/topics.ts';
import { envPrefix } from '../src/platform/config.ts';
import { cpuWindow } from './lib/cpu-window.ts';
import { type KobanProcess, assertAlive, loadFailure, spawnKoban } from './lib/koban-process.ts';
import { RunCleanup } from './lib/run-cleanup.ts';
import { EMBEDDED_SERVICES, databaseUrlVariable, kobanChildEnv } from './lib/koban-services.ts';
import { type LoadResult, type Plan, type Unexpected, describeUnexpected, mergeUnexpected, newUnexpected, percentile, runClosedLoop, unexpectedLines } from './lib/load.ts';
import { type MoneyCheck, MoneyTally, type TransactionBody, checkMoney } from './lib/money-check.ts';
import { deleteNatsNamespace, natsReachable } from './lib/nats.ts';
import { freePort, pollUntil } from './lib/net.ts';
import { PgObserver } from './lib/pg-observer.ts';
import { type PgServer, databaseUrl, providePgServer, serverVersion, withClient } from './lib/pg-server.ts';
import { PgbenchReference, describePgSettings, hostBusyPercentOver } from './lib/reference.ts';
import { errorCode, fixed, formatTable, percentOfCore, ratioCeiling, round, runClock, usPer } from './lib/report.ts';
import { guardRun, runMain } from './lib/run-guard.ts';
import { median, medianItem, medianPairedRatio } from './lib/rounds.ts';
import { readRunSettings } from './lib/settings.ts';
import { authorizationPlan, drawAuthorization, fundUsers, readVisaOutbox } from './lib/visa-load.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');

const DURATION_S_DEFAULT = 5;
const ROUNDS_DEFAULT = 3;
const CONCURRENCIES_DEFAULT = '16,64';
/** Traffic before each measured window (a freshly started process included), sent and checked but not timed. */
const WARMUP_MS = 2_000;

/** The issue's targets: throughput against pgbench and the lag at the higher load, authorization latency at the lower (as bench:payments). */
const TARGET_CONCURRENCY_THROUGHPUT = 64;
const TARGET_OVER_PGBENCH_MIN = 0.4;
const TARGET_CONCURRENCY_LATENCY = 16;
const TARGET_AUTH_P99_MS_MAX = 50;
const TARGET_LAG_P99_MS_MAX = 1_000;

const USERS_COUNT = 4_000;
const FUND_AMOUNT = 900_000;
/**
 * Authorization amounts, in yen: at the default 0.5 % every one earns at
 * least one point (below 200 yen a payment may earn none, and a grant of 0
 * shows no pending points). A user runs dry after ~350 captures.
 */
const AUTH_AMOUNT_MIN = 200;
const AUTH_AMOUNT_MAX = 5_000;

const HTTP_HEADERS_TIMEOUT_MS = 30_000;
const HTTP_BODY_TIMEOUT_MS = 30_000;
/** After a measured window, its authorizations' grants get this long to appear; those that do not count as lag beyond it. */
const LAG_WAIT_MS = 30_000;
const LAG_POLL_INTERVAL_MS = 250;
/** Before the final checks, the outbox relay and the points consumer get this long to finish every event. */
const SETTLE_WAIT_MS = 60_000;
const SETTLE_POLL_INTERVAL_MS = 250;

const STARTUP_BUDGET_MS = 300_000;
const MODE_START_BUDGET_MS = 90_000;
const ROW_SLACK_MS = 15_000;
const PGBENCH_SLACK_MS = 60_000;
const CHECK_BUDGET_MS = 600_000;
const HOST_PROBE_MS = 2_000;
const MS_PER_S = 1000;

const MODES = ['embedded', 'split'] as const;
type Mode = (typeof MODES)[number];
const MODE_LABELS: Record<Mode, string> = {
  embedded: 'embedded (koban start: every service in one process, postgres bus)',
  split: 'split (koban serve ledger bus | serve visa | serve points | serve notifications, NATS bus)',
};
/** Whether this build has the points service: without it, the flow stops at the bus and no lag is measured. */
const POINTS_BUILT = EMBEDDED_SERVICES.includes('points');
/**
 * The consumers split runs each in a process of its own, as `koban start` runs
 * them in its one: notifications reacts to every payment event too, so leaving
 * it out would flatter split against embedded.
 */
const SPLIT_CONSUMERS: readonly string[] = ['points', 'notifications'].filter((service) => EMBEDDED_SERVICES.includes(service));
const SPLIT_SERVICES: readonly string[] = ['ledger', 'bus', 'visa', ...SPLIT_CONSUMERS];
const NATS_URL = process.env.NATS_URL || 'nats://127.0.0.1:4222';

type ModeState = {
  mode: Mode;
  databases: Map<string, string>;
  users: string[];
  idPrefix: string;
  sent: number;
  funded: boolean;
  /** The cash the benchmark believes it moved: top-ups, holds (approvals), posts (captures). */
  money: MoneyTally;
  /** Approved payment id → the wall-clock ms its authorization was answered (Date.now(), the clock the points service stamps grants with). */
  approvals: Map<string, number>;
  captured: Set<string>;
  declined: number;
  /** Approvals answered while a measured window is open, for its lag. */
  window: Map<string, number> | undefined;
  unexpected: Unexpected;
  natsNamespace: string;
};

type Running = { processes: KobanProcess[]; visaPool: Pool; ledgerPool: Pool; stop(): Promise<string[]> };

/**
 * Authorization answered → grant created, over one window's approvals; a
 * grant that never appeared counts as +∞. `driftMs`: the median lag of the
 * window's last tenth of approvals minus that of its first tenth — about 0
 * when the consumer keeps up, growing by the window's length when a backlog builds.
 */
type Lag = { approvals: number; appeared: number; p50Ms: number; p99Ms: number; maxMs: number; driftMs: number };
/** Fewer approvals in a window than this give no drift (a tenth would be too few to have a median). */
const DRIFT_APPROVALS_MIN = 50;
type Row = {
  round: number;
  mode: Mode;
  concurrency: number;
  load: LoadResult;
  lag: Lag | undefined;
  kobanCpuPercent: number;
  hostBusyPercent: number;
  /** CPU per authorization (with its capture and everything they set off in the window), in µs: Koban's processes, the load generator, every PostgreSQL process. */
  kobanUsPerPair: number;
  benchUsPerPair: number;
  pgUsPerPair: number;
  /** Transaction ids PostgreSQL assigned server-wide per authorization (with its capture and what they set off): its durable commits. */
  writeTxnsPerPair: number;
};

const { elapsedS, log } = runClock();

async function startMode(state: ModeState, serverUrl: string, settings: { kobanNodeArgs: string[]; concurrencies: number[] }): Promise<Running> {
  const urlOf = (service: string) => databaseUrl(serverUrl, state.databases.get(service)!);
  const processes: KobanProcess[] = [];
  const spawn = async (args: string[], env: NodeJS.ProcessEnv, origins: string[]) => {
    processes.push(await spawnKoban({ repoRoot: REPO_ROOT, args, extraNodeArgs: settings.kobanNodeArgs, env: { ...kobanChildEnv(), ...env }, origins, label: `koban ${args.join(' ')}` }));
  };
  try {
    let visaOrigin: string;
    let ledgerOrigin: string;
    if (state.mode === 'embedded') {
      const port = await freePort();
      const env: NodeJS.ProcessEnv = { PORT: String(port), KOBAN_BUS: 'postgres' };
      for (const service of EMBEDDED_SERVICES) env[databaseUrlVariable(service)] = urlOf(service);
      visaOrigin = ledgerOrigin = `http://127.0.0.1:${port}`;
      await spawn(['start'], env, [visaOrigin]);
    } else {
      const nats = { KOBAN_BUS: 'nats', NATS_URL, KOBAN_NATS_NAMESPACE: state.natsNamespace };
      const [ledgerPort, busPort, visaPort] = [await freePort(), await freePort(), await freePort()];
      ledgerOrigin = `http://127.0.0.1:${ledgerPort}`;
      const busOrigin = `http://127.0.0.1:${busPort}`;
      visaOrigin = `http://127.0.0.1:${visaPort}`;
      await spawn(
        ['serve', 'ledger', 'bus'],
        { ...nats, LEDGER_PORT: String(ledgerPort), BUS_PORT: String(busPort), LEDGER_DATABASE_URL: urlOf('ledger'), BUS_DATABASE_URL: urlOf('bus') },
        [ledgerOrigin, busOrigin],
      );
      await spawn(['serve', 'visa'], { VISA_PORT: String(visaPort), VISA_DATABASE_URL: urlOf('visa'), LEDGER_URL: ledgerOrigin, BUS_URL: busOrigin }, [visaOrigin]);
      for (const consumer of SPLIT_CONSUMERS) {
        // A consumer run alone claims from the bus through the bus's database and the broker; points grants through the ledger over HTTP.
        const port = await freePort();
        const env: NodeJS.ProcessEnv = { ...nats, [`${envPrefix(consumer)}PORT`]: String(port), [databaseUrlVariable(consumer)]: urlOf(consumer), BUS_DATABASE_URL: urlOf('bus') };
        if (consumer === 'points') env.LEDGER_URL = ledgerOrigin;
        await spawn(['serve', consumer], env, [`http://127.0.0.1:${port}`]);
      }
    }
    const poolOptions = { pipelining: 1, headersTimeout: HTTP_HEADERS_TIMEOUT_MS, bodyTimeout: HTTP_BODY_TIMEOUT_MS };
    const visaPool = new Pool(visaOrigin, { ...poolOptions, connections: Math.max(...settings.concurrencies) });
    const ledgerPool = new Pool(ledgerOrigin, { ...poolOptions, connections: 32 });
    return {
      processes,
      visaPool,
      ledgerPool,
      async stop() {
        await Promise.allSettled([visaPool.close(), ledgerPool.close()]);
        return Promise.all(processes.map((koban) => koban.stop()));
      },
    };
  } catch (error) {
    await Promise.all(processes.map((koban) => koban.stop()));
    throw error;
  }
}

/**
 * One unit of a client: a Visa authorization, then (approved, not a decline
 * probe) its sales draft for the whole amount, final — the capture follows at
 * once, so the points service sees both events of most payments close together.
 */
function paymentUnit(state: ModeState): Plan[] {
  const auth = drawAuthorization(state.sent++, { users: state.users, idPrefix: state.idPrefix, amountMin: AUTH_AMOUNT_MIN, amountMax: AUTH_AMOUNT_MAX });
  const { authorization_id: authorizationId, user_id: userId, amount, merchant } = auth.body;
  const paymentId = `visa:${authorizationId}`;
  const hold: TransactionBody = { transaction_id: paymentId, type: 'consume', user_id: userId, balance_type: 'cash', amount, pending: true };
  const authorize = authorizationPlan(auth, FUND_AMOUNT, {
    approve: () => {
      const answeredAt = Date.now();
      state.money.recordCreate(hold);
      state.approvals.set(paymentId, answeredAt);
      state.window?.set(paymentId, answeredAt);
    },
    decline: () => state.declined++,
  });
  if (auth.declineProbe) return [authorize];
  const capture: Plan = {
    method: 'POST',
    path: '/v1/visa/sales-drafts',
    body: JSON.stringify({ sales_draft_id: `${authorizationId}-sd`, authorization_id: authorizationId, user_id: userId, amount, currency: 'JPY', merchant, final: true }),
    check: (answer) => {
      if (answer.status !== 200) return `sales draft: ${answer.status} ${errorCode(answer.body)}`;
      const parsed = JSON.parse(answer.body) as { payment_id?: unknown; captured_amount?: unknown; held_amount?: unknown; forced?: unknown };
      if (parsed.payment_id !== paymentId || parsed.captured_amount !== amount || parsed.held_amount !== 0 || parsed.forced !== false) {
        return `sales draft: 200 but payment ${String(parsed.payment_id)}, captured ${String(parsed.captured_amount)}, held ${String(parsed.held_amount)}, forced ${String(parsed.forced)}`;
      }
      state.money.recordPost(hold, amount);
      state.captured.add(paymentId);
      return null;
    },
  };
  return [authorize, capture];
}

/** When each payment's grant was created (ms since the epoch), for those that have one. */
async function grantTimes(pointsDbUrl: string, paymentIds: readonly string[]): Promise<Map<string, number>> {
  return withClient(pointsDbUrl, async (client) => {
    const result = await client.query<{ reference: string; ms: number }>(
      `SELECT reference, (extract(epoch FROM created_at) * 1000)::float8 AS ms FROM point_grants WHERE source = 'payment' AND reference = ANY($1::text[])`,
      [paymentIds],
    );
    return new Map(result.rows.map((row) => [row.reference, row.ms]));
  });
}

/**
 * The lag of one window: authorization answered (the benchmark's Date.now()
 * when the answer arrived) → the grant's created_at (the points service's
 * clock when it recorded the grant; same machine, same clock). The grant row
 * commits in the same transaction a few statements later, and the pending
 * points reach the ledger (GET /v1/users/{id}/points) one ledger call after
 * that, so this is the consumer's lag to within a few milliseconds; it is read
 * once afterwards rather than polled during the load, which would add reads the
 * measured system does not otherwise serve. A negative lag is possible by
 * the time the answer takes to reach the benchmark.
 */
async function measureLag(pointsDbUrl: string, window: ReadonlyMap<string, number>, signal: AbortSignal): Promise<Lag> {
  const ids = [...window.keys()];
  const created = await pollUntil(() => grantTimes(pointsDbUrl, ids), (found) => found.size === ids.length, { waitMs: LAG_WAIT_MS, intervalMs: LAG_POLL_INTERVAL_MS, signal });
  // In answer order (the window's Map keeps insertion order), for the drift.
  const inOrder = ids.map((id) => (created.get(id) ?? Number.POSITIVE_INFINITY) - window.get(id)!);
  const tenth = Math.floor(inOrder.length / 10);
  const driftMs = inOrder.length < DRIFT_APPROVALS_MIN ? Number.NaN : medianOf(inOrder.slice(-tenth)) - medianOf(inOrder.slice(0, tenth));
  const lags = Float64Array.from(inOrder).sort();
  return { approvals: ids.length, appeared: created.size, p50Ms: percentile(lags, 0.5), p99Ms: percentile(lags, 0.99), maxMs: lags.length ? lags[lags.length - 1]! : Number.NaN, driftMs };
}

/** A median that keeps +∞ (a grant that never appeared), where rounds.ts's median drops what is not finite. */
function medianOf(values: readonly number[]): number {
  return percentile(Float64Array.from(values).sort(), 0.5);
}

type Checks = { pass: boolean; lines: string[] };

/**
 * After the last round of a mode: every payment event published, then the
 * cash (lib/money-check: rows and balances against the tally, the balance API,
 * the ledger's audit), Visa's payments by status, and the points: one grant
 * per approved authorization and none for anything else, confirmed once
 * captured, and the users' points in the ledger equal to their grants.
 */
async function checkMode(state: ModeState, running: Running, serverUrl: string, signal: AbortSignal): Promise<Checks> {
  const lines: string[] = [];
  let pass = true;
  const expect = (ok: boolean, what: string) => {
    lines.push(`${ok ? 'PASS' : 'FAIL'} ${what}`);
    if (!ok) pass = false;
  };
  const urlOf = (service: string) => databaseUrl(serverUrl, state.databases.get(service)!);
  const answered = state.approvals.size + state.declined;
  const outbox = await pollUntil(() => readVisaOutbox(urlOf('visa')), (reading) => reading.unpublished === 0, { waitMs: SETTLE_WAIT_MS, intervalMs: SETTLE_POLL_INTERVAL_MS, signal });
  expect(
    outbox.events === answered + state.captured.size && outbox.unpublished === 0,
    `outbox: ${outbox.events} payment events for ${answered} authorization answers and ${state.captured.size} captures, ${outbox.unpublished} unpublished after the relay's drain`,
  );

  const visa = await withClient(urlOf('visa'), async (client) => {
    const result = await client.query<{ status: string; n: string }>('SELECT status, count(*)::text AS n FROM payments GROUP BY status ORDER BY status');
    return new Map(result.rows.map((row) => [row.status, Number(row.n)]));
  });
  const heldOpen = state.approvals.size - state.captured.size;
  expect(
    (visa.get('captured') ?? 0) === state.captured.size && (visa.get('authorized') ?? 0) === heldOpen && (visa.get('declined') ?? 0) === state.declined && visa.size <= 3,
    `Visa payments: ${[...visa].map(([status, n]) => `${status} ${n}`).join(', ')} — expected captured ${state.captured.size}, authorized ${heldOpen}, declined ${state.declined}`,
  );

  const cash: MoneyCheck = await checkMoney({
    pool: running.ledgerPool,
    kobanDbUrl: urlOf('ledger'),
    tally: state.money,
    neverUserId: `${state.idPrefix}never`,
    hotAccount: undefined,
    signal,
    errorCode,
    balanceType: 'cash',
    createdBy: 'top-ups and approved authorizations (holds)',
  });
  for (const line of cash.lines) lines.push(`cash: ${line}`);
  if (!cash.pass) pass = false;

  if (!POINTS_BUILT) {
    lines.push('points: NOT CHECKED — this build has no points service');
    return { pass, lines };
  }
  type GrantRow = { reference: string; n: string; status: string; points: string };
  const readGrants = () =>
    withClient(urlOf('points'), async (client) => {
      const grants = await client.query<GrantRow>(
        `SELECT reference, count(*)::text AS n, min(status) AS status, sum(points)::text AS points FROM point_grants WHERE source = 'payment' GROUP BY reference`,
      );
      const journal = await client.query<{ n: string }>('SELECT count(*)::text AS n FROM point_commands');
      return { grants: grants.rows, unfinishedCommands: Number(journal.rows[0]!.n) };
    });
  // Settled: every approval has its grant, every capture is confirmed, and no ledger write is left in the journal.
  const settled = (read: Awaited<ReturnType<typeof readGrants>>) =>
    read.unfinishedCommands === 0 && read.grants.length >= state.approvals.size && read.grants.filter((grant) => grant.status === 'confirmed').length >= state.captured.size;
  const points = await pollUntil(readGrants, settled, { waitMs: SETTLE_WAIT_MS, intervalMs: SETTLE_POLL_INTERVAL_MS, signal });
  const byReference = new Map(points.grants.map((grant) => [grant.reference, grant]));
  const missing = [...state.approvals.keys()].filter((id) => !byReference.has(id));
  const strays = points.grants.filter((grant) => !state.approvals.has(grant.reference));
  const doubled = points.grants.filter((grant) => grant.n !== '1');
  const wrongStatus = [...state.approvals.keys()].filter((id) => {
    const grant = byReference.get(id);
    return grant !== undefined && grant.status !== (state.captured.has(id) ? 'confirmed' : 'pending');
  });
  const empty = points.grants.filter((grant) => grant.points === '0');
  expect(
    missing.length === 0 && strays.length === 0 && doubled.length === 0,
    `points grants: ${points.grants.length} for ${state.approvals.size} approved authorizations — ${missing.length} missing, ${strays.length} for no approval (declines included), ${doubled.length} doubled` +
      (missing.length ? ` (e.g. ${missing.slice(0, 3).join(', ')})` : ''),
  );
  expect(
    wrongStatus.length === 0 && empty.length === 0,
    `grant status: confirmed for the ${state.captured.size} captured, pending for the ${heldOpen} still held — ${wrongStatus.length} otherwise${wrongStatus.length ? ` (e.g. ${wrongStatus.slice(0, 3).join(', ')})` : ''}; ${empty.length} grants of 0 points`,
  );
  expect(points.unfinishedCommands === 0, `points journal: ${points.unfinishedCommands} ledger writes decided but not done`);

  // The points each user holds in the ledger (posted for confirmed grants, pending credit for pending ones) = that user's grants.
  const ledgerPoints = await withClient(urlOf('ledger'), async (client) => {
    const result = await client.query<{ owner_id: string; posted: string; pending_credit: string }>(
      `SELECT owner_id, posted::text, pending_credit::text FROM accounts WHERE owner_kind = 'user' AND balance_type = 'points'`,
    );
    return result.rows;
  });
  const grantsOf = await withClient(urlOf('points'), async (client) => {
    const result = await client.query<{ user_id: string; confirmed: string; pending: string }>(
      `SELECT user_id, coalesce(sum(points) FILTER (WHERE status = 'confirmed'), 0)::text AS confirmed, coalesce(sum(points) FILTER (WHERE status = 'pending'), 0)::text AS pending
         FROM point_grants WHERE source = 'payment' GROUP BY user_id`,
    );
    return new Map(result.rows.map((row) => [row.user_id, row]));
  });
  let off = 0;
  const examples: string[] = [];
  for (const account of ledgerPoints) {
    const want = grantsOf.get(account.owner_id);
    if (account.posted !== (want?.confirmed ?? '0') || account.pending_credit !== (want?.pending ?? '0')) {
      off++;
      if (examples.length < 3) examples.push(`${account.owner_id}: posted ${account.posted}, pending ${account.pending_credit}; grants ${want?.confirmed ?? 0} confirmed, ${want?.pending ?? 0} pending`);
    }
  }
  const accountsOf = new Set(ledgerPoints.map((account) => account.owner_id));
  const withoutAccount = [...grantsOf.keys()].filter((user) => !accountsOf.has(user));
  expect(
    off === 0 && withoutAccount.length === 0,
    `ledger points of ${ledgerPoints.length} users = their grants (confirmed posted, pending as pending credit): ${off} differ, ${withoutAccount.length} with grants but no account${examples.length ? ` (${examples.join('; ')})` : ''}`,
  );
  return { pass, lines };
}

async function main(): Promise<number> {
  const settings = readRunSettings(process.env, { modes: MODES, durationS: DURATION_S_DEFAULT, rounds: ROUNDS_DEFAULT, concurrencies: CONCURRENCIES_DEFAULT });
  if (settings.modes.length === 0) throw new Error('BENCH_SCENARIOS names no mode: add embedded and/or split');
  const abort = new AbortController();
  const { signal } = abort;
  const runId = randomBytes(4).toString('hex');
  const perRoundMs =
    settings.modes.length * (MODE_START_BUDGET_MS + settings.concurrencies.length * (WARMUP_MS + settings.durationS * MS_PER_S + ROW_SLACK_MS + LAG_WAIT_MS)) +
    (settings.runPgbench ? settings.concurrencies.length * (settings.durationS * MS_PER_S + PGBENCH_SLACK_MS) : 0);
  const guard = guardRun(abort, STARTUP_BUDGET_MS + settings.rounds * perRoundMs + CHECK_BUDGET_MS);

  const cleanup = new RunCleanup();
  let running: Running | undefined;
  try {
    log(`settings: modes ${settings.modes.join(',')}${settings.runPgbench ? ' + pgbench' : ''}; ${settings.durationS} s per row after ${WARMUP_MS} ms warm-up; clients ${settings.concurrencies.join(',')}; ${settings.rounds} round(s)`);
    let modes = settings.modes;
    const skipped: string[] = [];
    if (modes.includes('split') && !(await natsReachable(NATS_URL))) {
      modes = modes.filter((mode) => mode !== 'split');
      skipped.push(`split SKIPPED: NATS not reachable at ${NATS_URL} (start nats-server -js, or set NATS_URL)`);
      log(skipped.at(-1)!);
    }
    if (modes.length === 0) throw new Error(`nothing to measure: ${skipped.join('; ')}`);
    if (!POINTS_BUILT) {
      skipped.push('lag NOT MEASURED: this build has no points service (koban serve points); authorizations and captures are measured alone');
      log(skipped.at(-1)!);
    }

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
    for (const mode of modes) {
      const databases = new Map<string, string>();
      for (const service of mode === 'embedded' ? EMBEDDED_SERVICES : SPLIT_SERVICES) {
        const name = `koban_bench_e2e_${runId}_${mode}_${service}`;
        await create(name);
        databases.set(service, name);
      }
      const natsNamespace = `bench-e2e-${runId}`;
      if (mode === 'split') cleanup.add(`delete NATS streams of ${natsNamespace}`, () => deleteNatsNamespace(NATS_URL, natsNamespace, KOBAN_TOPICS));
      states.push({
        mode,
        databases,
        users: Array.from({ length: USERS_COUNT }, (_, index) => `bench-${runId}-${mode}-${index}`),
        idPrefix: `e${runId}${mode[0]}`,
        sent: 0,
        funded: false,
        money: new MoneyTally(),
        approvals: new Map(),
        captured: new Set(),
        declined: 0,
        window: undefined,
        unexpected: newUnexpected(),
        natsNamespace,
      });
    }
    const pgbenchDb = `koban_bench_e2e_${runId}_pgbench`;
    if (settings.runPgbench) await create(pgbenchDb);
    log(`databases (one per service and mode, same server): ${created.join(', ')}`);
    const observer = await PgObserver.open(server.serverUrl);
    cleanup.add('close the PostgreSQL observer', () => observer.close());
    const pgbench = await PgbenchReference.prepare({ selected: settings.runPgbench, serverUrl: server.serverUrl, database: pgbenchDb, concurrencies: settings.concurrencies, signal, log });
    const hostBusyBeforePercent = await hostBusyPercentOver(HOST_PROBE_MS, signal);
    log(`host CPU busy before the load (others' work): ${fixed(hostBusyBeforePercent, 0)}% of ${navigator.hardwareConcurrency} cores`);

    const rows: Row[] = [];
    const checks = new Map<Mode, Checks>();
    for (let round = 1; round <= settings.rounds; round++) {
      // Each mode runs alone, and none while pgbench runs; the order alternates between rounds.
      for (const state of round % 2 === 1 ? states : [...states].reverse()) {
        const startAt = performance.now();
        running = await startMode(state, server.serverUrl, { kobanNodeArgs: settings.kobanNodeArgs, concurrencies: settings.concurrencies });
        const current = running;
        cleanup.track(current.processes);
        log(`round ${round}/${settings.rounds}: ${MODE_LABELS[state.mode]} — pids ${current.processes.map((koban) => koban.pid).join(', ')}, healthy in ${fixed((performance.now() - startAt) / MS_PER_S, 1)} s`);
        try {
          if (!state.funded) {
            const fundAt = performance.now();
            const unexpected = await fundUsers(current.ledgerPool, { users: state.users, idPrefix: state.idPrefix, amount: FUND_AMOUNT, signal });
            mergeUnexpected(state.unexpected, unexpected);
            if (unexpected.total > 0) throw new Error(`${unexpected.total} top-ups failed: ${unexpected.samples.join(' | ')}`);
            for (const userId of state.users) state.money.recordCreate({ transaction_id: `${state.idPrefix}fund`, type: 'add', user_id: userId, balance_type: 'cash', amount: FUND_AMOUNT });
            state.funded = true;
            log(`  topped up ${USERS_COUNT} users with ${FUND_AMOUNT} cash each through the ledger in ${fixed((performance.now() - fundAt) / MS_PER_S, 1)} s`);
          }
          for (const concurrency of settings.concurrencies) {
            const cpu = cpuWindow(current.processes);
            // Whole-server CPU: every service's database, the WAL writer and the rest (the watched database only names the sampled waits).
            const pgWindow = observer.window(state.databases.get('visa')!);
            const window = new Map<string, number>();
            const load = await runClosedLoop(current.visaPool, {
              concurrency,
              warmupMs: WARMUP_MS,
              durationMs: settings.durationS * MS_PER_S,
              nextUnit: () => paymentUnit(state),
              latencyOf: 'first',
              signal,
              onWindowStart: () => {
                cpu.begin();
                pgWindow.begin();
                state.window = window;
              },
              onWindowEnd: () => {
                cpu.end();
                pgWindow.end();
                state.window = undefined;
              },
            }).catch((error: unknown) => {
              signal.throwIfAborted();
              throw loadFailure(`${state.mode} c=${concurrency}`, current.processes, error);
            });
            mergeUnexpected(state.unexpected, load.unexpected);
            const lag = POINTS_BUILT ? await measureLag(databaseUrl(server.serverUrl, state.databases.get('points')!), window, signal) : undefined;
            assertAlive(current.processes, `${state.mode} c=${concurrency}`);
            const figures = cpu.figures();
            const pg = await pgWindow.figures();
            const row: Row = {
              round,
              mode: state.mode,
              concurrency,
              load,
              lag,
              kobanCpuPercent: percentOfCore(figures.kobanMs, load.measuredS),
              hostBusyPercent: figures.hostBusyPercent,
              kobanUsPerPair: usPer(figures.kobanMs, load.units),
              benchUsPerPair: usPer(figures.benchMs, load.units),
              pgUsPerPair: usPer(pg.cpu?.totalMs ?? Number.NaN, load.units),
              writeTxnsPerPair: pg.writeTransactions / load.units,
            };
            rows.push(row);
            log(
              `  ${state.mode.padEnd(8)} c=${String(concurrency).padEnd(3)} ${fixed(load.unitsPerS, 0).padStart(5)} auth/s (+ captures)  auth p50 ${fixed(load.p50Ms, 1)} ms  p99 ${fixed(load.p99Ms, 1)} ms  ` +
                (lag ? `lag p50 ${fixed(lag.p50Ms, 0)} ms  p99 ${fixed(lag.p99Ms, 0)} ms  drift ${fixed(lag.driftMs, 0)} ms  (${lag.appeared}/${lag.approvals} grants)  ` : 'lag not measured  ') +
                `Koban ${fixed(row.kobanCpuPercent, 0)}% of a core, PostgreSQL ${fixed(row.pgUsPerPair, 0)} µs CPU per authorization and capture, host ${fixed(row.hostBusyPercent, 0)}% busy  unexpected ${load.unexpected.total}` +
                (load.unexpected.total > 0 ? ` [${describeUnexpected(load.unexpected)}]` : ''),
            );
          }
          if (round === settings.rounds) {
            log(`  checking money and points (${state.mode}) …`);
            const check = await checkMode(state, current, server.serverUrl, signal);
            checks.set(state.mode, check);
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

    // Report: medians over rounds; ratios the median of each round's ratio to that round's pgbench.
    const summaries = settings.concurrencies.flatMap((concurrency) =>
      modes.flatMap((mode) => {
        const measured = rows.filter((row) => row.mode === mode && row.concurrency === concurrency);
        if (!medianItem(measured, (row) => row.load.unitsPerS)) return [];
        const lags = measured.map((row) => row.lag).filter((lag) => lag !== undefined);
        return [
          {
            mode,
            concurrency,
            rounds: measured,
            authPerS: median(measured.map((row) => row.load.unitsPerS)),
            p50Ms: median(measured.map((row) => row.load.p50Ms)),
            p99Ms: median(measured.map((row) => row.load.p99Ms)),
            lagP50Ms: medianOf(lags.map((lag) => lag.p50Ms)),
            lagDriftMs: median(lags.map((lag) => lag.driftMs)),
            lagP99Ms: medianOf(lags.map((lag) => lag.p99Ms)),
            appeared: lags.reduce((sum, lag) => sum + lag.appeared, 0),
            approvals: lags.reduce((sum, lag) => sum + lag.approvals, 0),
            ratio: medianPairedRatio(new Map(measured.map((row) => [row.round, row.load.unitsPerS])), pgbench.tpsByRound(concurrency)),
          },
        ];
      }),
    );
    type Summary = (typeof summaries)[number];
    const lagText = (ms: number) => (ms === Number.POSITIVE_INFINITY ? `>${LAG_WAIT_MS}` : fixed(ms, 0));
    const range = (values: readonly number[]) => (values.length > 1 ? `${fixed(Math.min(...values), 0)}–${fixed(Math.max(...values), 0)}` : '-');

    console.log('');
    console.log(`Koban end-to-end benchmark — Visa authorization, capture, points grant; PostgreSQL ${pgVersion}, ${server.kind === 'embedded' ? 'embedded (temporary cluster)' : `DATABASE_URL (${server.where})`}; ${pgSettings}`);
    console.log(
      `${settings.rounds} round(s); in each, every mode is started, measured at each client count and stopped, then pgbench runs at each client count (mode order alternates by round). ` +
        `Figures are medians over rounds; ratios the median of each round's ratio.`,
    );
    console.log(
      `${settings.durationS} s measured per row after ${WARMUP_MS} ms warm-up; each client sends an authorization, then (approved) its final sales draft for the whole amount, then the next; ` +
        `load generator, Koban and PostgreSQL share this machine's ${navigator.hardwareConcurrency} cores (${fixed(hostBusyBeforePercent, 0)}% busy with others' work just before).`,
    );
    console.log(
      `authorizations: a user drawn from ${USERS_COUNT} per mode (each topped up with ${FUND_AMOUNT} cash first), ${AUTH_AMOUNT_MIN}–${AUTH_AMOUNT_MAX} yen; one in 50 a decline probe (no capture). ` +
        `auth p50/p99: the authorization alone. lag: authorization answered → its points grant created (points DB created_at, same clock), over the window's approvals; a grant missing ${LAG_WAIT_MS} ms after the window counts as beyond; ` +
        `lag drift: the median lag of the window's last tenth of approvals minus its first tenth (≈ 0 when the points consumer keeps up, growing with a backlog).`,
    );
    console.log(`reference: ${pgbench.describe()}`);
    for (const line of skipped) console.log(`note: ${line}`);
    console.log('');
    console.log(
      formatTable(
        ['mode', 'clients', 'auth/s', 'auth/s range', 'auth p50 ms', 'auth p99 ms', 'lag p50 ms', 'lag p99 ms', 'lag drift ms', 'grants seen', 'pgbench tps', 'ratio'],
        summaries.map((summary) => [
          summary.mode,
          String(summary.concurrency),
          fixed(summary.authPerS, 0),
          range(summary.rounds.map((row) => row.load.unitsPerS)),
          fixed(summary.p50Ms, 1),
          fixed(summary.p99Ms, 1),
          POINTS_BUILT ? lagText(summary.lagP50Ms) : '-',
          POINTS_BUILT ? lagText(summary.lagP99Ms) : '-',
          POINTS_BUILT ? lagText(summary.lagDriftMs) : '-',
          POINTS_BUILT ? `${summary.appeared}/${summary.approvals}` : '-',
          fixed(pgbench.tps(summary.concurrency), 0),
          fixed(summary.ratio.ratio, 2),
        ]),
      ),
    );

    const at = (mode: Mode, concurrency: number): Summary | undefined => summaries.find((summary) => summary.mode === mode && summary.concurrency === concurrency);
    const targetLines: Array<{ met: boolean | undefined; text: string }> = [];
    for (const mode of modes) {
      const high = at(mode, TARGET_CONCURRENCY_THROUGHPUT);
      const low = at(mode, TARGET_CONCURRENCY_LATENCY);
      const ratioText = `${mode}: authorizations/s ≥ ${TARGET_OVER_PGBENCH_MIN}× pgbench tps at ${TARGET_CONCURRENCY_THROUGHPUT} clients`;
      targetLines.push(
        high && high.ratio.rounds > 0
          ? { met: high.ratio.ratio >= TARGET_OVER_PGBENCH_MIN, text: `${ratioText}: ${fixed(high.authPerS, 0)} vs ${fixed(pgbench.tps(TARGET_CONCURRENCY_THROUGHPUT), 0)} tps, median ratio ${fixed(high.ratio.ratio, 2)}` }
          : { met: undefined, text: `${ratioText}: not measured` },
      );
      const p99Text = `${mode}: authorization p99 < ${TARGET_AUTH_P99_MS_MAX} ms at ${TARGET_CONCURRENCY_LATENCY} clients`;
      targetLines.push(low ? { met: low.p99Ms < TARGET_AUTH_P99_MS_MAX, text: `${p99Text}: ${fixed(low.p99Ms, 1)} ms` } : { met: undefined, text: `${p99Text}: not measured` });
      const lagTarget = `${mode}: authorization → pending points lag p99 < ${TARGET_LAG_P99_MS_MAX} ms at ${TARGET_CONCURRENCY_THROUGHPUT} clients`;
      targetLines.push(
        high && POINTS_BUILT ? { met: high.lagP99Ms < TARGET_LAG_P99_MS_MAX, text: `${lagTarget}: ${lagText(high.lagP99Ms)} ms` } : { met: undefined, text: `${lagTarget}: not measured` },
      );
    }
    console.log('');
    console.log('Where the time goes (the round with the median throughput; CPU per authorization with its capture and what they set off in the window — consumers, relays, bus — in µs)');
    const pgbenchPgUs = (concurrency: number) => {
      const typical = medianItem(pgbench.measured(concurrency), (row) => row.figures.tps);
      return typical ? usPer(typical.pg.cpu?.totalMs ?? Number.NaN, typical.figures.transactions) : Number.NaN;
    };
    console.log(
      formatTable(
        ['mode', 'clients', 'auth/s', 'Koban µs', 'load gen µs', 'PostgreSQL µs', 'write txns', 'host busy %', 'pgbench: PostgreSQL µs/txn', 'ratio', 'ceiling ratio'],
        summaries.flatMap((summary) => {
          const row = medianItem(summary.rounds, (item) => item.load.unitsPerS);
          if (!row) return [];
          return [
            [
              summary.mode,
              String(summary.concurrency),
              fixed(row.load.unitsPerS, 0),
              fixed(row.kobanUsPerPair, 0),
              fixed(row.benchUsPerPair, 0),
              fixed(row.pgUsPerPair, 0),
              fixed(row.writeTxnsPerPair, 1),
              fixed(row.hostBusyPercent, 0),
              fixed(pgbenchPgUs(summary.concurrency), 0),
              fixed(summary.ratio.ratio, 2),
              fixed(ratioCeiling(row.pgUsPerPair, navigator.hardwareConcurrency, pgbench.tps(summary.concurrency)), 2),
            ],
          ];
        }),
      ),
    );
    console.log(
      `   PostgreSQL µs: every process of the server (all of the mode's databases, WAL writer, checkpointer). write txns: transaction ids assigned server-wide (a pgbench transaction is one). ceiling ratio: the ratio if Koban, the load generator and the broker cost nothing ` +
        `and PostgreSQL kept all ${navigator.hardwareConcurrency} cores busy at its CPU per authorization — ${navigator.hardwareConcurrency} × 10⁶ µs ÷ PostgreSQL µs ÷ pgbench tps. ` +
        `A consumer falling behind (lag drift > 0) leaves part of its work outside the window, so the ceiling then flatters.`,
    );

    console.log('');
    console.log('Targets (issue 12) — reported, not part of the exit code');
    for (const line of targetLines) console.log(`  ${line.met === undefined ? 'NOT MEASURED' : line.met ? 'MET    ' : 'NOT MET'}  ${line.text}`);

    console.log('');
    let pass = true;
    for (const state of states) {
      console.log(`${state.mode}: ${state.approvals.size} authorizations approved (${state.captured.size} captured), ${state.declined} declined, warm-ups included`);
      if (state.unexpected.total > 0) pass = false;
      for (const line of unexpectedLines(state.unexpected)) console.log(`  ${line}`);
      const check = checks.get(state.mode);
      console.log(`  money and points check: ${check === undefined ? 'NOT RUN' : check.pass ? 'PASS' : 'FAIL'}`);
      for (const line of check?.lines ?? []) console.log(`    ${line}`);
      if (!check?.pass) pass = false;
    }
    console.log('');
    console.log('figures as JSON (one line):');
    console.log(
      JSON.stringify({
        benchmark: 'koban-e2e',
        at: new Date().toISOString(),
        postgres: { version: pgVersion, source: server.kind, settings: pgSettings },
        settings: { duration_s: settings.durationS, rounds: settings.rounds, warmup_ms: WARMUP_MS, concurrencies: settings.concurrencies, modes, cores: navigator.hardwareConcurrency },
        notes: skipped,
        pgbench: pgbench.available ? { version: pgbench.note, scale: pgbench.scale, mode: 'tpcb-like' } : { skipped: pgbench.note },
        summaries: summaries.map((summary) => ({
          mode: summary.mode,
          clients: summary.concurrency,
          auth_per_s_median: round(summary.authPerS, 1),
          auth_p50_ms_median: round(summary.p50Ms, 2),
          auth_p99_ms_median: round(summary.p99Ms, 2),
          lag_p50_ms_median: round(summary.lagP50Ms, 1),
          lag_p99_ms_median: round(summary.lagP99Ms, 1),
          lag_drift_ms_median: round(summary.lagDriftMs, 1),
          grants_seen: POINTS_BUILT ? `${summary.appeared}/${summary.approvals}` : null,
          pgbench_tps_median: round(pgbench.tps(summary.concurrency), 1),
          ratio_median: round(summary.ratio.ratio, 3),
        })),
        rows: rows.map((row) => ({
          round: row.round,
          mode: row.mode,
          clients: row.concurrency,
          auth_per_s: round(row.load.unitsPerS, 1),
          auth_p50_ms: round(row.load.p50Ms, 2),
          auth_p99_ms: round(row.load.p99Ms, 2),
          lag_p50_ms: row.lag ? round(row.lag.p50Ms, 1) : null,
          lag_p99_ms: row.lag ? round(row.lag.p99Ms, 1) : null,
          lag_drift_ms: row.lag ? round(row.lag.driftMs, 1) : null,
          koban_cpu_percent: round(row.kobanCpuPercent, 1),
          host_busy_percent: round(row.hostBusyPercent, 1),
          koban_cpu_us_per_auth: round(row.kobanUsPerPair, 0),
          bench_cpu_us_per_auth: round(row.benchUsPerPair, 0),
          postgres_cpu_us_per_auth: round(row.pgUsPerPair, 0),
          write_transactions_per_auth: round(row.writeTxnsPerPair, 2),
        })),
        pgbench_rows: pgbench.rows.map((row) => ('figures' in row ? { round: row.round, clients: row.concurrency, tps: round(row.figures.tps, 1) } : row)),
        targets: targetLines.map((line) => ({ met: line.met ?? null, text: line.text })),
        checks: Object.fromEntries([...checks].map(([mode, check]) => [mode, check.pass])),
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
