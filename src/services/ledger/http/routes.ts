// HTTP routes of the balance service: the LedgerApi over HTTP. The schemas
// reject malformed requests early; the service validates every call itself.
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { LedgerService } from '../service.ts';
import type { PostRequest, TransactionListQuery, TransactionRequest, VoidRequest, WriteResult } from '../../../contracts/ledger/ledger-api.ts';
import { ledgerSchemas } from './schemas.ts';

export const REPLAY_HEADER = 'Idempotent-Replayed';

/** 201 for the first success, 200 with the replay header for an identical repeat. */
function sendWriteResult(reply: FastifyReply, result: WriteResult) {
  if (result.replayed) void reply.header(REPLAY_HEADER, 'true');
  return reply.code(result.replayed ? 200 : 201).send(result.transaction);
}

export function registerLedgerRoutes(app: FastifyInstance, ledger: LedgerService): void {
  const schemas = ledgerSchemas(ledger.balanceTypes);

  app.post<{ Body: TransactionRequest }>('/v1/transactions', { schema: schemas.postTransaction }, async (request, reply) =>
    sendWriteResult(reply, await ledger.submit(request.body)),
  );

  app.post<{ Params: { transaction_id: string }; Body: PostRequest }>('/v1/transactions/:transaction_id/post', { schema: schemas.postHold }, async (request, reply) =>
    sendWriteResult(reply, await ledger.post(request.params.transaction_id, request.body)),
  );

  app.post<{ Params: { transaction_id: string }; Body: VoidRequest }>('/v1/transactions/:transaction_id/void', { schema: schemas.voidHold }, async (request, reply) =>
    sendWriteResult(reply, await ledger.void(request.params.transaction_id, request.body)),
  );

  app.get<{ Params: { transaction_id: string } }>('/v1/transactions/:transaction_id', { schema: schemas.getTransaction }, async (request) => ({
    data: await ledger.getTransactions(request.params.transaction_id),
  }));

  app.get<{ Params: { user_id: string } }>('/v1/users/:user_id/balances', { schema: schemas.listBalances }, async (request) => ({
    data: await ledger.listBalances(request.params.user_id),
  }));

  app.get<{ Params: { user_id: string; balance_type: string } }>('/v1/users/:user_id/balances/:balance_type', { schema: schemas.getBalance }, (request) =>
    ledger.getBalance(request.params.user_id, request.params.balance_type),
  );

  app.get('/v1/audit', { schema: schemas.audit }, () => ledger.audit());

  app.get<{ Params: { user_id: string }; Querystring: TransactionListQuery }>('/v1/users/:user_id/transactions', { schema: schemas.listTransactions }, (request) =>
    ledger.listTransactions(request.params.user_id, request.query),
  );
}
