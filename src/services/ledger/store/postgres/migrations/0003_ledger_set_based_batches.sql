-- Group commit, set-based. A batch's adds and consumes (posted or holds) and
-- its post and void of holds are applied with a handful of statements for
-- the whole batch instead of several per operation: one balance update per
-- account (a hot account is written once per batch, not once per operation),
-- one insert of all transactions, of all lots, of all draws, one update of
-- the lots drawn, a user's first add creating the account. Everything
-- else (refunds, replays, a first consume, anything near an expiry or a
-- limit) goes through the per-operation path of 0002, after the set-based
-- part, in batch order.
--
-- Reordering is safe: the operations of one batch were all in flight at once
-- (none was answered before the batch commits), so any serial order of them
-- is a valid one. The set-based part applies its operations as if first, in
-- batch order per account; the rest follow. Transaction keys follow that
-- serial order, and so does each balance_after.

-- Foreign keys off the write path. Each inserted transaction checked both its
-- accounts, and took a key-share lock on the system account's row: one row
-- locked by every concurrent writer, the hot row the design avoids. Rows are
-- written only by these functions, from account rows they write in the same
-- transaction and the system account ids read at start-up, and nothing is
-- ever deleted, so a reference cannot dangle; the audit checks that it does not.
ALTER TABLE transactions DROP CONSTRAINT transactions_debit_account_id_fkey,
                         DROP CONSTRAINT transactions_credit_account_id_fkey;
ALTER TABLE lots DROP CONSTRAINT lots_account_id_fkey, DROP CONSTRAINT lots_source_transaction_pk_fkey;
ALTER TABLE lot_draws DROP CONSTRAINT lot_draws_transaction_pk_fkey, DROP CONSTRAINT lot_draws_lot_id_fkey;

-- Draws are computed from at most this many lots per account beyond one per
-- consume; an account whose batch needs more goes the per-operation way.
CREATE FUNCTION ledger_lots_fetched_extra() RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 4 $$;

-- A transaction as the API shows it, for both set-based answers (the same
-- fields as ledger_view of 0002; replays of these answers must match them
-- byte for byte, which the tests check). Inlined by the planner.
CREATE FUNCTION ledger_transaction_json(
  p_transaction_id text, p_type text, p_user_id text, p_balance_type text, p_amount bigint, p_status text,
  p_pending boolean, p_posted_amount bigint, p_pending_expires_at timestamptz, p_resolved_at timestamptz,
  p_expires_at timestamptz, p_refund_of text, p_lots jsonb, p_description text, p_metadata jsonb,
  p_balance_after bigint, p_created_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'transaction_id', p_transaction_id, 'type', p_type, 'user_id', p_user_id, 'balance_type', p_balance_type,
    'amount', p_amount, 'status', p_status, 'pending', p_pending, 'posted_amount', p_posted_amount,
    'pending_expires_at', p_pending_expires_at, 'resolved_at', p_resolved_at, 'expires_at', p_expires_at,
    'refund_of', p_refund_of, 'lots', p_lots, 'description', p_description, 'metadata', p_metadata,
    'balance_after', p_balance_after, 'created_at', p_created_at)
$$;


