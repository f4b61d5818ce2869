// HTTP routes of the points service: reads only (grants arrive as events).
import type { FastifyInstance } from 'fastify';
import type { PointsService } from '../service.ts';
import { pointsSchemas } from './schemas.ts';

export function registerPointsRoutes(app: FastifyInstance, service: PointsService): void {
  app.get<{ Params: { user_id: string } }>('/v1/users/:user_id/points', { schema: pointsSchemas.getPoints }, (request) => service.summary(request.params.user_id));
  app.get<{ Params: { user_id: string }; Querystring: { limit: number; cursor?: string } }>('/v1/users/:user_id/point-grants', { schema: pointsSchemas.listGrants }, (request) =>
    service.grants(request.params.user_id, request.query),
  );
}
