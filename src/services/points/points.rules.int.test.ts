// Goal: the earning rules file configures the points service — a payment authorized under v1 is confirmed under v1 even after a restart with a v2 in force before its capture (or retroactively before its authorization), and a bad file stops start-up naming the file, line and field.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigError } from '../../platform/config.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import { startTestKoban } from '../../../test/support/koban.ts';
import { PointsHarness } from './testing/harness.ts';
import { paymentEvents } from './testing/payment-script.ts';

const V1 = `versions:
  - version: "v1"
    effective_from: "2026-01-01T00:00:00+09:00"
    base_rate_bp: 50
`;
/** v2 (2 %) in force from before the authorization: a retroactive change must not touch a pinned grant either. */
const V1_V2 = `${V1}  - version: "v2"
    effective_from: "2026-03-01T00:00:00+09:00"
    base_rate_bp: 200
`;
/** A monthly cap of 60 points at 0.5 %: two payments of 10,000 yen in one JST month earn 50 + 10. */
const CAPPED = `versions:
  - version: "capped"
    effective_from: "2026-01-01T00:00:00+09:00"
    base_rate_bp: 50
    monthly_cap_points: 60
`;
const BAD = `versions:
  - version: "v1"
    effective_from: "2026-01-01T00:00:00+09:00"
    base_rate_bp: 5000
`;

let directory: string;
let database: TestDatabase;

before(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'koban-points-rules-'));
  database = await createTestDatabase('points_rules');
});
after(async () => {
  await database.drop();
  await rm(directory, { recursive: true, force: true });
});

async function rulesFile(name: string, text: string): Promise<string> {
  const file = path.join(directory, name);
  await writeFile(file, text);
  return file;
}

test('a grant keeps the version it was authorized under across a restart with new rules', async () => {
  const events = paymentEvents({ payment_id: 'visa:pin-1', user_id: 'u-pin', start: '2026-04-01T03:00:00.000Z' }, [
    { kind: 'authorize', amount: 10_000 },
    { kind: 'capture', amount: 10_000, final: true },
  ]);
  const env = { POINTS_RETRY_BACKOFF_INITIAL_MS: '10', KOBAN_SWEEP_INTERVAL_MS: '0' };
  const first = await startTestKoban({ label: 'points_rules', database, env: { ...env, POINTS_EARNING_RULES_FILE: await rulesFile('v1.yaml', V1) } });
  try {
    const h = new PointsHarness(first);
    await h.publish('payments', events[0]);
    await h.settle();
    assert.deepEqual(await h.balance('u-pin'), { available: 0, pending_credit: 50 });
  } finally {
    await first.stop();
  }
  const second = await startTestKoban({ label: 'points_rules', database, env: { ...env, POINTS_EARNING_RULES_FILE: await rulesFile('v2.yaml', V1_V2) } });
  try {
    const h = new PointsHarness(second);
    await h.publish('payments', events[1]);
    // A new payment authorized at the same instant earns under v2 (2 %): the file was read.
    await h.publish('payments', paymentEvents({ payment_id: 'visa:pin-2', user_id: 'u-new', start: '2026-04-01T03:00:00.000Z' }, [{ kind: 'authorize', amount: 10_000 }])[0]);
    await h.settle();
    assert.deepEqual(await h.balance('u-pin'), { available: 50, pending_credit: 0 }, 'confirmed at v1’s 0.5 %, not v2’s 2 %');
    assert.equal((await h.grants('u-pin')).data[0]!.rule_version, 'v1');
    assert.deepEqual(await h.balance('u-new'), { available: 0, pending_credit: 200 });
    assert.equal((await h.grants('u-new')).data[0]!.rule_version, 'v2');
  } finally {
    await second.stop();
  }
});

test('the monthly cap counts JST months of the authorization, from totals kept beside the grants, and gives room back when a grant is voided', async () => {
  const koban = await startTestKoban({
    label: 'points_rules',
    database,
    env: { POINTS_RETRY_BACKOFF_INITIAL_MS: '10', KOBAN_SWEEP_INTERVAL_MS: '0', POINTS_EARNING_RULES_FILE: await rulesFile('capped.yaml', CAPPED) },
  });
  try {
    const h = new PointsHarness(koban);
    const pay = (id: string, start: string) => paymentEvents({ payment_id: `visa:${id}`, user_id: 'u-cap', start }, [{ kind: 'authorize', amount: 10_000 }, { kind: 'reverse', amount: 10_000 }]);
    // 2026-04-30T14:59 UTC is still April in Japan; 15:00 UTC is May.
    const april1 = pay('cap-1', '2026-04-10T00:00:00.000Z');
    const april2 = pay('cap-2', '2026-04-30T14:58:00.000Z');
    const may = pay('cap-3', '2026-04-30T15:00:00.000Z');
    for (const events of [april1, april2, may]) {
      await h.publish('payments', events[0]);
      await h.settle();
    }
    const pendingOf = async (id: string) => (await h.grants('u-cap')).data.find((grant) => grant.reference === `visa:${id}`)!.points;
    assert.deepEqual([await pendingOf('cap-1'), await pendingOf('cap-2'), await pendingOf('cap-3')], [50, 10, 50]);
    assert.deepEqual(await h.balance('u-cap'), { available: 0, pending_credit: 110 });
    // Voiding the first frees its 50 in April: a new April payment earns 50 again (10 are still counted by the second).
    await h.publish('payments', april1[1]);
    await h.settle();
    await h.publish('payments', pay('cap-4', '2026-04-20T00:00:00.000Z')[0]);
    await h.settle();
    assert.equal(await pendingOf('cap-4'), 50);
  } finally {
    await koban.stop();
  }
});

test('a bad rules file stops start-up with a ConfigError naming the file, line, column and field', async () => {
  const file = await rulesFile('bad.yaml', BAD);
  await assert.rejects(
    startTestKoban({ label: 'points_rules_bad', database, env: { POINTS_EARNING_RULES_FILE: file } }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(error.message, /^earning rules file bad\.yaml:4:19: versions\[0\]\.base_rate_bp: 5000 must be <= 1000/);
      return true;
    },
  );
});
