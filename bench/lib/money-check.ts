// Goal: check that no money was lost — the benchmark's own tally of the 201s it got against the database, the balance API and GET /v1/audit.
import type { Pool } from 'undici';
import { runAll } from './load.ts';
import { withClient } from './pg-server.ts';

/** The money check reads every touched balance back through GET /v1/users/{id}/balances/{type} with this many connections. */
const BALANCE_API_CONCURRENCY = 32;
/** GET /v1/audit recomputes every balance: it may take a while on a large ledger. */
const AUDIT_TIMEOUT_MS = 300_000;
const MISMATCH_EXAMPLES_MAX = 5;

/** A POST /v1/transactions body as the benchmark sends it. */
export type TransactionBody = {
  transaction_id: string;
  type: 'add' | 'consume';
  user_id: string;
  balance_type: string;
  amount: number;
  pending?: true;
  expires_at?: string;
};

type Figure = { count: number; amount: number };
type TalliedAccount = { userId: string; balanceType: string; posted: number; pendingDebit: number };

/** What the benchmark believes it committed, from the 201 answers it got. */
export class MoneyTally {
  /** 201s to POST /v1/transactions: each is one row the caller created. */
  created = 0;
  readonly adds: Figure = { count: 0, amount: 0 };
  /** Consumes posted at once. */
  readonly consumes: Figure = { count: 0, amount: 0 };
  /** Pending consumes (holds) created. */
  readonly holds: Figure = { count: 0, amount: 0 };
  /** 201s to POST …/post: `amount` is what was posted, `heldAmount` what those holds had reserved. */
  readonly posts = { count: 0, amount: 0, heldAmount: 0 };
  readonly accounts = new Map<string, TalliedAccount>();

  recordCreate(body: TransactionBody): void {
    this.created++;
    const account = this.#account(body.user_id, body.balance_type);
    if (body.type === 'add') {
      add(this.adds, body.amount);
      account.posted += body.amount;
    } else if (body.pending) {
      add(this.holds, body.amount);
      account.pendingDebit += body.amount;
    } else {
      add(this.consumes, body.amount);
      account.posted -= body.amount;
    }
  }

  recordPost(hold: TransactionBody, postedAmount: number): void {
    this.posts.count++;
    this.posts.amount += postedAmount;
    this.posts.heldAmount += hold.amount;
    const account = this.#account(hold.user_id, hold.balance_type);
    account.pendingDebit -= hold.amount;
    account.posted -= postedAmount;
  }

  /** Adds − consumes − posted parts of holds. */
  get expectedPosted(): number {
    return this.adds.amount - this.consumes.amount - this.posts.amount;
  }

  /** Holds still open. */
  get expectedPendingDebit(): number {
    return this.holds.amount - this.posts.heldAmount;
  }

  #account(userId: string, balanceType: string): TalliedAccount {
    const key = accountKey(userId, balanceType);
    let account = this.accounts.get(key);
    if (!account) {
      account = { userId, balanceType, posted: 0, pendingDebit: 0 };
      this.accounts.set(key, account);
    }
    return account;
  }
}

function add(figure: Figure, amount: number): void {
  figure.count++;
  figure.amount += amount;
}

function accountKey(userId: string, balanceType: string): string {
  return `${userId}\u0000${balanceType}`;
}

export type MoneyCheck = { pass: boolean; lines: string[]; figures: Record<string, number | string | boolean | null> };

/**
 * The 201s the benchmark saw against the database (rows per type and status,
 * every user balance), every touched balance read back through the API, and
 * the ledger's own audit. `hotAccount` also gets its FEFO draws checked.
 */
