// Goal: the settings every Koban-over-HTTP benchmark reads from its environment (BENCH_DURATION_S,
// BENCH_ROUNDS, BENCH_CONCURRENCY, BENCH_SCENARIOS, …), each refused with a message saying what to set.

const DURATION_S_MAX = 600;
const ROUNDS_MAX = 20;
const CONCURRENCY_MAX = 1_000;
/** BENCH_SCENARIOS also accepts this, for the pgbench reference runs. */
export const PGBENCH_SCENARIO = 'pgbench';

export type RunSettings<Mode extends string> = {
  durationS: number;
  rounds: number;
  concurrencies: number[];
  /** The chosen modes, in the order the benchmark lists them. */
  modes: Mode[];
  runPgbench: boolean;
  kobanNodeArgs: string[];
  keepDatabases: boolean;
  databaseUrl: string | undefined;
};

export function readRunSettings<Mode extends string>(
  env: NodeJS.ProcessEnv,
  defaults: { modes: readonly Mode[]; durationS: number; rounds: number; concurrencies: string },
): RunSettings<Mode> {
  const durationText = env.BENCH_DURATION_S || String(defaults.durationS);
  const durationS = Number(durationText);
  if (!Number.isInteger(durationS) || durationS < 1 || durationS > DURATION_S_MAX) {
    throw new Error(`BENCH_DURATION_S=${JSON.stringify(durationText)}: set it to whole seconds, 1–${DURATION_S_MAX}`);
  }
  const concurrencyText = env.BENCH_CONCURRENCY || defaults.concurrencies;
  const concurrencies = concurrencyText.split(',').map((part) => Number(part.trim()));
  if (concurrencies.length === 0 || concurrencies.some((c) => !Number.isInteger(c) || c < 1 || c > CONCURRENCY_MAX)) {
    throw new Error(`BENCH_CONCURRENCY=${JSON.stringify(concurrencyText)}: set it to a comma-separated list of integers 1–${CONCURRENCY_MAX}, e.g. 16,64`);
  }
  const roundsText = env.BENCH_ROUNDS || String(defaults.rounds);
  const rounds = Number(roundsText);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > ROUNDS_MAX) {
    throw new Error(`BENCH_ROUNDS=${JSON.stringify(roundsText)}: set it to a whole number of rounds, 1–${ROUNDS_MAX}`);
  }
  const known: string[] = [...defaults.modes, PGBENCH_SCENARIO];
  const scenarioText = env.BENCH_SCENARIOS || known.join(',');
  const chosen = scenarioText.split(',').map((part) => part.trim()).filter((part) => part !== '');
  const unknown = chosen.filter((name) => !known.includes(name));
  if (chosen.length === 0 || unknown.length > 0) {
    throw new Error(`BENCH_SCENARIOS=${JSON.stringify(scenarioText)}: set it to a comma-separated list of ${known.join(', ')}${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`);
  }
  return {
    durationS,
    rounds,
    concurrencies,
    modes: defaults.modes.filter((mode) => chosen.includes(mode)),
    runPgbench: chosen.includes(PGBENCH_SCENARIO),
    kobanNodeArgs: (env.BENCH_KOBAN_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== ''),
    keepDatabases: env.BENCH_KEEP_DBS === '1',
    databaseUrl: env.DATABASE_URL || undefined,
  };
}
