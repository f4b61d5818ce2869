// Goal: rewards, referrals and new accounts each grant once — duplicates and self-referrals earn nothing, bad data is dead-lettered with a clear error without blocking what follows — and the reads answer their documented shape, page without gaps, and refuse bad parameters with a 400 naming the field.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKoban, type TestKoban } from '../../../test/support/koban.ts';
import { PointsHarness } from './testing/harness.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Slack between the test's clock reading and the service's, for an expiry computed from "now". */
const CLOCK_SLACK_MS = 60_000;

let koban: TestKoban;
let h: PointsHarness;

before(async () => {
  koban = await startTestKoban({
    label: 'points_sources',
    env: { POINTS_RETRY_BACKOFF_INITIAL_MS: '10', POINTS_MAX_DELIVERIES: '2', POINTS_EXPIRY_DAYS: '365', KOBAN_SWEEP_INTERVAL_MS: '0' },
  });
  h = new PointsHarness(koban);
});
after(async () => {
  await koban.stop();
  await koban.database.drop();
});

const reward = (user_id: string, purchase_id: string, points: unknown) => h.sourceEvent('reward.purchase_confirmed', { user_id, purchase_id, points });
const referral = (referral_id: string, referrer_id: string, referee_id: string) => h.sourceEvent('referral.completed', { referral_id, referrer_id, referee_id });

function near(instant: unknown, expectedMs: number): void {
  assert.equal(typeof instant, 'string');
  assert.ok(Math.abs(Date.parse(instant as string) - expectedMs) < CLOCK_SLACK_MS, `${String(instant)} is not near ${new Date(expectedMs).toISOString()}`);
}

describe('rewards', () => {
  test('a confirmed purchase grants its points once, with the configured expiry; a re-publication under another id changes nothing', async () => {
    await h.publish('rewards', reward('r1', 'order-1', 300));
    // Settled first: two events for one purchase may be handled in either order, and the first one handled wins.
    await h.settle();
    await h.publish('rewards', reward('r1', 'order-1', 300));
    await h.publish('rewards', reward('r1', 'order-1', 999));
    await h.settle();
    assert.deepEqual(await h.balance('r1'), { available: 300, pending_credit: 0 });
    const summary = await h.points('r1');
    assert.equal((summary.expiring as unknown[]).length, 1);
    near((summary.expiring as Array<{ expires_at: string }>)[0]!.expires_at, Date.now() + 365 * DAY_MS);
    const { data } = await h.grants('r1');
    assert.deepEqual(
      data.map(({ grant_id, source, reference, points, status, clawed_back_points, rule_version }) => ({ grant_id, source, reference, points, status, clawed_back_points, rule_version })),
      [{ grant_id: 'reward:order-1', source: 'reward', reference: 'order-1', points: 300, status: 'confirmed', clawed_back_points: 0, rule_version: null }],
    );
  });

  test('bad data is dead-lettered with the field named, and a valid reward published after it is granted', async () => {
    await h.publish('rewards', reward('r2', 'order-bad', -5));
    await h.publish('rewards', reward('r2', 'order-2', 40));
    await h.settle();
    assert.deepEqual(await h.balance('r2'), { available: 40, pending_credit: 0 });
    const dead = await koban.bus.deadLetters('points-rewards', { limit: 10 });
    assert.equal(dead.data.length, 1, JSON.stringify(dead.data));
    const [letter] = dead.data;
    assert.equal((letter!.event.data as { purchase_id: string }).purchase_id, 'order-bad');
    assert.equal(letter!.attempts, 2);
    assert.match(letter!.last_error ?? '', /data\.points must be >= 1/, 'the error names the field');
    // A redrive resends the same event: still poison, it comes back to the dead letters and grants nothing.
    assert.deepEqual(await koban.bus.redrive('points-rewards', [letter!.id]), { redriven: 1 });
    await h.settle();
    assert.equal((await koban.bus.deadLetters('points-rewards', { limit: 10 })).data.length, 1);
    assert.deepEqual(await h.balance('r2'), { available: 40, pending_credit: 0 });
  });
});

describe('referrals', () => {
  test('the referrer earns the bonus once per referral; the referee nothing from it', async () => {
    await h.publish('referrals', referral('ref-1', 'alice', 'bob'));
    await h.publish('referrals', referral('ref-1', 'alice', 'bob'));
    await h.settle();
    assert.deepEqual(await h.balance('alice'), { available: 500, pending_credit: 0 });
    assert.deepEqual(await h.balance('bob'), { available: 0, pending_credit: 0 });
    assert.deepEqual((await h.grants('alice')).data.map((grant) => [grant.grant_id, grant.points]), [['referral:ref-1', 500]]);
  });

  test('a self-referral earns nothing and is acknowledged, not dead-lettered', async () => {
    await h.publish('referrals', referral('ref-self', 'carol', 'carol'));
    await h.publish('referrals', referral('ref-self', 'carol', 'carol'));
    await h.settle();
    assert.deepEqual(await h.balance('carol'), { available: 0, pending_credit: 0 });
    assert.deepEqual((await h.grants('carol')).data, []);
    assert.deepEqual((await koban.bus.deadLetters('points-referrals', { limit: 10 })).data, []);
  });

  test('bad data is dead-lettered naming the field', async () => {
    await h.publish('referrals', h.sourceEvent('referral.completed', { referral_id: 'ref-2', referrer_id: 'dave' }));
    await h.settle();
    const dead = await koban.bus.deadLetters('points-referrals', { limit: 10 });
    assert.equal(dead.data.length, 1);
    assert.match(dead.data[0]!.last_error ?? '', /referee_id/);
    assert.deepEqual(await h.balance('dave'), { available: 0, pending_credit: 0 });
  });
});

