#!/usr/bin/env node
// The SNS+SQS emulator as a process of its own, for `npm run chaos -- --bus
// sns-sqs`: `sns-sqs-emulator.ts PORT DATA_DIR` listens on 127.0.0.1:PORT with
// its state in DATA_DIR (so a restart on the same directory finds its topics,
// queues and messages, as SQS keeps them), prints one line once it listens,
// and stops cleanly on SIGTERM.
import { startEmbeddedEmulator } from '../../services/bus/adapters/sns-sqs/embedded-emulator.ts';

export const EMULATOR_LISTENING_LINE = 'sns-sqs emulator listening';

if (import.meta.main) {
  const [port, dataDir] = process.argv.slice(2);
  if (port === undefined || dataDir === undefined || !/^\d+$/.test(port)) {
    console.error('usage: sns-sqs-emulator.ts PORT DATA_DIR');
    process.exit(64);
  }
  const emulator = await startEmbeddedEmulator({ port: Number(port), dataDir });
  console.log(`${EMULATOR_LISTENING_LINE} on ${emulator.endpoint}`);
  process.once('SIGTERM', () => {
    void emulator.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
}
