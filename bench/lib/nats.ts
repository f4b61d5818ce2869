// Goal: the NATS server a benchmark may use: whether it answers, and removing the streams a run's namespace left there.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

const NATS_CONNECT_TIMEOUT_MS = 1_000;

/** True when a NATS server answers at `url` (one attempt, no reconnects). */
export async function natsReachable(url: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: url, timeout: NATS_CONNECT_TIMEOUT_MS, maxReconnectAttempts: 0 });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}

/** Deletes the streams `<namespace>_<topic>` a Koban deployment with that namespace declared (what is missing is skipped). */
export async function deleteNatsNamespace(url: string, namespace: string, topics: readonly string[]): Promise<void> {
  const nc = await connect({ servers: url, timeout: NATS_CONNECT_TIMEOUT_MS, maxReconnectAttempts: 0 });
  try {
    const jsm = await jetstreamManager(nc);
    for (const topic of topics) await jsm.streams.delete(`${namespace}_${topic}`).catch(() => undefined);
  } finally {
    await nc.close();
  }
}
