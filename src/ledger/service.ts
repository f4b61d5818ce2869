// The balance service: idempotent add/consume and plain reads. Writes go
// through group commit; every outcome maps to one catalogue error or a result.
import type { Logger } from 'pino';
import type { Clock } from '../platform/clock.ts';
import { KobanError } from '../platform/errors.ts';
import { GroupCommitQueue } from '../platform/group-commit.ts';
import { classifyPgError } from '../platform/postgres/pool.ts';
import { PAGE_LIMIT_DEFAULT, WRITE_BATCH_SIZE_MAX, WRITE_CONFLICT_RETRIES_MAX, WRITE_QUEUE_DEPTH_MAX } from './limits.ts';
import type { AuditReport, LedgerStore, WriteOperation, WriteOutcome } from './store/ledger-store.ts';
import type { Balance, Transaction, TransactionRequest } from './types.ts';

export type SubmitResult = { transaction: Transaction; replayed: boolean };
export type TransactionList = { data: Transaction[]; next_cursor: string | null };

/** Outcome of one operation after the batch it rode in: a result, or the error for that caller alone. */
type OperationResult = WriteOutcome | { outcome: 'failed'; error: KobanError };

export class LedgerService {
  readonly #store: LedgerStore;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #writeTimeoutMs: number;
  readonly balanceTypes: readonly string[];
  readonly #writes: GroupCommitQueue<WriteOperation, OperationResult>;
  #closing = false;

  constructor(options: { store: LedgerStore; clock: Clock; logger: Logger; balanceTypes: readonly string[]; writeTimeoutMs: number }) {
    this.#store = options.store;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.balanceTypes = options.balanceTypes;
    this.#writeTimeoutMs = options.writeTimeoutMs;
    this.#writes = new GroupCommitQueue({
      execute: (operations) => this.#writeBatch(operations),
      batchSizeMax: WRITE_BATCH_SIZE_MAX,
      queueDepthMax: WRITE_QUEUE_DEPTH_MAX,
      onOverload: () => new KobanError('unavailable', 'The ledger is overloaded; retry shortly', { queue_depth: WRITE_QUEUE_DEPTH_MAX }),
    });
  }

  async start(): Promise<void> {
    await this.#store.ensureSystemAccounts(this.balanceTypes, this.#clock.now());
  }

  /** Applies an add or consume exactly once per (transaction_id, balance_type). */
  async submit(request: TransactionRequest): Promise<SubmitResult> {
    if (this.#closing) throw new KobanError('unavailable', 'The ledger is shutting down; retry on another instance or shortly');
    const operation: WriteOperation = { ...request, created_at: this.#clock.now() };
    const result = await withTimeout(this.#writes.submit(operation), this.#writeTimeoutMs);
    switch (result.outcome) {
      case 'created':
        return { transaction: result.transaction, replayed: false };
      case 'replayed':
        return { transaction: result.transaction, replayed: true };
      case 'conflict':
        throw new KobanError(
          'idempotency_conflict',
          `Transaction ${request.transaction_id} (${request.balance_type}) already exists with different ${result.fields.join(', ')}`,
          { transaction_id: request.transaction_id, balance_type: request.balance_type, fields: result.fields },
        );
      case 'insufficient_balance':
        throw new KobanError('insufficient_balance', `Available ${request.balance_type} balance ${result.available} is less than ${request.amount}`, {
          available: result.available,
          requested: request.amount,
        });
      case 'balance_limit_exceeded':
        throw new KobanError('balance_limit_exceeded', `Adding ${request.amount} would exceed the largest balance Koban keeps`, {
          available: result.available,
          requested: request.amount,
        });
      case 'failed':
        throw result.error;
    }
  }

  async getTransactions(transactionId: string): Promise<Transaction[]> {
    const transactions = await this.#read(() => this.#store.findTransactions(transactionId));
    if (transactions.length === 0) throw new KobanError('not_found', `No transaction ${transactionId}`, { transaction_id: transactionId });
    return transactions;
  }

  listBalances(userId: string): Promise<Balance[]> {
    return this.#read(() => this.#store.findBalances(userId, this.balanceTypes));
  }

  async getBalance(userId: string, balanceType: string): Promise<Balance> {
    const [balance] = await this.#read(() => this.#store.findBalances(userId, [balanceType]));
    return balance!;
  }

  async listTransactions(query: { userId: string; balanceType?: string | undefined; limit?: number | undefined; cursor?: string | undefined }): Promise<TransactionList> {
    const beforeKey = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const page = await this.#read(() =>
      this.#store.listUserTransactions({ userId: query.userId, balanceType: query.balanceType, limit: query.limit ?? PAGE_LIMIT_DEFAULT, beforeKey }),
    );
    return { data: page.transactions, next_cursor: page.lastKey === undefined ? null : encodeCursor(page.lastKey) };
  }

  audit(): Promise<AuditReport> {
    return this.#read(() => this.#store.audit());
  }

  /** Refuses new writes and waits for queued ones to commit. */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#writes.flush();
  }

  async #writeBatch(operations: WriteOperation[]): Promise<OperationResult[]> {
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

  async #applyWithRetries(operations: WriteOperation[]): Promise<WriteOutcome[]> {
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

const CURSOR_PATTERN = /^k(\d{1,16})$/;

function encodeCursor(key: number): string {
  return Buffer.from(`k${key}`).toString('base64url');
}

function decodeCursor(cursor: string): number {
  const match = CURSOR_PATTERN.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw new KobanError('invalid_request', 'cursor is not one this API returned', { field: 'cursor' });
  return Number(match[1]);
}
