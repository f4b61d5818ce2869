// An SNS+SQS emulator (fauxqs) inside this process, for tests and for
// trying the sns-sqs bus with no AWS account. fauxqs's own startFauxqs
// listens on every interface; this builds its app and binds it to loopback
// only, on a port the system chooses.
import { buildApp } from 'fauxqs';

/** The emulator's region when none is configured; any region works against it. */
export const EMULATOR_REGION_DEFAULT = 'us-east-1';
/** The emulator checks no signature, but the SDK signs every request: these are never secrets. */
export const EMULATOR_CREDENTIALS = Object.freeze({ accessKeyId: 'koban-emulator', secretAccessKey: 'koban-emulator' });

export type EmbeddedEmulator = { endpoint: string; host: string; port: number; stop(): Promise<void> };

export async function startEmbeddedEmulator(options: { region?: string } = {}): Promise<EmbeddedEmulator> {
  const app = buildApp({ logger: false, defaultRegion: options.region ?? EMULATOR_REGION_DEFAULT });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const port = Number(new URL(address).port);
  return { endpoint: `http://127.0.0.1:${port}`, host: '127.0.0.1', port, stop: () => app.close() };
}
