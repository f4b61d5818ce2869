// HTTP routes of the accounts service. The schemas refuse malformed requests
// early; the service checks every call itself.
import type { FastifyInstance } from 'fastify';
import { REPLAY_HEADER } from '../../../platform/http/openapi.ts';
import { ACCOUNT_BODY_BYTES_MAX } from '../domain/limits.ts';
import type { AccountsService } from '../service.ts';
import { accountSchemas } from './schemas.ts';

export function registerAccountRoutes(app: FastifyInstance, service: AccountsService): void {
  // The route's own body limit: under `koban start` the server's is the largest of every service's.
  app.post<{ Body: { user_id: string } }>('/v1/users', { schema: accountSchemas.create, bodyLimit: ACCOUNT_BODY_BYTES_MAX }, async (request, reply) => {
    const { account, replayed } = await service.create(request.body.user_id);
    // As the ledger answers: 201 the first time, 200 marked as a replay after.
    if (replayed) void reply.header(REPLAY_HEADER, 'true');
    return reply.code(replayed ? 200 : 201).send(account);
  });

  app.get<{ Params: { user_id: string } }>('/v1/users/:user_id', { schema: accountSchemas.get }, (request) => service.get(request.params.user_id));
}
