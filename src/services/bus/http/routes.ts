// HTTP routes of the event bus: publish from outside, subscription stats,
// and the dead-letter workflow (list, redrive, discard).
import type { FastifyInstance } from 'fastify';
import type { EventBus } from '../../../contracts/bus/event-bus.ts';
import { EVENT_BYTES_MAX } from '../../../contracts/events/limits.ts';
import { parseJsonBody } from '../../../platform/http/server.ts';
import { busSchemas } from './schemas.ts';
import { PUBLISH_BATCH_BYTES_MAX } from '../domain/limits.ts';
import { type CloudEvent, validateEvent } from '../../../contracts/events/envelope.ts';
import { systemClock } from '../../../platform/clock.ts';
import { invalidRequest, isErrorCode } from '../../../platform/errors.ts';

/** CloudEvents' structured-mode media type; parsed as the JSON it is, as strictly as application/json. */
const CLOUDEVENTS_JSON = 'application/cloudevents+json';
/** The event limit plus room for whitespace a client may add. */
const PUBLISH_BODY_BYTES_MAX = EVENT_BYTES_MAX + 1024;

export function registerBusRoutes(app: FastifyInstance, bus: EventBus): void {
  if (!app.hasContentTypeParser(CLOUDEVENTS_JSON)) {
    app.addContentTypeParser(CLOUDEVENTS_JSON, { parseAs: 'string', bodyLimit: PUBLISH_BODY_BYTES_MAX }, parseJsonBody);
  }

  app.post<{ Params: { topic: string }; Body: unknown }>(
    '/v1/topics/:topic/events',
    { schema: busSchemas.publish, bodyLimit: PUBLISH_BODY_BYTES_MAX },
    async (request, reply) => reply.code(202).send(await bus.publish(request.params.topic, request.body)),
  );

  app.post<{ Body: { messages: Array<{ topic: string; event: unknown }> } }>(
    '/v1/events/batch',
    { schema: busSchemas.publishBatch, bodyLimit: PUBLISH_BATCH_BYTES_MAX },
    async (request) => {
      const messages = request.body.messages.map(({ topic, event }, index) => {
        try {
          // Producers stamp `time` when they write the outbox; the clock only fills in a missing one.
          return { topic, event: validateEvent(event, systemClock) as CloudEvent };
        } catch (error) {
          if (isErrorCode(error, 'invalid_request')) throw invalidRequest(`messages.${index}.event`, error.message);
          throw error;
        }
      });
      const statuses = await bus.publishBatch(messages);
      return {
        results: statuses.map((status, index) =>
          typeof status === 'string' ? { id: messages[index]!.event.id, status } : { id: messages[index]!.event.id, status: 'conflict', conflict: status.conflict },
        ),
      };
    },
  );

  app.get('/v1/subscriptions', { schema: busSchemas.listSubscriptions }, async () => ({ data: await bus.subscriptions() }));

  app.get<{ Params: { name: string }; Querystring: { limit: number; cursor?: string; state: 'dead' | 'discarded' } }>(
    '/v1/subscriptions/:name/dead-letters',
    { schema: busSchemas.listDeadLetters },
    (request) => bus.deadLetters(request.params.name, request.query),
  );

  app.post<{ Params: { name: string }; Body: { ids?: string[] } | undefined }>(
    '/v1/subscriptions/:name/dead-letters/redrive',
    {
      schema: busSchemas.redrive,
      // No body at all means the same as {}: redrive everything. JSON null is a body (not an object), refused.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    (request) => bus.redrive(request.params.name, request.body?.ids),
  );

  app.post<{ Params: { name: string; id: string } }>(
    '/v1/subscriptions/:name/dead-letters/:id/discard',
    { schema: busSchemas.discard },
    (request) => bus.discard(request.params.name, request.params.id),
  );
}
