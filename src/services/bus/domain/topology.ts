// Topics and subscriptions, declared in code. A producer names only a topic;
// a consumer declares its subscription (topic, optional filter, retry policy)
// next to its handler, so adding a consumer touches no producer.
import type { Topology } from '../../../contracts/bus/event-bus.ts';
import type { FilterPolicy } from '../../../contracts/bus/filter-policy.ts';
import { KOBAN_TOPICS } from '../../../contracts/events/topics.ts';
import { filterPolicyProblem } from './filter.ts';
import {
  ACK_WAIT_MS_DEFAULT,
  ACK_WAIT_MS_MAX,
  ACK_WAIT_MS_MIN,
  MAX_DELIVERIES_DEFAULT,
  MAX_DELIVERIES_LIMIT,
  NAME_PATTERN,
  NATS_NAMESPACE_PATTERN,
  RETRY_BACKOFF_INITIAL_MS_DEFAULT,
  RETRY_BACKOFF_MAX_MS_DEFAULT,
} from './limits.ts';


export type Subscription = Readonly<{
  name: string;
  topic: string;
  filter: FilterPolicy | null;
  maxDeliveries: number;
  ackWaitMs: number;
  retryBackoffInitialMs: number;
  retryBackoffMaxMs: number;
}>;



export const KOBAN_TOPOLOGY: Topology = { topics: KOBAN_TOPICS, subscriptions: [] };

const namePattern = new RegExp(NAME_PATTERN);
const natsNamespacePattern = new RegExp(NATS_NAMESPACE_PATTERN);

/** Returns the namespace, or throws before anything is opened: a bad one would make stream names that collide or that the server refuses. */
export function checkNatsNamespace(namespace: string): string {
  if (natsNamespacePattern.test(namespace)) return namespace;
  throw new Error(`KOBAN_NATS_NAMESPACE ${JSON.stringify(namespace.slice(0, 64))} must match ${NATS_NAMESPACE_PATTERN}: 1–32 lower-case letters, digits or -, starting with a letter`);
}

/** Checks a declaration and fills in defaults; a bad one is a programming error and throws. */
export function resolveTopology(topology: Topology): { topics: string[]; subscriptions: Subscription[] } {
  const topics = [...new Set(topology.topics)];
  for (const topic of topics) {
    if (!namePattern.test(topic)) throw new Error(`Topic name ${JSON.stringify(topic)} must match ${NAME_PATTERN}`);
  }
  const seen = new Set<string>();
  const subscriptions = topology.subscriptions.map((spec) => {
    if (!namePattern.test(spec.name)) throw new Error(`Subscription name ${JSON.stringify(spec.name)} must match ${NAME_PATTERN}`);
    if (seen.has(spec.name)) throw new Error(`Subscription ${spec.name} is declared twice`);
    seen.add(spec.name);
    if (!topics.includes(spec.topic)) throw new Error(`Subscription ${spec.name} names topic ${spec.topic}, which is not declared`);
    if (spec.filter !== undefined) {
      const problem = filterPolicyProblem(spec.filter);
      if (problem) throw new Error(`Subscription ${spec.name}: ${problem}`);
    }
    const subscription: Subscription = {
      name: spec.name,
      topic: spec.topic,
      filter: spec.filter ?? null,
      maxDeliveries: spec.maxDeliveries ?? MAX_DELIVERIES_DEFAULT,
      ackWaitMs: spec.ackWaitMs ?? ACK_WAIT_MS_DEFAULT,
      retryBackoffInitialMs: spec.retryBackoffInitialMs ?? RETRY_BACKOFF_INITIAL_MS_DEFAULT,
      retryBackoffMaxMs: spec.retryBackoffMaxMs ?? RETRY_BACKOFF_MAX_MS_DEFAULT,
    };
    assertIntegerIn(subscription.name, 'maxDeliveries', subscription.maxDeliveries, 1, MAX_DELIVERIES_LIMIT);
    assertIntegerIn(subscription.name, 'ackWaitMs', subscription.ackWaitMs, ACK_WAIT_MS_MIN, ACK_WAIT_MS_MAX);
    assertIntegerIn(subscription.name, 'retryBackoffInitialMs', subscription.retryBackoffInitialMs, 1, ACK_WAIT_MS_MAX);
    assertIntegerIn(subscription.name, 'retryBackoffMaxMs', subscription.retryBackoffMaxMs, subscription.retryBackoffInitialMs, ACK_WAIT_MS_MAX);
    return subscription;
  });
  return { topics, subscriptions };
}

function assertIntegerIn(name: string, key: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new Error(`Subscription ${name}: ${key} must be an integer ${min}–${max}, got ${value}`);
}

/**
 * Delay before the next delivery after `attempt` failed: exponential, capped,
 * with "equal jitter" (half fixed, half random) so retries of many messages
 * that failed together spread out but never come back at once.
 */
export function retryDelayMs(subscription: Pick<Subscription, 'retryBackoffInitialMs' | 'retryBackoffMaxMs'>, attempt: number, random: () => number = Math.random): number {
  const exponential = subscription.retryBackoffInitialMs * 2 ** Math.max(0, Math.min(attempt - 1, 30));
  const capped = Math.min(subscription.retryBackoffMaxMs, exponential);
  return Math.max(1, Math.floor(capped / 2 + random() * (capped / 2)));
}
