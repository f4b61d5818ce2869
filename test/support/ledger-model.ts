// A deliberately simple in-memory reference model of the ledger's semantics
// (idempotency, holds, lots with FEFO, refunds, expiry, forced debits and the
// debts they leave), used by the property-based test to predict every answer
// and balance of the real one.

type Lot = { lotId: number; sourceId: string; amount: number; remaining: number; expiresAt: number | null };
/** `own`: drawn when the transaction was created; `post`: by its forced post; `repay`: a credit paying its debt. */
type Draw = { drawId: number; lot: Lot; amount: number; returned: number; cause: 'own' | 'post' | 'repay' };
type Account = { posted: number; pendingDebit: number; pendingCredit: number; lots: Lot[] };

type CreateRequest = {
  transaction_id: string;
  type: 'add' | 'consume' | 'refund';
  user_id: string;
  amount: number;
  pending?: boolean;
  pending_expires_at?: number;
  expires_at?: number;
  refund_of?: string;
  force?: boolean;
};

type Txn = {
  request: CreateRequest;
  deadline: number | null;
  status: 'pending' | 'posted' | 'voided' | 'expired';
  postedAmount: number | null;
  postForce: boolean;
  draws: Draw[];
  account: Account;
  /** Creation order (the ledger's transaction key). */
  seq: number;
};

export type ModelAnswer = { status: number; code?: string; replayed?: boolean };
export type ModelBalance = { available: number; posted: number; pending_debit: number; pending_credit: number; expiring: Array<{ amount: number; expires_at: string }> };

export const MODEL_HOLD_TIMEOUT_MS = 7 * 86_400_000;
/** DEBT_MAX of the ledger: the furthest below zero a forced debit may take an available balance. */
export const MODEL_DEBT_MAX = 1_000_000_000_000_000;

export class LedgerModel {
  readonly #accounts = new Map<string, Account>();
  readonly #transactions = new Map<string, Txn>();
  #nextLotId = 1;
  #nextDrawId = 1;
  #nextSeq = 1;

