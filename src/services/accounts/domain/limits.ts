// Every limit of the accounts service, named, with its unit.

/** The contract's account.created id is this prefix and the user id (src/contracts/events/accounts.ts). */
export const ACCOUNT_EVENT_ID_PREFIX = 'account.created.';
/** Event ids are at most this many characters (EVENT_ID_PATTERN; the unit test holds the two together). */
const EVENT_ID_LENGTH_MAX = 128;
/**
 * The longest user id an account may have, in characters: 112, so that the
 * id of its account.created event fits the bus's 128. The ledger takes user
 * ids up to 128; one of 113–128 characters is refused here rather than
 * accepted and then unpublishable.
 */
export const USER_ID_LENGTH_MAX = EVENT_ID_LENGTH_MAX - ACCOUNT_EVENT_ID_PREFIX.length;
/** A user id: the ledger's and the account event's characters ([A-Za-z0-9._:-], not `.` or `..`), at most USER_ID_LENGTH_MAX of them. */
export const USER_ID_PATTERN = `^(?!\\.\\.?$)[A-Za-z0-9._:-]{1,${USER_ID_LENGTH_MAX}}$`;
/**
 * Largest create body, in bytes: one user id of at most 112 ASCII characters,
 * ample room even with every character written as a \u escape (6 bytes each).
 */
export const ACCOUNT_BODY_BYTES_MAX = 1024;
