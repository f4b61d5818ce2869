// One way every event contract validates its `data`: exactly this version's
// shape for producers, and for consumers the same schema with fields this
// version does not know dropped (additive changes never poison an older
// consumer). Errors name the field, as `invalid_request` does at HTTP edges.
import { Ajv, type ErrorObject, type JSONSchemaType } from 'ajv';
import { invalidRequest } from '../../platform/errors.ts';

export type EventDataValidator<T> = Readonly<{
  /** Producers: throws `invalid_request` naming the field unless `data` is exactly this shape. */
  check(data: unknown): T;
  /** Consumers: a copy of `data` with unknown fields dropped; throws `invalid_request` (a poison message) if it is not this shape. */
  parse(data: unknown): T;
}>;

const strictAjv = new Ajv({ strict: true, allErrors: false });
const lenientAjv = new Ajv({ strict: true, allErrors: false, removeAdditional: 'all' });

/** `label` says what the data is in error messages ("payment event"). */
export function eventDataValidator<T>(schema: JSONSchemaType<T> | Record<string, unknown>, label: string): EventDataValidator<T> {
  const strict = strictAjv.compile<T>(schema);
  const lenient = lenientAjv.compile<T>(schema);
  return {
    check(data) {
      if (!strict(data)) throw invalidRequest(fieldOf(strict.errors), describe(strict.errors, label));
      return data;
    },
    parse(data) {
      const copy: unknown = structuredClone(data);
      if (!lenient(copy)) throw invalidRequest(fieldOf(lenient.errors), describe(lenient.errors, label));
      return copy;
    },
  };
}

/** The event's type among `types`, or `invalid_request` naming it. */
export function checkEventType<T extends string>(type: unknown, types: readonly T[], label: string): T {
  if (typeof type === 'string' && (types as readonly string[]).includes(type)) return type as T;
  throw invalidRequest('type', `not a ${label} type: ${String(type).slice(0, 64)}`);
}

function fieldOf(errors: ErrorObject[] | null | undefined): string {
  const error = errors?.[0];
  if (error === undefined) return 'data';
  const missing = error.keyword === 'required' ? `/${(error.params as { missingProperty: string }).missingProperty}` : '';
  const extra = error.keyword === 'additionalProperties' ? `/${(error.params as { additionalProperty: string }).additionalProperty}` : '';
  return `data${`${error.instancePath}${missing}${extra}`.replaceAll('/', '.')}`;
}

function describe(errors: ErrorObject[] | null | undefined, label: string): string {
  const error = errors?.[0];
  return error === undefined ? `invalid ${label} data` : `${label} ${fieldOf(errors)} ${error.message ?? 'is invalid'}`;
}
