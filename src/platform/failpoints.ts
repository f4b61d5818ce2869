// Failpoints: named places in the product where a test or a chaos run can make
// the process crash, throw or stall, to prove that what the design claims about
// crashes and retries holds. Testing only. `KOBAN_FAILPOINTS` lists the rules:
//   <name>[@<scope>]=<action>[;p=<0..1>][;from=<epoch ms>][;until=<epoch ms>]
// comma-separated; actions `crash` (one stderr line, then SIGKILL), `throw`,
// `delay:<ms>`. Unset, every failpoint is one comparison and returns nothing.
import { writeSync } from 'node:fs';
import { hostname } from 'node:os';

/** Where failpoints sit; a name not listed here is refused (a typo would otherwise test nothing). */
export const FAILPOINT_NAMES = [
  /** The outbox relay: the bus accepted a batch, the rows are not yet marked published. */
  'outbox.after_publish',
  /** A bus consumer, before a delivery's handler runs (scope: the subscription). */
  'consumer.handle',
  /** A bus consumer, after the handler's effect committed, before the ack (scope: the subscription). */
  'consumer.after_handle',
  /** The ledger: a write committed, its answer not yet returned. */
  'ledger.after_commit',
] as const;
export type FailpointName = (typeof FAILPOINT_NAMES)[number];

/** The longest `delay:<ms>`: long enough to outlast any deadline, short enough to end. */
export const FAILPOINT_DELAY_MS_MAX = 600_000;
/** Entries in `KOBAN_FAILPOINTS`, at most. */
export const FAILPOINT_ENTRIES_MAX = 64;
const SCOPE_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
const EPOCH_MS_PATTERN = /^\d{1,16}$/;
const PROBABILITY_PATTERN = /^(0(\.\d+)?|1(\.0+)?|\.\d+)$/;

export type FailpointAction = Readonly<{ kind: 'crash' }> | Readonly<{ kind: 'throw' }> | Readonly<{ kind: 'delay'; ms: number }>;

export type FailpointRule = Readonly<{
  name: FailpointName;
  /** Undefined: every scope. */
  scope: string | undefined;
  action: FailpointAction;
  /** The chance it fires on each pass, 0–1. */
  probability: number;
  /** Active from this instant (epoch ms, inclusive); undefined: always was. */
  fromMs: number | undefined;
  /** Active until this instant (epoch ms, exclusive); undefined: never ends. */
  untilMs: number | undefined;
}>;

export class FailpointsError extends Error {
  override name = 'FailpointsError';
}

/** Parses `KOBAN_FAILPOINTS`; throws FailpointsError naming the entry at fault and what is wrong with it. */
export function parseFailpoints(text: string): FailpointRule[] {
  if (text.trim() === '') return [];
  const entries = text.split(',').map((entry) => entry.trim());
  if (entries.length > FAILPOINT_ENTRIES_MAX) throw new FailpointsError(`${entries.length} entries; at most ${FAILPOINT_ENTRIES_MAX}`);
  return entries.map((entry, index) => {
    try {
      return parseEntry(entry);
    } catch (error) {
      throw new FailpointsError(`entry ${index + 1} ${JSON.stringify(entry)}: ${(error as Error).message}`);
    }
  });
}

