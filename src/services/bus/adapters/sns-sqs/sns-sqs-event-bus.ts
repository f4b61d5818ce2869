// SNS+SQS adapter of the EventBus, on the AWS SDK v3 clients. One SNS topic
// per topic; one SQS queue per subscription, subscribed with raw delivery and
// the subscription's filter policy as an SNS FilterPolicy (filtering happens
// in SNS; CloudEvent attributes travel as message attributes). Delivery is
// long polling; the visibility timeout is the ack deadline (extended while a
// handler works); acks are DeleteMessageBatch; retry delays are
// ChangeMessageVisibility; ApproximateReceiveCount is the attempt. SNS
// standard topics do not deduplicate, so the registry's claims decide a
// repeat at publish (as on NATS), and, since a publisher that dies between
// SNS's acceptance and its record publishes again, the consuming side drops a
// second message of an event it has claimed (consumed-events.ts). Each
// subscription's queue has a dead-letter queue (RedrivePolicy, maxReceiveCount
// = maxDeliveries) where SQS moves what failed its last delivery; the registry
// records each dead letter with its attempts and last error, so list, redrive
// and discard behave as on every adapter, and finds there what SQS moved
// unrecorded (a consumer that died holding a last delivery). A redrive of
// all, where SQS has message move tasks, moves the dead-letter queue back;
// otherwise (chosen ids, or the emulator) each is a new message to the
// subscription's own queue, its copy deleted from the dead-letter queue.
// Either way it is marked redriven, and frees its event's claim, before
// anything is sent, and only a claim whose message died is freed, so a
// redrive that fails anywhere leaves at most a message the claims drop. A
// discarded one is deleted there and kept in the registry. A body that is
// not a CloudEvent is a dead letter at once, its body kept.
import { CreateTopicCommand, ListSubscriptionsByTopicCommand, ListTopicsCommand, PublishBatchCommand, SetSubscriptionAttributesCommand, SNSClient, SubscribeCommand } from '@aws-sdk/client-sns';
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ListQueuesCommand,
  type Message,
  ListMessageMoveTasksCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SetQueueAttributesCommand,
  SQSClient,
  StartMessageMoveTaskCommand,
} from '@aws-sdk/client-sqs';
import type { Logger } from 'pino';
import type { Clock } from '../../../../platform/clock.ts';
import { createPool, type Pool } from '../../../../platform/postgres/pool.ts';
import { type CloudEvent, filterAttributes } from '../../../../contracts/events/envelope.ts';
import { EVENT_ID_PATTERN } from '../../../../contracts/events/limits.ts';
import type { DeadLetter, DeadLetterPage, DeadLetterQuery, OutgoingMessage, PublishStatus, SubscriptionStats, Topology } from '../../../../contracts/bus/event-bus.ts';
import type { FilterPolicy } from '../../../../contracts/bus/filter-policy.ts';
import { ConsumerLifecycle, type ConsumerOptions } from '../../domain/consumer-lifecycle.ts';
import { ACK_DEADLINE_EXCEEDED, checkRedriveIds, truncateError } from '../../domain/dead-letters.ts';
import { LAST_ERROR_LENGTH_MAX, NATS_NAMESPACE_DEFAULT } from '../../domain/limits.ts';
import { checkNatsNamespace, resolveTopology, retryDelayMs, type Subscription } from '../../domain/topology.ts';
import { countDeadLetters, discardDeadLetter, listDeadLetters } from '../../registry/dead-letters.ts';
import { claimBatch, DeferredMarks } from '../../registry/event-fingerprints.ts';
import { declareTopology, loadSubscription, loadSubscriptions, loadTopics, migrateRegistry } from '../../registry/registry.ts';
import { RegistryEventBus } from '../../registry/registry-event-bus.ts';
import { AWS_BATCH_MAX, batches, messageBytes } from './batches.ts';
import { claimEvents, deadLetterKeys, markEventsHandled, markRedriven, type Ownership, type ReceivedCopy, recordDeath, type RedrivenRow, restoreDead } from './consumed-events.ts';
import { isUnsupportedOperation, type MoveTasks, redriveMethod } from './redrive-method.ts';

/** SNS carries at most this many message attributes; more and it refuses the message. */
export const SNS_MESSAGE_ATTRIBUTES_MAX = 10;
/** After the attributes filters name, these travel first: what subscriptions usually filter on. */
const ATTRIBUTE_PRIORITY = ['type', 'source', 'subject'];
/** PublishBatch calls one publishBatch has awaiting an answer at once. */
const PUBLISH_BATCHES_IN_FLIGHT_MAX = 8;
/** How long one ReceiveMessage waits for messages (seconds): also how long a graceful stop may wait for the poll in progress. */
const RECEIVE_WAIT_SECONDS = 1;
/** SQS's largest visibility timeout (seconds). */
const VISIBILITY_TIMEOUT_MAX_SECONDS = 12 * 60 * 60;
/** A consumer whose broker fails waits this long before polling again. */
const RECEIVE_RETRY_MS = 200;
/** SQS's longest retention (14 days): a dead letter waits in its queue as long as SQS allows. */
const DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 60 * 60;
/**
 * How long one look through a dead-letter queue keeps receiving. Well inside
 * DEAD_LETTER_SCAN_VISIBILITY_SECONDS, so the receipt handles it holds are
 * still good when a redrive deletes copies after it.
 */
export const DLQ_SCAN_TIME_BUDGET_MS = 20_000;
/** How long a look through a dead-letter queue hides what it received from another look (and, cut short, from the next look: see #lookThroughDeadLetterQueue). */
const DEAD_LETTER_SCAN_VISIBILITY_SECONDS = 60;
/**
 * Suffix of a subscription's dead-letter queue. Upper case, which no
 * namespace or subscription name has, so it never names another subscription's queue.
 */
const DEAD_LETTER_QUEUE_SUFFIX = '-DLQ';

export type SnsSqsEventBusOptions = {
  /** The bus database: declarations, claims and dead letters. */
  databaseUrl: string;
  poolSize: number;
  logger: Logger;
  clock: Clock;
  region: string;
  /** An emulator's or LocalStack's URL; the SDK's own endpoints when left out. */
  endpoint?: string;
  /** Explicit credentials (an emulator's); the SDK's default chain when left out. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Prefix of topic and queue names, so deployments sharing an account never meet (the NATS namespace pattern). */
  namespace?: string;
  /** Called once the clients are closed: stops an embedded emulator. */
  onClose?: () => Promise<void>;
  /** See the SNS and SQS clients once made (tests add middleware to them, to watch or fail chosen calls of the real clients). */
  instrumentSns?: (client: SNSClient) => void;
  instrumentSqs?: (client: SQSClient) => void;
};

/** Visibility timeouts are whole seconds: a delay is never shorter than asked. */
function seconds(ms: number): number {
  return Math.min(VISIBILITY_TIMEOUT_MAX_SECONDS, Math.max(1, Math.ceil(ms / 1000)));
}

