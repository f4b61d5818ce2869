// Goal: every event type has a notice in Japanese and in English that says what happened, with the amount as yen with thousands separators (exact up to 10^15) and a decline's reason.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AccountEvent } from '../../../contracts/events/accounts.ts';
import { PAYMENT_EVENT_TYPES, type PaymentEvent, type PaymentEventData, type PaymentEventType } from '../../../contracts/events/payments.ts';
import { LANGUAGES, type Language } from './limits.ts';
import { formatMoney, renderNotice } from './templates.ts';

const DATA: PaymentEventData = {
  payment_id: 'visa:A1',
  route: 'visa',
  user_id: 'alice',
  amount: 12_345,
  authorized_total: 15_000,
  captured_total: 0,
  refunded_total: 0,
  currency: 'JPY',
  merchant: { id: 'm-42', name: 'Koban Coffee', category_code: '5814' },
  occurred_at: '2026-01-02T03:04:05.000Z',
  network_message_id: 'A1',
};

function payment(type: PaymentEventType, data: Partial<PaymentEventData> = {}): { topic: 'payments'; event: PaymentEvent } {
  return { topic: 'payments', event: { id: `e-${type}`, type, subject: 'visa:A1', data: { ...DATA, ...data } } };
}

const EXPECTED: Record<Language, Record<PaymentEventType, { title: string; body: string }>> = {
  ja: {
    'payment.authorized': { title: 'お支払いが承認されました', body: 'Koban Coffeeでの12,345円のお支払いが承認されました。' },
    'payment.authorization_increased': { title: '承認金額が増額されました', body: 'Koban Coffeeでの承認金額が12,345円増額され、合計15,000円になりました。' },
    'payment.captured': { title: 'お支払いが確定しました', body: 'Koban Coffeeでの12,345円のお支払いが確定しました。' },
    'payment.reversed': { title: '承認が取り消されました', body: 'Koban Coffeeでの12,345円の承認が取り消されました。' },
    'payment.authorization_expired': { title: '承認の有効期限が切れました', body: 'Koban Coffeeでの12,345円の承認は有効期限が切れたため解除されました。' },
    'payment.refunded': { title: '返金されました', body: 'Koban Coffeeから12,345円が返金されました。' },
    'payment.declined': { title: 'お支払いが承認されませんでした', body: 'Koban Coffeeでの12,345円のお支払いは承認されませんでした（理由：残高不足）。' },
  },
  en: {
    'payment.authorized': { title: 'Payment authorized', body: 'Your payment of ¥12,345 at Koban Coffee was authorized.' },
    'payment.authorization_increased': { title: 'Authorization increased', body: 'Your authorization at Koban Coffee was increased by ¥12,345 to ¥15,000.' },
    'payment.captured': { title: 'Payment confirmed', body: 'Your payment of ¥12,345 at Koban Coffee was confirmed.' },
    'payment.reversed': { title: 'Authorization released', body: 'The authorization of ¥12,345 at Koban Coffee was released.' },
    'payment.authorization_expired': { title: 'Authorization expired', body: 'The authorization of ¥12,345 at Koban Coffee expired and was released.' },
    'payment.refunded': { title: 'Refund issued', body: '¥12,345 from Koban Coffee was refunded to you.' },
    'payment.declined': { title: 'Payment declined', body: 'Your payment of ¥12,345 at Koban Coffee was declined: insufficient balance.' },
  },
};

describe('notice templates', () => {
  for (const language of LANGUAGES) {
    for (const type of PAYMENT_EVENT_TYPES) {
      test(`${type} in ${language}`, () => {
        const data = type === 'payment.declined' ? { decline_reason: 'insufficient_balance' as const } : {};
        assert.deepEqual(renderNotice(payment(type, data), language), EXPECTED[language][type]);
      });
    }
  }

  test('every type reads differently from every other, in each language', () => {
    for (const language of LANGUAGES) {
      const titles = PAYMENT_EVENT_TYPES.map((type) => renderNotice(payment(type), language).title);
      assert.equal(new Set(titles).size, titles.length, `${language}: ${titles.join(' / ')}`);
    }
  });

  test('a decline names each reason', () => {
    const reasons = { insufficient_balance: ['残高不足', 'insufficient balance'], unsupported_currency: ['ご利用いただけない通貨', 'unsupported currency'], amount_limit_exceeded: ['ご利用限度額の超過', 'amount above the limit'] } as const;
    for (const [reason, [ja, en]] of Object.entries(reasons)) {
      const declined = payment('payment.declined', { decline_reason: reason as keyof typeof reasons });
      assert.ok(renderNotice(declined, 'ja').body.includes(`（理由：${ja}）`), reason);
      assert.ok(renderNotice(declined, 'en').body.endsWith(`declined: ${en}.`), reason);
    }
  });

  test('a declined authorization in another currency shows that currency, exactly', () => {
    const declined = payment('payment.declined', { currency: 'USD', amount: 123_456, decline_reason: 'unsupported_currency' });
    assert.equal(renderNotice(declined, 'en').body, 'Your payment of $1,234.56 at Koban Coffee was declined: unsupported currency.');
    assert.ok(renderNotice(declined, 'ja').body.startsWith('Koban Coffeeでの$1,234.56のお支払い'), renderNotice(declined, 'ja').body);
  });

  test('the welcome notice of a new account', () => {
    const created: { topic: 'accounts'; event: AccountEvent } = {
      topic: 'accounts',
      event: { id: 'account.created.alice', type: 'account.created', data: { user_id: 'alice', created_at: '2026-01-02T03:04:05.000Z' } },
    };
    assert.deepEqual(renderNotice(created, 'ja'), { title: 'Kobanへようこそ', body: 'ウォレットの準備ができました。お支払いやポイントのお知らせはここに届きます。' });
    assert.deepEqual(renderNotice(created, 'en'), { title: 'Welcome to Koban', body: 'Your wallet is ready. Notices about your payments and points will appear here.' });
  });
});

describe('formatMoney', () => {
  test('yen with thousands separators, up to the largest amount (10^15), never rounded', () => {
    assert.equal(formatMoney(0, 'JPY', 'ja'), '0円');
    assert.equal(formatMoney(1, 'JPY', 'en'), '¥1');
    assert.equal(formatMoney(999, 'JPY', 'ja'), '999円');
    assert.equal(formatMoney(1_000, 'JPY', 'ja'), '1,000円');
    assert.equal(formatMoney(1_000_000_000_000_000, 'JPY', 'ja'), '1,000,000,000,000,000円');
    assert.equal(formatMoney(999_999_999_999_999, 'JPY', 'en'), '¥999,999,999,999,999');
  });

  test('a currency with minor units is divided exactly, from its digits', () => {
    assert.equal(formatMoney(5, 'USD', 'en'), '$0.05');
    assert.equal(formatMoney(999_999_999_999_999, 'USD', 'en'), '$9,999,999,999,999.99');
  });

  test('refuses an amount that is not a safe integer', () => {
    assert.throws(() => formatMoney(1.5, 'JPY', 'ja'), RangeError);
    assert.throws(() => formatMoney(2 ** 53, 'JPY', 'en'), RangeError);
  });
});
