// The earning-rules file: JSON or YAML, validated once at start-up against a
// JSON schema, then turned into the engine's frozen `EarningRules`. A bad file
// stops start-up (a ConfigError, exit 78) with one line naming the file, the
// line and column of the offending node, the field path and what is expected,
// so an operator fixes it without reading the code.
//
// Strict on purpose: unknown fields, repeated keys (JSON.parse would keep the
// last one silently), non-integers, NUL and invalid UTF-8 are all refused;
// versions must have unique ids and strictly increasing `effective_from`,
// because a grant names its version forever (append, never rewrite).
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { PAYMENT_ROUTES, type PaymentRoute } from '../../contracts/events/payments.ts';
import { ConfigError } from '../../platform/config.ts';
import { STORABLE_TEXT_PATTERN } from '../../platform/storable-text.ts';
import type { Campaign, EarningRules, RuleVersion } from './domain/earning-rules.ts';
import {
  BASE_RATE_BP_DEFAULT,
  BASE_RATE_BP_MAX,
  CAMPAIGN_BONUS_POINTS_MAX,
  CAMPAIGN_RATE_BP_MAX,
  CAMPAIGNS_PER_VERSION_MAX,
  CAP_POINTS_MAX,
  CATEGORIES_PER_VERSION_MAX,
  DESCRIPTION_LENGTH_MAX,
  EARNING_AMOUNT_MAX,
  MCC_PATTERN,
  MULTIPLIER_PERCENT_MAX,
  RULE_ID_PATTERN,
  RULES_FILE_BYTES_MAX,
  VERSIONS_PER_FILE_MAX,
} from './domain/limits.ts';

/** A bad rules file: where (line and column are 1-based; null when the fault has no place, e.g. an unreadable file), which field, and what is expected. */
export class EarningRulesFileError extends ConfigError {
  override name = 'EarningRulesFileError';
  readonly file: string;
  readonly line: number | null;
  readonly column: number | null;
  /** The field path, e.g. `versions[0].campaigns[1].rate_bp`; empty for the whole file. */
  readonly field: string;
  readonly expected: string;
  constructor(fault: { file: string; line: number | null; column: number | null; field: string; problem: string; expected: string }) {
    const where = fault.line === null ? fault.file : `${fault.file}:${fault.line}:${fault.column}`;
    super(`earning rules file ${where}: ${fault.field === '' ? '' : `${fault.field}: `}${fault.problem}; expected ${fault.expected}`);
    this.file = fault.file;
    this.line = fault.line;
    this.column = fault.column;
    this.field = fault.field;
    this.expected = fault.expected;
  }
}

const ID = { type: 'string', pattern: RULE_ID_PATTERN, description: 'an id of 1–64 letters, digits, `.`, `_` or `-`' } as const;
// Second precision or milliseconds: Date.parse must read it exactly, and an offset is required so no instant depends on the server's zone.
const INSTANT = {
  type: 'string',
  format: 'date-time',
  pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,3})?(Z|[+-][0-9]{2}:[0-9]{2})$',
  description: 'an RFC 3339 instant with its offset, e.g. "2026-04-01T00:00:00+09:00"',
} as const;
const MCC = { type: 'string', pattern: MCC_PATTERN, description: 'a merchant category code: four digits, quoted in YAML ("5411")' } as const;
const integer = (max: number, what: string) => ({ type: 'integer', minimum: 0, maximum: max, description: `an integer, 0–${max}: ${what}` }) as const;
const BASE_RATE_BP = integer(BASE_RATE_BP_MAX, 'a rate in basis points (50 = 0.5 %)');
const AMOUNT = integer(EARNING_AMOUNT_MAX, 'an amount in minor units (yen)');
const CAP = integer(CAP_POINTS_MAX, 'a cap in points');

const campaignSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'starts_at', 'ends_at'],
  description: 'a campaign: id, starts_at, ends_at, rate_bp or bonus_points, and optionally user_cap_points, routes, categories, minimum_amount',
  properties: {
    id: ID,
    starts_at: INSTANT,
    ends_at: INSTANT,
    rate_bp: integer(CAMPAIGN_RATE_BP_MAX, 'an extra rate in basis points on the amount'),
    bonus_points: integer(CAMPAIGN_BONUS_POINTS_MAX, 'a fixed bonus in points per qualifying payment'),
    user_cap_points: CAP,
    routes: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: PAYMENT_ROUTES, description: `a route: ${PAYMENT_ROUTES.join(' or ')}` }, description: 'a list of routes, each once' },
    categories: { type: 'array', minItems: 1, maxItems: CATEGORIES_PER_VERSION_MAX, uniqueItems: true, items: MCC, description: 'a list of merchant category codes, each once' },
    minimum_amount: AMOUNT,
  },
} as const;

const versionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'effective_from'],
  description: 'a rule version: version, effective_from, and optionally description, base_rate_bp, route_base_rate_bp, category_multipliers_percent, excluded_categories, minimum_amount, monthly_cap_points, campaigns',
  properties: {
    version: ID,
    effective_from: INSTANT,
    description: { type: 'string', maxLength: DESCRIPTION_LENGTH_MAX, pattern: STORABLE_TEXT_PATTERN, description: `text of at most ${DESCRIPTION_LENGTH_MAX} characters, without NUL or lone surrogates` },
    base_rate_bp: BASE_RATE_BP,
    route_base_rate_bp: {
      type: 'object',
      additionalProperties: false,
      properties: Object.fromEntries(PAYMENT_ROUTES.map((route) => [route, BASE_RATE_BP])),
      description: `a map from route (${PAYMENT_ROUTES.join(', ')}) to its base rate in basis points`,
    },
    category_multipliers_percent: {
      type: 'object',
      maxProperties: CATEGORIES_PER_VERSION_MAX,
      propertyNames: MCC,
      additionalProperties: integer(MULTIPLIER_PERCENT_MAX, 'a multiplier of the base in percent (200 = twice)'),
      description: 'a map from merchant category code to a multiplier in percent',
    },
    excluded_categories: { type: 'array', maxItems: CATEGORIES_PER_VERSION_MAX, uniqueItems: true, items: MCC, description: 'a list of merchant category codes, each once' },
    minimum_amount: AMOUNT,
    monthly_cap_points: CAP,
    campaigns: { type: 'array', maxItems: CAMPAIGNS_PER_VERSION_MAX, items: campaignSchema, description: `a list of at most ${CAMPAIGNS_PER_VERSION_MAX} campaigns` },
  },
} as const;

/** The file's JSON schema (exported for documentation and editors). */
export const earningRulesFileSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['versions'],
  description: 'an object with one field, versions',
  properties: {
    versions: { type: 'array', minItems: 1, maxItems: VERSIONS_PER_FILE_MAX, items: versionSchema, description: `a list of 1–${VERSIONS_PER_FILE_MAX} rule versions, oldest first` },
  },
} as const;

type CampaignFile = { id: string; starts_at: string; ends_at: string; rate_bp?: number; bonus_points?: number; user_cap_points?: number; routes?: PaymentRoute[]; categories?: string[]; minimum_amount?: number };
type VersionFile = {
  version: string;
  effective_from: string;
  description?: string;
  base_rate_bp?: number;
  route_base_rate_bp?: Partial<Record<PaymentRoute, number>>;
  category_multipliers_percent?: Record<string, number>;
  excluded_categories?: string[];
  minimum_amount?: number;
  monthly_cap_points?: number;
  campaigns?: CampaignFile[];
};
type RulesFile = { versions: VersionFile[] };

const ajv = new Ajv({ strict: true, allErrors: false, verbose: true });
addFormats.default(ajv, ['date-time']);
const validateFile = ajv.compile<RulesFile>(earningRulesFileSchema);

/** Reads, validates and freezes the rules file at `filePath`; throws EarningRulesFileError naming what to fix. */
export function loadEarningRulesFile(filePath: string): EarningRules {
  const file = path.basename(filePath);
  let bytes: Buffer;
  try {
    // Checked before reading: a huge file is refused without loading it.
    const size = statSync(filePath).size;
    if (size > RULES_FILE_BYTES_MAX) throw new EarningRulesFileError({ file, line: null, column: null, field: '', problem: `the file has ${size} bytes`, expected: `at most ${RULES_FILE_BYTES_MAX}` });
    bytes = readFileSync(filePath);
  } catch (error) {
    if (error instanceof EarningRulesFileError) throw error;
    throw new EarningRulesFileError({ file: filePath, line: null, column: null, field: '', problem: `cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`, expected: 'a readable JSON or YAML file' });
  }
  return parseEarningRules(bytes, file);
}

