#!/usr/bin/env node
// Goal: the SQL floor of a card authorization. pgbench replays the statements Visa's store sends for one
// approved authorization (bench/sql/visa-authorization.sql) against a database migrated by the product's own
// migrations, beside pgbench TPC-B-like on the same server, in alternating rounds. No Node.js, HTTP, ledger or
// relay takes part, so the ratio is the most `bench:payments` could reach if all of those cost nothing: an
// upper bound for authorizations/s ÷ pgbench tps.
import path from 'node:path';
import { createLogger } from '../src/platform/logger.ts';
import { createPool } from '../src/platform/postgres/pool.ts';
import { migratePayments } from '../src/services/payments/store/postgres/postgres-payment-store.ts';
import { createDatabase, databaseUrl, dropDatabase, providePgServer, serverVersion } from './lib/pg-server.ts';
import { findPgbench, pgbenchInit, pgbenchRun, pgbenchScale, pgbenchVersion } from './lib/pgbench.ts';
import { fixed, formatTable, runClock } from './lib/report.ts';
import { median, medianPairedRatio } from './lib/rounds.ts';
import { guardRun, runMain } from './lib/run-guard.ts';
import { readRunSettings } from './lib/settings.ts';

const VISA_SCRIPT = path.join(import.meta.dirname, 'sql', 'visa-authorization.sql');
const MODE = 'visa-sql';
/** The whole run may take this long (setup, rounds, cleanup) before it is aborted. */
const RUN_BUDGET_MS = 30 * 60_000;
/** bench:payments' target: authorizations/s at least this share of pgbench tps. */
const TARGET_OVER_PGBENCH_MIN = 0.5;

async function main(): Promise<number> {
  const settings = readRunSettings(process.env, { modes: [MODE] as const, durationS: 5, rounds: 3, concurrencies: '16,64' });
  const clock = runClock();
  const abort = new AbortController();
  const guard = guardRun(abort, RUN_BUDGET_MS);
  const bin = await findPgbench();
  if (bin === undefined) throw new Error('pgbench is not on PATH: install PostgreSQL client tools');
  const server = await providePgServer(settings.databaseUrl);
  const runId = Date.now().toString(36);
  const visaDb = `koban_bench_floor_${runId}_visa`;
  const tpcbDb = `koban_bench_floor_${runId}_pgbench`;
  try {
    clock.log(`PostgreSQL ${await serverVersion(server.serverUrl)} (${server.kind}: ${server.where}); ${await pgbenchVersion(bin, abort.signal)}`);
    await createDatabase(server.serverUrl, visaDb);
    await createDatabase(server.serverUrl, tpcbDb);
    const visaUrl = databaseUrl(server.serverUrl, visaDb);
    const logger = createLogger('warn');
    const pool = createPool({ url: visaUrl, size: 2, applicationName: 'koban-bench-floor', logger });
    try {
      await migratePayments(pool, visaUrl, logger, 'visa');
    } finally {
      await pool.end();
    }
    const scale = pgbenchScale(settings.concurrencies);
    clock.log(`pgbench -i -s ${scale}`);
    await pgbenchInit(bin, databaseUrl(server.serverUrl, tpcbDb), scale, abort.signal);

    // tps by scenario, client count and round.
    const tps = { tpcb: new Map<number, Map<number, number>>(), [MODE]: new Map<number, Map<number, number>>() };
    for (let round = 1; round <= settings.rounds; round++) {
      // The order alternates by round, so a machine that speeds up or slows down favours neither.
      const order = round % 2 === 1 ? (['tpcb', MODE] as const) : ([MODE, 'tpcb'] as const);
      for (const concurrency of settings.concurrencies) {
        for (const scenario of order) {
          const figures = await pgbenchRun(
            bin,
            databaseUrl(server.serverUrl, scenario === 'tpcb' ? tpcbDb : visaDb),
            concurrency,
            settings.durationS,
            abort.signal,
            scenario === 'tpcb' ? undefined : VISA_SCRIPT,
          );
          if (figures.failedTransactions > 0) throw new Error(`${scenario} at ${concurrency} clients: ${figures.failedTransactions} failed transactions`);
          const byRound = tps[scenario].get(concurrency) ?? new Map<number, number>();
          byRound.set(round, figures.tps);
          tps[scenario].set(concurrency, byRound);
          clock.log(`round ${round}/${settings.rounds}: ${scenario} at ${concurrency} clients: ${fixed(figures.tps, 0)} tps, ${fixed(figures.latencyAvgMs, 1)} ms average`);
        }
      }
    }

    const rows = settings.concurrencies.map((concurrency) => {
      const visa = tps[MODE].get(concurrency)!;
      const tpcb = tps.tpcb.get(concurrency)!;
      const ratio = medianPairedRatio(visa, tpcb);
      return [String(concurrency), fixed(median([...visa.values()]), 0), fixed(median([...tpcb.values()]), 0), fixed(ratio.ratio, 2), fixed(TARGET_OVER_PGBENCH_MIN * median([...tpcb.values()]), 0)];
    });
    console.log(
      `\nVisa's SQL for one approved authorization, alone (${settings.rounds} round(s) of ${settings.durationS} s; medians; ratio = median of each round's ratio):\n` +
        formatTable(['clients', 'visa SQL/s', 'pgbench tps', 'ratio', `${TARGET_OVER_PGBENCH_MIN}× pgbench`], rows) +
        `\nAn authorization also needs its ledger hold, HTTP, Node.js and the relay on the same cores: bench:payments can only be slower than this row.`,
    );
    return 0;
  } finally {
    guard.disarm();
    if (!settings.keepDatabases) {
      for (const name of [visaDb, tpcbDb]) await dropDatabase(server.serverUrl, name).catch((error: unknown) => clock.log(`could not drop ${name}: ${String(error)}`));
    }
    await server.stop();
  }
}

await runMain(main);
