// A nats-server of a test's (or a chaos run's) own: a free port on the
// loopback, a fresh store directory, stopped cleanly (SIGTERM) and started
// again on the same port and store, as an operator restarts one.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../../platform/net.ts';
import { type BrokerProcess, startBrokerProcess } from './broker-process.ts';

const NATS_BINARIES = ['/usr/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server'];

/** nats-server on PATH or in the usual places; undefined when it is not installed. */
export function natsServerBinary(): string | undefined {
  for (const directory of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(directory, 'nats-server');
    if (directory !== '' && existsSync(candidate)) return candidate;
  }
  return NATS_BINARIES.find((candidate) => existsSync(candidate));
}

export type OwnNatsServer = BrokerProcess & { readonly url: string };

/** `jetStream` is asked at each start: false starts a server whose JetStream answers nothing (as while it recovers its streams). */
export async function startOwnNatsServer(options: { storePrefix: string; jetStream?: () => boolean }): Promise<OwnNatsServer> {
  const binary = natsServerBinary();
  if (binary === undefined) throw new Error('nats-server is not installed (on PATH or in /usr/sbin)');
  const storeDir = await mkdtemp(path.join(tmpdir(), options.storePrefix));
  const port = await freePort();
  const server = await startBrokerProcess({
    name: 'nats-server',
    port,
    dataDir: storeDir,
    spawn: () => spawn(binary, ['-a', '127.0.0.1', '-p', String(port), ...((options.jetStream?.() ?? true) ? ['-js'] : []), '-sd', storeDir], { stdio: 'ignore' }),
  });
  return { ...server, url: `nats://127.0.0.1:${port}` };
}
