// The Visa route as a service (`koban serve visa`): its own database and
// outbox; its messages in routes.ts.
import type { ServiceModule } from '../../../platform/service-module.ts';
import { paymentRouteModule } from '../route-module.ts';
import type { PaymentService } from '../service.ts';
import { registerVisaRoutes } from './routes.ts';

export const visaModule: ServiceModule<PaymentService> = paymentRouteModule({
  route: 'visa',
  title: 'Koban Visa route',
  description: 'Visa authorizations, advices, sales drafts, reversals and refunds: cash held and settled in the ledger, payment events published through the outbox.',
  defaultPort: 3003,
  registerRoutes: (app, service) => registerVisaRoutes(app, service),
});
