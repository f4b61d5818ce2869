// The balance service: idempotent add/consume/refund, holds (post/void),
// time-limited balances with a sweeper, and plain reads. Every call is
// validated here (domain/validation.ts), whoever the caller; writes go through
// group commit; every outcome maps to one catalogue error or a result.
import type { Logger } from 'pino';
import type { Clock } from '../../platform/clock.ts';
import { decodeCursor, encodeCursor } from '../../platform/cursor.ts';
import { KobanError } from '../../platform/errors.ts';
import { failpoint } from '../../platform/failpoints.ts';
import { GroupCommitQueue } from '../../platform/group-commit.ts';
import { classifyPgError } from '../../platform/postgres/errors.ts';
import {
  DEBT_MAX,
  HOLD_OWNERS_CACHED_MAX,
  HOLD_TIMEOUT_DEFAULT_MS,
  PAGE_LIMIT_DEFAULT,
  SWEEP_BATCH_SIZE_MAX,
  WRITE_BATCH_SIZE_MAX,
  WRITE_CONFLICT_RETRIES_MAX,
  WRITE_PARALLEL_BATCH_SIZE_MIN,
  WRITE_QUEUE_DEPTH_MAX,
} from './domain/limits.ts';
import { LedgerValidator } from './domain/validation.ts';
import type { AuditReport, LedgerOperation, LedgerOutcome, LedgerStore } from './store/ledger-store.ts';
import type { LedgerApi, TransactionList, TransactionListQuery, WriteResult } from '../../contracts/ledger/ledger-api.ts';
import type { Balance, PostRequest, Transaction, TransactionRequest, VoidRequest } from '../../contracts/ledger/types.ts';

export type { TransactionList, WriteResult } from '../../contracts/ledger/ledger-api.ts';

/** Outcome of one operation after the batch it rode in: a result, or the error for that caller alone. */
type OperationResult = LedgerOutcome | { outcome: 'failed'; error: KobanError };

export type LedgerServiceOptions = {
  store: LedgerStore;
  clock: Clock;
  logger: Logger;
  balanceTypes: readonly string[];
  writeTimeoutMs: number;
  /** 0 turns the background sweeper off (tests drive sweep() themselves). */
  sweepIntervalMs: number;
  /** Batches written at once, at most (see KOBAN_WRITE_BATCHES_IN_FLIGHT). */
  writeBatchesInFlightMax: number;
  holdTimeoutDefaultMs?: number;
};

export class LedgerService implements LedgerApi {
  readonly #store: LedgerStore;
  readonly #validator: LedgerValidator;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #writeTimeoutMs: number;
  readonly #sweepIntervalMs: number;
  readonly #holdTimeoutMs: number;
  readonly balanceTypes: readonly string[];
  /** Every write goes through this queue, keyed by account: batches written at once never share an account. */
  readonly #writes: GroupCommitQueue<LedgerOperation, OperationResult>;
  /** Hold (id and balance type) → its user, for holds created through this process; a hold's user never changes. */
  readonly #holdOwners = new Map<string, string>();
  #closing = false;
  #writesInProgress = 0;
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweeping: Promise<number> | undefined;

