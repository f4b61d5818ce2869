// Every limit of the accounts service, named, with its unit.

// The user id's limit is the contract's: its account.created id must fit the bus's 128.
export { ACCOUNT_USER_ID_LENGTH_MAX as USER_ID_LENGTH_MAX, ACCOUNT_USER_ID_PATTERN as USER_ID_PATTERN } from '../../../contracts/events/accounts.ts';
/**
 * Largest create body, in bytes: one user id of at most 112 ASCII characters,
 * ample room even with every character written as a \u escape (6 bytes each).
 */
export const ACCOUNT_BODY_BYTES_MAX = 1024;
