// The fault schedule of `npm run chaos`: which fault hits what, and when, as
// a pure function of the seed, the run's length, its profile and what runs —
// the same seed gives the same schedule, so a failing run can be replayed.
// Faults that live inside a process (a relay or consumer crash, a poison
// window, clock skew) are not acts of the runner but settings of the process
// (KOBAN_FAILPOINTS, KOBAN_CLOCK_SKEW_MS) given at each (re)spawn.
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

export const FAULT_KINDS = [
  /** SIGKILL of a service process, then a restart with the same environment. */
  'service_kill',
  /** PostgreSQL stopped with an immediate shutdown (no checkpoint, every connection dropped), started again after a pause. */
  'postgres_restart',
  /** The broker (NATS, the SNS/SQS emulator) stopped, started again after a pause. */
  'broker_restart',
  /** A window in which the client gives up on its requests within milliseconds (after the server committed) and resends with the same id. */
  'client_timeout',
  /** A producer's outbox relay killed between the broker accepting a batch and the rows being marked published. */
  'relay_crash',
  /** A consumer killed in the middle of a delivery: before its handler ran, or after its effect committed and before the ack. */
  'consumer_crash',
  /** One subscription's handler throws for a while, then heals. */
  'poison_window',
  /** A service restarted with its clock shifted, restarted again without the shift at the window's end. */
  'clock_skew',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export type Profile = 'short' | 'long' | 'soak';
export type BusKind = 'postgres' | 'nats' | 'sns-sqs';

/**
 * A process of the run and what it does: a producer owns an outbox — `steady` when card traffic keeps it
 * publishing all through the run (a relay crash goes there: accounts publishes once per user, mostly at
 * the start, so a crash window on it may see no batch); consumers own subscriptions, listed busiest first
 * (poison windows go to the first, since one on a quiet subscription would see no event).
 */
export type ProcessRole = Readonly<{ name: string; producer: false | 'steady' | 'sparse'; subscriptions: readonly string[] }>;

export type Fault = Readonly<{
  /** Since the traffic started. */
  at_ms: number;
  kind: FaultKind;
  /** The process (or `postgres`, the broker's name, `client`) it hits. */
  target: string;
  /** How long it lasts: down time, a timeout or poison window, the skew; 0 for an instant. */
  window_ms: number;
  /** The failpoint (`outbox.after_publish`, `consumer.handle`, …) and its subscription scope, for faults set through KOBAN_FAILPOINTS. */
  failpoint?: string;
  scope?: string;
  skew_ms?: number;
}>;

export type ScheduleOptions = Readonly<{
  seed: number;
  durationMs: number;
  profile: Profile;
  bus: BusKind;
  /** PostgreSQL is the run's own (it may be restarted); false on a server given by URL. */
  ownPostgres: boolean;
  processes: readonly ProcessRole[];
}>;

/** Faults of each kind a long profile injects (the issue's bar), and the short profile's (one each, service kills twice). */
export const LONG_FAULTS_PER_KIND = 50;
/** Drawn per kind in a long run: a few more than the bar (one that finds no free time on any process is dropped). */
const LONG_FAULTS_DRAWN_PER_KIND = 60;
/**
 * How long a process counts as busy after it is killed or restarted: it comes back within this, on a loaded
 * machine. In a long run, faults that act on one process (a kill, a skew, a failpoint window and the crash it
 * ends in) never overlap on it: a window that opened while its process was down after an earlier fault was
 * not armed (the first long run injected only 30–35 of 60 failpoint faults of each kind).
 */
const PROCESS_RESPAWN_ALLOWANCE_MS = 8_000;
const FAILPOINT_KINDS: ReadonlySet<FaultKind> = new Set(['relay_crash', 'consumer_crash', 'poison_window']);
/** Tries at a free moment for one fault before it is dropped. */
const PLACEMENT_TRIES_MAX = 200;
/** A clock shift a service is claimed to tolerate: well inside the holds' timeout and the bus's ack deadlines. */
export const CLOCK_SKEW_MAX_MS = 2_000;
/** Faults are drawn inside this share of the run, so the last ones still meet traffic and the drain starts clean. */
const FIRST_FAULT_AT = 0.08;
const LAST_FAULT_AT = 0.85;

/** The kinds this run can inject: no PostgreSQL restart on a server the run does not own, no broker restart when PostgreSQL is the broker. */
export function supportedKinds(options: Pick<ScheduleOptions, 'bus' | 'ownPostgres'>): FaultKind[] {
  return FAULT_KINDS.filter((kind) => (kind !== 'postgres_restart' || options.ownPostgres) && (kind !== 'broker_restart' || options.bus !== 'postgres'));
}

export function planFaults(options: ScheduleOptions): Fault[] {
  const rng = xoroshiro128plus(options.seed ^ 0x5eed_fa17);
  const between = (from: number, to: number) => uniformInt(rng, Math.ceil(from), Math.floor(to));
  const pick = <T>(items: readonly T[]): T => items[between(0, items.length - 1)]!;
  const kinds = supportedKinds(options);
  const first = options.durationMs * FIRST_FAULT_AT;
  const last = options.durationMs * LAST_FAULT_AT;
  // Short: one of each kind (two service kills) in its own slot, in a seeded order.
  const draws: Array<{ kind: FaultKind; at_ms: number }> = [];
  // A soak measures growth under steady traffic: no faults.
  if (options.profile === 'soak') return [];
  if (options.profile === 'short') {
    const order = [...kinds, 'service_kill' as const];
    for (let index = order.length - 1; index > 0; index -= 1) {
      const other = between(0, index);
      [order[index], order[other]] = [order[other]!, order[index]!];
    }
    const slot = (last - first) / order.length;
    order.forEach((kind, index) => draws.push({ kind, at_ms: between(first + index * slot, first + index * slot + slot * 0.6) }));
  }
  // Up to CRASH_WINDOW_MS, ending before the run does.
  const crashWindow = (at_ms: number) => Math.min(CRASH_WINDOW_MS, Math.floor(options.durationMs - at_ms - FAILPOINT_LEAD_MS - 1));
  const processes = options.processes.map((role) => role.name);
  const producers = options.processes.filter((role) => role.producer === 'steady').map((role) => role.name);
  const consumers = options.processes.filter((role) => role.subscriptions.length > 0);
  const make = (kind: FaultKind, at_ms: number): Fault => {
    switch (kind) {
      case 'service_kill':
        return { at_ms, kind, target: pick(processes), window_ms: 0 };
      case 'postgres_restart':
        return { at_ms, kind, target: 'postgres', window_ms: between(300, 2_000) };
      case 'broker_restart':
        return { at_ms, kind, target: options.bus, window_ms: between(500, 3_000) };
      case 'client_timeout':
        return { at_ms, kind, target: 'client', window_ms: between(1_000, 3_000) };
      case 'relay_crash':
        return { at_ms, kind, target: pick(producers), window_ms: crashWindow(at_ms), failpoint: 'outbox.after_publish' };
      case 'consumer_crash':
        return { at_ms, kind, target: pick(consumers).name, window_ms: crashWindow(at_ms), failpoint: pick(['consumer.handle', 'consumer.after_handle']) };
      case 'poison_window': {
        const consumer = pick(consumers);
        return { at_ms, kind, target: consumer.name, window_ms: between(2_000, 6_000), failpoint: 'consumer.handle', scope: consumer.subscriptions[0] };
      }
      case 'clock_skew': {
        const skew = between(1, CLOCK_SKEW_MAX_MS) * (between(0, 1) === 0 ? -1 : 1);
        return { at_ms, kind, target: pick(processes), window_ms: between(3_000, 8_000), skew_ms: skew };
      }
    }
  };
  const faults: Fault[] = [];
  if (options.profile === 'short') {
    for (const { kind, at_ms } of draws) faults.push(make(kind, at_ms));
  } else {
    // Long: many of each at seeded times, kinds interleaved so that none is left the least free time, those
    // with the fewest possible targets (the failpoints) placed first in each round.
    const busy = new Map<string, Array<readonly [number, number]>>();
    const order = [...kinds].sort((a, b) => Number(FAILPOINT_KINDS.has(b)) - Number(FAILPOINT_KINDS.has(a)));
    for (let count = 0; count < LONG_FAULTS_DRAWN_PER_KIND; count += 1) {
      for (const kind of order) {
        for (let attempt = 0; attempt < PLACEMENT_TRIES_MAX; attempt += 1) {
          const fault = make(kind, between(first, last));
          const span = processSpan(fault);
          const taken = busy.get(fault.target) ?? [];
          if (span !== undefined && taken.some(([from, until]) => span[0] < until && from < span[1])) continue;
          if (span !== undefined) busy.set(fault.target, [...taken, span]);
          faults.push(fault);
          break;
        }
      }
    }
  }
  return faults.sort((a, b) => a.at_ms - b.at_ms || a.kind.localeCompare(b.kind));
}

/** The time a fault keeps its process (a service, PostgreSQL, the broker) busy — its window, then its way back — or undefined for the client's. */
export function processSpan(fault: Fault): readonly [number, number] | undefined {
  switch (fault.kind) {
    case 'service_kill':
      return [fault.at_ms, fault.at_ms + PROCESS_RESPAWN_ALLOWANCE_MS];
    case 'clock_skew':
      return [fault.at_ms, fault.at_ms + fault.window_ms + PROCESS_RESPAWN_ALLOWANCE_MS];
    case 'relay_crash':
    case 'consumer_crash':
      return [fault.at_ms, fault.at_ms + FAILPOINT_LEAD_MS + fault.window_ms + PROCESS_RESPAWN_ALLOWANCE_MS];
    case 'poison_window':
      return [fault.at_ms, fault.at_ms + FAILPOINT_LEAD_MS + fault.window_ms];
    case 'postgres_restart':
    case 'broker_restart':
      // PostgreSQL or the broker: one restart at a time (three NATS restarts within 2 s of one another were drawn once).
      return [fault.at_ms, fault.at_ms + fault.window_ms + PROCESS_RESPAWN_ALLOWANCE_MS];
    default:
      return undefined;
  }
}

/** A crash failpoint fires at the first pass inside its window, once (respawned, the process is not armed with it again): a long window only makes a pass likelier, as traffic or a peer may pause. */
const CRASH_WINDOW_MS = 6_000;

/** A failpoint window opens this long after its fault's moment: the runner respawns the process with it at that moment, and it must be up first. */
export const FAILPOINT_LEAD_MS = 3_000;

/**
 * The failpoint settings of one process spawned at `nowEpochMs` in a run whose traffic started at
 * `startEpochMs`: every window still to come, one entry each (a name may repeat with other windows), so a
 * process is armed for the whole run when it starts and never restarted to be armed. A crash window that
 * has begun is left out: the process is being spawned again after it fired (or after something else
 * killed it), and firing again at once would turn one fault into a crash loop.
 */
export function failpointsFor(faults: readonly Fault[], processName: string, startEpochMs: number, nowEpochMs: number): string | undefined {
  const entries: string[] = [];
  for (const fault of faults) {
    if (fault.target !== processName || fault.failpoint === undefined) continue;
    const from = startEpochMs + fault.at_ms + FAILPOINT_LEAD_MS;
    const until = from + fault.window_ms;
    const action = fault.kind === 'poison_window' ? 'throw' : 'crash';
    if (until <= nowEpochMs || (action === 'crash' && from <= nowEpochMs)) continue;
    entries.push(`${fault.failpoint}${fault.scope === undefined ? '' : `@${fault.scope}`}=${action};from=${from};until=${until}`);
  }
  return entries.length === 0 ? undefined : entries.join(',');
}

/** Counts per kind, every kind named (0 when none). */
export function countByKind(faults: ReadonlyArray<{ kind: FaultKind }>): Record<FaultKind, number> {
  const counts = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, 0])) as Record<FaultKind, number>;
  for (const fault of faults) counts[fault.kind] += 1;
  return counts;
}
