// Goal: random sequences of add, consume, holds, post, void, refund, expiry and sweeps — with duplicates and conflicting repeats — get exactly the answers and balances a simple reference model predicts, and the books balance after every step.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { LedgerModel } from '../../../test/support/ledger-model.ts';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

const RUNS = 60;
const STEPS_MIN = 10;
const STEPS_MAX = 40;
const USERS = 2;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

const clock = new ManualClock('2027-01-01T00:00:00.000Z');
let koban: TestKoban;
before(async () => {
  koban = await startTestKoban({ label: 'property', clock, env: { KOBAN_SWEEP_INTERVAL_MS: '0' } });
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

const offset = fc.constantFrom(1, HOUR_MS, DAY_MS, 2 * DAY_MS);
const amount = fc.integer({ min: 1, max: 60 });
// Consumes a little smaller than adds, so that most succeed and draw across several lots.
const consumeAmount = fc.integer({ min: 1, max: 45 });
// Most steps on one user, so that lots pile up and consumes draw across several; the other keeps users apart.
const user = fc.integer({ min: 0, max: 4 }).map((n) => (n === 0 ? 1 : 0));
const pending = fc.integer({ min: 0, max: 3 }).map((n) => n === 0);
const step = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('add' as const), user, amount, pending, expiresIn: fc.option(offset, { nil: undefined }), deadlineIn: fc.option(offset, { nil: undefined }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('consume' as const), user, amount: consumeAmount, pending, deadlineIn: fc.option(offset, { nil: undefined }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('post' as const), target: fc.nat(), amount: fc.option(amount, { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('void' as const), target: fc.nat() }) },
  // Mostly well-aimed refunds (the consume's own user, a modest amount), sometimes another user's.
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('refund' as const), target: fc.nat(), otherUser: fc.integer({ min: 0, max: 4 }).map((n) => n === 0), amount: fc.integer({ min: 1, max: 25 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: offset }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sweep' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('repeat' as const), target: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('conflict' as const), target: fc.nat() }) },
);
type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;
type Request = Record<string, unknown> & { transaction_id: string; type: string; user_id: string; amount: number };

let run = 0;

test('the ledger agrees with the reference model after every step', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(step, { minLength: STEPS_MIN, maxLength: STEPS_MAX, size: 'max' }), async (steps) => {
      run++;
      // Each run starts well after the last one, with users of its own.
      clock.advance(30 * DAY_MS);
      const model = new LedgerModel();
      const users = Array.from({ length: USERS }, (_, i) => `prop-${run}-u${i}`);
      const sent: Request[] = [];
      let counter = 0;

      const send = async (request: Request, label: string) => {
        const now = clock.now().getTime();
        const expected = model.create(
          {
            transaction_id: request.transaction_id,
            type: request.type as 'add' | 'consume' | 'refund',
            user_id: request.user_id,
            amount: request.amount,
            ...(request.pending === true ? { pending: true } : {}),
            ...(typeof request.pending_expires_at === 'string' ? { pending_expires_at: Date.parse(request.pending_expires_at) } : {}),
            ...(typeof request.expires_at === 'string' ? { expires_at: Date.parse(request.expires_at) } : {}),
            ...(typeof request.refund_of === 'string' ? { refund_of: request.refund_of } : {}),
          },
          now,
        );
        const response = await koban.app.inject({ method: 'POST', url: '/v1/transactions', payload: request });
        assert.equal(response.statusCode, expected.status, `${label} ${JSON.stringify(request)} → ${response.body}`);
        if (expected.code) assert.equal(response.json().error.code, expected.code, label);
        if (response.statusCode === 201 && !sent.some((r) => r.transaction_id === request.transaction_id)) sent.push(request);
      };

      for (const [index, current] of (steps as Step[]).entries()) {
        const label = `run ${run} step ${index} ${current.kind}`;
        const now = clock.now().getTime();
        const iso = (ms: number) => new Date(now + ms).toISOString();
        switch (current.kind) {
          case 'add':
          case 'consume': {
            const request: Request = { transaction_id: `prop-${run}-t${counter++}`, type: current.kind, user_id: users[current.user]!, balance_type: 'points', amount: current.amount };
            if (current.pending) {
              request.pending = true;
              if (current.deadlineIn !== undefined) request.pending_expires_at = iso(current.deadlineIn);
            }
            if (current.kind === 'add' && current.expiresIn !== undefined) request.expires_at = iso(current.expiresIn);
            await send(request, label);
            break;
          }
          case 'refund': {
            const consumes = sent.filter((r) => r.type === 'consume');
            const consumed = consumes[current.target % Math.max(consumes.length, 1)];
            const owner = consumed?.user_id ?? users[0]!;
            const userId = current.otherUser ? users.find((candidate) => candidate !== owner)! : owner;
            await send({ transaction_id: `prop-${run}-t${counter++}`, type: 'refund', refund_of: consumed?.transaction_id ?? `prop-${run}-none`, user_id: userId, balance_type: 'points', amount: current.amount }, label);
            break;
          }
          case 'post':
          case 'void': {
            const target = sent.length > 0 ? sent[current.target % sent.length]!.transaction_id : `prop-${run}-none`;
            const postAmount = current.kind === 'post' ? current.amount : undefined;
            const expected = model.resolve(current.kind, target, postAmount, now);
            const response = await koban.app.inject({
              method: 'POST',
              url: `/v1/transactions/${target}/${current.kind}`,
              payload: { balance_type: 'points', ...(postAmount === undefined ? {} : { amount: postAmount }) },
            });
            assert.equal(response.statusCode, expected.status, `${label} ${target} ${postAmount} → ${response.body}`);
            if (expected.code) assert.equal(response.json().error.code, expected.code, label);
            break;
          }
          case 'repeat':
            if (sent.length > 0) await send(sent[current.target % sent.length]!, label);
            break;
          case 'conflict':
            if (sent.length > 0) {
              const original = sent[current.target % sent.length]!;
              await send({ ...original, amount: original.amount + 1 }, label);
            }
            break;
          case 'advance':
            clock.advance(current.ms);
            break;
          case 'sweep':
            model.sweepAll(now);
            await koban.ledger.sweep();
            break;
        }

        const at = clock.now().getTime();
        for (const userId of users) {
          const response = await koban.app.inject({ method: 'GET', url: `/v1/users/${userId}/balances/points` });
          const { user_id: _user, balance_type: _type, ...actual } = response.json();
          assert.deepEqual(actual, model.balance(userId, at), `${label}: balance of ${userId}`);
        }
        const audit = await koban.ledger.audit();
        assert.equal(audit.ok, true, `${label}: audit ${JSON.stringify(audit)}`);
      }
    }),
    { numRuns: RUNS, endOnFailure: true },
  );
});