/**
 * An ack deadline outlasts one poll: a poll cut off by a crash may still
 * take messages at the server when they come back (the emulator does), and
 * would count a delivery nobody saw; one that started with the crash has
 * ended by the time the held message is visible again.
 */
function ackDeadlineSeconds(ackWaitMs: number): number {
  return Math.max(RECEIVE_WAIT_SECONDS + 1, seconds(ackWaitMs));
}

/** Our filter language is SNS's (attribute scope): the translation is a copy, made explicit so a change of either side shows here. */
export function snsFilterPolicy(filter: FilterPolicy): Record<string, unknown[]> {
  return Object.fromEntries(
    Object.entries(filter).map(([key, conditions]) => [
      key,
      conditions.map((condition) => {
        if (typeof condition === 'string') return condition;
        if ('prefix' in condition) return { prefix: condition.prefix };
        if ('exists' in condition) return { exists: condition.exists };
        const but = condition['anything-but'];
        return { 'anything-but': typeof but === 'string' ? [but] : Array.isArray(but) ? [...but] : { prefix: (but as { prefix: string }).prefix } };
      }),
    ]),
  );
}

export class SnsSqsEventBus extends RegistryEventBus<SqsConsumer> {
  readonly adapter = 'sns-sqs' as const;
  readonly #sns: SNSClient;
  /** Published events whose mark in the registry is written off the publish path. */
  readonly #marks: DeferredMarks;
  readonly #sqs: SQSClient;
  readonly #namespace: string;
  readonly #logger: Logger;
  readonly #topicArns = new Map<string, string>();
  /** Queue URLs by queue name, and ARNs by URL. */
  readonly #queueUrls = new Map<string, string>();
  readonly #queueArns = new Map<string, string>();
  readonly #onClose: (() => Promise<void>) | undefined;
  /** Topics known to be declared: publishBatch reads the registry only for a topic not among them. */
  #topics = new Set<string>();
  /** Per topic, the attributes its subscriptions' filters name: they always travel as message attributes. */
  #filtered = new Map<string, ReadonlySet<string>>();
  /** When each subscription's queue was last seen empty by this instance: the start of its oldest message's possible age. */
  readonly #emptySince = new Map<string, Date>();
  /** Whether the broker has message move tasks: asked once per instance, at the first redrive of all (undefined until then). */
  #moveTasksSupported: boolean | undefined;

