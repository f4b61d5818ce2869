// Goal: the earning-rules file loads from JSON or YAML into frozen, versioned rules, and every bad file — syntax, repeated key, unknown field, wrong type, out of range, bad instant, unordered or repeated versions, bad bytes — is refused with the file, line, column, field and what is expected.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../platform/config.ts';
import { computePoints } from './domain/earning-rules.ts';
import { RULES_FILE_BYTES_MAX } from './domain/limits.ts';
import { EarningRulesFileError, loadEarningRulesFile, parseEarningRules } from './rules-file.ts';

const EXAMPLE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'earning-rules.example.yaml');

const V1 = '  - version: v1\n    effective_from: "2026-01-01T00:00:00Z"\n';
const yaml = (...lines: string[]) => `versions:\n${V1}${lines.map((line) => `    ${line}\n`).join('')}`;

type Expected = { line: number | null; column: number | null; field: string; expected: RegExp; problem?: RegExp };
function refused(source: string | Uint8Array, file: string, want: Expected): void {
  assert.throws(
    () => parseEarningRules(source, file),
    (error) => {
      assert.ok(error instanceof EarningRulesFileError, String(error));
      assert.ok(error instanceof ConfigError, 'a ConfigError: start-up stops with exit 78');
      assert.deepEqual([error.file, error.line, error.column, error.field], [file, want.line, want.column, want.field], error.message);
      assert.match(error.expected, want.expected);
      if (want.problem !== undefined) assert.match(error.message, want.problem);
      assert.ok(error.message.startsWith(`earning rules file ${file}${want.line === null ? '' : `:${want.line}:${want.column}`}: `), error.message);
      return true;
    },
  );
}

describe('rules-file.unit: loading', () => {
  test('the example file loads, and its versions apply by date', () => {
    const rules = loadEarningRulesFile(EXAMPLE);
    assert.deepEqual(
      rules.versions.map((v) => v.version),
      ['2026-01', '2026-04'],
    );
    const january = computePoints(rules, { route: 'visa', amount: 12_345, mcc: '5411', occurred_at: '2026-03-31T14:59:59Z', month_points_earned: 0 });
    assert.deepEqual([january.version, january.points], ['2026-01', 61]);
    // April, QUICPay at 1 % in a supermarket (×2), plus the welcome bonus: 123 + 123 + 300.
    const april = computePoints(rules, { route: 'quicpay', amount: 12_345, mcc: '5411', occurred_at: '2026-03-31T15:00:00Z', month_points_earned: 0 });
    assert.deepEqual([april.version, april.points], ['2026-04', 546]);
    assert.equal(computePoints(rules, { route: 'visa', amount: 50_000, mcc: '6011', occurred_at: '2026-04-10T00:00:00Z', month_points_earned: 0 }).reason, 'excluded_category');
  });

  test('JSON and YAML give the same rules; defaults fill what is left out; the result is frozen', () => {
    const fromJson = parseEarningRules(JSON.stringify({ versions: [{ version: 'v1', effective_from: '2026-01-01T09:00:00+09:00' }] }), 'rules.json');
    const fromYaml = parseEarningRules(`versions:\n${V1}`, 'rules.yaml');
    assert.deepEqual(fromJson, fromYaml);
    assert.deepEqual(fromYaml.versions[0], {
      version: 'v1',
      effective_from_ms: Date.parse('2026-01-01T00:00:00Z'),
      base_rate_bp: 50,
      route_base_rate_bp: {},
      category_multipliers_percent: {},
      excluded_categories: [],
      minimum_amount: 0,
      monthly_cap_points: null,
      campaigns: [],
    });
    assert.ok(Object.isFrozen(fromYaml) && Object.isFrozen(fromYaml.versions) && Object.isFrozen(fromYaml.versions[0]!.excluded_categories));
  });

  test('without a known extension, content that opens with { is held to JSON', () => {
    assert.equal(parseEarningRules(`{"versions": [{"version": "v1", "effective_from": "2026-01-01T00:00:00Z"}]}`, 'rules').versions.length, 1);
    refused('{"versions": [], }', 'rules', { line: 1, column: 18, field: '', expected: /JSON/ });
    assert.equal(parseEarningRules(`versions:\n${V1}`, 'rules').versions.length, 1);
  });

  test('a missing file, or one over the size limit, is refused without a position', (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'koban-rules-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    assert.throws(() => loadEarningRulesFile(path.join(dir, 'none.yaml')), (error) => error instanceof EarningRulesFileError && error.line === null && /ENOENT/.test(error.message));
    const big = path.join(dir, 'big.yaml');
    writeFileSync(big, Buffer.alloc(RULES_FILE_BYTES_MAX + 1, 0x20));
    assert.throws(() => loadEarningRulesFile(big), (error) => error instanceof EarningRulesFileError && error.file === 'big.yaml' && /at most/.test(error.expected));
    // Given as text, the limit counts bytes: 2-byte characters reach it at half the length.
    refused(`# ${'é'.repeat(RULES_FILE_BYTES_MAX / 2)}\n${yaml()}`, 'r.yaml', { line: null, column: null, field: '', expected: /^at most \d+$/ });
  });
});

