// What a refused request must not change: every row of every table of a test
// database (each service's schema), as one comparable string.
import assert from 'node:assert/strict';
import pg from 'pg';

/** Every row of every table of the database at `url`, as one string: a count and an md5 per table. */
export async function databaseFingerprint(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const tables = await client.query<{ name: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1`,
    );
    assert.ok(tables.rows.length >= 5, `the ledger's and the bus's tables are there: ${tables.rows.map((row) => row.name).join(', ')}`);
    const parts: string[] = [];
    for (const { name } of tables.rows) {
      const { rows } = await client.query<{ rows: string; digest: string | null }>(`SELECT count(*)::text AS rows, md5(string_agg(t::text, '|' ORDER BY t::text)) AS digest FROM ${name} t`);
      parts.push(`${name}:${rows[0]!.rows}:${rows[0]!.digest ?? ''}`);
    }
    return parts.join('\n');
  } finally {
    await client.end();
  }
}

/** The fingerprint once background work (relays, consumers) has settled: two readings `intervalMs` apart agree, within `deadlineMs`. */
export async function settledFingerprint(url: string, options: { intervalMs: number; deadlineMs: number }): Promise<string> {
  const deadline = Date.now() + options.deadlineMs;
  let previous = await databaseFingerprint(url);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    const current = await databaseFingerprint(url);
    if (current === previous) return current;
    assert.ok(Date.now() < deadline, `the database settles within ${options.deadlineMs} ms`);
    previous = current;
  }
}