  private constructor(pool: Pool, options: SnsSqsEventBusOptions) {
    super(pool, options.clock);
    const common = {
      region: options.region,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      // A copy: the SDK marks the object it is given.
      ...(options.credentials === undefined ? {} : { credentials: { ...options.credentials } }),
    };
    this.#sns = new SNSClient(common);
    options.instrumentSns?.(this.#sns);
    // An emulator's queue URLs may name a host that does not resolve: requests go to the endpoint.
    this.#sqs = new SQSClient({ ...common, ...(options.endpoint === undefined ? {} : { useQueueUrlAsEndpoint: false }) });
    options.instrumentSqs?.(this.#sqs);
    this.#namespace = options.namespace ?? NATS_NAMESPACE_DEFAULT;
    this.#logger = options.logger;
    this.#onClose = options.onClose;
    this.#marks = new DeferredMarks(pool, (error) => this.#logger.warn({ err: error }, 'could not mark published events; an identical repeat will be published again (consumers drop it by event id)'));
  }

  /**
   * Opens the bus on AWS (credentials from the SDK's default chain), or on
   * the endpoint given; with neither an endpoint nor credentials, on an
   * emulator embedded in this process (on loopback), so the transport can be
   * tried with no AWS account.
   */
  static async openConfigured(options: Omit<SnsSqsEventBusOptions, 'credentials' | 'onClose'>): Promise<SnsSqsEventBus> {
    if (options.endpoint !== undefined || (await hasCredentials(options.region))) return SnsSqsEventBus.open(options);
    const { startEmbeddedEmulator, EMULATOR_CREDENTIALS } = await import('./embedded-emulator.ts');
    const emulator = await startEmbeddedEmulator({ region: options.region });
    options.logger.warn({ endpoint: emulator.endpoint }, 'no KOBAN_SNS_SQS_ENDPOINT and no AWS credentials: SNS and SQS run on an embedded emulator (in memory, lost at exit)');
    try {
      return await SnsSqsEventBus.open({ ...options, endpoint: emulator.endpoint, credentials: EMULATOR_CREDENTIALS, onClose: () => emulator.stop() });
    } catch (error) {
      await emulator.stop();
      throw error;
    }
  }

  static async open(options: SnsSqsEventBusOptions): Promise<SnsSqsEventBus> {
    checkNatsNamespace(options.namespace ?? NATS_NAMESPACE_DEFAULT);
    const pool = createPool({ url: options.databaseUrl, size: options.poolSize, applicationName: 'koban-bus-sns-sqs', logger: options.logger });
    try {
      await migrateRegistry(pool, options.logger);
    } catch (error) {
      await pool.end();
      throw error;
    }
    return new SnsSqsEventBus(pool, options);
  }

  /** Both services answer: one cheap call each, bounded by `signal` (the readiness check's deadline). */
  async ping(signal: AbortSignal): Promise<void> {
    await this.#sns.send(new ListTopicsCommand({}), { abortSignal: signal });
    await this.#sqs.send(new ListQueuesCommand({ QueueNamePrefix: this.#namespace, MaxResults: 1 }), { abortSignal: signal });
  }

  /** `_` never occurs in a namespace, so no two namespaces make the same name. */
  resourceName(name: string): string {
    return `${this.#namespace}_${name}`;
  }

  async declare(topology: Topology): Promise<void> {
    const resolved = resolveTopology(topology);
    const declaredNames = new Set(resolved.subscriptions.map((subscription) => subscription.name));
    const filtered = filteredAttributes([...(await loadSubscriptions(this.pool)).filter((subscription) => !declaredNames.has(subscription.name)), ...resolved.subscriptions]);
    for (const [topic, names] of filtered) {
      if (names.size > SNS_MESSAGE_ATTRIBUTES_MAX) {
        throw new Error(
          `the subscriptions of topic ${topic} filter on ${names.size} attributes (${[...names].sort().join(', ')}); SNS carries at most ${SNS_MESSAGE_ATTRIBUTES_MAX} per message, so filter on fewer`,
        );
      }
    }
    await declareTopology(this.pool, resolved);
    this.#filtered = filtered;
    for (const topic of resolved.topics) this.#topics.add(topic);
    // CreateTopic, CreateQueue and Subscribe return what exists when it matches: concurrent starts meet the same resources.
    for (const topic of resolved.topics) await this.#topicArn(topic);
    for (const subscription of resolved.subscriptions) {
      const topicArn = await this.#topicArn(subscription.topic);
      const queueUrl = await this.#queueUrl(subscription.name);
      const queueArn = await this.#queueArn(queueUrl);
      const deadLetterQueue = await this.#deadLetterQueue(subscription.name);
      await this.#sqs.send(new SetQueueAttributesCommand({ QueueUrl: deadLetterQueue.url, Attributes: { MessageRetentionPeriod: String(DEAD_LETTER_RETENTION_SECONDS) } }));
      await this.#sqs.send(
        new SetQueueAttributesCommand({
          QueueUrl: queueUrl,
          Attributes: {
            VisibilityTimeout: String(ackDeadlineSeconds(subscription.ackWaitMs)),
            // SQS moves a message received once more than maxDeliveries: the consumer records why, then lets it go (see SqsConsumer).
            RedrivePolicy: JSON.stringify({ deadLetterTargetArn: deadLetterQueue.arn, maxReceiveCount: subscription.maxDeliveries }),
            // Only this deployment's topic may send to the queue.
            Policy: JSON.stringify({
              Version: '2012-10-17',
              Statement: [{ Effect: 'Allow', Principal: { Service: 'sns.amazonaws.com' }, Action: 'sqs:SendMessage', Resource: queueArn, Condition: { ArnEquals: { 'aws:SourceArn': topicArn } } }],
            }),
          },
        }),
      );
      await this.#subscribe(topicArn, queueArn, subscription.filter === null ? undefined : JSON.stringify(snsFilterPolicy(subscription.filter)));
    }
  }

  /**
   * Subscribes the queue to the topic with raw delivery and the filter.
   * Subscribe returns the subscription that exists when its attributes match
   * (concurrent starts meet the same one) and refuses one whose attributes
   * differ: a filter changed or removed since. That one is found and updated
   * in place; a removed filter is an empty policy, which SNS reads as none.
   */
  async #subscribe(topicArn: string, queueArn: string, filterPolicy: string | undefined): Promise<void> {
    try {
      await this.#sns.send(
        new SubscribeCommand({
          TopicArn: topicArn,
          Protocol: 'sqs',
          Endpoint: queueArn,
          Attributes: { RawMessageDelivery: 'true', ...(filterPolicy === undefined ? {} : { FilterPolicy: filterPolicy }) },
          ReturnSubscriptionArn: true,
        }),
      );
      return;
    } catch (error) {
      if (!(error instanceof Error && error.name === 'InvalidParameterException' && error.message.includes('already exists'))) throw error;
    }
    const subscriptionArn = await this.#findSubscription(topicArn, queueArn);
    await this.#sns.send(new SetSubscriptionAttributesCommand({ SubscriptionArn: subscriptionArn, AttributeName: 'RawMessageDelivery', AttributeValue: 'true' }));
    await this.#sns.send(new SetSubscriptionAttributesCommand({ SubscriptionArn: subscriptionArn, AttributeName: 'FilterPolicy', AttributeValue: filterPolicy ?? '{}' }));
  }

  async #findSubscription(topicArn: string, queueArn: string): Promise<string> {
    let nextToken: string | undefined;
    do {
      const page = await this.#sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topicArn, ...(nextToken === undefined ? {} : { NextToken: nextToken }) }));
      const found = page.Subscriptions?.find((entry) => entry.Protocol === 'sqs' && entry.Endpoint === queueArn);
      if (found?.SubscriptionArn) return found.SubscriptionArn;
      nextToken = page.NextToken;
    } while (nextToken);
    throw new Error(`SNS refused to subscribe ${queueArn} to ${topicArn} as existing, but lists no such subscription`);
  }

  async #topicArn(topic: string): Promise<string> {
    const known = this.#topicArns.get(topic);
    if (known) return known;
    const created = await this.#sns.send(new CreateTopicCommand({ Name: this.resourceName(topic) }));
    if (!created.TopicArn) throw new Error(`SNS returned no TopicArn for ${topic}`);
    this.#topicArns.set(topic, created.TopicArn);
    return created.TopicArn;
  }

  async #queueUrl(subscription: string): Promise<string> {
    return this.#createQueue(this.resourceName(subscription));
  }

  /** The subscription's dead-letter queue: where SQS moves what it gave up on, and where dead letters wait. */
  async #deadLetterQueue(subscription: string): Promise<{ url: string; arn: string }> {
    const url = await this.#createQueue(`${this.resourceName(subscription)}${DEAD_LETTER_QUEUE_SUFFIX}`);
    return { url, arn: await this.#queueArn(url) };
  }

  /** CreateQueue returns the queue that exists when it matches: concurrent starts meet the same one. */
  async #createQueue(name: string): Promise<string> {
    const known = this.#queueUrls.get(name);
    if (known) return known;
    const created = await this.#sqs.send(new CreateQueueCommand({ QueueName: name }));
    if (!created.QueueUrl) throw new Error(`SQS returned no QueueUrl for ${name}`);
    this.#queueUrls.set(name, created.QueueUrl);
    return created.QueueUrl;
  }

  async #queueArn(queueUrl: string): Promise<string> {
    const known = this.#queueArns.get(queueUrl);
    if (known) return known;
    const attributes = await this.#sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }));
    const arn = attributes.Attributes?.QueueArn;
    if (!arn) throw new Error(`SQS returned no QueueArn for ${queueUrl}`);
    this.#queueArns.set(queueUrl, arn);
    return arn;
  }

  async publishBatch(messages: readonly OutgoingMessage[]): Promise<PublishStatus[]> {
    this.assertOpen();
    // Declared topics are known; one declared by another process is looked up once.
    if (messages.some((message) => !this.#topics.has(message.topic))) {
      this.#topics = new Set(await loadTopics(this.pool));
      this.#filtered = filteredAttributes(await loadSubscriptions(this.pool));
    }
    const topics = this.#topics;
    // SNS standard topics keep no ids: the registry decides.
    const { toPublish, repeatStatus } = await claimBatch(this.pool, messages, topics, this.#marks.marking);
    const published = new Set<number>();
    let failure: unknown;
    // Each event serialized once: its size decides its batch, and the same text is sent.
    const chunks = [...Map.groupBy(toPublish, (index) => messages[index]!.topic)].flatMap(([topic, indexes]) => {
      const entries = indexes.map((index) => ({
        Id: String(index),
        Message: JSON.stringify(messages[index]!.event),
        MessageAttributes: messageAttributes(messages[index]!.event, this.#filtered.get(topic)),
      }));
      return batches(entries, (entry) => messageBytes(entry.Message, entry.MessageAttributes)).map((entries) => ({ topic, entries }));
    });
    // A few PublishBatch calls at once: a relay's batch of hundreds is not sent ten by ten in turn.
    let next = 0;
    const sender = async () => {
      while (next < chunks.length) {
        const { topic, entries } = chunks[next++]!;
        try {
          const result = await this.#sns.send(new PublishBatchCommand({ TopicArn: await this.#topicArn(topic), PublishBatchRequestEntries: entries }));
          for (const entry of result.Successful ?? []) published.add(Number(entry.Id));
          if ((result.Failed ?? []).length > 0) failure ??= new Error(`SNS refused ${result.Failed!.length} of a batch: ${result.Failed![0]!.Code} ${result.Failed![0]!.Message ?? ''}`);
        } catch (error) {
          failure ??= error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PUBLISH_BATCHES_IN_FLIGHT_MAX, chunks.length) }, sender));
    // Marked off the publish path: the relay's next batch does not wait for this one's mark.
    this.#marks.add(messages, published);
    // The batch fails as a whole (the relay retries it): what SNS took is marked, and repeats as duplicates.
    if (failure !== undefined) throw failure;
    return messages.map((message, index): PublishStatus => {
      if (!topics.has(message.topic)) return 'unknown_topic';
      if (published.has(index)) return 'published';
      return repeatStatus(index);
    });
  }

  protected async newConsumer(options: ConsumerOptions): Promise<SqsConsumer> {
    const { subscription } = options;
    return new SqsConsumer({
      ...options,
      sqs: this.#sqs,
      queueUrl: await this.#queueUrl(subscription.name),
      deadLetter: (event, messageId, attempts, lastError) => recordDeath(this.pool, subscription.name, event, messageId, attempts, lastError),
      claim: (copies) => claimEvents(this.pool, subscription.name, copies),
      markHandled: (copies) => markEventsHandled(this.pool, subscription.name, copies),
      logger: this.#logger.child({ component: 'bus-consumer', subscription: subscription.name }),
    });
  }

  async subscriptions(): Promise<SubscriptionStats[]> {
    const subscriptions = await loadSubscriptions(this.pool);
    const deadBySubscription = await countDeadLetters(this.pool);
    return Promise.all(
      subscriptions.map(async (subscription) => {
        const result = await this.#sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: await this.#queueUrl(subscription.name), AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
        );
        const depth = Number(result.Attributes?.ApproximateNumberOfMessages ?? 0);
        const inFlight = Number(result.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
        let deadLetters = deadBySubscription.get(subscription.name) ?? 0;
        if ((await this.#deadLetterQueueDepth(subscription.name)) > deadLetters) {
          // SQS moved messages nobody recorded (a consumer died holding their last delivery): recorded now.
          await this.#adoptDeadLetters(subscription);
          deadLetters = (await countDeadLetters(this.pool)).get(subscription.name) ?? 0;
        }
        const now = this.clock.now();
        if (depth + inFlight === 0) this.#emptySince.set(subscription.name, now);
        return {
          name: subscription.name,
          topic: subscription.topic,
          filter: subscription.filter,
          depth,
          in_flight: inFlight,
          oldest_age_ms: depth + inFlight === 0 ? null : await this.#oldestAgeMs(subscription.topic, this.#emptySince.get(subscription.name), now),
          dead_letters: deadLetters,
        };
      }),
    );
  }

  async #deadLetterQueueDepth(subscription: string): Promise<number> {
    const { url } = await this.#deadLetterQueue(subscription);
    const result = await this.#sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
    return Number(result.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(result.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
  }

  /**
   * Looks through the subscription's dead-letter queue, hiding what it
   * receives from other looks meanwhile, and asks `visit` about each message:
   * `delete` removes it, `keep` leaves it there. While what is kept is still
   * hidden (its receipt handles still valid), `then` may delete some of it.
   * Bounded: it receives until a round brings nothing new or
   * DLQ_SCAN_TIME_BUDGET_MS has passed. A complete look makes what it kept
   * visible again at once; one cut short leaves it hidden for the rest of
   * DEAD_LETTER_SCAN_VISIBILITY_SECONDS, so the next look reaches what this
   * one did not: a queue of any size is looked through over as many calls.
   */
  async #lookThroughDeadLetterQueue<T>(
    subscription: string,
    visit: (message: Message, event: CloudEvent) => Promise<'keep' | 'delete'>,
    then: (kept: readonly DeadLetterCopy[], remove: (copies: readonly DeadLetterCopy[]) => Promise<void>, complete: boolean) => Promise<T>,
  ): Promise<T> {
    const { url } = await this.#deadLetterQueue(subscription);
    const kept: DeadLetterCopy[] = [];
    const removed = new Set<DeadLetterCopy>();
    const remove = async (copies: readonly DeadLetterCopy[]) => {
      await deleteBatch(this.#sqs, url, copies.map((copy) => copy.receipt));
      for (const copy of copies) removed.add(copy);
    };
    const seen = new Set<string>();
    const startedMs = this.clock.now().getTime();
    let complete = false;
    try {
      while (this.clock.now().getTime() - startedMs < DLQ_SCAN_TIME_BUDGET_MS) {
        const result = await this.#sqs.send(
          new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: AWS_BATCH_MAX, VisibilityTimeout: DEAD_LETTER_SCAN_VISIBILITY_SECONDS, WaitTimeSeconds: 0 }),
        );
        const messages = (result.Messages ?? []).filter((message) => !seen.has(message.MessageId!));
        if (messages.length === 0) {
          complete = true;
          break;
        }
        const toDelete: DeadLetterCopy[] = [];
        for (const message of messages) {
          seen.add(message.MessageId!);
          const { event } = readEnvelope(message);
          const copy = { messageId: message.MessageId!, receipt: message.ReceiptHandle!, eventId: event.id };
          ((await visit(message, event)) === 'delete' ? toDelete : kept).push(copy);
        }
        if (toDelete.length > 0) await remove(toDelete);
      }
      if (!complete) {
        this.#logger.warn(
          { subscription, looked: seen.size, budgetMs: DLQ_SCAN_TIME_BUDGET_MS },
          `the dead-letter queue holds more than one look reaches; what it reached stays hidden for ${DEAD_LETTER_SCAN_VISIBILITY_SECONDS} s, so the next listing, stats or redrive goes on from there`,
        );
      }
      return await then(kept, remove, complete);
    } finally {
      const release = complete ? kept.filter((copy) => !removed.has(copy)) : [];
      for (let start = 0; start < release.length; start += AWS_BATCH_MAX) {
        await this.#sqs
          .send(
            new ChangeMessageVisibilityBatchCommand({
              QueueUrl: url,
              Entries: release.slice(start, start + AWS_BATCH_MAX).map((copy, index) => ({ Id: String(index), ReceiptHandle: copy.receipt, VisibilityTimeout: 0 })),
            }),
          )
          .catch((error: unknown) => this.#logger.warn({ err: error }, `releasing dead letters after a look failed; they are visible again within ${DEAD_LETTER_SCAN_VISIBILITY_SECONDS} s`));
      }
    }
  }

  /**
   * What a look does with a copy in the dead-letter queue, by its event's
   * dead letter and claim: a copy of an event the subscription handled goes;
   * one recorded dead stays; a copy of a discarded one,
   * or of one redriven whose event another message owns now, goes. One the
   * registry does not know as dead is recorded dead (with the claim of its
   * message, when that one owns the event): SQS moved it after a consumer died
   * holding its last delivery, or the redriven message died so; or it was
   * redriven and no message owns its event, so its redrive never sent it (it
   * failed or died between marking and sending, or a move task left it).
   * Only a move task still running may yet move that one: it stays as it is.
   */
  async #judgeCopy(subscription: Subscription, message: Message, event: CloudEvent, moveTaskRunning: () => Promise<boolean>): Promise<'keep' | 'delete'> {
    const state = await this.pool.query<{ state: string | null; owner: string | null; handled: boolean }>(
      `SELECT d.state, c.message_id AS owner, c.handled_at IS NOT NULL AS handled
         FROM (SELECT $1::text AS subscription, $2::text AS event_id) k
         LEFT JOIN dead_letters d ON d.subscription = k.subscription AND d.event_id = k.event_id
         LEFT JOIN consumed_events c ON c.subscription = k.subscription AND c.event_id = k.event_id`,
      [subscription.name, event.id],
    );
    const row = state.rows[0]!;
    // Its event was handled (this message's delete was lost, then SQS moved it on its next receive): a stale copy.
    if (row.handled) return 'delete';
    if (row.state === 'dead') return 'keep';
    if (row.state === 'discarded') return 'delete';
    if (row.state === 'redriven' && row.owner !== null && row.owner !== message.MessageId) return 'delete';
    if (row.state === 'redriven' && row.owner === null && (await moveTaskRunning())) return 'keep';
    await recordDeath(this.pool, subscription.name, event, message.MessageId, subscription.maxDeliveries, ACK_DEADLINE_EXCEEDED);
    this.#logger.warn({ id: event.id, subscription: subscription.name, redriven: row.state === 'redriven' }, 'message found in the dead-letter queue, unrecorded: listed as dead');
    return 'keep';
  }

  /** Asks a running move task of this queue once per look, and only if one may be. */
  #moveTaskRunningOnce(deadLetterQueueArn: string): () => Promise<boolean> {
    let answer: Promise<boolean> | undefined;
    return () =>
      (answer ??=
        this.#moveTasksSupported === false
          ? Promise.resolve(false)
          : this.#moveTasks(deadLetterQueueArn).then(
              (tasks) => tasks.running,
              // Not knowing, it is left as it is: a later look decides.
              () => true,
            ));
  }

  /** Records what waits in the dead-letter queue unrecorded, and removes what is no longer there to stay (see #judgeCopy). */
  async #adoptDeadLetters(subscription: Subscription): Promise<void> {
    const { arn } = await this.#deadLetterQueue(subscription.name);
    const running = this.#moveTaskRunningOnce(arn);
    await this.#lookThroughDeadLetterQueue(subscription.name, (message, event) => this.#judgeCopy(subscription, message, event, running), async () => undefined);
  }

  /**
   * Whether the broker has message move tasks (asked once per instance: SQS
   * has them, fauxqs 2.4.1 answers `InvalidAction`), and where it has them,
   * whether one of this dead-letter queue is running.
   */
  async #moveTasks(deadLetterQueueArn: string): Promise<MoveTasks> {
    if (this.#moveTasksSupported === false) return { supported: false, running: false };
    try {
      const listed = await this.#sqs.send(new ListMessageMoveTasksCommand({ SourceArn: deadLetterQueueArn, MaxResults: 1 }));
      this.#moveTasksSupported = true;
      return { supported: true, running: (listed.Results ?? []).some((task) => task.Status === 'RUNNING') };
    } catch (error) {
      if (!isUnsupportedOperation(error)) throw error;
      this.#moveTasksSupported = false;
      return { supported: false, running: false };
    }
  }

  /**
   * SQS has no API for the age of a queue's oldest message (CloudWatch's
   * ApproximateAgeOfOldestMessage has it), and peeking would count a
   * delivery. An upper bound instead: the age of the oldest event published
   * on the topic since the queue was last seen empty.
   */
  async #oldestAgeMs(topic: string, since: Date | undefined, now: Date): Promise<number | null> {
    const result = await this.pool.query<{ oldest: Date | null }>(
      'SELECT min(published_at) AS oldest FROM event_fingerprints WHERE topic = $1 AND published_at >= $2',
      [topic, since ?? new Date(0)],
    );
    const oldest = result.rows[0]?.oldest;
    return oldest ? Math.max(0, now.getTime() - oldest.getTime()) : null;
  }

  async deadLetters(subscriptionName: string, query: DeadLetterQuery): Promise<DeadLetterPage> {
    // The first page of dead letters includes what SQS moved unrecorded.
    if (query.cursor === undefined && (query.state ?? 'dead') === 'dead') await this.#adoptDeadLetters(await loadSubscription(this.pool, subscriptionName));
    return listDeadLetters(this.pool, subscriptionName, query);
  }

  /**
   * Sends dead letters back to the subscription's own queue (the topic's
   * other subscriptions never see a redrive). All of them, on a broker with
   * message move tasks (SQS): marked redriven, their claims freed, then one
   * StartMessageMoveTask moves the dead-letter queue back inside SQS
   * (asynchronously: ListMessageMoveTasks shows its progress). Chosen ids, or
   * a broker without move tasks (the emulator), or a task failing to start:
   * message by message (#redriveEach).
   */
  async redrive(subscriptionName: string, ids?: readonly string[]): Promise<{ redriven: number }> {
    const subscription = await loadSubscription(this.pool, subscriptionName);
    checkRedriveIds(ids);
    const { arn: deadLetterQueueArn } = await this.#deadLetterQueue(subscription.name);
    // Chosen ids never use a task: the broker is not asked.
    const moveTasks = ids === undefined ? await this.#moveTasks(deadLetterQueueArn) : { supported: false, running: false };
    if (redriveMethod(ids, moveTasks) === 'move-task') {
      const moved = await this.#redriveByMoveTask(subscription, deadLetterQueueArn);
      if (moved !== undefined) return moved;
    }
    return this.#redriveEach(subscription, ids);
  }

  /**
   * Has SQS move the dead-letter queue back: each dead letter whose copy a
   * whole look saw there is marked redriven and its claim freed, then one
   * StartMessageMoveTask moves them (each with a new message id, owned by
   * whichever claims its event first). A dead letter with no copy there (its
   * copy expired, say) is sent from the registry (#redriveEach). A copy the
   * task does not move after all (the task failed) is found by a later look,
   * its event owned by no message: listed dead again. Undefined when the look
   * was cut short (the queue may hold more than it saw) or the task did not
   * start (its dead letters listed dead again): #redriveEach does it all.
   */
  async #redriveByMoveTask(subscription: Subscription, deadLetterQueueArn: string): Promise<{ redriven: number } | undefined> {
    const running = this.#moveTaskRunningOnce(deadLetterQueueArn);
    // One look records what SQS moved unrecorded, deletes stale copies (not to be moved back), and sees what there is to move.
    const look = await this.#lookThroughDeadLetterQueue(
      subscription.name,
      (message, event) => this.#judgeCopy(subscription, message, event, running),
      async (kept, _remove, complete) => ({ complete, withCopy: new Set(kept.map((copy) => copy.eventId)) }),
    );
    if (!look.complete) return undefined;
    const dead = await deadLetterKeys(this.pool, subscription.name, undefined);
    const marked = await markRedriven(
      this.pool,
      subscription.name,
      dead.filter((key) => look.withCopy.has(key.eventId)).map((key) => key.seq),
    );
    if (marked.length > 0) {
      try {
        const task = await this.#sqs.send(
          new StartMessageMoveTaskCommand({ SourceArn: deadLetterQueueArn, DestinationArn: await this.#queueArn(await this.#queueUrl(subscription.name)) }),
        );
        this.#logger.info({ subscription: subscription.name, moved: marked.length, taskHandle: task.TaskHandle }, 'dead letters redriven by an SQS message move task (ListMessageMoveTasks shows its progress)');
      } catch (error) {
        // If it started after all, what it moves owns its event, and #redriveEach's message of it is dropped.
        await restoreDead(this.pool, marked.map((row) => row.seq));
        if (isUnsupportedOperation(error)) this.#moveTasksSupported = false;
        this.#logger.warn({ err: error, subscription: subscription.name }, 'a message move task did not start; redriving message by message');
        return undefined;
      }
    }
    const withoutCopy = dead.filter((key) => !look.withCopy.has(key.eventId)).map((key) => key.eventId);
    const sent = withoutCopy.length === 0 ? 0 : (await this.#redriveEach(subscription, withoutCopy)).redriven;
    return { redriven: marked.length + sent };
  }

  /**
   * Sends each dead letter again as a new message, from the registry, and
   * deletes its copy from the dead-letter queue. Ten at a time (and at most
   * 256 KiB): marked redriven with their claims freed first (markRedriven), so
   * no other redrive takes them while their messages may be on the way; then
   * SendMessageBatch; then each sent message is given its event before it is
   * received, so a copy left in the dead-letter queue is known as one. What
   * SQS refused, or a batch whose answer was lost, is listed dead again and
   * the redrive fails: if SQS took it after all, that message owns its event
   * (its claim is not a dead message's, so no redrive frees it), and a later
   * redrive's message is dropped. A redrive that dies between marking and
   * sending leaves copies no message owns: the next look lists them dead again.
   */
  async #redriveEach(subscription: Subscription, ids: readonly string[] | undefined): Promise<{ redriven: number }> {
    const queueUrl = await this.#queueUrl(subscription.name);
    const { arn } = await this.#deadLetterQueue(subscription.name);
    const running = this.#moveTaskRunningOnce(arn);
    // One look records what SQS moved unrecorded and finds the copies to delete, hidden until each is deleted.
    return this.#lookThroughDeadLetterQueue(
      subscription.name,
      (message, event) => this.#judgeCopy(subscription, message, event, running),
      async (kept, remove) => {
        const copies = Map.groupBy(kept, (copy) => copy.eventId);
        // Fixed at the start: a redriven message that dies again meanwhile waits for the next redrive.
        const seqs = (await deadLetterKeys(this.pool, subscription.name, ids)).map((key) => key.seq);
        let redriven = 0;
        for (let start = 0; start < seqs.length; start += AWS_BATCH_MAX) {
          const marked = await markRedriven(this.pool, subscription.name, seqs.slice(start, start + AWS_BATCH_MAX));
          for (const rows of batches(marked.map((row) => ({ row, message: redriveMessage(row) })), ({ message }) => messageBytes(message.MessageBody, message.MessageAttributes))) {
            let result;
            try {
              result = await this.#sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: rows.map(({ message }, index) => ({ Id: String(index), ...message })) }));
            } catch (error) {
              await restoreDead(this.pool, unsent(marked, rows, 0));
              throw error;
            }
            const sent = (result.Successful ?? []).map((entry) => ({ row: rows[Number(entry.Id)]!.row, messageId: entry.MessageId! }));
            await claimEvents(this.pool, subscription.name, sent.map(({ row, messageId }) => ({ eventId: row.event_id, messageId })));
            redriven += sent.length;
            // A copy not deleted now (hidden by another look, or not moved yet) is deleted by a later look: another message owns its event.
            const stale = sent.flatMap(({ row, messageId }) => (copies.get(row.event_id) ?? []).filter((copy) => copy.messageId !== messageId));
            if (stale.length > 0) await remove(stale).catch(() => undefined);
            const failed = result.Failed ?? [];
            if (failed.length > 0) {
              await restoreDead(this.pool, [...failed.map((entry) => rows[Number(entry.Id)]!.row.seq), ...unsent(marked, rows, 1)]);
              throw new Error(`SQS refused ${failed.length} redriven messages of ${subscription.name} (${failed[0]!.Code} ${failed[0]!.Message ?? ''}); they are listed as dead again`);
            }
          }
        }
        return { redriven };
      },
    );
  }

  /** Keeps the dead letter in the registry, marked discarded, and deletes it from the dead-letter queue, so no redrive of that queue brings it back. */
  async discard(subscriptionName: string, id: string): Promise<DeadLetter> {
    const discarded = await discardDeadLetter(this.pool, subscriptionName, id);
    await this.#lookThroughDeadLetterQueue(subscriptionName, async (_message, event) => (event.id === id ? 'delete' : 'keep'), async () => undefined);
    return discarded;
  }

  protected async closeBroker(): Promise<void> {
    await this.#marks.flush();
    this.#sns.destroy();
    this.#sqs.destroy();
    await this.#onClose?.();
  }
}

