// HTTP routes of the notifications service: a user's notices and settings,
// and the dead deliveries with their redrive.
import type { FastifyInstance } from 'fastify';
import type { Language } from '../domain/limits.ts';
import type { NotificationService } from '../service.ts';
import { notificationSchemas } from './schemas.ts';

export function registerNotificationRoutes(app: FastifyInstance, service: NotificationService): void {
  app.get<{ Params: { user_id: string }; Querystring: { limit: number; cursor?: string } }>(
    '/v1/users/:user_id/notices',
    { schema: notificationSchemas.listNotices },
    (request) => service.notices(request.params.user_id, request.query),
  );

  app.get<{ Params: { user_id: string } }>('/v1/users/:user_id/notification-settings', { schema: notificationSchemas.getSettings }, (request) =>
    service.settings(request.params.user_id),
  );

  app.put<{ Params: { user_id: string }; Body: { language: Language; webhook_url?: string | null } }>(
    '/v1/users/:user_id/notification-settings',
    { schema: notificationSchemas.putSettings },
    (request) => service.putSettings(request.params.user_id, request.body),
  );

  app.get<{ Querystring: { limit: number; cursor?: string } }>('/v1/notifications/dead-letters', { schema: notificationSchemas.listDeadLetters }, (request) =>
    service.deadLetters(request.query),
  );

  app.post<{ Body: { ids?: string[] } | undefined }>(
    '/v1/notifications/dead-letters/redrive',
    {
      schema: notificationSchemas.redrive,
      // No body at all means the same as {}: redrive everything. JSON null is a body (not an object), refused.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
    },
    (request) => service.redrive(request.body?.ids),
  );
}
