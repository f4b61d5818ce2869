// Goal: random sequences of add, consume, holds, post, void, refund, expiry and sweeps — forced debits that leave debts included, with duplicates and conflicting repeats — get exactly the answers, lots and balances (negative ones included) a simple reference model predicts, and the books balance after every step.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { LedgerModel } from '../../../test/support/ledger-model.ts';
import { ManualClock, startTestKoban, type TestKoban } from '../../../test/support/koban.ts';

const RUNS = 60;
/** Runs of the mix weighed towards debts: forced holds, lots that expire and holds that lapse, together. */
const DEBT_RUNS = 60;
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
const mostlyFirstUser = fc.integer({ min: 0, max: 4 }).map((n) => (n === 0 ? 1 : 0));
type Mix = {
  user: fc.Arbitrary<number>;
  pending: fc.Arbitrary<boolean>;
  force: fc.Arbitrary<boolean | undefined>;
  /** Of an add's lot; of a hold (its deadline, else 7 days); of the clock's steps. */
  expiresIn: fc.Arbitrary<number | undefined>;
  deadlineIn: fc.Arbitrary<number | undefined>;
  advance: fc.Arbitrary<number>;
};
/** One hold in four; about one consume or post in four forced, so that debts come and go (sometimes `force: false`, the same as absent). */
const usualMix: Mix = {
  user: mostlyFirstUser,
  pending: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
  force: fc.constantFrom<boolean | undefined>(true, false, undefined, undefined),
  expiresIn: fc.option(offset, { nil: undefined }),
  deadlineIn: fc.option(offset, { nil: undefined }),
  advance: offset,
};
/**
 * Half holds, half forced, holds lapsing before lots expire and the clock
 * stepping between them: a hold lapsing while its user is in debt gives back
 * to lots that pay the debt at its deadline, then expire. One user: all of it on one account.
 */
const debtMix: Mix = {
  user: fc.constant(0),
  pending: fc.boolean(),
  force: fc.constantFrom<boolean | undefined>(true, undefined),
  expiresIn: fc.constantFrom(3 * HOUR_MS, 6 * HOUR_MS, undefined),
  deadlineIn: fc.constantFrom(1, HOUR_MS, 2 * HOUR_MS),
  advance: fc.constantFrom(1, HOUR_MS, 3 * HOUR_MS),
};
const stepOf = ({ user, pending, force, expiresIn, deadlineIn, advance }: Mix) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('add' as const), user, amount, pending, expiresIn, deadlineIn }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('consume' as const), user, amount: consumeAmount, pending, force, deadlineIn }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('post' as const), target: fc.nat(), amount: fc.option(amount, { nil: undefined }), force }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('void' as const), target: fc.nat() }) },
    // Mostly well-aimed refunds (the consume's own user, a modest amount), sometimes another user's.
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('refund' as const), target: fc.nat(), otherUser: fc.integer({ min: 0, max: 4 }).map((n) => n === 0), amount: fc.integer({ min: 1, max: 25 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: advance }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('sweep' as const) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('repeat' as const), target: fc.nat() }) },
    // A repeat with another amount, or with force flipped (on an add or refund: force is refused outright).
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('conflict' as const), target: fc.nat(), flipForce: fc.boolean() }) },
  );
type Step = ReturnType<typeof stepOf> extends fc.Arbitrary<infer T> ? T : never;
type Request = Record<string, unknown> & { transaction_id: string; type: string; user_id: string; amount: number };

let run = 0;

test('the ledger agrees with the reference model after every step', async () => {
  await agreesWithModel(usualMix, RUNS);
});

test('the ledger agrees with the reference model where debts, lapsing holds and expiring lots meet', async () => {
  await agreesWithModel(debtMix, DEBT_RUNS);
});

async function agreesWithModel(mix: Mix, runs: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(fc.array(stepOf(mix), { minLength: STEPS_MIN, maxLength: STEPS_MAX, size: 'max' }), async (steps) => {
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
            ...(typeof request.force === 'boolean' ? { force: request.force } : {}),
          },
          now,
        );
        const response = await koban.app.inject({ method: 'POST', url: '/v1/transactions', payload: request });
        assert.equal(response.statusCode, expected.status, `${label} ${JSON.stringify(request)} → ${response.body}`);
        if (expected.code) assert.equal(response.json().error.code, expected.code, label);
        if (response.statusCode === 201 || response.statusCode === 200) {
          const body = response.json();
          assert.equal(body.force, request.force === true, `${label}: force shown`);
          // What a consume drew when it was created, whatever repaid its debt since.
          if (request.type === 'consume') assert.deepEqual(body.lots, model.lotsDrawn(request.transaction_id), `${label}: lots drawn by ${request.transaction_id}`);
        }
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
            if (current.kind === 'consume' && current.force !== undefined) request.force = current.force;
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
            const postForce = current.kind === 'post' ? current.force : undefined;
            const expected = model.resolve(current.kind, target, postAmount, now, postForce === true);
            const response = await koban.app.inject({
              method: 'POST',
              url: `/v1/transactions/${target}/${current.kind}`,
              payload: { balance_type: 'points', ...(postAmount === undefined ? {} : { amount: postAmount }), ...(postForce === undefined ? {} : { force: postForce }) },
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
              await send(current.flipForce ? { ...original, force: original.force !== true } : { ...original, amount: original.amount + 1 }, label);
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
    { numRuns: runs, endOnFailure: true },
  );
}