  constructor(options: LedgerServiceOptions) {
    this.#store = options.store;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.balanceTypes = options.balanceTypes;
    this.#validator = new LedgerValidator(options.balanceTypes);
    this.#writeTimeoutMs = options.writeTimeoutMs;
    this.#sweepIntervalMs = options.sweepIntervalMs;
    this.#holdTimeoutMs = options.holdTimeoutDefaultMs ?? HOLD_TIMEOUT_DEFAULT_MS;
    this.#writes = new GroupCommitQueue<LedgerOperation, OperationResult>({
      execute: (operations) => this.#writeBatch(operations),
      batchSizeMax: WRITE_BATCH_SIZE_MAX,
      queueDepthMax: WRITE_QUEUE_DEPTH_MAX,
      batchesInFlightMax: options.writeBatchesInFlightMax,
      parallelBatchSizeMin: WRITE_PARALLEL_BATCH_SIZE_MIN,
      onOverload: () => new KobanError('unavailable', 'The ledger is overloaded; retry shortly', { queue_depth: WRITE_QUEUE_DEPTH_MAX }),
    });
  }

  async start(): Promise<void> {
    await this.#store.ensureSystemAccounts(this.balanceTypes, this.#clock.now());
    if (this.#sweepIntervalMs > 0) this.#scheduleSweep();
  }

  /** Applies an add, consume or refund — posted, or as a hold — exactly once per (transaction_id, balance_type). */
  async submit(request: TransactionRequest): Promise<WriteResult> {
    const at = this.#clock.now();
    this.#validator.transactionRequest(request, at.getTime());
    const result = await this.#write({ ...request, kind: 'create', at, hold_timeout_ms: this.#holdTimeoutMs }, request.user_id, request.balance_type);
    const written = this.#toWriteResult(result, request.transaction_id, request.balance_type, request.amount, request.force === true);
    if (written.transaction.pending) this.#rememberHoldOwner(request.transaction_id, request.balance_type, written.transaction.user_id);
    return written;
  }

  /** Posts all or part of a hold; the rest is released. At most once. */
  async post(transactionId: string, request: PostRequest): Promise<WriteResult> {
    this.#validator.postRequest(transactionId, request);
    const owner = await this.#holdOwner(transactionId, request.balance_type);
    const result = await this.#write(
      { kind: 'post', at: this.#clock.now(), transaction_id: transactionId, balance_type: request.balance_type, amount: request.amount, force: request.force },
      owner,
      request.balance_type,
    );
    return this.#toWriteResult(result, transactionId, request.balance_type, request.amount, request.force === true);
  }

  /** Voids a hold, releasing all of it. At most once. */
  async void(transactionId: string, request: VoidRequest): Promise<WriteResult> {
    this.#validator.voidRequest(transactionId, request);
    const owner = await this.#holdOwner(transactionId, request.balance_type);
    const result = await this.#write({ kind: 'void', at: this.#clock.now(), transaction_id: transactionId, balance_type: request.balance_type }, owner, request.balance_type);
    return this.#toWriteResult(result, transactionId, request.balance_type, undefined, false);
  }

  /**
   * Records what is due at the clock's now: holds past their deadline expire,
   * lots past expires_at are expired by an `expire` transaction. Idempotent.
   * Returns the number of accounts swept.
   */
  sweep(): Promise<number> {
    this.#sweeping ??= this.#sweepDue().finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  async getTransactions(transactionId: string): Promise<Transaction[]> {
    this.#validator.transactionId(transactionId);
    const transactions = await this.#read(() => this.#store.findTransactions(transactionId, this.#clock.now()));
    if (transactions.length === 0) throw new KobanError('not_found', `No transaction ${transactionId}`, { transaction_id: transactionId });
    return transactions;
  }

  async listBalances(userId: string): Promise<Balance[]> {
    this.#validator.userId(userId);
    return this.#read(() => this.#store.findBalances(userId, this.balanceTypes, this.#clock.now()));
  }

  async getBalance(userId: string, balanceType: string): Promise<Balance> {
    this.#validator.balance(userId, balanceType);
    const [balance] = await this.#read(() => this.#store.findBalances(userId, [balanceType], this.#clock.now()));
    return balance!;
  }

  async listTransactions(userId: string, query: TransactionListQuery = {}): Promise<TransactionList> {
    this.#validator.transactionList(userId, query);
    const beforeKey = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const page = await this.#read(() =>
      this.#store.listUserTransactions({ userId, balanceType: query.balance_type, limit: query.limit ?? PAGE_LIMIT_DEFAULT, beforeKey, at: this.#clock.now() }),
    );
    return { data: page.transactions, next_cursor: page.lastKey === undefined ? null : encodeCursor(page.lastKey) };
  }

  audit(): Promise<AuditReport> {
    return this.#read(() => this.#store.audit());
  }

  /** Stops the sweeper, refuses new writes and waits for queued ones to commit. */
  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#sweepTimer);
    await this.#sweeping?.catch(() => undefined);
    await this.#writes.flush();
  }

  async #write(operation: LedgerOperation, userId: string, balanceType: string): Promise<OperationResult> {
    if (this.#closing) throw new KobanError('unavailable', 'The ledger is shutting down; retry on another instance or shortly');
    this.#writesInProgress++;
    try {
      const result = await withTimeout(this.#writes.submit(operation, pairKey(userId, balanceType)), this.#writeTimeoutMs);
      // Committed, not yet answered: a crash here leaves the caller to resend with the same id.
      const armed = failpoint('ledger.after_commit');
      if (armed !== undefined) await armed;
      return result;
    } finally {
      this.#writesInProgress--;
    }
  }

  /** Caller writes accepted and not yet answered (queued or in a batch being written). */
  get writesInProgress(): number {
    return this.#writesInProgress;
  }

  /** Post and void name the hold, not its user: find the user, whose account is the write's key. */
  async #holdOwner(transactionId: string, balanceType: string): Promise<string> {
    const remembered = this.#holdOwners.get(pairKey(transactionId, balanceType));
    if (remembered !== undefined) return remembered;
    // An unknown hold is keyed by itself: it will be answered not_found.
    return (await this.#read(() => this.#store.findTransactionOwner(transactionId, balanceType))) ?? transactionId;
  }

  #rememberHoldOwner(transactionId: string, balanceType: string, userId: string): void {
    // Oldest first out: Map keeps insertion order.
    if (this.#holdOwners.size >= HOLD_OWNERS_CACHED_MAX) this.#holdOwners.delete(this.#holdOwners.keys().next().value!);
    this.#holdOwners.set(pairKey(transactionId, balanceType), userId);
  }

  #toWriteResult(result: OperationResult, transactionId: string, balanceType: string, amount: number | undefined, forced: boolean): WriteResult {
    const subject = { transaction_id: transactionId, balance_type: balanceType };
    switch (result.outcome) {
      case 'created':
      case 'resolved':
        return { transaction: result.transaction, replayed: false };
      case 'replayed':
        return { transaction: result.transaction, replayed: true };
      case 'conflict':
        throw new KobanError('idempotency_conflict', `Transaction ${transactionId} (${balanceType}) already exists with different ${result.fields.join(', ')}`, {
          ...subject,
          fields: result.fields,
          ...(result.posted_amount === undefined ? {} : { posted_amount: result.posted_amount }),
        });
      case 'invalid':
        throw new KobanError('invalid_request', result.message, { field: result.field });
      case 'insufficient_balance':
        throw new KobanError('insufficient_balance', `Available ${balanceType} balance ${result.available} is less than ${amount}`, { available: result.available, requested: amount });
      case 'balance_limit_exceeded':
        throw new KobanError(
          'balance_limit_exceeded',
          forced
            ? `Forcing ${amount} would take the balance more than ${DEBT_MAX} below zero, the largest debt Koban keeps`
            : `Adding ${amount} would exceed the largest balance Koban keeps`,
          { available: result.available, requested: amount },
        );
      case 'exceeds_refundable_amount':
        throw new KobanError('exceeds_refundable_amount', `At most ${result.refundable} of that consume remains refundable`, { refundable: result.refundable, requested: amount });
      case 'not_refundable':
        throw new KobanError('not_refundable', `Cannot refund: ${result.reason}`, { field: 'refund_of', reason: result.reason });
      case 'refund_of_not_found':
        throw new KobanError('not_found', `No consume to refund`, { field: 'refund_of' });
      case 'not_found':
        throw new KobanError('not_found', `No transaction ${transactionId} (${balanceType})`, subject);
      case 'not_pending':
        throw new KobanError('not_pending', `Transaction ${transactionId} (${balanceType}) is not a hold`, { ...subject, status: result.status });
      case 'pending_already_posted':
        throw new KobanError('pending_already_posted', `Hold ${transactionId} (${balanceType}) was already posted`, subject);
      case 'pending_already_voided':
        throw new KobanError('pending_already_voided', `Hold ${transactionId} (${balanceType}) was already voided`, subject);
      case 'pending_expired':
        throw new KobanError('pending_expired', `Hold ${transactionId} (${balanceType}) expired at ${new Date(result.pending_expires_at).toISOString()}`, {
          ...subject,
          pending_expires_at: new Date(result.pending_expires_at).toISOString(),
        });
      case 'exceeds_pending_amount':
        throw new KobanError('exceeds_pending_amount', `Cannot post ${amount}: the hold is for ${result.pending_amount}`, { pending_amount: result.pending_amount, requested: amount });
      case 'swept':
        throw new Error('a sweep outcome for a caller operation');
      case 'failed':
        throw result.error;
    }
  }

  async #sweepDue(): Promise<number> {
    let swept = 0;
    while (!this.#closing) {
      const at = this.#clock.now();
      const due = await this.#store.findAccountsDueForSweep(at, SWEEP_BATCH_SIZE_MAX);
      const results = await Promise.all(
        due.map((account) => this.#writes.submit({ kind: 'sweep', at, account_id: account.account_id }, pairKey(account.user_id, account.balance_type))),
      );
      for (const result of results) if (result.outcome === 'failed') throw result.error;
      swept += due.length;
      if (due.length < SWEEP_BATCH_SIZE_MAX) break;
    }
    return swept;
  }

  #scheduleSweep(): void {
    this.#sweepTimer = setTimeout(() => {
      this.sweep()
        .then((swept) => {
          if (swept > 0) this.#logger.info({ accounts: swept }, 'swept expired holds and lots');
        })
        .catch((error: unknown) => this.#logger.warn({ err: error }, 'sweep failed; will retry'))
        .finally(() => {
          if (!this.#closing) this.#scheduleSweep();
        });
    }, this.#sweepIntervalMs);
    this.#sweepTimer.unref();
  }

  async #writeBatch(operations: LedgerOperation[]): Promise<OperationResult[]> {
    try {
      return await this.#applyWithRetries(operations);
    } catch (error) {
      if (operations.length === 1 || classifyPgError(error) !== 'fatal') return operations.map(() => ({ outcome: 'failed', error: toKobanError(error, this.#logger) }));
      // One operation broke the whole batch: apply them one by one so that only it fails.
      this.#logger.warn({ err: error, batch_size: operations.length }, 'batch failed; applying its operations one by one');
      const results: OperationResult[] = [];
      for (const operation of operations) {
        try {
          results.push(...(await this.#applyWithRetries([operation])));
        } catch (singleError) {
          results.push({ outcome: 'failed', error: toKobanError(singleError, this.#logger) });
        }
      }
      return results;
    }
  }

  async #applyWithRetries(operations: LedgerOperation[]): Promise<LedgerOutcome[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#store.applyBatch(operations);
      } catch (error) {
        // A race with another writer (another process, or a concurrent identical
        // request): re-running sees the winner's committed row and replays it.
        if (classifyPgError(error) !== 'conflict' || attempt >= WRITE_CONFLICT_RETRIES_MAX) throw error;
      }
    }
  }

  async #read<T>(query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (error) {
      throw toKobanError(error, this.#logger);
    }
  }
}

function toKobanError(error: unknown, logger: Logger): KobanError {
  if (error instanceof KobanError) return error;
  switch (classifyPgError(error)) {
    case 'unavailable':
      return new KobanError('unavailable', 'The ledger database is unavailable; retry shortly', undefined, { cause: error });
    case 'timeout':
      return new KobanError('timeout', 'The ledger database did not answer in time; retry with the same transaction id', undefined, { cause: error });
    case 'conflict':
      return new KobanError('unavailable', 'The ledger is busy with conflicting writes; retry shortly', undefined, { cause: error });
    default:
      logger.error({ err: error }, 'ledger operation failed');
      return new KobanError('internal', 'Internal error', undefined, { cause: error });
  }
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new KobanError('timeout', `The ledger did not commit within ${timeoutMs} ms; the operation may still take effect, so retry with the same transaction id`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** One string for a pair of ids (an account: user and balance type; a hold: transaction id and balance type). */
function pairKey(first: string, second: string): string {
  return `${first}\u0000${second}`;
}
