// GET /v1/payments/{payment_id}: what support staff ask first. The payment id
// starts with its route, so with every route in one process (`koban start`)
// one route table serves them all, each payment read from its route's database.
import type { FastifyInstance } from 'fastify';
import { KobanError } from '../../../platform/errors.ts';
import type { PaymentService } from '../service.ts';
import { getPaymentSchema } from './schemas.ts';

const servicesByApp = new WeakMap<FastifyInstance, Map<string, PaymentService>>();

export function registerPaymentReadRoute(app: FastifyInstance, service: PaymentService): void {
  let services = servicesByApp.get(app);
  if (services === undefined) {
    const routes = new Map<string, PaymentService>();
    services = routes;
    servicesByApp.set(app, routes);
    app.get<{ Params: { payment_id: string } }>('/v1/payments/:payment_id', { schema: getPaymentSchema }, (request) => {
      const route = request.params.payment_id.slice(0, request.params.payment_id.indexOf(':'));
      const owner = routes.get(route);
      if (owner === undefined) throw new KobanError('not_found', `no payment ${request.params.payment_id} (route ${route} does not run here)`, { field: 'payment_id' });
      return owner.view(request.params.payment_id);
    });
  }
  services.set(service.route, service);
}
