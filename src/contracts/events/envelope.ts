// The event envelope: CloudEvents 1.0 in JSON, with string extension
// attributes for filtering and W3C `traceparent` for tracing. One JSON schema
// validates events at the HTTP edge (Fastify) and at in-process publish, so
// the two can never disagree.
import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import type { Clock } from '../../platform/clock.ts';
import { invalidRequest } from '../../platform/errors.ts';
import {
  ATTRIBUTE_LENGTH_MAX,
  EVENT_BYTES_MAX,
  EVENT_ID_PATTERN,
  EVENT_NESTING_DEPTH_MAX,
  EXTENSION_ATTRIBUTES_MAX,
  QUOTED_NAME_LENGTH_MAX,
  TOPIC_NAME_PATTERN,
} from './limits.ts';

type EventAttributes = {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject?: string;
  datacontenttype?: 'application/json';
  dataschema?: string;
  data?: unknown;
  traceparent?: string;
  tracestate?: string;
  /** Extension attributes: lower-case names, string values, used by filter policies. */
  [attribute: string]: unknown;
};

/** An event as delivered: `time` (RFC 3339) is always set. */
export type CloudEvent = EventAttributes & { time: string };

/** What a producer hands in; `time` may be left for the bus to stamp at publish. */
export type CloudEventInput = EventAttributes & { time?: string };

