// Goal: a soak sample reads real figures — this process's RSS from /proc, each table's size from PostgreSQL
// (largest first, as <database>.<schema>.<table>) — carries the caller's latency as given, and leaves out a process that has gone.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from '../../../test/support/database.ts';
import { processRssBytes, SoakSampler, soakSeries } from './sample.ts';

let database: TestDatabase;

before(async () => {
  database = await createTestDatabase('soak_sample');
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    await client.query(`CREATE TABLE big (id int PRIMARY KEY, body text); INSERT INTO big SELECT i, repeat('x', 200) FROM generate_series(1, 5000) i`);
    await client.query(`CREATE TABLE small (id int)`);
  } finally {
    await client.end();
  }
});
after(async () => {
  await database?.drop();
});

test('one sample: RSS in bytes, table sizes largest first, latency as given; a gone process is left out', async () => {
  const gonePid = 2 ** 22 + 17; // above the kernel's pid_max ceiling, so never a live process
  assert.equal(await processRssBytes(gonePid), undefined);
  const sampler = await SoakSampler.open({ processes: [{ name: 'self', pid: process.pid }, { name: 'gone', pid: gonePid }], databases: [{ name: 'db', url: database.url }] });
  try {
    const first = await sampler.sample({ authorize: { p50: 1.5, p99: 7 } }, 1_000);
    assert.equal(first.at_ms, 1_000);
    assert.deepEqual(Object.keys(first.rss_bytes), ['self']);
    assert.ok(first.rss_bytes.self! > 10 * 1024 * 1024 && first.rss_bytes.self! < 16 * 1024 ** 3, `${first.rss_bytes.self} bytes`);
    const tables = Object.keys(first.table_bytes);
    assert.deepEqual(tables.slice(0, 2), ['db.public.big', 'db.public.small']);
    assert.ok(first.table_bytes['db.public.big']! > 1024 * 1024, 'the 5,000 rows of 200 bytes and their index');
    assert.deepEqual(first.latency_ms, { authorize: { p50: 1.5, p99: 7 } });
    const second = await sampler.sample({}, 2_000);
    const series = soakSeries([second, first]);
    const rss = series.find((one) => one.kind === 'rss_bytes' && one.name === 'self')!;
    assert.deepEqual(rss.points.map((point) => point.at_ms), [1_000, 2_000]);
    assert.equal(series.find((one) => one.kind === 'latency_p99_ms')!.points.length, 1);
  } finally {
    await sampler.close();
  }
});