/** Parses rules from `source` (the file's bytes or text); `file` names it in errors and, by its extension, says JSON or YAML (otherwise the content does). */
export function parseEarningRules(source: Uint8Array | string, file: string): EarningRules {
  const lineCounter = new LineCounter();
  const fault = (offset: number | null, field: string, problem: string, expected: string): never => {
    const position = offset === null ? null : lineCounter.linePos(offset);
    throw new EarningRulesFileError({ file, line: position?.line ?? null, column: position?.col ?? null, field, problem, expected });
  };
  const size_bytes = typeof source === 'string' ? Buffer.byteLength(source) : source.byteLength;
  if (size_bytes > RULES_FILE_BYTES_MAX) fault(null, '', `the file has ${size_bytes} bytes`, `at most ${RULES_FILE_BYTES_MAX}`);
  const text = typeof source === 'string' ? source : decodeUtf8(source, file);

  const extension = path.extname(file).toLowerCase();
  const isJson = extension === '.json' || (extension !== '.yaml' && extension !== '.yml' && text.trimStart().startsWith('{'));
  // Parsed as YAML in both cases: one parser gives node positions and refuses repeated keys. JSON is first held to JSON itself (no comments, no trailing commas).
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true, version: '1.2', schema: isJson ? 'json' : 'core' });
  // A character PostgreSQL cannot store, or a control character no editor shows: the line of the first one. (Lone surrogates cannot come from UTF-8 bytes; escaped in a string, the schema's patterns refuse them.)
  const unprintable = text.search(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ud800-\udfff]/u);
  if (unprintable >= 0) fault(unprintable, '', `control character U+${text.codePointAt(unprintable)!.toString(16).padStart(4, '0').toUpperCase()}`, 'text without NUL or other control characters');
  if (isJson) {
    try {
      JSON.parse(text);
    } catch (error) {
      const message = (error as Error).message;
      // V8 gives a position for most faults; for an unexpected token, only a snippet: then yaml's position of the fault, if it sees one.
      const at = /position (\d+)/.exec(message);
      const offset = at === null ? (doc.errors[0]?.pos[0] ?? null) : Number(at[1]);
      fault(offset, '', `not JSON: ${message.replace(/ in JSON at position.*$/s, '').replace(/, ".*" is not valid JSON$/s, '')}`, 'a JSON object (or use a .yaml file)');
    }
  }
  const syntax = doc.errors[0];
  if (syntax !== undefined) {
    const problem = syntax.code === 'DUPLICATE_KEY' ? 'a key appears twice in one object' : `not ${isJson ? 'JSON' : 'YAML'}: ${syntax.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
    fault(syntax.pos[0], '', problem, syntax.code === 'DUPLICATE_KEY' ? 'each key once' : `a ${isJson ? 'JSON' : 'YAML'} document`);
  }

  const data: unknown = doc.toJS({ maxAliasCount: 100 });
  if (!validateFile(data)) {
    const error = validateFile.errors![0]!;
    const { segments, key } = errorTarget(error);
    fault(offsetOf(doc, segments, key), fieldPath(key === null ? segments : [...segments, key]), problemOf(error), expectedOf(error));
  }
  return deepFreeze(toRules(data as RulesFile, (segments, problem, expected) => fault(offsetOf(doc, segments, null), fieldPath(segments), problem, expected)));
}

type Segment = string | number;
type Refuse = (segments: Segment[], problem: string, expected: string) => never;

// What the schema cannot say: order, uniqueness across items, and fields that go together.
function toRules(file: RulesFile, refuse: Refuse): EarningRules {
  const seen = new Set<string>();
  let previous_ms = Number.NEGATIVE_INFINITY;
  const versions = file.versions.map((entry, index): RuleVersion => {
    const at: Segment[] = ['versions', index];
    if (seen.has(entry.version)) refuse([...at, 'version'], `version id ${JSON.stringify(entry.version)} is used twice`, 'a new id for every version: a grant names its version forever');
    seen.add(entry.version);
    const effective_from_ms = instant(entry.effective_from, [...at, 'effective_from'], refuse);
    if (effective_from_ms <= previous_ms) refuse([...at, 'effective_from'], `${entry.effective_from} is not after the previous version's`, 'versions oldest first, each effective strictly after the one before (append new versions at the end)');
    previous_ms = effective_from_ms;
    const excluded = entry.excluded_categories ?? [];
    const multipliers = entry.category_multipliers_percent ?? {};
    for (const mcc of excluded) {
      if (mcc in multipliers) refuse([...at, 'category_multipliers_percent', mcc], `category ${mcc} is excluded and has a multiplier`, 'a category either excluded or multiplied');
    }
    const campaignIds = new Set<string>();
    const campaigns = (entry.campaigns ?? []).map((campaign, campaignIndex): Campaign => {
      const cat: Segment[] = [...at, 'campaigns', campaignIndex];
      if (campaignIds.has(campaign.id)) refuse([...cat, 'id'], `campaign id ${JSON.stringify(campaign.id)} is used twice in this version`, 'each campaign id once per version: caps are counted per id');
      campaignIds.add(campaign.id);
      if ((campaign.rate_bp === undefined) === (campaign.bonus_points === undefined)) refuse(cat, campaign.rate_bp === undefined ? 'neither rate_bp nor bonus_points' : 'both rate_bp and bonus_points', 'exactly one of rate_bp (a rate) and bonus_points (a fixed bonus)');
      const starts_at_ms = instant(campaign.starts_at, [...cat, 'starts_at'], refuse);
      const ends_at_ms = instant(campaign.ends_at, [...cat, 'ends_at'], refuse);
      if (ends_at_ms <= starts_at_ms) refuse([...cat, 'ends_at'], `${campaign.ends_at} is not after starts_at`, 'an end after the start (the end is excluded)');
      return {
        id: campaign.id,
        starts_at_ms,
        ends_at_ms,
        rate_bp: campaign.rate_bp ?? null,
        bonus_points: campaign.bonus_points ?? null,
        user_cap_points: campaign.user_cap_points ?? null,
        routes: campaign.routes ?? null,
        categories: campaign.categories ?? null,
        minimum_amount: campaign.minimum_amount ?? 0,
      };
    });
    return {
      version: entry.version,
      effective_from_ms,
      base_rate_bp: entry.base_rate_bp ?? BASE_RATE_BP_DEFAULT,
      route_base_rate_bp: entry.route_base_rate_bp ?? {},
      category_multipliers_percent: multipliers,
      excluded_categories: excluded,
      minimum_amount: entry.minimum_amount ?? 0,
      monthly_cap_points: entry.monthly_cap_points ?? null,
      campaigns,
    };
  });
  return { versions };
}