CREATE OR REPLACE FUNCTION ledger_apply(p_ops jsonb, p_system jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_set_ordinals integer[];
  v_set_results jsonb[];
  v_resolved_ordinals integer[];
  v_accounts_written bigint;
  v_accounts_applied bigint;
  v_op jsonb;
  v_ordinal integer;
  v_account accounts%ROWTYPE;
  v_result jsonb;
BEGIN
  -- 1. Apply what can be applied set-wise, and answer it. No lock is taken
  --    before reading: a balance is written only if its row is still the
  --    version this statement read (every change to an account's lots also
  --    writes its row), else the whole batch fails as a serialization failure
  --    and the service runs it again. Only another process can cause that.
  WITH ops AS (
    SELECT o.ordinal::integer AS ordinal, o.op->>'kind' AS kind, o.op->>'transaction_id' AS transaction_id,
           o.op->>'balance_type' AS balance_type, o.op->>'type' AS type, o.op->>'user_id' AS user_id,
           (o.op->>'amount')::bigint AS amount, coalesce((o.op->>'pending')::boolean, false) AS pending,
           (o.op->>'pending_expires_at')::timestamptz AS requested_deadline, (o.op->>'expires_at')::timestamptz AS expires_at,
           o.op->>'refund_of' AS refund_of, o.op->>'description' AS description, o.op->'metadata' AS metadata,
           (o.op->>'at')::timestamptz AS at,
           -- A hold's deadline, computed as ledger_create computes it.
           CASE WHEN coalesce((o.op->>'pending')::boolean, false) THEN
             coalesce((o.op->>'pending_expires_at')::timestamptz,
                      (o.op->>'at')::timestamptz + make_interval(secs => (o.op->>'hold_timeout_ms')::bigint / 1000.0)) END AS deadline
      FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, ordinal)
  ),
  -- Creates of new ids, on existing accounts or (adds) on accounts this
  -- statement creates.
  looked_up AS MATERIALIZED (
    SELECT ops.*, a.account_id AS existing_account_id, a.ctid AS account_version,
           coalesce(a.posted - a.pending_debit, 0) AS available_before, coalesce(a.posted + a.pending_credit, 0) AS credits_before,
           a.next_expiry_at
      FROM ops
      -- A lateral lookup by the whole unique key, kept apart by LIMIT: as a join, a plan cached while
      -- the table was small scanned every user account for each operation once it was large.
      LEFT JOIN LATERAL (
        SELECT account_id, ctid, posted, pending_debit, pending_credit, next_expiry_at FROM accounts
         WHERE owner_kind = 'user' AND owner_id = ops.user_id AND balance_type = ops.balance_type
         LIMIT 1) a ON true
     WHERE ops.kind = 'create' AND ops.type IN ('add', 'consume') AND (a.account_id IS NOT NULL OR ops.type = 'add')
       AND (ops.requested_deadline IS NULL OR (ops.pending AND ops.requested_deadline > ops.at))
       AND ops.refund_of IS NULL AND (ops.expires_at IS NULL OR (ops.type = 'add' AND ops.expires_at > ops.at))
       AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.transaction_id = ops.transaction_id AND t.balance_type = ops.balance_type)
  ),
  -- A user's first add: the account's key is taken now, its row written below.
  new_accounts AS MATERIALIZED (
    SELECT user_id, balance_type, nextval('accounts_account_id_seq'::regclass) AS account_id
      FROM (SELECT DISTINCT user_id, balance_type FROM looked_up WHERE existing_account_id IS NULL) firsts
  ),
  -- Of an id repeated in the batch only the first (the others replay it, or conflict, afterwards).
  plain AS (
    SELECT * FROM (
      SELECT l.*, coalesce(l.existing_account_id, n.account_id) AS account_id, l.existing_account_id IS NULL AS new_account,
             row_number() OVER (PARTITION BY l.transaction_id, l.balance_type ORDER BY l.ordinal) AS nth
        FROM looked_up l
        LEFT JOIN new_accounts n ON l.existing_account_id IS NULL AND n.user_id = l.user_id AND n.balance_type = l.balance_type
    ) numbered
     WHERE nth = 1
  ),
  -- Per account (windows, not joins: the planner cannot size these sets, so
  -- it nests loops; small aggregates are MATERIALIZED so they run once):
  -- only adds or only consumes, nothing due to expire, within the limits.
  -- Consumes only lower a balance and adds only raise it, so the batch's
  -- total decides for every prefix.
  sized AS (
    SELECT p.*, count(*) OVER account AS operations_on_account, sum(p.amount) OVER account AS total_on_account,
           bool_and(p.type = 'consume') OVER account AS consumes_only, bool_and(p.type = 'add') OVER account AS adds_only,
           max(p.at) OVER account AS at_last, row_number() OVER running AS rank_on_account,
           -- What each changes of the available balance: a pending add nothing yet.
           sum(CASE WHEN p.type = 'consume' THEN -p.amount WHEN p.pending THEN 0 ELSE p.amount END) OVER running AS change_through,
           sum(p.amount) OVER running AS through
      FROM plain p
    WINDOW account AS (PARTITION BY p.account_id), running AS (PARTITION BY p.account_id ORDER BY p.ordinal)
  ),
  in_bounds AS (
    SELECT * FROM sized
     WHERE (next_expiry_at IS NULL OR next_expiry_at > at_last)
       AND ((adds_only AND credits_before <= 9007199254740991 - total_on_account)
            OR (consumes_only AND available_before >= total_on_account))
  ),
  -- The lots consumes draw from, soonest-expiring first, with their running total.
  lots_fefo AS (
    SELECT b.account_id, l.lot_id, l.remaining, l.expires_at, l.source_transaction_id,
           sum(l.remaining) OVER (PARTITION BY b.account_id ORDER BY l.expires_at NULLS LAST, l.lot_id) AS through
      FROM in_bounds b
      CROSS JOIN LATERAL (
        SELECT lot_id, remaining, expires_at, source_transaction_id FROM lots
         WHERE account_id = b.account_id AND remaining > 0
         ORDER BY expires_at NULLS LAST, lot_id
         LIMIT b.operations_on_account + ledger_lots_fetched_extra()) l
     WHERE b.consumes_only AND b.rank_on_account = 1
  ),
  lots_reach AS MATERIALIZED (
    SELECT account_id, max(through) AS reach FROM lots_fefo GROUP BY account_id
  ),
  -- Keys taken in batch order, so that they follow the serial order.
  applied AS (
    SELECT ordered.*, nextval('transactions_transaction_pk_seq'::regclass) AS transaction_pk
      FROM (SELECT b.* FROM in_bounds b LEFT JOIN lots_reach r USING (account_id)
             WHERE NOT b.consumes_only OR b.total_on_account <= r.reach
             ORDER BY b.ordinal) ordered
  ),
  -- Consume i takes the stretch (through - amount, through] of its account's
  -- lots laid end to end in FEFO order.
  draws AS (
    SELECT c.ordinal, c.transaction_pk, f.lot_id, f.expires_at, f.source_transaction_id, f.through AS lot_through,
           least(f.through, c.through) - greatest(f.through - f.remaining, c.through - c.amount) AS amount
      FROM applied c JOIN lots_fefo f ON f.account_id = c.account_id
     WHERE c.type = 'consume' AND f.through - f.remaining < c.through AND f.through > c.through - c.amount
  ),
  draws_listed AS MATERIALIZED (
    SELECT ordinal, jsonb_agg(jsonb_build_object('source_transaction_id', source_transaction_id, 'amount', amount, 'expires_at', expires_at)
                              ORDER BY lot_through) AS lots
      FROM draws GROUP BY ordinal
  ),
  balances_written AS (
    UPDATE accounts a
       SET posted = a.posted + s.posted_change, pending_debit = a.pending_debit + s.pending_debit_change,
           pending_credit = a.pending_credit + s.pending_credit_change, updated_at = s.at_last,
           next_expiry_at = least(a.next_expiry_at, s.expires_first)
      FROM (SELECT account_id,
                   sum(CASE WHEN pending THEN 0 WHEN type = 'add' THEN amount ELSE -amount END) AS posted_change,
                   sum(CASE WHEN pending AND type = 'consume' THEN amount ELSE 0 END) AS pending_debit_change,
                   sum(CASE WHEN pending AND type = 'add' THEN amount ELSE 0 END) AS pending_credit_change,
                   max(at) AS at_last, min(CASE WHEN pending THEN deadline ELSE expires_at END) AS expires_first,
                   min(account_version) AS account_version
              FROM applied WHERE NOT new_account GROUP BY account_id) s
     WHERE a.account_id = s.account_id AND a.ctid = s.account_version
    RETURNING a.account_id
  ),
  -- Written with their balances already; a process that created one first wins, and this batch runs again.
  accounts_created AS (
    INSERT INTO accounts (account_id, owner_kind, owner_id, balance_type, posted, pending_debit, pending_credit,
                          next_expiry_at, created_at, updated_at)
      OVERRIDING SYSTEM VALUE
    SELECT account_id, 'user', min(user_id), min(balance_type), sum(CASE WHEN pending THEN 0 ELSE amount END), 0,
           sum(CASE WHEN pending THEN amount ELSE 0 END), min(CASE WHEN pending THEN deadline ELSE expires_at END),
           min(at), max(at)
      FROM applied WHERE new_account GROUP BY account_id
    ON CONFLICT (owner_kind, owner_id, balance_type) DO NOTHING
    RETURNING account_id
  ),
  inserted AS (
    INSERT INTO transactions (transaction_pk, transaction_id, balance_type, type, user_id, amount, pending, pending_expires_at,
                              requested_pending_expires_at, expires_at, description, metadata,
                              debit_account_id, credit_account_id, balance_after, created_at, status, posted_amount)
      OVERRIDING SYSTEM VALUE
    SELECT transaction_pk, transaction_id, balance_type, type, user_id, amount, pending, deadline,
           requested_deadline, expires_at, description, metadata,
           CASE WHEN type = 'add' THEN ledger_system_account(p_system, 'issuance', balance_type) ELSE account_id END,
           CASE WHEN type = 'add' THEN account_id ELSE ledger_system_account(p_system, 'redemption', balance_type) END,
           available_before + change_through, at,
           CASE WHEN pending THEN 'pending' ELSE 'posted' END, CASE WHEN pending THEN NULL ELSE amount END
      FROM applied ORDER BY ordinal
    RETURNING transaction_pk
  ),
  lots_created AS (
    INSERT INTO lots (account_id, source_transaction_pk, source_transaction_id, amount, remaining, expires_at, created_at)
    SELECT account_id, transaction_pk, transaction_id, amount, amount, expires_at, at
      FROM applied WHERE type = 'add' AND NOT pending ORDER BY ordinal
    RETURNING lot_id
  ),
  draws_recorded AS (
    INSERT INTO lot_draws (transaction_pk, lot_id, amount)
    SELECT transaction_pk, lot_id, amount FROM draws ORDER BY ordinal, lot_through
    RETURNING draw_id
  ),
  lots_drawn AS (
    UPDATE lots l SET remaining = l.remaining - s.amount
      FROM (SELECT lot_id, sum(amount) AS amount FROM draws GROUP BY lot_id) s
     WHERE l.lot_id = s.lot_id
    RETURNING l.lot_id
  ),
  answers AS (
    SELECT a.ordinal, jsonb_build_object('outcome', 'created', 'transaction', ledger_transaction_json(
             a.transaction_id, a.type, a.user_id, a.balance_type, a.amount,
             CASE WHEN a.pending THEN 'pending' ELSE 'posted' END, a.pending, CASE WHEN a.pending THEN NULL ELSE a.amount END,
             a.deadline, NULL, a.expires_at, NULL, CASE WHEN a.type = 'consume' THEN dl.lots END,
             a.description, a.metadata, (a.available_before + a.change_through)::bigint, a.at),
             'ordinal', a.ordinal) AS answer
      FROM applied a LEFT JOIN draws_listed dl USING (ordinal)
  )
  SELECT coalesce(array_agg(ordinal), '{}'), coalesce(array_agg(answer), '{}'),
         (SELECT count(*) FROM balances_written) + (SELECT count(*) FROM accounts_created),
         (SELECT count(DISTINCT account_id) FROM applied)
    INTO v_set_ordinals, v_set_results, v_accounts_written, v_accounts_applied
    FROM answers;
  IF v_accounts_written <> v_accounts_applied THEN
    RAISE EXCEPTION 'an account changed while its batch was being applied; run the batch again'
      USING ERRCODE = 'serialization_failure';
  END IF;

  RETURN QUERY SELECT unnest(v_set_results);
  IF cardinality(v_set_ordinals) = jsonb_array_length(p_ops) THEN
    RETURN;
  END IF;

  -- 2. Post and void set-wise: holds still pending and not past their
  --    deadline, on accounts with nothing due, whose released value goes
  --    back to lots that have not expired. Resolutions only raise available
  --    balances, so they need no balance check. Same version rule as above.
  IF jsonb_path_exists(p_ops, '$[*] ? (@.kind == "post" || @.kind == "void")') THEN
    WITH resolutions AS (
      SELECT o.ordinal::integer AS ordinal, o.op->>'kind' AS action, (o.op->>'at')::timestamptz AS at,
             (o.op->>'amount')::bigint AS requested_amount, h.*
        FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, ordinal)
        CROSS JOIN LATERAL (
          SELECT t.transaction_pk, t.ctid AS hold_version, t.transaction_id, t.balance_type, t.type, t.user_id, t.amount,
                 t.pending, t.status, t.pending_expires_at, t.expires_at, t.description, t.metadata, t.created_at,
                 CASE WHEN t.type = 'consume' THEN t.debit_account_id ELSE t.credit_account_id END AS account_id
            FROM transactions t
           WHERE t.transaction_id = o.op->>'transaction_id' AND t.balance_type = o.op->>'balance_type'
           LIMIT 1) h
       WHERE o.op->>'kind' IN ('post', 'void')
    ),
    -- Of a hold resolved twice in the batch, the first (the other then replays or is refused).
    resolvable AS (
      SELECT * FROM (
        SELECT r.*, row_number() OVER (PARTITION BY r.transaction_pk ORDER BY r.ordinal) AS nth,
               CASE WHEN r.action = 'void' THEN 0 ELSE coalesce(r.requested_amount, r.amount) END AS posted_amount
          FROM resolutions r
         WHERE r.pending AND r.status = 'pending' AND r.pending_expires_at > r.at
           AND (r.action = 'void' OR coalesce(r.requested_amount, r.amount) <= r.amount)
      ) numbered
       WHERE nth = 1
    ),
    with_accounts AS MATERIALIZED (
      SELECT r.*, a.ctid AS account_version, a.posted - a.pending_debit AS available_before, a.next_expiry_at,
             -- What the resolution gives back to the available balance.
             CASE WHEN r.type = 'consume' THEN r.amount - r.posted_amount ELSE r.posted_amount END AS released,
             max(r.at) OVER (PARTITION BY r.account_id) AS at_last
        FROM resolvable r
        CROSS JOIN LATERAL (
          SELECT ctid, posted, pending_debit, next_expiry_at FROM accounts WHERE account_id = r.account_id LIMIT 1) a
    ),
    -- The unposted part of a consume hold goes back to the lots it drew, latest-expiring first.
    returns AS MATERIALIZED (
      SELECT x.*, greatest(0, least(x.drawn, x.to_return - x.before)) AS given FROM (
        SELECT w.ordinal, w.account_id, w.transaction_pk, w.at, d.draw_id, d.lot_id, d.amount AS drawn, d.expires_at, d.source_transaction_id,
               w.amount - w.posted_amount AS to_return,
               coalesce(sum(d.amount) OVER (PARTITION BY w.transaction_pk ORDER BY d.expires_at DESC NULLS FIRST, d.lot_id DESC
                                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
          FROM with_accounts w
          CROSS JOIN LATERAL (
            SELECT dr.draw_id, dr.lot_id, dr.amount, l.expires_at, l.source_transaction_id
              FROM lot_draws dr JOIN lots l ON l.lot_id = dr.lot_id
             WHERE dr.transaction_pk = w.transaction_pk) d
         WHERE w.type = 'consume'
      ) x
    ),
    blocked AS MATERIALIZED (
      SELECT account_id FROM with_accounts
       WHERE NOT (next_expiry_at IS NULL OR next_expiry_at > at_last)
          OR (type = 'add' AND posted_amount > 0 AND expires_at <= at)
      UNION
      SELECT account_id FROM returns WHERE given > 0 AND expires_at <= at
    ),
    applied AS MATERIALIZED (
      SELECT w.*, sum(w.released) OVER (PARTITION BY w.account_id ORDER BY w.ordinal) AS released_through
        FROM with_accounts w
       WHERE w.account_id NOT IN (SELECT account_id FROM blocked)
    ),
    returns_applied AS MATERIALIZED (
      SELECT * FROM returns WHERE given > 0 AND account_id NOT IN (SELECT account_id FROM blocked)
    ),
    returned_expiry AS MATERIALIZED (
      SELECT account_id, min(expires_at) AS expires_first FROM returns_applied GROUP BY account_id
    ),
    balances_written AS (
      UPDATE accounts a
         SET posted = a.posted + s.posted_change, pending_debit = a.pending_debit - s.pending_debit_released,
             pending_credit = a.pending_credit - s.pending_credit_released, updated_at = s.at_last,
             next_expiry_at = least(a.next_expiry_at, s.lots_expire_first, e.expires_first)
        FROM (SELECT account_id, min(account_version) AS account_version, max(at) AS at_last,
                     sum(CASE WHEN type = 'add' THEN posted_amount ELSE -posted_amount END) AS posted_change,
                     sum(CASE WHEN type = 'consume' THEN amount ELSE 0 END) AS pending_debit_released,
                     sum(CASE WHEN type = 'add' THEN amount ELSE 0 END) AS pending_credit_released,
                     min(CASE WHEN type = 'add' AND posted_amount > 0 THEN expires_at END) AS lots_expire_first
                FROM applied GROUP BY account_id) s
        LEFT JOIN returned_expiry e USING (account_id)
       WHERE a.account_id = s.account_id AND a.ctid = s.account_version
      RETURNING a.account_id
    ),
    holds_resolved AS (
      UPDATE transactions t
         SET status = CASE WHEN s.action = 'post' THEN 'posted' ELSE 'voided' END, posted_amount = s.posted_amount,
             resolved_at = s.at, resolved_balance_after = s.available_before + s.released_through
        FROM applied s
       WHERE t.transaction_pk = s.transaction_pk AND t.ctid = s.hold_version
      RETURNING t.transaction_pk
    ),
    returns_recorded AS (
      INSERT INTO lot_returns (draw_id, cause_pk, amount)
      SELECT draw_id, transaction_pk, given FROM returns_applied ORDER BY ordinal, expires_at DESC NULLS FIRST, lot_id DESC
      RETURNING return_id
    ),
    lots_refilled AS (
      UPDATE lots l SET remaining = l.remaining + s.given
        FROM (SELECT lot_id, sum(given) AS given FROM returns_applied GROUP BY lot_id) s
       WHERE l.lot_id = s.lot_id
      RETURNING l.lot_id
    ),
    lots_created AS (
      INSERT INTO lots (account_id, source_transaction_pk, source_transaction_id, amount, remaining, expires_at, created_at)
      SELECT account_id, transaction_pk, transaction_id, posted_amount, posted_amount, expires_at, at
        FROM applied WHERE type = 'add' AND posted_amount > 0 ORDER BY ordinal
      RETURNING lot_id
    ),
    -- A consume hold's lots, net of what its resolution gave back (as ledger_lots_json shows them).
    lots_kept AS MATERIALIZED (
      SELECT ordinal,
             coalesce(jsonb_agg(jsonb_build_object('source_transaction_id', source_transaction_id, 'amount', drawn - given, 'expires_at', expires_at)
                                ORDER BY draw_id) FILTER (WHERE drawn - given > 0), '[]'::jsonb) AS lots
        FROM returns GROUP BY ordinal
    ),
    answers AS (
      SELECT a.ordinal, jsonb_build_object('outcome', 'resolved', 'transaction', ledger_transaction_json(
               a.transaction_id, a.type, a.user_id, a.balance_type, a.amount,
               CASE WHEN a.action = 'post' THEN 'posted' ELSE 'voided' END, true, a.posted_amount,
               a.pending_expires_at, a.at, a.expires_at, NULL, CASE WHEN a.type = 'consume' THEN k.lots END,
               a.description, a.metadata, (a.available_before + a.released_through)::bigint, a.created_at),
               'ordinal', a.ordinal) AS answer
        FROM applied a LEFT JOIN lots_kept k USING (ordinal)
    )
    SELECT coalesce(array_agg(ordinal), '{}'), coalesce(array_agg(answer), '{}'),
           (SELECT count(*) FROM balances_written) + (SELECT count(*) FROM holds_resolved),
           (SELECT count(DISTINCT account_id) FROM applied) + (SELECT count(*) FROM applied)
      INTO v_resolved_ordinals, v_set_results, v_accounts_written, v_accounts_applied
      FROM answers;
    IF v_accounts_written <> v_accounts_applied THEN
      RAISE EXCEPTION 'an account or hold changed while its batch was being applied; run the batch again'
        USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN QUERY SELECT unnest(v_set_results);
    v_set_ordinals := v_set_ordinals || v_resolved_ordinals;
  END IF;

  -- 3. The rest, one by one, in batch order.
  FOR v_op, v_ordinal IN
    SELECT o.op, o.ordinal FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, ordinal)
     WHERE o.ordinal <> ALL (v_set_ordinals)
     ORDER BY o.ordinal
  LOOP
    CASE v_op->>'kind'
      WHEN 'create' THEN v_result := ledger_create(v_op, p_system);
      WHEN 'post', 'void' THEN v_result := ledger_resolve(v_op, p_system);
      WHEN 'sweep' THEN
        v_account := ledger_lock_account_by_id((v_op->>'account_id')::bigint, (v_op->>'at')::timestamptz, p_system);
        v_result := ledger_outcome('swept');
      ELSE RAISE EXCEPTION 'unknown ledger operation %', v_op->>'kind';
    END CASE;
    RETURN NEXT v_result || jsonb_build_object('ordinal', v_ordinal);
  END LOOP;
END $$;

-- Each pooled connection caches a generic plan for these statements, made
-- with the statistics of the moment; a plan made while a table was small
-- must not scan it whole once it is large. Every lookup here has an index.
ALTER FUNCTION ledger_apply(jsonb, jsonb) SET enable_seqscan = off;
