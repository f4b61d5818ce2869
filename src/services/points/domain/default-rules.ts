// The earning rules when no file is configured (POINTS_EARNING_RULES_FILE
// unset): the default, 0.5 % of every payment, in force since the
// epoch, no caps, no campaigns.
import type { EarningRules } from './earning-rules.ts';
import { BASE_RATE_BP_DEFAULT } from './limits.ts';

export const DEFAULT_EARNING_RULES: EarningRules = Object.freeze({
  versions: Object.freeze([
    Object.freeze({
      version: 'default',
      effective_from_ms: 0,
      base_rate_bp: BASE_RATE_BP_DEFAULT,
      route_base_rate_bp: {},
      category_multipliers_percent: {},
      excluded_categories: [],
      minimum_amount: 0,
      monthly_cap_points: null,
      campaigns: [],
    }),
  ]),
});
