// Goal: `node bench/strict-json.ts` — what the strict body parser (no repeated or prototype keys) costs per request over JSON.parse, on the bodies Koban takes.
import { parseStrictJson } from '../src/platform/http/strict-json.ts';

/** Each body is parsed at most this many times per round; figures are the median of the rounds. */
const ITERATIONS_MAX = 200_000;
const ROUNDS = 5;

const bodies: Record<string, string> = {
  'ledger add (typical)': JSON.stringify({
    transaction_id: 'order-2026-000123',
    type: 'add',
    user_id: 'user-48213',
    balance_type: 'points',
    amount: 1500,
    expires_at: '2027-06-30T15:00:00Z',
    description: 'Points for order 2026-000123',
    metadata: { order_id: '2026-000123', campaign: 'summer', items: 3 },
  }),
  'cloudevent (typical)': JSON.stringify({
    specversion: '1.0',
    id: 'evt-5d6f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b',
    source: '/partners/shop-42',
    type: 'koban.payments.completed',
    time: '2026-11-30T02:00:00Z',
    datacontenttype: 'application/json',
    data: { user_id: 'user-48213', amount: 4200, currency: 'JPY', lines: [{ sku: 'A-1', qty: 2 }, { sku: 'B-7', qty: 1 }] },
  }),
  'escaped keys (slow path)': '{"transaction_id":"t-1","type":"add","user_id":"u-1","balance_type":"points","amount":1,"metadata":{"caf\\u00e9":1,"\\"quoted\\"":2}}',
  'ledger add, 15 KiB description': JSON.stringify({ transaction_id: 't-2', type: 'add', user_id: 'u-1', balance_type: 'points', amount: 1, description: 'x'.repeat(15 * 1024) }),
  // What an outbox relay posts to the bus: a batch of 256 payment events, thousands of keys in one body.
  'bus batch of 256 payment events': JSON.stringify({
    events: Array.from({ length: 256 }, (_, index) => ({
      specversion: '1.0',
      id: `visa.authorization.A${index}`,
      source: '/koban/payments/visa',
      type: 'payment.authorized',
      subject: `visa:A${index}`,
      time: '2026-11-30T07:56:45.198Z',
      datacontenttype: 'application/json',
      route: 'visa',
      mcc: '5411',
      data: {
        payment_id: `visa:A${index}`,
        route: 'visa',
        user_id: 'u1',
        amount: 1234,
        authorized_total: 1234,
        captured_total: 0,
        refunded_total: 0,
        currency: 'JPY',
        merchant: { id: 'm1', name: 'Shop', category_code: '5411' },
        occurred_at: '2026-11-30T07:56:45.198Z',
        network_message_id: `A${index}`,
        advice: false,
      },
    })),
  }),
};
/** Bytes parsed per round and body: a large body gets fewer iterations, so every row takes about as long. */
const BYTES_PER_ROUND = 40_000_000;

function nsPerParse(parse: (text: string) => unknown, text: string): number {
  const iterations = Math.max(10, Math.min(ITERATIONS_MAX, Math.floor(BYTES_PER_ROUND / text.length)));
  const rounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) parse(text);
    rounds.push(Number(process.hrtime.bigint() - start) / iterations);
  }
  return rounds.sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]!;
}

console.log('body'.padEnd(34), 'bytes'.padStart(6), 'JSON.parse ns'.padStart(14), 'strict ns'.padStart(10), 'extra ns'.padStart(9), 'ratio'.padStart(6));
for (const [name, text] of Object.entries(bodies)) {
  const native = nsPerParse(JSON.parse, text);
  const strict = nsPerParse(parseStrictJson, text);
  console.log(
    name.padEnd(34),
    String(Buffer.byteLength(text)).padStart(6),
    native.toFixed(0).padStart(14),
    strict.toFixed(0).padStart(10),
    (strict - native).toFixed(0).padStart(9),
    (strict / native).toFixed(2).padStart(6),
  );
}