describe('new accounts', () => {
  test('get time-limited welcome cash once per user', async () => {
    await h.publish('accounts', h.sourceEvent('account.created', { user_id: 'newbie', created_at: new Date().toISOString() }));
    await h.publish('accounts', h.sourceEvent('account.created', { user_id: 'newbie', created_at: new Date().toISOString() }));
    await h.settle();
    const cash = await koban.ledger.getBalance('newbie', 'cash');
    assert.equal(cash.available, 500);
    assert.equal(cash.expiring.length, 1);
    near(cash.expiring[0]!.expires_at, Date.now() + 30 * DAY_MS);
    const [welcome] = await koban.ledger.getTransactions('welcome:newbie');
    assert.deepEqual({ type: welcome!.type, balance_type: welcome!.balance_type, amount: welcome!.amount }, { type: 'add', balance_type: 'cash', amount: 500 });
    assert.deepEqual((await h.grants('newbie')).data, [], 'welcome cash is not a point grant');
  });

  test('bad data is dead-lettered', async () => {
    await h.publish('accounts', h.sourceEvent('account.created', { user_id: 'bad user' }));
    await h.settle();
    assert.equal((await koban.bus.deadLetters('points-accounts', { limit: 10 })).data.length, 1);
  });
});

describe('payments', () => {
  test('a payment event with bad data is dead-lettered naming the field, grants nothing, and does not hold up a reward behind it', async () => {
    await h.publish('payments', h.sourceEvent('payment.captured', { user_id: 'p1', payment_id: 'visa:bad', amount: -1 }));
    await h.publish('rewards', reward('p1', 'order-p1', 25));
    await h.settle();
    assert.deepEqual(await h.balance('p1'), { available: 25, pending_credit: 0 });
    const dead = await koban.bus.deadLetters('points-payments', { limit: 10 });
    assert.equal(dead.data.length, 1, JSON.stringify(dead.data));
    assert.equal(dead.data[0]!.attempts, 2);
    assert.match(dead.data[0]!.last_error ?? '', /data/, 'the error names what is wrong');
  });
});

describe('reads', () => {
  test('points of a user never seen are zero, in the documented shape', async () => {
    assert.deepEqual(await h.points('nobody'), { user_id: 'nobody', available: 0, pending: 0, expiring: [] });
  });

  test('grants page newest first, without gaps or repeats', async () => {
    // One at a time: newest first is the order they were granted in, and events in flight together may be handled in either order.
    for (let index = 1; index <= 5; index += 1) {
      await h.publish('rewards', reward('pager', `page-${index}`, index));
      await h.settle();
    }
    const seen: string[] = [];
    let query = '?limit=2';
    const sizes: number[] = [];
    for (;;) {
      const page = await h.grants('pager', query);
      sizes.push(page.data.length);
      seen.push(...page.data.map((grant) => grant.reference as string));
      if (page.next_cursor === null) break;
      query = `?limit=2&cursor=${page.next_cursor}`;
    }
    assert.deepEqual(sizes, [2, 2, 1]);
    assert.deepEqual(seen, ['page-5', 'page-4', 'page-3', 'page-2', 'page-1']);
    const first = (await h.grants('pager', '?limit=1')).data[0]!;
    assert.deepEqual(Object.keys(first).sort(), ['clawed_back_points', 'created_at', 'grant_id', 'points', 'reference', 'rule_version', 'source', 'status', 'updated_at']);
  });

  test('bad parameters are 400 invalid_request naming the field', async () => {
    const cases: Array<[string, string]> = [
      ['/v1/users/pager/point-grants?limit=0', 'limit'],
      ['/v1/users/pager/point-grants?limit=201', 'limit'],
      ['/v1/users/pager/point-grants?limit=two', 'limit'],
      ['/v1/users/pager/point-grants?cursor=!!', 'cursor'],
      [`/v1/users/pager/point-grants?cursor=${Buffer.from('nonsense').toString('base64url')}`, 'cursor'],
      ['/v1/users/pager/point-grants?extra=1', 'extra'],
      [`/v1/users/${'x'.repeat(129)}/point-grants`, 'user_id'],
      [`/v1/users/${'x'.repeat(129)}/points`, 'user_id'],
      ['/v1/users/a%20b/points', 'user_id'],
    ];
    for (const [url, field] of cases) {
      const response = await h.get(url);
      assert.equal(response.statusCode, 400, `${url} → ${response.body}`);
      const error = response.json().error as { code: string; details: { field: string } };
      assert.equal(error.code, 'invalid_request', url);
      assert.equal(error.details.field, field, url);
    }
  });
});
