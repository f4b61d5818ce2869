// What a notice says: one template per event type and language, pure
// functions of the event's data. Amounts are integers in minor units; they
// are shown as the wallet's people read money (3,000円 in Japanese, ¥3,000 in
// English), formatted from the integer's digits so no float ever rounds them.
import type { AccountEvent } from '../../../contracts/events/accounts.ts';
import type { DeclineReason, PaymentEvent, PaymentEventData, PaymentEventType } from '../../../contracts/events/payments.ts';
import type { Language } from './limits.ts';

/** An event a notice is made from: a payment's state change, or a new account (the welcome). */
export type NotifiableEvent = Readonly<{ topic: 'payments'; event: PaymentEvent } | { topic: 'accounts'; event: AccountEvent }>;

export type Rendered = Readonly<{ title: string; body: string }>;

type PaymentTemplate = (data: PaymentEventData, money: (amount: number) => string) => Rendered;

const DECLINE_REASONS: Record<Language, Record<DeclineReason, string>> = {
  ja: { insufficient_balance: '残高不足', unsupported_currency: 'ご利用いただけない通貨', amount_limit_exceeded: 'ご利用限度額の超過' },
  en: { insufficient_balance: 'insufficient balance', unsupported_currency: 'unsupported currency', amount_limit_exceeded: 'amount above the limit' },
};

const PAYMENT_TEMPLATES: Record<Language, Record<PaymentEventType, PaymentTemplate>> = {
  ja: {
    'payment.authorized': (d, money) => ({ title: 'お支払いが承認されました', body: `${d.merchant.name}での${money(d.amount)}のお支払いが承認されました。` }),
    'payment.authorization_increased': (d, money) => ({
      title: '承認金額が増額されました',
      body: `${d.merchant.name}での承認金額が${money(d.amount)}増額され、合計${money(d.authorized_total)}になりました。`,
    }),
    'payment.captured': (d, money) => ({ title: 'お支払いが確定しました', body: `${d.merchant.name}での${money(d.amount)}のお支払いが確定しました。` }),
    'payment.reversed': (d, money) => ({ title: '承認が取り消されました', body: `${d.merchant.name}での${money(d.amount)}の承認が取り消されました。` }),
    'payment.authorization_expired': (d, money) => ({
      title: '承認の有効期限が切れました',
      body: `${d.merchant.name}での${money(d.amount)}の承認は有効期限が切れたため解除されました。`,
    }),
    'payment.refunded': (d, money) => ({ title: '返金されました', body: `${d.merchant.name}から${money(d.amount)}が返金されました。` }),
    'payment.declined': (d, money) => ({
      title: 'お支払いが承認されませんでした',
      body: `${d.merchant.name}での${money(d.amount)}のお支払いは承認されませんでした（理由：${declineReason('ja', d)}）。`,
    }),
  },
  en: {
    'payment.authorized': (d, money) => ({ title: 'Payment authorized', body: `Your payment of ${money(d.amount)} at ${d.merchant.name} was authorized.` }),
    'payment.authorization_increased': (d, money) => ({
      title: 'Authorization increased',
      body: `Your authorization at ${d.merchant.name} was increased by ${money(d.amount)} to ${money(d.authorized_total)}.`,
    }),
    'payment.captured': (d, money) => ({ title: 'Payment confirmed', body: `Your payment of ${money(d.amount)} at ${d.merchant.name} was confirmed.` }),
    'payment.reversed': (d, money) => ({ title: 'Authorization released', body: `The authorization of ${money(d.amount)} at ${d.merchant.name} was released.` }),
    'payment.authorization_expired': (d, money) => ({
      title: 'Authorization expired',
      body: `The authorization of ${money(d.amount)} at ${d.merchant.name} expired and was released.`,
    }),
    'payment.refunded': (d, money) => ({ title: 'Refund issued', body: `${money(d.amount)} from ${d.merchant.name} was refunded to you.` }),
    'payment.declined': (d, money) => ({
      title: 'Payment declined',
      body: `Your payment of ${money(d.amount)} at ${d.merchant.name} was declined: ${declineReason('en', d)}.`,
    }),
  },
};

const WELCOME: Record<Language, Rendered> = {
  ja: { title: 'Kobanへようこそ', body: 'ウォレットの準備ができました。お支払いやポイントのお知らせはここに届きます。' },
  en: { title: 'Welcome to Koban', body: 'Your wallet is ready. Notices about your payments and points will appear here.' },
};

/** The title and body of the notice for `notifiable`, in `language`. */
export function renderNotice(notifiable: NotifiableEvent, language: Language): Rendered {
  if (notifiable.topic === 'accounts') return WELCOME[language];
  const { type, data } = notifiable.event;
  return PAYMENT_TEMPLATES[language][type](data, (amount) => formatMoney(amount, data.currency, language));
}

function declineReason(language: Language, data: PaymentEventData): string {
  // A decline always names its reason; an older producer's event without one still renders.
  return data.decline_reason === undefined ? (language === 'ja' ? '不明' : 'unknown reason') : DECLINE_REASONS[language][data.decline_reason];
}

const LOCALES: Record<Language, string> = { ja: 'ja-JP', en: 'en-US' };

/**
 * An integer amount in minor units of `currency`, for people: yen as 3,000円
 * (ja) or ¥3,000 (en); another currency (a declined foreign authorization)
 * in its own symbol and decimals. Formatted from a decimal string, exactly.
 */
export function formatMoney(amount: number, currency: string, language: Language): string {
  if (!Number.isSafeInteger(amount)) throw new RangeError(`amount must be a safe integer, got ${amount}`);
  const locale = LOCALES[language];
  if (currency === 'JPY' && language === 'ja') return `${new Intl.NumberFormat(locale).format(amount)}円`;
  const formatter = new Intl.NumberFormat(locale, { style: 'currency', currency });
  const digits = formatter.resolvedOptions().maximumFractionDigits ?? 0;
  return formatter.format(decimalString(amount, digits) as unknown as number);
}

/** `amount` minor units as a decimal string with `digits` decimals: 1234, 2 → "12.34". Intl formats strings exactly. */
function decimalString(amount: number, digits: number): string {
  if (digits === 0) return String(amount);
  const sign = amount < 0 ? '-' : '';
  const padded = String(Math.abs(amount)).padStart(digits + 1, '0');
  return `${sign}${padded.slice(0, -digits)}.${padded.slice(-digits)}`;
}