describe('rules-file.unit: schema errors name line, column and field', () => {
  test('out of range, with the value and the unit', () => {
    refused(yaml('base_rate_bp: 5000'), 'r.yaml', { line: 4, column: 19, field: 'versions[0].base_rate_bp', expected: /0–1000.*basis points/, problem: /5000 must be <= 1000/ });
    // Word for word as the README shows it.
    assert.throws(() => parseEarningRules(yaml('base_rate_bp: 5000'), 'rules.yaml'), {
      message: 'earning rules file rules.yaml:4:19: versions[0].base_rate_bp: 5000 must be <= 1000; expected an integer, 0–1000: a rate in basis points (50 = 0.5 %)',
    });
  });

  test('not an integer (JSON, on its own line)', () => {
    refused('{"versions": [{"version": "v1", "effective_from": "2026-01-01T00:00:00Z",\n  "minimum_amount": 1.5}]}', 'r.json', { line: 2, column: 21, field: 'versions[0].minimum_amount', expected: /integer/ });
  });

  test('an unknown field points at its key and lists the known ones', () => {
    refused(yaml('base_rate: 50'), 'r.yaml', { line: 4, column: 5, field: 'versions[0].base_rate', expected: /one of version, effective_from, .*base_rate_bp/ });
    refused(`versions:\n${V1}rate: 1\n`, 'r.yaml', { line: 4, column: 1, field: 'rate', expected: /one of versions/ });
  });

  test('a missing field points at the object that lacks it', () => {
    refused('versions:\n  - version: v1\n    base_rate_bp: 10\n', 'r.yaml', { line: 2, column: 5, field: 'versions[0]', expected: /^effective_from: an RFC 3339 instant/, problem: /effective_from is missing/ });
  });

  test('an unquoted YAML category code is a number: the hint says to quote it', () => {
    refused(yaml('excluded_categories: ["6011", 7995]'), 'r.yaml', { line: 4, column: 35, field: 'versions[0].excluded_categories[1]', expected: /quoted/ });
    refused(yaml('category_multipliers_percent:', '  "541": 200'), 'r.yaml', { line: 5, column: 7, field: 'versions[0].category_multipliers_percent.541', expected: /four digits/ });
    refused(yaml('excluded_categories: ["6011", "6011"]'), 'r.yaml', { line: 4, column: 26, field: 'versions[0].excluded_categories', expected: /each once/ });
  });

  test('instants need an offset and a real date', () => {
    refused('versions:\n  - version: v1\n    effective_from: "2026-01-01T00:00:00"\n', 'r.yaml', { line: 3, column: 21, field: 'versions[0].effective_from', expected: /offset/ });
    refused('versions:\n  - version: v1\n    effective_from: "2026-02-30T00:00:00Z"\n', 'r.yaml', { line: 3, column: 21, field: 'versions[0].effective_from', expected: /RFC 3339/ });
    refused('versions:\n  - version: v1\n    effective_from: "2026-12-31T23:59:60Z"\n', 'r.yaml', { line: 3, column: 21, field: 'versions[0].effective_from', expected: /RFC 3339/ });
  });

  test('an unknown route, an empty file, versions not a list', () => {
    refused(yaml('route_base_rate_bp: { jcb: 10 }'), 'r.yaml', { line: 4, column: 27, field: 'versions[0].route_base_rate_bp.jcb', expected: /one of visa, quicpay/ });
    refused('', 'r.yaml', { line: null, column: null, field: '', expected: /object/ });
    refused('versions: {}\n', 'r.yaml', { line: 1, column: 11, field: 'versions', expected: /list/ });
  });
});

