// An SNS+SQS emulator (fauxqs) inside this process, for tests and for
// trying the sns-sqs bus with no AWS account. fauxqs's own startFauxqs
// listens on every interface; this builds its app and binds it to loopback
// only, on the port given or one the system chooses.
import { buildApp } from 'fauxqs';

/** The emulator's region when none is configured; any region works against it. */
export const EMULATOR_REGION_DEFAULT = 'us-east-1';
/** The emulator checks no signature, but the SDK signs every request: these are never secrets. */
export const EMULATOR_CREDENTIALS = Object.freeze({ accessKeyId: 'koban-emulator', secretAccessKey: 'koban-emulator' });

export type EmbeddedEmulator = { endpoint: string; host: string; port: number; stop(): Promise<void> };

type BuildAppStores = NonNullable<NonNullable<Parameters<typeof buildApp>[0]>['stores']>;

export async function startEmbeddedEmulator(options: { region?: string; port?: number; dataDir?: string } = {}): Promise<EmbeddedEmulator> {
  const persisted = options.dataDir === undefined ? undefined : await persistedStores(options.dataDir);
  const app = buildApp({ logger: false, defaultRegion: options.region ?? EMULATOR_REGION_DEFAULT, ...(persisted === undefined ? {} : { stores: persisted.stores }) });
  if (persisted !== undefined) app.addHook('onClose', async () => persisted.close());
  const address = await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const port = Number(new URL(address).port);
  return { endpoint: `http://127.0.0.1:${port}`, host: '127.0.0.1', port, stop: () => app.close() };
}

/**
 * fauxqs's stores restored from (and written through to) SQLite in `dataDir`:
 * topics, subscriptions, queues and their messages, in flight ones with their
 * deadlines, as fauxqs 2.4.1's startFauxqs wires them. Only startFauxqs takes
 * a data directory, and it listens on every interface, so its wiring is
 * repeated here on its modules (the version is pinned; a change shows here).
 */
async function persistedStores(dataDir: string): Promise<{ stores: BuildAppStores; close(): void }> {
  const dist = (file: string) => new URL(file, import.meta.resolve('fauxqs')).href;
  const [{ PersistenceManager }, { SqsStore }, { SnsStore }, { S3Store }] = (await Promise.all([
    import(dist('./persistence.js')),
    import(dist('./sqs/sqsStore.js')),
    import(dist('./sns/snsStore.js')),
    import(dist('./s3/s3Store.js')),
  ])) as [{ PersistenceManager: new (dir: string) => Persistence }, { SqsStore: new () => BuildAppStores['sqsStore'] }, { SnsStore: new () => BuildAppStores['snsStore'] }, { S3Store: new () => BuildAppStores['s3Store'] }];
  const persistence = new PersistenceManager(dataDir);
  const stores = { sqsStore: new SqsStore(), snsStore: new SnsStore(), s3Store: new S3Store() };
  // Loaded before the stores write through, as startFauxqs does (a load must not write back).
  persistence.load(stores.sqsStore, stores.snsStore, stores.s3Store);
  const wired = stores as unknown as { sqsStore: { persistence: Persistence; allQueues(): Array<{ persistence: Persistence }> }; snsStore: { persistence: Persistence }; s3Store: { persistence: Persistence } };
  wired.sqsStore.persistence = persistence;
  wired.snsStore.persistence = persistence;
  wired.s3Store.persistence = persistence;
  for (const queue of wired.sqsStore.allQueues()) queue.persistence = persistence;
  return { stores, close: () => persistence.close() };
}

type Persistence = { load(sqs: unknown, sns: unknown, s3: unknown): void; close(): void };
