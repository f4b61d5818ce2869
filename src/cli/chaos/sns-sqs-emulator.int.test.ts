// Goal: the chaos run's SNS+SQS broker restart loses nothing, as SQS never does: the emulator process stopped and started on the same port and directory still has its topic, its subscription (fan-out works at once) and every message, one in flight coming back once its deadline passes; and without a directory nothing is kept (what makes the directory needed).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { CreateTopicCommand, PublishCommand, SNSClient, SubscribeCommand } from '@aws-sdk/client-sns';
import { CreateQueueCommand, GetQueueAttributesCommand, ListQueuesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { EMULATOR_CREDENTIALS, startEmbeddedEmulator } from '../../services/bus/adapters/sns-sqs/embedded-emulator.ts';
import { startOwnSnsSqs } from './topology.ts';

const clients = (endpoint: string) => {
  const common = { region: 'us-east-1', endpoint, credentials: { ...EMULATOR_CREDENTIALS }, maxAttempts: 1 };
  return { sns: new SNSClient(common), sqs: new SQSClient({ ...common, useQueueUrlAsEndpoint: false }) };
};

test('a broker restart keeps topics, subscriptions, queues and messages (in flight ones too)', async () => {
  const broker = await startOwnSnsSqs('emutest');
  after(() => broker.stop());
  const { sns, sqs } = clients(broker.env.KOBAN_SNS_SQS_ENDPOINT!);
  after(() => (sns.destroy(), sqs.destroy()));
  const topicArn = (await sns.send(new CreateTopicCommand({ Name: 'kept' }))).TopicArn!;
  const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'kept-q', Attributes: { VisibilityTimeout: '2' } }))).QueueUrl!;
  const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
  await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: queueArn, Attributes: { RawMessageDelivery: 'true' } }));
  await sns.send(new PublishCommand({ TopicArn: topicArn, Message: 'in flight' }));
  const taken = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }));
  assert.deepEqual(taken.Messages?.map((message) => message.Body), ['in flight']);
  await sns.send(new PublishCommand({ TopicArn: topicArn, Message: 'waiting' }));

  const pid = broker.pid();
  await broker.restart(300);
  assert.notEqual(broker.pid(), pid, 'a new process');
  await sns.send(new PublishCommand({ TopicArn: topicArn, Message: 'after' }));
  const bodies: string[] = [];
  const deadline = Date.now() + 10_000;
  while (bodies.length < 3 && Date.now() < deadline) {
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 30 }));
    bodies.push(...(received.Messages ?? []).map((message) => message.Body!));
  }
  assert.deepEqual(bodies.sort(), ['after', 'in flight', 'waiting']);
});

test('without a data directory the emulator keeps nothing across a restart', async () => {
  const first = await startEmbeddedEmulator();
  const before = clients(first.endpoint).sqs;
  await before.send(new CreateQueueCommand({ QueueName: 'gone' }));
  before.destroy();
  await first.stop();
  const second = await startEmbeddedEmulator({ port: first.port });
  const { sqs } = clients(second.endpoint);
  try {
    const listed = await sqs.send(new ListQueuesCommand({}));
    assert.deepEqual(listed.QueueUrls ?? [], []);
  } finally {
    sqs.destroy();
    await second.stop();
  }
});