describe('rules-file.unit: what the schema cannot say', () => {
  const version = (id: string, from: string) => `  - version: ${id}\n    effective_from: "${from}"\n`;

  test('version ids are unique, effective_from strictly increasing (append only)', () => {
    refused(`versions:\n${version('v1', '2026-01-01T00:00:00Z')}${version('v1', '2026-02-01T00:00:00Z')}`, 'r.yaml', { line: 4, column: 14, field: 'versions[1].version', expected: /new id/ });
    refused(`versions:\n${version('v1', '2026-02-01T00:00:00Z')}${version('v2', '2026-01-01T00:00:00Z')}`, 'r.yaml', { line: 5, column: 21, field: 'versions[1].effective_from', expected: /strictly after/ });
    // The same instant written in another offset is not later.
    refused(`versions:\n${version('v1', '2026-01-01T00:00:00Z')}${version('v2', '2026-01-01T09:00:00+09:00')}`, 'r.yaml', { line: 5, column: 21, field: 'versions[1].effective_from', expected: /strictly after/ });
  });

  const campaign = (...lines: string[]) => yaml('campaigns:', '  - id: c1', '    starts_at: "2026-02-01T00:00:00Z"', '    ends_at: "2026-03-01T00:00:00Z"', ...lines.map((line) => `    ${line}`));

  test('a campaign has exactly one of rate_bp and bonus_points, an end after its start, an id once per version', () => {
    assert.equal(parseEarningRules(campaign('rate_bp: 100'), 'r.yaml').versions[0]!.campaigns[0]!.rate_bp, 100);
    refused(campaign(), 'r.yaml', { line: 5, column: 9, field: 'versions[0].campaigns[0]', expected: /exactly one of rate_bp/, problem: /neither/ });
    refused(campaign('rate_bp: 100', 'bonus_points: 5'), 'r.yaml', { line: 5, column: 9, field: 'versions[0].campaigns[0]', expected: /exactly one/, problem: /both/ });
    refused(yaml('campaigns:', '  - { id: c1, starts_at: "2026-02-01T00:00:00Z", ends_at: "2026-02-01T00:00:00Z", rate_bp: 1 }'), 'r.yaml', {
      line: 5,
      column: 63,
      field: 'versions[0].campaigns[0].ends_at',
      expected: /end after the start/,
    });
    refused(`${campaign('rate_bp: 1')}      - { id: c1, starts_at: "2026-02-01T00:00:00Z", ends_at: "2026-03-01T00:00:00Z", rate_bp: 1 }\n`, 'r.yaml', {
      line: 9,
      column: 15,
      field: 'versions[0].campaigns[1].id',
      expected: /once per version/,
    });
  });

  test('a category is excluded or multiplied, not both', () => {
    refused(yaml('excluded_categories: ["6011"]', 'category_multipliers_percent: { "6011": 200 }'), 'r.yaml', { line: 5, column: 45, field: 'versions[0].category_multipliers_percent.6011', expected: /either/ });
  });
});

describe('rules-file.unit: syntax and bytes', () => {
  test('a repeated key is refused, in YAML and in JSON (JSON.parse would keep the last)', () => {
    refused(yaml('base_rate_bp: 10', 'base_rate_bp: 20'), 'r.yaml', { line: 5, column: 5, field: '', expected: /each key once/ });
    refused('{"versions": [{"version": "v1", "effective_from": "2026-01-01T00:00:00Z",\n "version": "v2"}]}', 'r.json', { line: 2, column: 2, field: '', expected: /each key once/ });
  });

  test('YAML or JSON syntax errors say where', () => {
    // yaml reports an unclosed quote where the file ends.
    refused('versions:\n  - version: "v1\n', 'r.yaml', { line: 3, column: 1, field: '', expected: /YAML/, problem: /closing "quote/ });
    refused('{"versions": [\n  // a comment\n]}', 'r.json', { line: 2, column: 3, field: '', expected: /JSON/ });
    refused(`versions:\n${V1}---\nversions: []\n`, 'r.yaml', { line: 4, column: 1, field: '', expected: /YAML document/ });
  });

  test('NUL, other control characters and invalid UTF-8 in the bytes; lone surrogates and NUL as escapes', () => {
    refused(yaml('description: "a\u0000b"'), 'r.yaml', { line: 4, column: 20, field: '', expected: /without NUL/ });
    refused(yaml('description: a\u0007b'), 'r.yaml', { line: 4, column: 19, field: '', expected: /control/ });
    const bytes = Buffer.concat([Buffer.from(yaml('description: "caf').trimEnd()), Buffer.from([0xc3, 0x28]), Buffer.from('"\n')]);
    refused(bytes, 'r.yaml', { line: 4, column: 22, field: '', expected: /UTF-8/ });
    refused(yaml('description: "\\ud800"'), 'r.yaml', { line: 4, column: 18, field: 'versions[0].description', expected: /lone surrogates/ });
    refused(yaml('description: "a\\0b"'), 'r.yaml', { line: 4, column: 18, field: 'versions[0].description', expected: /without NUL/ });
    refused('{"versions": [{"version": "v\\u0000", "effective_from": "2026-01-01T00:00:00Z"}]}', 'r.json', { line: 1, column: 27, field: 'versions[0].version', expected: /letters, digits/ });
  });
});