function parseEntry(entry: string): FailpointRule {
  if (entry === '') throw new Error('empty entry (a stray comma?)');
  const equals = entry.indexOf('=');
  if (equals < 0) throw new Error('expected <name>[@<scope>]=<action>');
  const target = entry.slice(0, equals);
  const [actionText, ...options] = entry.slice(equals + 1).split(';');
  const at = target.indexOf('@');
  const name = at < 0 ? target : target.slice(0, at);
  const scope = at < 0 ? undefined : target.slice(at + 1);
  if (!(FAILPOINT_NAMES as readonly string[]).includes(name)) throw new Error(`unknown failpoint ${JSON.stringify(name)}; one of ${FAILPOINT_NAMES.join(', ')}`);
  if (scope !== undefined && !SCOPE_PATTERN.test(scope)) throw new Error(`scope ${JSON.stringify(scope)} must be 1–128 characters of [A-Za-z0-9._:-]`);
  const rule: { probability: number; fromMs: number | undefined; untilMs: number | undefined } = { probability: 1, fromMs: undefined, untilMs: undefined };
  const seen = new Set<string>();
  for (const option of options) {
    const [key, value, ...rest] = option.split('=');
    if (value === undefined || rest.length > 0) throw new Error(`option ${JSON.stringify(option)}: expected p=, from= or until=`);
    if (seen.has(key!)) throw new Error(`option ${key} given twice`);
    seen.add(key!);
    switch (key) {
      case 'p':
        if (!PROBABILITY_PATTERN.test(value)) throw new Error(`p=${value}: expected a probability 0–1, e.g. p=0.1`);
        rule.probability = Number(value);
        break;
      case 'from':
      case 'until': {
        if (!EPOCH_MS_PATTERN.test(value) || !Number.isSafeInteger(Number(value))) throw new Error(`${key}=${value}: expected an instant in epoch milliseconds, e.g. ${key}=${Date.UTC(2030, 0, 1)}`);
        if (key === 'from') rule.fromMs = Number(value);
        else rule.untilMs = Number(value);
        break;
      }
      default:
        throw new Error(`unknown option ${JSON.stringify(key)}; expected p=, from= or until=`);
    }
  }
  if (rule.fromMs !== undefined && rule.untilMs !== undefined && rule.untilMs <= rule.fromMs) throw new Error(`until=${rule.untilMs} must be after from=${rule.fromMs}`);
  return Object.freeze({ name: name as FailpointName, scope, action: parseAction(actionText!), ...rule });
}

function parseAction(text: string): FailpointAction {
  if (text === 'crash' || text === 'throw') return { kind: text };
  const delay = /^delay:(\d{1,7})$/.exec(text);
  if (delay !== null && Number(delay[1]) <= FAILPOINT_DELAY_MS_MAX) return { kind: 'delay', ms: Number(delay[1]) };
  throw new Error(`action ${JSON.stringify(text)}: expected crash, throw or delay:<ms> (0–${FAILPOINT_DELAY_MS_MAX})`);
}

/**
 * The action due at this pass, if any: the first rule for the name whose scope
 * matches (or that has none), whose window holds `nowMs`, and whose dice roll
 * (`random()` in [0, 1)) falls under its probability.
 */
export function dueAction(
  rules: readonly FailpointRule[],
  name: FailpointName,
  scope: string | undefined,
  nowMs: number,
  random: () => number,
): FailpointAction | undefined {
  for (const rule of rules) {
    if (rule.name !== name || (rule.scope !== undefined && rule.scope !== scope)) continue;
    if ((rule.fromMs !== undefined && nowMs < rule.fromMs) || (rule.untilMs !== undefined && nowMs >= rule.untilMs)) continue;
    if (rule.probability < 1 && random() >= rule.probability) continue;
    return rule.action;
  }
  return undefined;
}

/** The process's rules: none until the host installs what KOBAN_FAILPOINTS says. */
let installed: readonly FailpointRule[] = [];

/** Called once at start-up with the parsed setting (and by tests that run failpoints in process). */
export function installFailpoints(rules: readonly FailpointRule[]): void {
  installed = Object.freeze([...rules]);
}

/**
 * Passes the failpoint `name`: returns undefined at once when nothing is due
 * (always, with KOBAN_FAILPOINTS unset), else acts — crash never returns,
 * throw throws, delay returns a promise to await.
 */
export function failpoint(name: FailpointName, scope?: string): Promise<void> | undefined {
  if (installed.length === 0) return undefined;
  const action = dueAction(installed, name, scope, Date.now(), Math.random);
  if (action === undefined) return undefined;
  switch (action.kind) {
    case 'crash':
      // Synchronously, so the line is out before the process dies.
      fired(name, scope, 'crash');
      process.kill(process.pid, 'SIGKILL');
      // SIGKILL is delivered at once; this only stops the caller should it not be.
      throw new Error(`failpoint ${name} crashed the process`);
    case 'throw':
      // Said, too: a retried delivery's error may be logged nowhere else, and a fault runner counts these.
      fired(name, scope, 'throw');
      throw new Error(`failpoint ${name}${scope === undefined ? '' : `@${scope}`} threw`);
    case 'delay':
      return new Promise((resolve) => setTimeout(resolve, action.ms));
  }
}

/** The one line a failpoint that fires writes to stderr: pino's shape, so log tools read it. */
function fired(name: FailpointName, scope: string | undefined, action: 'crash' | 'throw'): void {
  writeSync(2, `${JSON.stringify({ level: 60, time: Date.now(), pid: process.pid, hostname: hostname(), msg: 'failpoint fired', failpoint: name, scope: scope ?? null, action })}\n`);
}
