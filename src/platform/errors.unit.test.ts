// Goal: the error catalogue in code and the one documented in docs/errors.md never drift apart.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ERROR_CATALOGUE, KobanError } from './errors.ts';

const DOC_PATH = path.join(import.meta.dirname, '..', '..', 'docs', 'errors.md');

/** The catalogue table's header, and the one shape every row must have: code, status, retryable, description. */
const TABLE_HEADER = ['| code | owner | HTTP status | retryable | meaning |', '|---|---|---|---|---|'];
const TABLE_ROW = /^\| `([a-z_]+)` \| ([a-z]+) \| (\d{3}) \| (yes|no) \| (.+) \|$/;

type Documented = { code: string; owner: string; status: number; retryable: boolean; description: string };

/** Parses the table under "## Catalogue"; throws on any line of it that does not have the row shape. */
function parseCatalogueTable(doc: string): Documented[] {
  const lines = doc.split('\n');
  const heading = lines.indexOf('## Catalogue');
  assert.notEqual(heading, -1, 'docs/errors.md has a "## Catalogue" section');
  const tableStart = lines.findIndex((line, index) => index > heading && line.startsWith('|'));
  assert.deepEqual(lines.slice(tableStart, tableStart + 2), TABLE_HEADER, 'the table header');
  const rows: Documented[] = [];
  for (let index = tableStart + 2; index < lines.length && lines[index]!.startsWith('|'); index++) {
    const match = TABLE_ROW.exec(lines[index]!);
    assert.ok(match, `docs/errors.md line ${index + 1} is not a catalogue row (| \`code\` | owner | status | yes/no | description |): ${lines[index]}`);
    rows.push({ code: match[1]!, owner: match[2]!, status: Number(match[3]), retryable: match[4] === 'yes', description: match[5]! });
  }
  return rows;
}

test('docs/errors.md lists exactly the catalogue: every code, in order, with the same owner, status, retryable flag and description', async () => {
  const documented = parseCatalogueTable(await readFile(DOC_PATH, 'utf8'));
  const inCode = Object.entries(ERROR_CATALOGUE).map(([code, entry]) => ({ code, owner: entry.owner, status: entry.status, retryable: entry.retryable, description: entry.description }));
  assert.deepEqual(documented, inCode);
});

test('the table parser refuses a row it cannot read, so a malformed row cannot drop out of the comparison', () => {
  const table = ['## Catalogue', '', ...TABLE_HEADER];
  assert.deepEqual(parseCatalogueTable([...table, '| `timeout` | any | 504 | yes | Slow. |'].join('\n')), [{ code: 'timeout', owner: 'any', status: 504, retryable: true, description: 'Slow.' }]);
  for (const bad of ['| timeout | any | 504 | yes | Slow. |', '| `timeout` | any | 504 | maybe | Slow. |', '| `timeout` | any | 504 | yes |', '|`timeout`|any|504|yes|Slow.|', '| `timeout` | 504 | yes | Slow. |']) {
    assert.throws(() => parseCatalogueTable([...table, bad].join('\n')), /not a catalogue row/, bad);
  }
  assert.throws(() => parseCatalogueTable(['## Catalogue', '', '| code | status |', '|---|---|'].join('\n')), /the table header/);
});

test('only 503 and 504 are retryable, and every status is an error status', () => {
  for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
    assert.ok(entry.status >= 400 && entry.status < 600, code);
    assert.equal(entry.retryable, entry.status === 503 || entry.status === 504, code);
  }
});

test('a KobanError renders the catalogue shape', () => {
  const error = new KobanError('insufficient_balance', 'not enough', { available: 1, requested: 2 });
  assert.equal(error.status, 422);
  assert.deepEqual(error.toBody(), { error: { code: 'insufficient_balance', message: 'not enough', retryable: false, details: { available: 1, requested: 2 } } });
  assert.deepEqual(new KobanError('timeout', 'slow').toBody(), { error: { code: 'timeout', message: 'slow', retryable: true } });
});

test('each code is raised only by the service that owns it, and every owned code by its owner', async () => {
  // Reads the sources as text (platform imports no service): every `new KobanError('code'` outside tests.
  const srcRoot = path.join(import.meta.dirname, '..');
  const files = (await readdir(srcRoot, { recursive: true })).filter((file) => file.endsWith('.ts') && !file.endsWith('.test.ts'));
  const raised = new Map<string, Set<string>>();
  for (const file of files) {
    const where = /^services\/([^/]+)\//.exec(file.split(path.sep).join('/'))?.[1] ?? file.split(path.sep)[0]!;
    const text = await readFile(path.join(srcRoot, file), 'utf8');
    for (const match of text.matchAll(/KobanError\(\s*'([a-z_]+)'/g)) {
      const code = match[1]! as keyof typeof ERROR_CATALOGUE;
      assert.ok(Object.hasOwn(ERROR_CATALOGUE, code), `${file} raises ${code}, which is not in the catalogue`);
      const owner = ERROR_CATALOGUE[code].owner;
      assert.ok(owner === 'any' || owner === where, `${file} raises ${code}, which belongs to ${owner}`);
      raised.set(code, (raised.get(code) ?? new Set()).add(where));
    }
  }
  for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
    if (entry.owner !== 'any') assert.ok(raised.get(code)?.has(entry.owner), `${code} is owned by ${entry.owner}, which never raises it`);
  }
});