/** Whether the SDK's default chain finds credentials (environment, profile, SSO, container or instance role). */
async function hasCredentials(region: string): Promise<boolean> {
  const probe = new SNSClient({ region });
  try {
    await probe.config.credentials();
    return true;
  } catch {
    return false;
  } finally {
    probe.destroy();
  }
}

/**
 * At most SNS_MESSAGE_ATTRIBUTES_MAX attributes: those the topic's filters
 * name first (declare refuses more than fit), then type, source, subject, then
 * the rest by name. The event in the body keeps every attribute.
 */
export function messageAttributes(event: CloudEvent, filtered: ReadonlySet<string> | undefined) {
  const rank = (name: string) => (filtered?.has(name) ? 0 : ATTRIBUTE_PRIORITY.includes(name) ? 1 : 2);
  const candidates = Object.entries(filterAttributes(event))
    .filter(([, value]) => value !== '')
    .sort(([a], [b]) => rank(a) - rank(b) || (rank(a) === 1 ? ATTRIBUTE_PRIORITY.indexOf(a) - ATTRIBUTE_PRIORITY.indexOf(b) : a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(candidates.slice(0, SNS_MESSAGE_ATTRIBUTES_MAX).map(([name, value]) => [name, { DataType: 'String', StringValue: value }]));
}

/** Per topic, the attribute names its subscriptions' filters test. */
function filteredAttributes(subscriptions: ReadonlyArray<{ topic: string; filter: FilterPolicy | null | undefined }>): Map<string, ReadonlySet<string>> {
  const byTopic = new Map<string, Set<string>>();
  for (const { topic, filter } of subscriptions) {
    const names = byTopic.get(topic) ?? new Set<string>();
    for (const name of Object.keys(filter ?? {})) names.add(name);
    byTopic.set(topic, names);
  }
  return byTopic;
}

/** The event a message carries; for a body that is not one (a poison message), a stand-in naming the message, and what is wrong. */
function readEnvelope(message: Message): { event: CloudEvent; problem?: string } {
  let body: unknown;
  try {
    body = JSON.parse(message.Body ?? '');
  } catch (error) {
    return unreadable(message, `the message body is not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const problem = envelopeProblem(body);
  return problem === undefined ? { event: body as CloudEvent } : unreadable(message, `the message body is not a CloudEvent: ${problem}`);
}

const eventIdPattern = new RegExp(EVENT_ID_PATTERN);

/** What a consumer relies on: what the bus checked at publish, as far as a handler needs it. */
function envelopeProblem(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'not a JSON object';
  const event = body as Record<string, unknown>;
  if (event.specversion !== '1.0') return 'specversion is not "1.0"';
  if (typeof event.id !== 'string' || !eventIdPattern.test(event.id)) return 'no valid id';
  for (const name of ['source', 'type', 'time']) if (typeof event[name] !== 'string' || event[name] === '') return `no ${name}`;
  return undefined;
}

const STAND_IN_SOURCE = 'koban/bus/sns-sqs';
const STAND_IN_TYPE = 'koban.bus.unreadable';

/** Stands in for an unreadable message in the dead letters: its id is the SQS message id, its data the body as received. */
function unreadable(message: Message, problem: string): { event: CloudEvent; problem: string } {
  return {
    event: { specversion: '1.0', id: `sqs-message:${message.MessageId}`, source: STAND_IN_SOURCE, type: STAND_IN_TYPE, time: new Date().toISOString(), data: { body: message.Body ?? null } },
    problem,
  };
}

function isStandIn(event: CloudEvent): boolean {
  return event.source === STAND_IN_SOURCE && event.type === STAND_IN_TYPE;
}

/** A message in a dead-letter queue, as a look keeps it: what deleting it and matching it to its dead letter take. */
type DeadLetterCopy = Readonly<{ messageId: string; receipt: string; eventId: string }>;

/** The message a redrive sends: the event with its attributes; an unreadable message as it came (it dies again), since its stand-in was never published. */
function redriveMessage(row: RedrivenRow): { MessageBody: string; MessageAttributes: ReturnType<typeof messageAttributes> } {
  if (isStandIn(row.event)) return { MessageBody: String((row.event.data as { body: unknown }).body ?? ''), MessageAttributes: {} };
  return { MessageBody: JSON.stringify(row.event), MessageAttributes: messageAttributes(row.event, undefined) };
}

/** The seqs of `marked` from the batch `rows` on (`from` 0) or after it (`from` 1): what a failed redrive marked and never sent. */
function unsent(marked: readonly RedrivenRow[], rows: readonly { row: RedrivenRow }[], from: 0 | 1): number[] {
  const at = marked.indexOf(rows[0]!.row);
  return marked.slice(from === 0 ? at : at + rows.length).map((row) => row.seq);
}

/** Deletes these received messages, in batches; throws naming the first the queue did not delete. */
async function deleteBatch(sqs: SQSClient, queueUrl: string, receipts: readonly string[]): Promise<void> {
  for (let start = 0; start < receipts.length; start += AWS_BATCH_MAX) {
    const result = await sqs.send(
      new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: receipts.slice(start, start + AWS_BATCH_MAX).map((receipt, index) => ({ Id: String(index), ReceiptHandle: receipt })) }),
    );
    if ((result.Failed ?? []).length > 0) throw new Error(`SQS did not delete ${result.Failed!.length} messages: ${result.Failed![0]!.Code} ${result.Failed![0]!.Message ?? ''}`);
  }
}

/**
 * `ack`: delete it (`handled`: the handler succeeded, so later copies of the
 * event are dropped); `retry`: back after a delay; `dead`: recorded as a dead
 * letter and made visible at once, so the next receive, past the queue's
 * maxReceiveCount, has SQS move it to the dead-letter queue: one copy there.
 */
type Outcome = { kind: 'ack'; handled: boolean } | { kind: 'retry'; delayMs: number } | { kind: 'dead' };

class SqsConsumer extends ConsumerLifecycle {
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  /** Records a dead letter, and the death of the message (when it has a claim): see recordDeath. */
  readonly #deadLetter: (event: CloudEvent, messageId: string | undefined, attempts: number, lastError: string) => Promise<void>;
  readonly #claim: (copies: readonly ReceivedCopy[]) => Promise<Ownership[]>;
  readonly #markHandled: (copies: readonly ReceivedCopy[]) => Promise<void>;
  readonly #logger: Logger;
  /** Messages received and not yet handed to a handler (their events being claimed). */
  #claiming = 0;
  /** Acks waiting for the next DeleteMessageBatch. */
  readonly #acks: { receipt: string; handled: ReceivedCopy | undefined; resolve: () => void; reject: (error: unknown) => void }[] = [];
  /** Cancels the poll in progress when the consumer is abandoned (as a crash would). */
  readonly #abandon = new AbortController();

  constructor(
    options: ConsumerOptions & {
      sqs: SQSClient;
      queueUrl: string;
      deadLetter: (event: CloudEvent, messageId: string | undefined, attempts: number, lastError: string) => Promise<void>;
      claim: (copies: readonly ReceivedCopy[]) => Promise<Ownership[]>;
      markHandled: (copies: readonly ReceivedCopy[]) => Promise<void>;
      logger: Logger;
    },
  ) {
    super(options);
    this.#sqs = options.sqs;
    this.#queueUrl = options.queueUrl;
    this.#deadLetter = options.deadLetter;
    this.#claim = options.claim;
    this.#markHandled = options.markHandled;
    this.#logger = options.logger;
  }

  protected async run(): Promise<void> {
    while (!this.stopping) {
      // Messages still being claimed count against the limit as much as those their handlers hold.
      const room = this.inFlightMax - this.inFlight - this.#claiming;
      if (room <= 0) {
        await this.wakeup.sleep(1_000);
        continue;
      }
      let received: Message[];
      try {
        const result = await this.#sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: this.#queueUrl,
            MaxNumberOfMessages: Math.min(AWS_BATCH_MAX, this.batchSizeMax, room),
            WaitTimeSeconds: RECEIVE_WAIT_SECONDS,
            MessageSystemAttributeNames: ['ApproximateReceiveCount'],
          }),
          { abortSignal: this.#abandon.signal },
        );
        received = result.Messages ?? [];
      } catch (error) {
        if (this.stopping) return;
        this.#logger.warn({ err: error }, 'receiving from SQS failed; trying again');
        await this.wakeup.sleep(RECEIVE_RETRY_MS);
        continue;
      }
      if (received.length === 0) continue;
      // Claimed while the next poll waits: the poll loop never waits on the database.
      this.#claiming += received.length;
      this.track(() =>
        this.#dispatchAll(received).finally(() => {
          this.#claiming -= received.length;
        }),
      );
    }
  }

  /** Already received (their delivery is counted), so they are settled even during a graceful stop. */
  async #dispatchAll(received: readonly Message[]): Promise<void> {
    const readable: { message: Message; event: CloudEvent }[] = [];
    for (const message of received) {
      const { event, problem } = readEnvelope(message);
      if (problem === undefined) readable.push({ message, event });
      else if (!this.abandoned) this.#poisoned(message, event, problem);
    }
    let ownership: Ownership[];
    try {
      ownership = await this.#claim(readable.map(({ message, event }) => ({ eventId: event.id, messageId: message.MessageId! })));
    } catch (error) {
      // Unclaimed, none is handled: each comes back after its visibility timeout.
      this.#logger.warn({ err: error }, 'claiming received events failed; they will be redelivered');
      return;
    }
    readable.forEach(({ message, event }, index) => {
      if (this.abandoned) return;
      this.#dispatch(message, event, ownership[index]!);
    });
  }

  /**
   * Something other than this adapter sent it, and no handler can read it: a
   * dead letter at once (the stand-in keeps the body), made visible again
   * until SQS, past maxReceiveCount, moves it to the dead-letter queue.
   */
  #poisoned(message: Message, standIn: CloudEvent, problem: string): void {
    const attempt = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
    this.track(async () => {
      try {
        await this.#deadLetter(standIn, undefined, attempt, problem);
        if (attempt === 1) this.#logger.error({ messageId: message.MessageId, id: standIn.id, problem }, 'unreadable message dead-lettered');
        if (this.abandoned) return;
        await this.#sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: this.#queueUrl, ReceiptHandle: message.ReceiptHandle!, VisibilityTimeout: 0 }));
      } catch (error) {
        this.#logger.warn({ err: error, messageId: message.MessageId }, 'dead-lettering an unreadable message failed; it will be redelivered');
      }
    });
  }

  #dispatch(message: Message, event: CloudEvent, ownership: Ownership): void {
    const receipt = message.ReceiptHandle!;
    const attempt = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
    const copy = { eventId: event.id, messageId: message.MessageId! };
    this.track(async () => {
      try {
        // Another message carried this event, or this one was handled and its delete was lost: its handler never sees it again.
        // One that died (recorded dead, back before SQS moved it) goes on to the dead-letter queue: dead until redriven.
        const outcome: Outcome =
          ownership === 'handle' ? await this.#process(receipt, copy.messageId, event, attempt) : ownership === 'died' ? { kind: 'dead' } : { kind: 'ack', handled: false };
        if (ownership === 'handled' || ownership === 'duplicate') this.#logger.debug({ id: event.id, messageId: copy.messageId, ownership }, 'dropping a copy of an event already claimed');
        if (this.abandoned) return;
        if (outcome.kind === 'ack') {
          await this.#acknowledge(receipt, outcome.handled ? copy : undefined);
        } else if (outcome.kind === 'dead') {
          await this.#sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: this.#queueUrl, ReceiptHandle: receipt, VisibilityTimeout: 0 }));
        } else {
          await this.#changeVisibility(receipt, outcome.delayMs);
        }
      } catch (error) {
        // Left as it is, it comes back after its visibility timeout.
        this.#logger.warn({ err: error, id: event.id }, 'settling a delivery failed; it will be redelivered');
      }
    });
  }

  async #process(receipt: string, messageId: string, event: CloudEvent, attempt: number): Promise<Outcome> {
    if (attempt > this.subscription.maxDeliveries) {
      // Its last delivery went unacknowledged until the deadline (a crashed consumer).
      // (Only when maxDeliveries grew since SQS counted: SQS moves the others itself.)
      await this.#deadLetter(event, messageId, attempt - 1, ACK_DEADLINE_EXCEEDED);
      return { kind: 'dead' };
    }
    // The deadline is extended while the handler works, so a slow handler is not redelivered under it.
    const deadlineMs = ackDeadlineSeconds(this.subscription.ackWaitMs) * 1000;
    const extendEveryMs = deadlineMs / 2;
    const extender = setInterval(() => {
      // Abandoned (as by a crash), it is left to run out, and the handler may never settle.
      if (this.abandoned) clearInterval(extender);
      else void this.#changeVisibility(receipt, deadlineMs).catch(() => undefined);
    }, extendEveryMs);
    extender.unref();
    try {
      await this.handler({ event, subscription: this.subscription.name, attempt });
    } catch (error) {
      const lastError = truncateError(error, LAST_ERROR_LENGTH_MAX);
      if (attempt >= this.subscription.maxDeliveries) {
        if (this.abandoned) return { kind: 'dead' };
        await this.#deadLetter(event, messageId, attempt, lastError);
        this.#logger.warn({ id: event.id, attempts: attempt, lastError }, 'message dead-lettered after its last delivery failed');
        return { kind: 'dead' };
      }
      return { kind: 'retry', delayMs: retryDelayMs(this.subscription, attempt) };
    } finally {
      clearInterval(extender);
    }
    return { kind: 'ack', handled: true };
  }

  // A graceful stop lets the poll in progress return (within RECEIVE_WAIT_SECONDS) and handles what it brought;
  // an abandoning one cancels it, so a crashed consumer takes nothing more.
  protected override async stopTaking(): Promise<void> {
    if (this.abandoned) this.#abandon.abort();
  }

  /**
   * Queues an ack; resolves once its message is deleted. Acks go out
   * together: a DeleteMessageBatch as soon as AWS_BATCH_MAX wait, else once
   * the handlers settling in this turn of the event loop have queued theirs.
   * Handled events are recorded first, so a delete that is lost (or refused)
   * brings back a message that is dropped unhandled.
   */
  #acknowledge(receipt: string, handled: ReceivedCopy | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#acks.push({ receipt, handled, resolve, reject });
      if (this.#acks.length >= AWS_BATCH_MAX) void this.#flushAcks();
      else if (this.#acks.length === 1) setImmediate(() => void this.#flushAcks());
    });
  }

  async #flushAcks(): Promise<void> {
    const batch = this.#acks.splice(0, AWS_BATCH_MAX);
    if (batch.length === 0) return;
    try {
      await this.#markHandled(batch.flatMap((ack) => (ack.handled ? [ack.handled] : [])));
      const result = await this.#sqs.send(
        new DeleteMessageBatchCommand({ QueueUrl: this.#queueUrl, Entries: batch.map((ack, index) => ({ Id: String(index), ReceiptHandle: ack.receipt })) }),
      );
      const failed = new Map((result.Failed ?? []).map((entry) => [Number(entry.Id), entry]));
      batch.forEach((ack, index) => {
        const failure = failed.get(index);
        if (failure) ack.reject(new Error(`SQS did not delete the message: ${failure.Code} ${failure.Message ?? ''}`));
        else ack.resolve();
      });
    } catch (error) {
      for (const ack of batch) ack.reject(error);
    }
  }

  async #changeVisibility(receipt: string, delayMs: number): Promise<void> {
    await this.#sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: this.#queueUrl, ReceiptHandle: receipt, VisibilityTimeout: seconds(delayMs) }));
  }
}

