// The Visa route's endpoints: each maps its message onto the shared payment
// domain, one to one (Visa's messages already speak its language).
import type { FastifyInstance } from 'fastify';
import type { Merchant } from '../../../contracts/events/payments.ts';
import { sendAnswer } from '../http/answer.ts';
import { registerPaymentReadRoute } from '../http/payment-routes.ts';
import type { PaymentService } from '../service.ts';
import { visaSchemas } from './schemas.ts';

type AuthorizationBody = { authorization_id: string; user_id: string; amount: number; currency: string; merchant: Merchant; incremental_of?: string };
type SalesDraftBody = { sales_draft_id: string; authorization_id: string; user_id: string; amount: number; currency: string; merchant: Merchant; final: boolean };
type ReversalBody = { reversal_id: string; authorization_id: string; user_id: string; amount?: number };
type RefundBody = { refund_id: string; sales_draft_id: string; user_id: string; amount: number };

export function registerVisaRoutes(app: FastifyInstance, service: PaymentService): void {
  app.post<{ Body: AuthorizationBody }>('/v1/visa/authorizations', { schema: visaSchemas.authorization }, async (request, reply) =>
    sendAnswer(reply, await service.authorize(request.body, { advice: false })),
  );
  app.post<{ Body: AuthorizationBody }>('/v1/visa/advices', { schema: visaSchemas.advice }, async (request, reply) =>
    sendAnswer(reply, await service.authorize(request.body, { advice: true })),
  );
  app.post<{ Body: SalesDraftBody }>('/v1/visa/sales-drafts', { schema: visaSchemas.salesDraft }, async (request, reply) => sendAnswer(reply, await service.capture(request.body)));
  app.post<{ Body: ReversalBody }>('/v1/visa/reversals', { schema: visaSchemas.reversal }, async (request, reply) => sendAnswer(reply, await service.reverse(request.body)));
  app.post<{ Body: RefundBody }>('/v1/visa/refunds', { schema: visaSchemas.refund }, async (request, reply) => sendAnswer(reply, await service.refund(request.body)));
  registerPaymentReadRoute(app, service);
}