export async function checkMoney(options: {
  pool: Pool;
  kobanDbUrl: string;
  tally: MoneyTally;
  neverUserId: string;
  hotAccount: { userId: string; balanceType: string } | undefined;
  signal: AbortSignal;
  errorCode: (body: string) => string;
  /** Checks this balance type's rows and balances alone (others, such as points a consumer grants, are another check's); every type when left out. */
  balanceType?: string;
  /** Who created the rows the tally counts, for the report; `201 answers to POST /v1/transactions` when left out. */
  createdBy?: string;
}): Promise<MoneyCheck> {
  const { pool, tally } = options;
  const lines: string[] = [];
  const figures: MoneyCheck['figures'] = {};
  let pass = true;
  const expect = (ok: boolean, what: string) => {
    lines.push(`${ok ? 'PASS' : 'FAIL'} ${what}`);
    if (!ok) pass = false;
  };

  const typeFilter = options.balanceType === undefined ? { sql: '', values: [] } : { sql: ' AND balance_type = $1', values: [options.balanceType] };
  const db = await withClient(options.kobanDbUrl, async (client) => {
    const groups = await client.query<{ type: string; pending: boolean; status: string; n: string; amount: string; posted: string }>(
      `SELECT type, pending, status, count(*)::text AS n, sum(amount)::text AS amount, sum(coalesce(posted_amount, 0))::text AS posted
         FROM transactions WHERE transaction_id NOT LIKE 'sys:%'${typeFilter.sql} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
      typeFilter.values,
    );
    const ledgerRows = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM transactions WHERE transaction_id LIKE 'sys:%'${typeFilter.sql}`, typeFilter.values);
    const accounts = await client.query<{ owner_id: string; balance_type: string; posted: string; pending_debit: string; pending_credit: string }>(
      `SELECT owner_id, balance_type, posted::text, pending_debit::text, pending_credit::text FROM accounts WHERE owner_kind = 'user'${typeFilter.sql}`,
      typeFilter.values,
    );
    let fefo: { consumes: string; multi_lot: string; lots_drawn: string; out_of_order: string } | undefined;
    if (options.hotAccount) {
      // Within one consume, draws follow the order the ledger promises: expires_at (no expiry last), then lot.
      const result = await client.query<{ consumes: string; multi_lot: string; lots_drawn: string; out_of_order: string }>(
        `WITH d AS (
           SELECT d.transaction_pk, d.draw_id, l.lot_id, coalesce(l.expires_at, 'infinity') AS expires_at,
                  lag(l.lot_id) OVER w AS prev_lot, lag(coalesce(l.expires_at, 'infinity')) OVER w AS prev_expires_at
             FROM lot_draws d JOIN lots l ON l.lot_id = d.lot_id JOIN transactions t ON t.transaction_pk = d.transaction_pk
             JOIN accounts a ON a.account_id = l.account_id
            WHERE a.owner_kind = 'user' AND a.owner_id = $1 AND a.balance_type = $2 AND t.type = 'consume'
           WINDOW w AS (PARTITION BY d.transaction_pk ORDER BY d.draw_id))
         SELECT count(DISTINCT transaction_pk)::text AS consumes,
                count(DISTINCT transaction_pk) FILTER (WHERE prev_lot IS NOT NULL)::text AS multi_lot,
                count(DISTINCT lot_id)::text AS lots_drawn,
                count(*) FILTER (WHERE prev_lot IS NOT NULL AND (expires_at, lot_id) < (prev_expires_at, prev_lot))::text AS out_of_order
           FROM d`,
        [options.hotAccount.userId, options.hotAccount.balanceType],
      );
      fefo = result.rows[0];
    }
    // What the audit checks of lots, as grouped joins: every lot's remaining = amount − draws + returns,
    // and every user account's lots hold what is posted and not reserved by a hold.
    const lots = await client.query<{ lots: string; inconsistent_lots: string; accounts_off: string }>(
      `WITH drawn AS (SELECT lot_id, sum(amount) AS amount FROM lot_draws GROUP BY lot_id),
            returned AS (SELECT d.lot_id, sum(r.amount) AS amount FROM lot_returns r JOIN lot_draws d USING (draw_id) GROUP BY d.lot_id),
            per_lot AS (
              SELECT l.account_id, l.remaining, l.amount - coalesce(dr.amount, 0) + coalesce(re.amount, 0) AS derived
                FROM lots l LEFT JOIN drawn dr USING (lot_id) LEFT JOIN returned re USING (lot_id)),
            per_account AS (SELECT account_id, sum(remaining) AS remaining FROM per_lot GROUP BY account_id)
       SELECT (SELECT count(*) FROM per_lot)::text AS lots,
              (SELECT count(*) FROM per_lot WHERE remaining <> derived)::text AS inconsistent_lots,
              (SELECT count(*) FROM accounts a LEFT JOIN per_account p USING (account_id)
                WHERE a.owner_kind = 'user' AND a.posted - a.pending_debit <> coalesce(p.remaining, 0))::text AS accounts_off`,
    );
    return { groups: groups.rows, ledgerRows: Number(ledgerRows.rows[0]?.n ?? 0), accounts: accounts.rows, fefo, lots: lots.rows[0]! };
  });

  // Rows per (type, pending, status) against the tally.
  const storedRows = db.groups.reduce((sum, group) => sum + Number(group.n), 0);
  expect(storedRows === tally.created, `${options.createdBy ?? '201 answers to POST /v1/transactions'} = ${tally.created}, rows the callers created = ${storedRows}`);
  const openHolds = { count: tally.holds.count - tally.posts.count, amount: tally.expectedPendingDebit };
  const expectedGroups = [
    { key: 'add/posted', n: tally.adds.count, amount: tally.adds.amount, posted: tally.adds.amount },
    { key: 'consume/posted', n: tally.consumes.count, amount: tally.consumes.amount, posted: tally.consumes.amount },
    { key: 'consume/hold/posted', n: tally.posts.count, amount: tally.posts.heldAmount, posted: tally.posts.amount },
    { key: 'consume/hold/pending', n: openHolds.count, amount: openHolds.amount, posted: 0 },
  ].filter((group) => group.n > 0);
  const describe = (group: { key: string; n: number | string; amount: number | string; posted: number | string }) =>
    `${group.key}: ${group.n} for ${group.amount} (posted ${group.posted})`;
  const stored = db.groups.map((group) => ({ key: `${group.type}${group.pending ? '/hold' : ''}/${group.status}`, n: group.n, amount: group.amount, posted: group.posted }));
  const sameGroups =
    stored.length === expectedGroups.length &&
    expectedGroups.every((want) => {
      const got = stored.find((group) => group.key === want.key);
      return got !== undefined && BigInt(got.n) === BigInt(want.n) && BigInt(got.amount) === BigInt(want.amount) && BigInt(got.posted) === BigInt(want.posted);
    });
  expect(sameGroups, `transactions by type and status match the 201s — expected ${expectedGroups.map(describe).join('; ')}; stored ${stored.map(describe).join('; ')}`);
  expect(db.ledgerRows === 0, `no transaction recorded by the ledger itself (expiries: every lot expires after the run) — found ${db.ledgerRows}`);

  // Every user balance.
  let postedSum = 0n;
  let pendingDebitSum = 0n;
  let pendingCreditSum = 0n;
  let accountMismatches = 0;
  const mismatchExamples: string[] = [];
  const noteMismatch = (text: string) => {
    accountMismatches++;
    if (mismatchExamples.length < MISMATCH_EXAMPLES_MAX) mismatchExamples.push(text);
  };
  const seen = new Set<string>();
  for (const row of db.accounts) {
    postedSum += BigInt(row.posted);
    pendingDebitSum += BigInt(row.pending_debit);
    pendingCreditSum += BigInt(row.pending_credit);
    const key = accountKey(row.owner_id, row.balance_type);
    seen.add(key);
    const want = tally.accounts.get(key) ?? { posted: 0, pendingDebit: 0 };
    if (BigInt(row.posted) !== BigInt(want.posted) || BigInt(row.pending_debit) !== BigInt(want.pendingDebit) || row.pending_credit !== '0') {
      noteMismatch(`${row.owner_id}/${row.balance_type}: stored posted ${row.posted}, pending_debit ${row.pending_debit}, pending_credit ${row.pending_credit}; expected ${want.posted}, ${want.pendingDebit}, 0`);
    }
  }
  for (const [key, account] of tally.accounts) {
    if (!seen.has(key) && (account.posted !== 0 || account.pendingDebit !== 0)) noteMismatch(`${account.userId}/${account.balanceType}: no account, expected posted ${account.posted}`);
  }
  expect(
    postedSum === BigInt(tally.expectedPosted) && pendingDebitSum === BigInt(tally.expectedPendingDebit) && pendingCreditSum === 0n,
    `sum of user balances: posted ${postedSum} = adds ${tally.adds.amount} − consumes ${tally.consumes.amount} − posted holds ${tally.posts.amount} = ${tally.expectedPosted}; ` +
      `pending_debit ${pendingDebitSum} = open holds ${tally.expectedPendingDebit}; pending_credit ${pendingCreditSum} = 0`,
  );
  expect(
    accountMismatches === 0,
    `every user balance in the database equals the benchmark's own tally (${db.accounts.length} accounts)${mismatchExamples.length ? `: ${mismatchExamples.join('; ')}` : ''}`,
  );

  // The same balances through the API: every account the benchmark touched, and one it never did.
  const accounts = [...tally.accounts.values(), { userId: options.neverUserId, balanceType: 'cash', posted: 0, pendingDebit: 0 }];
  let apiPostedSum = 0n;
  const apiUnexpected = await runAll(
    pool,
    accounts.map((account) => ({
      method: 'GET',
      path: `/v1/users/${encodeURIComponent(account.userId)}/balances/${account.balanceType}`,
      check: (answer) => {
        if (answer.status !== 200) return `GET balance: ${answer.status} ${options.errorCode(answer.body)}`;
        const balance = JSON.parse(answer.body) as { available?: unknown; posted?: unknown; pending_debit?: unknown; pending_credit?: unknown };
        if (typeof balance.posted === 'number') apiPostedSum += BigInt(balance.posted);
        const available = account.posted - account.pendingDebit;
        if (balance.available !== available || balance.posted !== account.posted || balance.pending_debit !== account.pendingDebit || balance.pending_credit !== 0) {
          return (
            `GET balance of ${account.userId}/${account.balanceType}: available ${String(balance.available)}, posted ${String(balance.posted)}, ` +
            `pending_debit ${String(balance.pending_debit)}, pending_credit ${String(balance.pending_credit)}; expected ${available}, ${account.posted}, ${account.pendingDebit}, 0`
          );
        }
        return null;
      },
    })),
    BALANCE_API_CONCURRENCY,
    options.signal,
  );
  expect(
    apiUnexpected.total === 0 && apiPostedSum === BigInt(tally.expectedPosted),
    `GET /v1/users/{id}/balances/{type} matches the tally (available, posted, pending_debit, pending_credit) for all ${accounts.length} accounts; posted sum ${apiPostedSum}` +
      (apiUnexpected.total ? `: ${apiUnexpected.samples.join('; ')}` : ''),
  );

  expect(
    db.lots.inconsistent_lots === '0' && db.lots.accounts_off === '0',
    `lots (the audit's lot checks, as grouped queries): ${db.lots.lots} lots, ${db.lots.inconsistent_lots} whose remaining ≠ amount − draws + returns; ` +
      `${db.lots.accounts_off} user accounts whose lots ≠ posted − pending_debit`,
  );

  if (db.fefo) {
    expect(
      db.fefo.out_of_order === '0',
      `hot account FEFO: ${db.fefo.consumes} consumes drew from ${db.fefo.lots_drawn} lots, ${db.fefo.multi_lot} of them across 2+ lots; ` +
        `draws out of expiry order within a consume: ${db.fefo.out_of_order}`,
    );
    figures.hot_fefo_consumes = Number(db.fefo.consumes);
    figures.hot_fefo_multi_lot_consumes = Number(db.fefo.multi_lot);
    figures.hot_fefo_lots_drawn = Number(db.fefo.lots_drawn);
  }

  // The ledger's own audit: recomputes every balance and lot from the stored transactions.
  const auditStartedAt = performance.now();
  let auditOk = false;
  let auditDetail: string;
  try {
    const response = await pool.request({ method: 'GET', path: '/v1/audit', headersTimeout: AUDIT_TIMEOUT_MS, bodyTimeout: AUDIT_TIMEOUT_MS, signal: options.signal });
    const body = await response.body.text();
    if (response.statusCode === 200) {
      const report = JSON.parse(body) as { ok?: unknown; balance_types?: Array<{ balance_type: string; sum: number; accounts_checked: number; mismatches: unknown[] }>; misrouted_transactions?: number; inconsistent_lots?: number; dangling_references?: number };
      auditOk = report.ok === true;
      auditDetail =
        `ok: ${String(report.ok)}; ` +
        (report.balance_types ?? []).map((entry) => `${entry.balance_type}: sum ${entry.sum}, ${entry.accounts_checked} accounts, ${entry.mismatches.length} mismatches`).join('; ') +
        `; misrouted transactions ${String(report.misrouted_transactions)}` +
        (report.inconsistent_lots === undefined ? '' : `, inconsistent lots ${report.inconsistent_lots}`) +
        (report.dangling_references === undefined ? '' : `, dangling references ${report.dangling_references}`);
    } else {
      auditDetail = `${response.statusCode} ${options.errorCode(body)}`;
    }
  } catch (error) {
    options.signal.throwIfAborted();
    auditDetail = `no answer: ${(error as Error).message}`;
  }
  const auditS = (performance.now() - auditStartedAt) / 1000;
  expect(auditOk, `GET /v1/audit → ${auditDetail} (${auditS.toFixed(1)} s)`);

  Object.assign(figures, {
    created_201: tally.created,
    caller_rows: storedRows,
    ledger_rows: db.ledgerRows,
    adds_created: tally.adds.count,
    added_amount: tally.adds.amount,
    consumes_created: tally.consumes.count,
    consumed_amount: tally.consumes.amount,
    holds_created: tally.holds.count,
    held_amount: tally.holds.amount,
    posts_201: tally.posts.count,
    posted_from_holds: tally.posts.amount,
    user_posted_sum: postedSum.toString(),
    user_pending_debit_sum: pendingDebitSum.toString(),
    account_mismatches: accountMismatches,
    lots: Number(db.lots.lots),
    inconsistent_lots: Number(db.lots.inconsistent_lots),
    api_balance_mismatches: apiUnexpected.total,
    audit_ok: auditOk,
    audit_s: Math.round(auditS * 10) / 10,
  });
  return { pass, lines, figures };
}
