// The QUICPay+ route's one endpoint: each message type mapped onto the shared
// payment domain (mapping.ts), the network's message kept as sent for telling
// a resend from a conflicting reuse of its transaction number.
import type { FastifyInstance } from 'fastify';
import { sendAnswer } from '../http/answer.ts';
import { registerPaymentReadRoute } from '../http/payment-routes.ts';
import { paymentIdOf } from '../domain/payment.ts';
import type { Answer, PaymentService } from '../service.ts';
import { cancelAction, QUICPAY_CURRENCY, type QuicpayMessage } from './mapping.ts';
import { quicpaySchemas } from './schemas.ts';

export function registerQuicpayRoutes(app: FastifyInstance, service: PaymentService, now: () => Date): void {
  app.post<{ Body: QuicpayMessage }>('/v1/quicpay/messages', { schema: quicpaySchemas.message }, async (request, reply) =>
    sendAnswer(reply, await handleQuicpay(service, request.body, now)),
  );
  registerPaymentReadRoute(app, service);
}

export async function handleQuicpay(service: PaymentService, message: QuicpayMessage, now: () => Date): Promise<Answer> {
  const raw = { ...message };
  const original = message.original_transaction_number!;
  const user_id = message.member_id;
  switch (message.message_type) {
    case 'authorization':
      return service.authorize(
        { authorization_id: message.transaction_number, user_id, amount: message.amount, currency: QUICPAY_CURRENCY, merchant: message.merchant },
        { advice: false, raw },
      );
    case 'sales':
      return service.capture(
        { sales_draft_id: message.transaction_number, authorization_id: original, user_id, amount: message.amount, currency: QUICPAY_CURRENCY, merchant: message.merchant, final: true },
        raw,
      );
    case 'refund':
      return service.refund({ refund_id: message.transaction_number, authorization_id: original, user_id, amount: message.amount }, raw);
    case 'cancel': {
      // A resend of a cancel is answered from what was stored, whatever the payment became since (every
      // QUICPay+ message shares one namespace, so the kind named here does not matter).
      const replayed = await service.storedAnswer('reversal', message.transaction_number, raw);
      if (replayed !== undefined) return replayed;
      const payment = await service.payment(paymentIdOf('quicpay', original));
      return cancelAction(payment, now()) === 'reverse'
        ? service.reverse({ reversal_id: message.transaction_number, authorization_id: original, user_id, amount: message.amount }, raw)
        : service.refund({ refund_id: message.transaction_number, authorization_id: original, user_id, amount: message.amount }, raw);
    }
  }
}
