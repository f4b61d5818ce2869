// What an EventBus adapter does the same way on every broker, because its
// declarations live in the registry: publish validates one event and
// publishes a batch of one; consume checks its limits, reads the subscription
// from the registry and keeps the consumer until it stops; close stops every
// consumer, then the broker, then the registry's pool. An adapter extends it
// with what its broker does (declare, publishBatch, a consumer, stats, dead letters).
import type { Clock } from '../../../platform/clock.ts';
import { KobanError } from '../../../platform/errors.ts';
import type { Pool } from '../../../platform/postgres/pool.ts';
import { checkTopicName, validateEvent } from '../../../contracts/events/envelope.ts';
import type {
  Consumer,
  ConsumeOptions,
  DeadLetter,
  DeadLetterPage,
  DeadLetterQuery,
  EventBus,
  Handler,
  OutgoingMessage,
  PublishResult,
  PublishStatus,
  SubscriptionStats,
  Topology,
} from '../../../contracts/bus/event-bus.ts';
import { consumeLimits } from '../domain/consume-limits.ts';
import type { ConsumerLifecycle, ConsumerOptions } from '../domain/consumer-lifecycle.ts';
import { loadSubscription } from './registry.ts';

export abstract class RegistryEventBus<C extends ConsumerLifecycle> implements EventBus {
  abstract readonly adapter: EventBus['adapter'];
  /** The bus database: the registry, and whatever else the adapter keeps there. */
  protected readonly pool: Pool;
  protected readonly clock: Clock;
  protected readonly consumers = new Set<C>();
  #closed = false;

  constructor(pool: Pool, clock: Clock) {
    this.pool = pool;
    this.clock = clock;
  }

  abstract declare(topology: Topology): Promise<void>;
  abstract publishBatch(messages: readonly OutgoingMessage[]): Promise<PublishStatus[]>;
  abstract subscriptions(): Promise<SubscriptionStats[]>;
  abstract deadLetters(subscription: string, query: DeadLetterQuery): Promise<DeadLetterPage>;
  abstract redrive(subscription: string, ids?: readonly string[]): Promise<{ redriven: number }>;
  abstract discard(subscription: string, id: string): Promise<DeadLetter>;
  /** Makes (not starts) a consumer on the adapter's broker. */
  protected abstract newConsumer(options: ConsumerOptions): Promise<C>;
  /** Closes the adapter's broker connections; consumers have stopped, the pool is still open. */
  protected abstract closeBroker(): Promise<void>;

  /** `invalid_request` for a bad event, `not_found` for an unknown topic, `idempotency_conflict` for an id reused with other content. */
  async publish(topic: string, input: unknown): Promise<PublishResult> {
    checkTopicName(topic);
    const event = validateEvent(input, this.clock);
    const [status] = await this.publishBatch([{ topic, event }]);
    if (status === 'unknown_topic') throw new KobanError('not_found', `No topic named ${topic}`, { topic });
    if (typeof status === 'object') {
      throw new KobanError('idempotency_conflict', `Event ${event.id} was already published on topic ${topic} with different ${status.conflict.join(', ')}`, {
        topic,
        id: event.id,
        fields: status.conflict,
      });
    }
    return { id: event.id, duplicate: status === 'duplicate' };
  }

  async consume(subscriptionName: string, handler: Handler, options: ConsumeOptions = {}): Promise<Consumer> {
    this.assertOpen();
    const subscription = await loadSubscription(this.pool, subscriptionName);
    const limits = consumeLimits(options);
    const consumer: C = await this.newConsumer({ subscription, handler, ...limits, onStopped: () => this.consumers.delete(consumer) });
    this.consumers.add(consumer);
    consumer.start();
    return consumer;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.consumers].map((consumer) => consumer.stop()));
    await this.closeBroker();
    await this.pool.end();
  }

  protected assertOpen(): void {
    if (this.#closed) throw new KobanError('unavailable', 'The event bus is closed');
  }
}