const CONTEXT_ATTRIBUTES = ['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'dataschema', 'data', 'traceparent', 'tracestate'];
/** CloudEvents extension names are 1–20 lower-case letters or digits; this excludes the names defined above. */
const EXTENSION_NAME_PATTERN = `^(?!(?:${CONTEXT_ATTRIBUTES.join('|')})$)[a-z0-9]{1,20}$`;
/** W3C trace context, version 00; all-zero trace and parent ids are invalid. */
export const TRACEPARENT_PATTERN = '^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$';

export const cloudEventSchema = {
  type: 'object',
  description:
    'A CloudEvents 1.0 event in JSON. Extra top-level attributes are CloudEvents extensions: lower-case names of 1–20 letters or digits with string values; subscriptions filter on them. No text anywhere in it (keys of `data` included) may contain a NUL character or a lone surrogate, and `data` nests objects and arrays at most 31 deep.',
  additionalProperties: false,
  required: ['specversion', 'id', 'source', 'type'],
  maxProperties: CONTEXT_ATTRIBUTES.length + EXTENSION_ATTRIBUTES_MAX,
  properties: {
    specversion: { type: 'string', enum: ['1.0'] },
    id: {
      type: 'string',
      pattern: EVENT_ID_PATTERN,
      description: 'Unique per topic: an identical repeat is a duplicate, delivered once; the same id with different content (any attribute but `time`) is 409 idempotency_conflict',
    },
    source: { type: 'string', minLength: 1, maxLength: 1024, format: 'uri-reference' },
    type: { type: 'string', minLength: 1, maxLength: 256 },
    subject: { type: 'string', minLength: 1, maxLength: 1024 },
    time: { type: 'string', format: 'date-time', maxLength: 64 },
    datacontenttype: { type: 'string', enum: ['application/json'] },
    dataschema: { type: 'string', format: 'uri', maxLength: 1024 },
    data: { description: 'Any JSON value' },
    traceparent: { type: 'string', pattern: TRACEPARENT_PATTERN, description: 'W3C trace context' },
    tracestate: { type: 'string', maxLength: 512 },
  },
  patternProperties: {
    [EXTENSION_NAME_PATTERN]: { type: 'string', maxLength: ATTRIBUTE_LENGTH_MAX },
  },
} as const;

const ajv = new Ajv({ coerceTypes: false, allErrors: false, strict: true });
addFormats.default(ajv);
const validateSchema = ajv.compile(cloudEventSchema);

/**
 * Checks an event from any producer and returns it with `time` filled in.
 * Throws `invalid_request` naming the first offending field.
 */
export function validateEvent(input: unknown, clock: Clock): CloudEvent {
  if (!validateSchema(input)) throw toInvalidRequest(validateSchema.errors?.[0]);
  checkStorable(input);
  const event = input as unknown as CloudEventInput;
  const complete: CloudEvent = event.time === undefined ? { ...event, time: clock.now().toISOString() } : (event as CloudEvent);
  const bytes = Buffer.byteLength(JSON.stringify(complete));
  if (bytes > EVENT_BYTES_MAX) {
    throw invalidRequest('data', `The event is ${bytes} bytes as JSON; at most ${EVENT_BYTES_MAX} are accepted`, { limit_bytes: EVENT_BYTES_MAX });
  }
  return complete;
}

/** The attributes a filter policy sees: every string context attribute except id and time, plus extensions. */
export function filterAttributes(event: CloudEvent): Record<string, string> {
  const attributes: Record<string, string> = {};
  for (const [name, value] of Object.entries(event)) {
    if (typeof value !== 'string' || name === 'id' || name === 'time' || name === 'specversion') continue;
    attributes[name] = value;
  }
  return attributes;
}

const topicNamePattern = new RegExp(TOPIC_NAME_PATTERN);

/** Throws `invalid_request` (field `topic`) unless the name could be a topic: nothing malformed reaches a query. */
export function checkTopicName(topic: unknown): string {
  if (typeof topic === 'string' && topicNamePattern.test(topic)) return topic;
  throw invalidRequest('topic', `A topic name is 1–63 lower-case letters, digits, _ or -, starting with a letter; got ${quoted(String(topic))}`);
}

/** Text PostgreSQL can keep (in text, json and jsonb alike): no NUL, no lone surrogate. */
function storableText(text: string): boolean {
  return text.isWellFormed() && !text.includes('\u0000');
}

/**
 * What the schema cannot say: no string anywhere (keys included) that
 * PostgreSQL refuses, only JSON values (an in-process caller may hand in
 * anything), and nesting within EVENT_NESTING_DEPTH_MAX. Iterative, so a
 * deep value cannot overflow the stack; names the first offending field.
 */
function checkStorable(event: object): void {
  // Paths are built only for an error: each entry points at its parent.
  type Entry = { value: unknown; key: string; parent: Entry | undefined; depth: number };
  const pathOf = (entry: Entry | undefined): string => {
    const keys: string[] = [];
    for (let at = entry; at?.parent !== undefined; at = at.parent) keys.push(at.key);
    return fieldOf(keys.reverse().join('.'));
  };
  const pending: Entry[] = [{ value: event, key: '', parent: undefined, depth: 1 }];
  while (pending.length > 0) {
    const entry = pending.pop()!;
    const { value, depth } = entry;
    if (typeof value === 'string') {
      if (!storableText(value)) throw invalidRequest(pathOf(entry), `${quoted(pathOf(entry))} contains a NUL character or a lone surrogate, which cannot be stored`);
      continue;
    }
    if (value === null || typeof value === 'boolean') continue;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw invalidRequest(pathOf(entry), `${quoted(pathOf(entry))} is not a finite number`);
      continue;
    }
    const isArray = Array.isArray(value);
    const prototype = typeof value === 'object' ? Object.getPrototypeOf(value) : undefined;
    if (!isArray && prototype !== Object.prototype && prototype !== null) throw invalidRequest(pathOf(entry), `${quoted(pathOf(entry))} is not JSON data`);
    if (depth > EVENT_NESTING_DEPTH_MAX) {
      throw invalidRequest(pathOf(entry), `${quoted(pathOf(entry))} nests objects and arrays more than ${EVENT_NESTING_DEPTH_MAX} deep in the event`, {
        limit_depth: EVENT_NESTING_DEPTH_MAX,
      });
    }
    // Pushed in reverse, so the first offending field in document order is the one named.
    if (isArray) {
      const items = value as unknown[];
      for (let index = items.length - 1; index >= 0; index--) pending.push({ value: items[index], key: String(index), parent: entry, depth: depth + 1 });
      continue;
    }
    const keys = Object.keys(value as object);
    for (let index = keys.length - 1; index >= 0; index--) {
      const key = keys[index]!;
      if (!storableText(key)) throw invalidRequest(pathOf(entry), `${quoted(pathOf(entry))} has a key containing a NUL character or a lone surrogate, which cannot be stored`);
      const child = (value as Record<string, unknown>)[key];
      // As JSON.stringify does: an absent optional field of an in-process caller.
      if (child !== undefined) pending.push({ value: child, key, parent: entry, depth: depth + 1 });
    }
  }
}

function fieldOf(path: string): string {
  return path === '' ? 'body' : path.length > QUOTED_NAME_LENGTH_MAX ? `${path.slice(0, QUOTED_NAME_LENGTH_MAX)}…` : path;
}

/** A name as a message may show it: bounded, with control characters and lone surrogates escaped. */
function quoted(name: string): string {
  const bounded = name.length > QUOTED_NAME_LENGTH_MAX ? `${name.slice(0, QUOTED_NAME_LENGTH_MAX)}…` : name;
  return JSON.stringify(bounded).slice(1, -1);
}

function toInvalidRequest(error: ErrorObject | undefined) {
  if (error === undefined) return invalidRequest('body', 'The event is invalid');
  const params = error.params as Record<string, unknown>;
  const path = error.instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (typeof params.additionalProperty === 'string') {
    const field = fieldOf(params.additionalProperty);
    return invalidRequest(field, `${quoted(field)} is not a known field; extension attributes are 1–20 lower-case letters or digits`);
  }
  if (typeof params.missingProperty === 'string') return invalidRequest(params.missingProperty, `${params.missingProperty} is required`);
  const field = path || 'body';
  return invalidRequest(field, `${field} ${error.message ?? 'is invalid'}`);
}
