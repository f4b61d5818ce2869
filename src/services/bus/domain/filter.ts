// Subscription filter policies on event attributes, with SNS's semantics:
// keys are ANDed, the conditions listed under one key are ORed, and a
// condition other than `exists: false` needs the attribute to be present.
import type { FilterCondition, FilterPolicy } from '../../../contracts/bus/filter-policy.ts';
import { FILTER_KEYS_MAX, FILTER_VALUES_MAX } from './limits.ts';


export function matchesFilter(policy: FilterPolicy | null | undefined, attributes: Readonly<Record<string, string>>): boolean {
  if (!policy) return true;
  for (const [key, conditions] of Object.entries(policy)) {
    const value = Object.hasOwn(attributes, key) ? attributes[key] : undefined;
    if (!conditions.some((condition) => matchesCondition(condition, value))) return false;
  }
  return true;
}

function matchesCondition(condition: FilterCondition, value: string | undefined): boolean {
  if (typeof condition === 'string') return value === condition;
  if ('exists' in condition) return condition.exists === (value !== undefined);
  if (value === undefined) return false;
  if ('prefix' in condition) return value.startsWith(condition.prefix);
  const excluded = condition['anything-but'];
  if (typeof excluded === 'string') return value !== excluded;
  if (Array.isArray(excluded)) return !excluded.includes(value);
  return !value.startsWith((excluded as { prefix: string }).prefix);
}

/** Returns a description of what is wrong with a policy, or undefined when it is valid. */
export function filterPolicyProblem(policy: unknown): string | undefined {
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) return 'a filter policy is an object of attribute name → conditions';
  const entries = Object.entries(policy);
  if (entries.length === 0) return 'a filter policy needs at least one key (leave it out to receive everything)';
  if (entries.length > FILTER_KEYS_MAX) return `a filter policy has at most ${FILTER_KEYS_MAX} keys`;
  let values = 0;
  for (const [key, conditions] of entries) {
    if (!Array.isArray(conditions) || conditions.length === 0) return `filter.${key} must be a non-empty array of conditions`;
    for (const condition of conditions as unknown[]) {
      const problem = conditionProblem(condition);
      if (problem) return `filter.${key}: ${problem}`;
      values += typeof condition === 'object' && condition !== null && Array.isArray((condition as Record<string, unknown>)['anything-but'])
        ? ((condition as Record<string, unknown[]>)['anything-but']!.length)
        : 1;
    }
  }
  if (values > FILTER_VALUES_MAX) return `a filter policy has at most ${FILTER_VALUES_MAX} values in all`;
  return undefined;
}

function conditionProblem(condition: unknown): string | undefined {
  if (typeof condition === 'string') return undefined;
  if (typeof condition !== 'object' || condition === null || Array.isArray(condition)) return 'a condition is a string or an object';
  const keys = Object.keys(condition);
  const operand = (condition as Record<string, unknown>)[keys[0] ?? ''];
  if (keys.length !== 1) return 'a condition object has exactly one operator';
  switch (keys[0]) {
    case 'prefix':
      return typeof operand === 'string' && operand.length > 0 ? undefined : 'prefix takes a non-empty string';
    case 'exists':
      return typeof operand === 'boolean' ? undefined : 'exists takes true or false';
    case 'anything-but':
      if (typeof operand === 'string') return undefined;
      if (Array.isArray(operand) && operand.length > 0 && operand.every((item) => typeof item === 'string')) return undefined;
      if (typeof operand === 'object' && operand !== null && !Array.isArray(operand)) {
        const inner = operand as Record<string, unknown>;
        if (Object.keys(inner).length === 1 && typeof inner.prefix === 'string' && inner.prefix.length > 0) return undefined;
      }
      return 'anything-but takes a string, a non-empty array of strings, or { prefix }';
    default:
      return `unknown operator ${keys[0]}; use prefix, anything-but or exists`;
  }
}