function instant(text: string, at: Segment[], refuse: Refuse): number {
  const ms = Date.parse(text);
  // The format admits a leap second (…:60), which Date cannot hold.
  if (!Number.isFinite(ms)) refuse(at, `${text} is not an instant Date can hold`, INSTANT.description);
  return ms;
}

function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    // Decoded again, leniently, only to say where the first bad byte is.
    const lenient = new TextDecoder('utf-8').decode(bytes);
    const counter = new LineCounter();
    parseDocument(lenient, { lineCounter: counter });
    const position = counter.linePos(Math.max(0, lenient.indexOf('\ufffd')));
    throw new EarningRulesFileError({ file, line: position.line, column: position.col, field: '', problem: 'invalid UTF-8', expected: 'a UTF-8 text file' });
  }
}

/** The instance path of an Ajv error as segments, and the key it is about (a missing, unknown or badly named one), if any. */
function errorTarget(error: ErrorObject): { segments: Segment[]; key: string | null } {
  const segments: Segment[] = error.instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'))
    .map((part) => (/^(0|[1-9][0-9]*)$/.test(part) ? Number(part) : part));
  if (error.propertyName !== undefined) return { segments, key: error.propertyName };
  if (error.keyword === 'additionalProperties') return { segments, key: (error.params as { additionalProperty: string }).additionalProperty };
  return { segments, key: null };
}

/** Where a field is in the source: its value's node (or its key's, for `key`), else the deepest node that exists. */
function offsetOf(doc: Document, segments: Segment[], key: string | null): number | null {
  let node: unknown = doc.contents;
  let offset = rangeStart(node);
  for (const [index, segment] of segments.entries()) {
    const last = key === null && index === segments.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
      if (pair === undefined) return offset;
      node = pair.value;
      offset = rangeStart(node) ?? rangeStart(pair.key) ?? offset;
      if (last && node === null) return rangeStart(pair.key) ?? offset;
    } else if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment];
      offset = rangeStart(node) ?? offset;
    } else {
      return offset;
    }
  }
  if (key !== null && isMap(node)) {
    const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === key);
    if (pair !== undefined) return rangeStart(pair.key) ?? offset;
  }
  return offset;
}

function rangeStart(node: unknown): number | null {
  const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
  return range === undefined ? null : range[0];
}

/** `versions[0].campaigns[1].rate_bp`. */
function fieldPath(segments: Segment[]): string {
  return segments.map((segment, index) => (typeof segment === 'number' ? `[${segment}]` : `${index === 0 ? '' : '.'}${segment}`)).join('');
}

function problemOf(error: ErrorObject): string {
  const given = error.keyword === 'required' || error.keyword === 'additionalProperties' ? null : shown(error.data);
  switch (error.keyword) {
    case 'required':
      return `${(error.params as { missingProperty: string }).missingProperty} is missing`;
    case 'additionalProperties':
      return 'is not a known field';
    case 'pattern':
    case 'format':
      // Ajv's message quotes the regular expression; the expectation says it in words.
      return `${given} is not in the expected form`;
    default:
      return `${given} ${error.message ?? 'is invalid'}`;
  }
}

function expectedOf(error: ErrorObject): string {
  const schema = error.parentSchema as { description?: string; properties?: Record<string, { description?: string }> } | undefined;
  if (error.keyword === 'required') {
    const missing = (error.params as { missingProperty: string }).missingProperty;
    return `${missing}: ${schema?.properties?.[missing]?.description ?? 'a value'}`;
  }
  if (error.keyword === 'additionalProperties' && schema?.properties !== undefined) return `one of ${Object.keys(schema.properties).join(', ')}`;
  return schema?.description ?? 'a valid value';
}

function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
