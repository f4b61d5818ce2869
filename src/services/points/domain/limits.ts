// Every limit of the earning rules, named, with its unit. They are chosen so
// that the largest grant the rules can compute stays a safe integer:
// amount 10^15 × 10 % base × 10 (multiplier) = 10^15, plus at most 16
// campaigns × (10 % of 10^15 + 10^9 bonus) ≈ 1.6 × 10^15, total < 2^53.

/** The largest payment amount the engine takes, in minor units (yen): the ledger's own maximum. */
export const EARNING_AMOUNT_MAX = 1_000_000_000_000_000;
/** Basis points in one whole: 10,000 bp = 100 %. */
export const BASIS_POINTS_PER_UNIT = 10_000;
/** Percent in one whole: a multiplier of 100 % leaves the base unchanged. */
export const PERCENT_PER_UNIT = 100;
/** The default rate, 0.5 %, in basis points (12,345 yen → 61 points). */
export const BASE_RATE_BP_DEFAULT = 50;
/** The largest base rate, in basis points (10 %). */
export const BASE_RATE_BP_MAX = 1_000;
/** The largest merchant-category multiplier, in percent of the base (×10). 0 % earns nothing in that category without excluding it. */
export const MULTIPLIER_PERCENT_MAX = 1_000;
/** The largest campaign rate, added on top of the base, in basis points (10 %). */
export const CAMPAIGN_RATE_BP_MAX = 1_000;
/** The largest fixed bonus of one campaign, in points. */
export const CAMPAIGN_BONUS_POINTS_MAX = 1_000_000_000;
/** The largest cap (per user per campaign, or per user per month), in points: the ledger's largest amount. */
export const CAP_POINTS_MAX = 1_000_000_000_000_000;
/** Campaigns in one rule version. */
export const CAMPAIGNS_PER_VERSION_MAX = 16;
/** Rule versions in one file: enough for years of monthly changes; old versions stay because grants refer to them. */
export const VERSIONS_PER_FILE_MAX = 1_000;
/** Merchant categories with a multiplier, or excluded, in one version. */
export const CATEGORIES_PER_VERSION_MAX = 10_000;
/** Rule version and campaign ids: short, printable, safe in a ledger id or a log line. */
export const RULE_ID_PATTERN = '^[A-Za-z0-9._-]{1,64}$';
/** Merchant category codes (ISO 18245): four digits, as the payment events carry them. */
export const MCC_PATTERN = '^[0-9]{4}$';
/** Largest rules file read, in bytes: a file this big is a mistake, not a rule set. */
export const RULES_FILE_BYTES_MAX = 4 * 1024 * 1024;
/** A free-text description, in characters. */
export const DESCRIPTION_LENGTH_MAX = 1_000;

// Limits of the grant lifecycle (what the service does with what the engine computes).

/** How long a pending grant (a ledger pending add) stays visible before the ledger lets it lapse: longer than any authorization lives, so the payment's own events resolve it first. */
export const PENDING_GRANT_HOLD_MS = 31 * 24 * 60 * 60 * 1000;
/** Ledger steps one payment may take in one stream (pending re-issues, confirm or claw-back adjustments): far beyond any real payment; more is a bug, refused loudly. */
export const LEDGER_STEPS_PER_PAYMENT_MAX = 1_000;
/** Distinct reversals one payment may record. */
export const REVERSALS_PER_PAYMENT_MAX = 1_000;
/** The JST offset from UTC, in milliseconds: monthly caps count calendar months in Japan. */
export const JST_OFFSET_MS = 9 * 60 * 60 * 1000;
/** Default referral bonus, in points (POINTS_REFERRAL_BONUS_POINTS). */
export const REFERRAL_BONUS_POINTS_DEFAULT = 500;
/** The largest referral bonus, in points. */
export const REFERRAL_BONUS_POINTS_MAX = 10_000_000;
/** Default welcome cash, in yen (POINTS_WELCOME_CASH_AMOUNT); 0 turns it off. */
export const WELCOME_CASH_AMOUNT_DEFAULT = 500;
/** The largest welcome cash, in yen. */
export const WELCOME_CASH_AMOUNT_MAX = 1_000_000;
/** Default validity of the welcome cash, in days. */
export const WELCOME_CASH_VALID_DAYS_DEFAULT = 30;
/** The longest validity of welcome cash or of confirmed points, in days (the ledger takes expiries up to about 10 years ahead). */
export const VALID_DAYS_MAX = 3650;
/** Grants listed per page: default and largest. */
export const GRANTS_PAGE_LIMIT_DEFAULT = 50;
export const GRANTS_PAGE_LIMIT_MAX = 200;
/** Ledger transactions read back to find when a negative points balance went below zero; beyond it the oldest seen is reported. */
export const NEGATIVE_SINCE_SCAN_TRANSACTIONS_MAX = 1_000;

/** How long an event the points service took may go unacknowledged before the bus delivers it again (POINTS_ACK_WAIT_MS). */
export const ACK_WAIT_MS_DEFAULT = 30_000;
/** At least a second: a handler's ledger writes take milliseconds, and SQS counts in whole seconds. */
export const ACK_WAIT_MS_MIN = 1_000;
export const ACK_WAIT_MS_MAX = 12 * 60 * 60 * 1000;
