// Goal: the code every bus adapter shares (first-in-batch rule, dead-letter pages and errors, the consumer's stop) behaves as each adapter relied on when it had its own copy.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isErrorCode } from '../../../platform/errors.ts';
import type { CloudEvent } from '../../../contracts/events/envelope.ts';
import { ConsumerLifecycle } from './consumer-lifecycle.ts';
import { checkRedriveIds, deadLetterPage, deadLetterPageQuery, type DeadLetterRow, discardedDeadLetter, truncateError } from './dead-letters.ts';
import { REDRIVE_IDS_MAX } from './limits.ts';
import { firstOccurrences } from './publishing.ts';
import { resolveTopology } from './topology.ts';

const event = (id: string) => ({ id }) as CloudEvent;

describe('first in batch', () => {
  test('only the first message with a topic and id counts; the same id on another topic is another message', () => {
    const messages = [
      { topic: 'a', event: event('1') },
      { topic: 'a', event: event('2') },
      { topic: 'a', event: event('1') },
      { topic: 'b', event: event('1') },
    ];
    assert.deepEqual(firstOccurrences(messages), [true, true, false, true]);
  });
});

describe('dead letters', () => {
  const row = (seq: number): DeadLetterRow => ({
    seq,
    event_id: `e-${seq}`,
    event: event(`e-${seq}`),
    attempts: 3,
    last_error: 'Error: boom',
    dead_lettered_at: new Date('2026-01-01T00:00:00.000Z'),
    discarded_at: null,
  });

  test('a page reads one row more than it shows, and has a next cursor only when that row exists', () => {
    const query = { limit: 2 };
    assert.deepEqual(deadLetterPageQuery(query), { afterSeq: 0, state: 'dead', rowsMax: 3 });
    const full = deadLetterPage([row(4), row(7), row(9)], query);
    assert.deepEqual(
      full.data.map((deadLetter) => deadLetter.id),
      ['e-4', 'e-7'],
    );
    assert.notEqual(full.next_cursor, null);
    // The cursor starts the next page after the last row shown.
    assert.equal(deadLetterPageQuery({ limit: 2, cursor: full.next_cursor!, state: 'discarded' }).afterSeq, 7);
    assert.equal(deadLetterPage([row(4), row(7)], query).next_cursor, null);
  });

  test('a dead letter shows its times as ISO strings', () => {
    assert.deepEqual(discardedDeadLetter({ ...row(1), discarded_at: new Date('2026-01-02T00:00:00.000Z') }, 's', 'e-1'), {
      id: 'e-1',
      event: event('e-1'),
      attempts: 3,
      last_error: 'Error: boom',
      dead_lettered_at: '2026-01-01T00:00:00.000Z',
      discarded_at: '2026-01-02T00:00:00.000Z',
    });
  });

  test('discarding what is not there, and redriving too many ids, are refused with the codes of the HTTP API', () => {
    assert.throws(() => discardedDeadLetter(undefined, 's', 'missing'), (error: unknown) => isErrorCode(error, 'not_found'));
    assert.throws(() => checkRedriveIds(Array.from({ length: REDRIVE_IDS_MAX + 1 }, (_, index) => `id-${index}`)), (error: unknown) =>
      isErrorCode(error, 'invalid_request'),
    );
    checkRedriveIds(undefined);
    checkRedriveIds(Array.from({ length: REDRIVE_IDS_MAX }, (_, index) => `id-${index}`));
  });

  test('a stored error is its name and message, cut to the length limit with an ellipsis', () => {
    assert.equal(truncateError(new TypeError('bad'), 100), 'TypeError: bad');
    assert.equal(truncateError('plain', 100), 'plain');
    const cut = truncateError(new Error('x'.repeat(50)), 10);
    assert.equal(cut.length, 10);
    assert.equal(cut, 'Error: xx…');
  });
});

describe('consumer lifecycle', () => {
  const [subscription] = resolveTopology({ topics: ['t'], subscriptions: [{ name: 's', topic: 't' }] }).subscriptions;

  class Recorder extends ConsumerLifecycle {
    readonly log: string[] = [];
    release!: () => void;
    protected async run(): Promise<void> {
      // One message taken, its handler held until the test releases it.
      this.track(async () => {
        this.log.push('handling');
        await new Promise<void>((resolve) => (this.release = resolve));
        this.log.push('handled');
      });
      while (!this.stopping) await this.wakeup.sleep(1_000);
    }
    protected override async stopTaking(): Promise<void> {
      this.log.push('stop taking');
    }
    protected override async flush(): Promise<void> {
      this.log.push('flush');
    }
  }

  const make = () => {
    const consumer: Recorder = new Recorder({
      subscription: subscription!,
      handler: async () => {},
      inFlightMax: 1,
      batchSizeMax: 1,
      onStopped: () => consumer.log.push('stopped'),
    });
    return consumer;
  };
  const turn = () => new Promise((resolve) => setImmediate(resolve));

  test('a graceful stop stops taking, waits for the handler in flight, flushes, then reports itself stopped', async () => {
    const consumer = make();
    consumer.start();
    await turn();
    assert.equal(consumer.inFlight, 1);
    const stopped = consumer.stop();
    await turn();
    assert.deepEqual(consumer.log, ['handling', 'stop taking'], 'still waiting for the handler');
    consumer.release();
    await stopped;
    assert.deepEqual(consumer.log, ['handling', 'stop taking', 'handled', 'flush', 'stopped']);
    assert.equal(consumer.inFlight, 0);
  });

  test('an abandoning stop returns with the handler still running and flushes nothing', async () => {
    const consumer = make();
    consumer.start();
    await turn();
    await consumer.stop({ abandonInFlight: true });
    assert.deepEqual(consumer.log, ['handling', 'stop taking', 'stopped']);
    assert.equal(consumer.inFlight, 1);
    consumer.release();
  });
});
