// The QUICPay+ route as a service (`koban serve quicpay`): its own database
// and outbox; its messages in routes.ts, mapped in mapping.ts.
import type { ServiceModule } from '../../../platform/service-module.ts';
import { paymentRouteModule } from '../route-module.ts';
import type { PaymentService } from '../service.ts';
import { quicpayDialect } from './mapping.ts';
import { registerQuicpayRoutes } from './routes.ts';

export const quicpayModule: ServiceModule<PaymentService> = paymentRouteModule({
  route: 'quicpay',
  title: 'Koban QUICPay+ route',
  description: 'QUICPay+ authorization, sales, cancel and refund messages: cash held and settled in the ledger, the same payment events as Visa (route quicpay).',
  defaultPort: 3004,
  dialect: quicpayDialect,
  registerRoutes: (app, service, clock) => registerQuicpayRoutes(app, service, () => clock.now()),
});
