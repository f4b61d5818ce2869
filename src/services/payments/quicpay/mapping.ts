// QUICPay+ messages onto the payment domain: one endpoint, a message type per
// step, transaction numbers unique across every type, and its own answer shape.
// Pure: the route runs what this decides.
import type { Merchant } from '../../../contracts/events/payments.ts';
import type { Payment } from '../domain/payment.ts';
import { WALLET_CURRENCY } from '../domain/limits.ts';
import { cancelWindowClosed } from '../domain/errors.ts';
import type { MessageKind, NetworkDialect } from '../service.ts';

export const QUICPAY_MESSAGE_TYPES = ['authorization', 'sales', 'cancel', 'refund'] as const;
export type QuicpayMessageType = (typeof QUICPAY_MESSAGE_TYPES)[number];

export type QuicpayMessage = Readonly<{
  message_type: QuicpayMessageType;
  transaction_number: string;
  /** The authorization's transaction number (sales, cancel, refund). */
  original_transaction_number?: string;
  member_id: string;
  amount: number;
  merchant: Merchant;
  terminal_id?: string;
}>;

/** Every QUICPay+ transaction number shares one namespace, whatever its message type. */
export const QUICPAY_NAMESPACE = 'quicpay';

/** JST (UTC+9, no daylight saving): the day a cancel must fall on to undo a sale. */
const JST_OFFSET_MS = 9 * 60 * 60 * 1000;

/** Where the domain's answer to each kind of message carries that message's own id. */
const ANSWER_ID_FIELD: Record<MessageKind, string> = {
  authorization: 'authorization_id',
  advice: 'authorization_id',
  sales_draft: 'sales_draft_id',
  reversal: 'reversal_id',
  refund: 'refund_id',
};

export const quicpayDialect: NetworkDialect = {
  namespace: () => QUICPAY_NAMESPACE,
  render(kind: MessageKind, answer) {
    // The number of the message answered: a sales or cancel answer names its authorization too, which is not its number.
    const number = answer[ANSWER_ID_FIELD[kind]] as string;
    if (kind === 'authorization' || kind === 'advice') {
      return answer.approved === true
        ? { transaction_number: number, result: 'approved' }
        : { transaction_number: number, result: 'declined', reason: answer.decline_reason };
    }
    return { transaction_number: number, result: 'approved' };
  },
};

/** What a cancel does: before any sale it releases the hold; after one, on the sale's day (JST), it refunds; later it is refused. */
export function cancelAction(payment: Payment | undefined, now: Date): 'reverse' | 'refund' {
  if (payment === undefined || payment.captures.length === 0) return 'reverse';
  const lastSale = payment.captures.at(-1)!.captured_at;
  const day = (instant: Date) => new Date(instant.getTime() + JST_OFFSET_MS).toISOString().slice(0, 10);
  if (day(new Date(lastSale)) !== day(now)) {
    throw cancelWindowClosed(`a cancel after the sales day (${day(new Date(lastSale))} JST) cannot undo it: send a refund`, { captured_on: day(new Date(lastSale)) });
  }
  return 'refund';
}

export const QUICPAY_CURRENCY = WALLET_CURRENCY;
