// LedgerApi in the caller's own process: the ledger's service behind the same
// interface as the HTTP client, with the same validation (the service runs it
// on every call) and the same errors. Hands out the callers' surface only —
// no sweep, audit or close — so a service given this cannot do more than one
// given the HTTP client.
import { KobanError } from '../../../platform/errors.ts';
import type { LedgerApi, TransactionList, TransactionListQuery, WriteResult } from '../../../contracts/ledger/ledger-api.ts';
import type { Balance, PostRequest, Transaction, TransactionRequest, VoidRequest } from '../../../contracts/ledger/types.ts';

export class InProcessLedgerClient implements LedgerApi {
  readonly #ledger: LedgerApi;

  /** `ledger` is the LedgerService (services/ledger/service.ts), which validates every call itself. */
  constructor(ledger: LedgerApi) {
    this.#ledger = ledger;
  }

  submit(request: TransactionRequest): Promise<WriteResult> {
    return call(() => this.#ledger.submit(request));
  }

  post(transactionId: string, request: PostRequest): Promise<WriteResult> {
    return call(() => this.#ledger.post(transactionId, request));
  }

  void(transactionId: string, request: VoidRequest): Promise<WriteResult> {
    return call(() => this.#ledger.void(transactionId, request));
  }

  getTransactions(transactionId: string): Promise<Transaction[]> {
    return call(() => this.#ledger.getTransactions(transactionId));
  }

  getBalance(userId: string, balanceType: string): Promise<Balance> {
    return call(() => this.#ledger.getBalance(userId, balanceType));
  }

  listBalances(userId: string): Promise<Balance[]> {
    return call(() => this.#ledger.listBalances(userId));
  }

  listTransactions(userId: string, query: TransactionListQuery = {}): Promise<TransactionList> {
    return call(() => this.#ledger.listTransactions(userId, query));
  }
}

/** Anything but a catalogue error is a bug behind the interface: `internal`, as the HTTP shell answers it. */
async function call<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof KobanError) throw error;
    throw new KobanError('internal', 'Internal error', undefined, { cause: error });
  }
}