  create(request: CreateRequest, now: number): ModelAnswer {
    // The request's own checks come before any lookup.
    if (request.force === true && request.type !== 'consume') return { status: 400, code: 'invalid_request' };
    const existing = this.#transactions.get(request.transaction_id);
    if (existing) {
      const before = existing.request;
      const same =
        before.type === request.type &&
        before.user_id === request.user_id &&
        before.amount === request.amount &&
        (before.pending ?? false) === (request.pending ?? false) &&
        before.pending_expires_at === request.pending_expires_at &&
        before.expires_at === request.expires_at &&
        before.refund_of === request.refund_of &&
        (before.force ?? false) === (request.force ?? false);
      return same ? { status: 200, replayed: true } : { status: 409, code: 'idempotency_conflict' };
    }
    if (request.expires_at !== undefined && request.expires_at <= now) return { status: 400, code: 'invalid_request' };
    if (request.pending_expires_at !== undefined && request.pending_expires_at <= now) return { status: 400, code: 'invalid_request' };
    const deadline = request.pending ? (request.pending_expires_at ?? now + MODEL_HOLD_TIMEOUT_MS) : null;

    if (request.type === 'add') {
      const account = this.#account(request.user_id, true)!;
      this.#sweep(account, now);
      const inDebt = this.#inDebt(account);
      this.#record(request, deadline, account);
      if (request.pending) account.pendingCredit += request.amount;
      else {
        account.posted += request.amount;
        this.#newLot(account, request.transaction_id, request.amount, request.expires_at ?? null);
        if (inDebt) this.#repay(account, now);
      }
      return { status: 201 };
    }

    if (request.type === 'consume') {
      const forced = request.force === true;
      const account = this.#account(request.user_id, forced);
      if (!account) return { status: 422, code: 'insufficient_balance' };
      this.#sweep(account, now);
      const available = account.posted - account.pendingDebit;
      if (forced && available - request.amount < -MODEL_DEBT_MAX) return { status: 422, code: 'balance_limit_exceeded' };
      if (!forced && available < request.amount) return { status: 422, code: 'insufficient_balance' };
      const txn = this.#record(request, deadline, account);
      if (request.pending) account.pendingDebit += request.amount;
      else account.posted -= request.amount;
      const drawn = this.#drawUpTo(account, txn, request.amount, now, 'own');
      if (!forced && drawn !== request.amount) throw new Error('model: lots short');
      return { status: 201 };
    }

    const consumed = this.#transactions.get(request.refund_of!);
    if (!consumed) return { status: 404, code: 'not_found' };
    if (consumed.request.type !== 'consume' || consumed.request.user_id !== request.user_id) return { status: 422, code: 'not_refundable' };
    const account = consumed.account;
    this.#sweep(account, now);
    const refunded = [...this.#transactions.values()].filter((t) => t.request.refund_of === request.refund_of).reduce((sum, t) => sum + t.request.amount, 0);
    const refundable = (consumed.status === 'posted' ? consumed.postedAmount! : 0) - refunded;
    if (request.amount > refundable) return { status: 422, code: 'exceeds_refundable_amount' };
    const inDebt = this.#inDebt(account);
    // Its consume's own debt is cancelled first; the rest goes back to its lots.
    const toLots = request.amount - Math.min(request.amount, this.#uncovered(consumed));
    account.posted += request.amount;
    this.#returnDraws(account, consumed, toLots);
    this.#sweep(account, now);
    this.#record(request, null, account);
    if (inDebt && toLots > 0) this.#repay(account, now);
    return { status: 201 };
  }

  resolve(action: 'post' | 'void', transactionId: string, amount: number | undefined, now: number, force = false): ModelAnswer {
    const hold = this.#transactions.get(transactionId);
    if (!hold) return { status: 404, code: 'not_found' };
    if (!hold.request.pending) return { status: 409, code: 'not_pending' };
    if (force && hold.request.type !== 'consume') return { status: 400, code: 'invalid_request' };
    const account = hold.account;
    this.#sweep(account, now);
    const requested = action === 'post' ? (amount ?? hold.request.amount) : 0;
    switch (hold.status) {
      case 'posted':
        if (action === 'void') return { status: 409, code: 'pending_already_posted' };
        return requested === hold.postedAmount && force === hold.postForce ? { status: 200, replayed: true } : { status: 409, code: 'idempotency_conflict' };
      case 'voided':
        return action === 'post' ? { status: 409, code: 'pending_already_voided' } : { status: 200, replayed: true };
      case 'expired':
        return { status: 409, code: 'pending_expired' };
      case 'pending':
        break;
    }
    if (requested > hold.request.amount && !force) return { status: 422, code: 'exceeds_pending_amount' };
    const available = account.posted - account.pendingDebit;
    if (requested > hold.request.amount && available - (requested - hold.request.amount) < -MODEL_DEBT_MAX) return { status: 422, code: 'balance_limit_exceeded' };
    const inDebt = this.#inDebt(account);
    let toLots = 0;
    if (hold.request.type === 'consume') {
      const released = hold.request.amount - requested;
      // The released part cancels the hold's own debt first; the rest goes back to its lots.
      toLots = Math.max(released, 0) - Math.min(Math.max(released, 0), this.#uncovered(hold));
      account.posted -= requested;
      account.pendingDebit -= hold.request.amount;
      if (toLots > 0) this.#returnDraws(account, hold, toLots);
      // Posted beyond the hold: drawn as a forced consume.
      else if (released < 0) this.#drawUpTo(account, hold, -released, now, 'post');
    } else {
      account.posted += requested;
      account.pendingCredit -= hold.request.amount;
      if (requested > 0) this.#newLot(account, transactionId, requested, hold.request.expires_at ?? null);
    }
    hold.status = action === 'post' ? 'posted' : 'voided';
    hold.postedAmount = requested;
    hold.postForce = force && action === 'post';
    this.#sweep(account, now);
    if (inDebt && (toLots > 0 || (hold.request.type === 'add' && requested > 0))) this.#repay(account, now);
    return { status: 201 };
  }

  /** The lots a consume drew from when it was created, in draw order (its response's `lots`). */
  lotsDrawn(transactionId: string): Array<{ source_transaction_id: string; amount: number; expires_at: string | null }> {
    const txn = this.#transactions.get(transactionId);
    if (!txn) throw new Error(`model: no transaction ${transactionId}`);
    return txn.draws.filter((draw) => draw.cause === 'own').map((draw) => ({
      source_transaction_id: draw.lot.sourceId,
      amount: draw.amount,
      expires_at: draw.lot.expiresAt === null ? null : new Date(draw.lot.expiresAt).toISOString(),
    }));
  }

  /** What the background sweeper does: records everything due. */
  sweepAll(now: number): void {
    for (const account of this.#accounts.values()) this.#sweep(account, now);
  }

  /** The balance as it stands at `now`, as if everything due were recorded. */
  balance(userId: string, now: number): ModelBalance {
    const account = this.#accounts.get(userId);
    if (!account) return { available: 0, posted: 0, pending_debit: 0, pending_credit: 0, expiring: [] };
    const copy = new LedgerModel();
    const cloned = copy.#cloneFrom(this, userId);
    copy.#sweep(cloned, now);
    const byInstant = new Map<number, number>();
    for (const lot of cloned.lots) {
      if (lot.remaining > 0 && lot.expiresAt !== null && lot.expiresAt > now) byInstant.set(lot.expiresAt, (byInstant.get(lot.expiresAt) ?? 0) + lot.remaining);
    }
    return {
      available: cloned.posted - cloned.pendingDebit,
      posted: cloned.posted,
      pending_debit: cloned.pendingDebit,
      pending_credit: cloned.pendingCredit,
      expiring: [...byInstant.entries()]
        .sort(([a], [b]) => a - b)
        .map(([instant, amount]) => ({ amount, expires_at: new Date(instant).toISOString() })),
    };
  }

  #account(userId: string, create: boolean): Account | undefined {
    let account = this.#accounts.get(userId);
    if (!account && create) {
      account = { posted: 0, pendingDebit: 0, pendingCredit: 0, lots: [] };
      this.#accounts.set(userId, account);
    }
    return account;
  }

  #record(request: CreateRequest, deadline: number | null, account: Account): Txn {
    const txn: Txn = {
      request,
      deadline,
      status: request.pending ? 'pending' : 'posted',
      postedAmount: request.pending ? null : request.amount,
      postForce: false,
      draws: [],
      account,
      seq: this.#nextSeq++,
    };
    this.#transactions.set(request.transaction_id, txn);
    return txn;
  }

  #newLot(account: Account, sourceId: string, amount: number, expiresAt: number | null): void {
    account.lots.push({ lotId: this.#nextLotId++, sourceId, amount, remaining: amount, expiresAt });
  }

  /** Draws up to `amount` from the lots not expired at `aliveAt`, soonest-expiring first; returns what it drew. */
  #drawUpTo(account: Account, txn: Txn, amount: number, aliveAt: number, cause: Draw['cause']): number {
    let left = amount;
    const order = account.lots
      .filter((lot) => lot.remaining > 0 && (lot.expiresAt === null || lot.expiresAt > aliveAt))
      .sort((a, b) => (a.expiresAt ?? Infinity) - (b.expiresAt ?? Infinity) || a.lotId - b.lotId);
    for (const lot of order) {
      if (left === 0) break;
      const take = Math.min(lot.remaining, left);
      lot.remaining -= take;
      txn.draws.push({ drawId: this.#nextDrawId++, lot, amount: take, returned: 0, cause });
      left -= take;
    }
    return amount - left;
  }

  /** An account is in debt exactly when its available balance is below zero (after its sweep). */
  #inDebt(account: Account): boolean {
    return account.posted - account.pendingDebit < 0;
  }

  /** What a consume keeps and no lot covers: its debt. */
  #uncovered(txn: Txn): number {
    if (txn.request.type !== 'consume') return 0;
    const kept = txn.status === 'pending' ? txn.request.amount : txn.status === 'posted' ? txn.postedAmount! : 0;
    const refunded = [...this.#transactions.values()].filter((t) => t.request.refund_of === txn.request.transaction_id).reduce((sum, t) => sum + t.request.amount, 0);
    const drawn = txn.draws.reduce((sum, draw) => sum + draw.amount - draw.returned, 0);
    return kept - refunded - drawn;
  }

  /** Debts, oldest first, draw from the lots not expired at `aliveAt` until either runs out. */
  #repay(account: Account, aliveAt: number): void {
    const debtors = [...this.#transactions.values()].filter((t) => t.account === account && t.request.type === 'consume').sort((a, b) => a.seq - b.seq);
    for (const debtor of debtors) {
      const debt = this.#uncovered(debtor);
      if (debt <= 0) continue;
      if (this.#drawUpTo(account, debtor, debt, aliveAt, 'repay') < debt) return;
    }
  }

  /** Latest-expiring first (the latest draw first from one lot), as the ledger does. */
  #returnDraws(account: Account, txn: Txn, amount: number): void {
    let left = amount;
    const order = [...txn.draws].sort(
      (a, b) => (b.lot.expiresAt ?? Infinity) - (a.lot.expiresAt ?? Infinity) || b.lot.lotId - a.lot.lotId || b.drawId - a.drawId,
    );
    for (const draw of order) {
      if (left === 0) break;
      const give = Math.min(draw.amount - draw.returned, left);
      if (give <= 0) continue;
      draw.returned += give;
      draw.lot.remaining += give;
      left -= give;
    }
    if (left !== 0) throw new Error(`model: nothing to return for ${txn.request.transaction_id} (${account.posted})`);
  }

  /** Holds past their deadline, in deadline order, each as a void at its deadline (in debt, debts draw from what it gives back, as the lots stood then); then lots past expiry. */
  #sweep(account: Account, now: number): void {
    const inDebt = this.#inDebt(account);
    const lapsed = [...this.#transactions.values()]
      .filter((t) => t.account === account && t.status === 'pending' && t.deadline! <= now)
      .sort((a, b) => a.deadline! - b.deadline! || a.seq - b.seq);
    for (const txn of lapsed) {
      const toLots = txn.request.type === 'consume' ? txn.request.amount - this.#uncovered(txn) : 0;
      txn.status = 'expired';
      txn.postedAmount = 0;
      if (txn.request.type === 'consume') {
        account.pendingDebit -= txn.request.amount;
        if (toLots > 0) {
          this.#returnDraws(account, txn, toLots);
          if (inDebt) this.#repay(account, txn.deadline!);
        }
      } else account.pendingCredit -= txn.request.amount;
    }
    for (const lot of account.lots) {
      if (lot.remaining > 0 && lot.expiresAt !== null && lot.expiresAt <= now) {
        account.posted -= lot.remaining;
        lot.remaining = 0;
      }
    }
  }

  /** Deep copy of one user's account and its holds, for a what-if sweep. */
  #cloneFrom(source: LedgerModel, userId: string): Account {
    const original = source.#accounts.get(userId)!;
    // Draws made in the copy must sort after the originals' (the latest draw is given back first).
    this.#nextDrawId = source.#nextDrawId;
    this.#nextLotId = source.#nextLotId;
    this.#nextSeq = source.#nextSeq;
    const lots = new Map(original.lots.map((lot) => [lot, { ...lot }]));
    const account: Account = { ...original, lots: [...lots.values()] };
    this.#accounts.set(userId, account);
    for (const [id, txn] of source.#transactions) {
      if (txn.account !== original) continue;
      this.#transactions.set(id, { ...txn, account, draws: txn.draws.map((draw) => ({ ...draw, lot: lots.get(draw.lot)! })) });
    }
    return account;
  }
}
