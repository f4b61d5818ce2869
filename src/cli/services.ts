// Every Koban service, in start order. Adding one is its module file plus one
// line here.
import { accountsModule } from '../services/accounts/module.ts';
import { busModule } from '../services/bus/module.ts';
import { ledgerModule } from '../services/ledger/module.ts';
import { quicpayModule } from '../services/payments/quicpay/module.ts';
import { visaModule } from '../services/payments/visa/module.ts';
import { notificationsModule } from '../services/notifications/module.ts';
import { pointsModule } from '../services/points/module.ts';
import type { ServiceModule } from '../platform/service-module.ts';

export const SERVICES: readonly ServiceModule[] = [ledgerModule, busModule, visaModule, quicpayModule, accountsModule, pointsModule, notificationsModule];

export const KOBAN_VERSION = '0.1.0';

/** OpenAPI of `koban start`, which serves every service on one port. */
export const KOBAN_OPENAPI = {
  title: 'Koban',
  version: KOBAN_VERSION,
  description: 'Wallet platform: idempotent balances (cash, points) and event-driven point assignment.',
} as const;
