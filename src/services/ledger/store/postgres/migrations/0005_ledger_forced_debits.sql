-- Forced debits: a consume, a hold or a post above a hold with `force` may take
-- a user's available balance below zero (card networks settle more than was
-- held; points are clawed back after they were spent).
--
-- How the books stay exact: a forced debit draws the lots it can, soonest-
-- expiring first, as any consume; the part no lot covered is its debt
-- (ledger_uncovered). Each user account keeps
--
--   sum of its lots' remaining = available (posted - pending_debit) + its debt
--
-- and never has both a debt and value in a lot that has not expired: each
-- credit pays the debt first. An add (or a posted add hold) becomes a lot as
-- ever; the debts then draw from it, oldest debt first, as late draws of the
-- indebted transaction (lot_draws.cause_pk names the credit that repaid). So
-- the lot keeps only what is left after the debt, and its expiry cannot take
-- back what repaid it; a refund of a consume later gives back to those lots as
-- to any other (latest-expiring first). A refund, or the unposted part of a
-- hold, first cancels the debt of its own consume, gives the rest back to its
-- lots, and then other debts draw from them. A hold that times out does the
-- same at its deadline.
--
-- Without `force` nothing changes: a consume beyond the available balance is
-- refused, and the set-based paths of 0004 keep every operation that is not
-- forced, on an account not in debt.

-- DEBT_MAX: the furthest below zero a forced debit may take an available balance.
CREATE FUNCTION ledger_debt_max() RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 1000000000000000::bigint
$$;

-- The stored balances: available may be negative, down to -DEBT_MAX; the cap of 0004 stays.
ALTER TABLE accounts DROP CONSTRAINT user_balances_in_range,
  ADD CONSTRAINT user_balances_in_range CHECK (
    pending_debit >= 0 AND pending_credit >= 0 AND posted - pending_debit >= -ledger_debt_max()
    AND ledger_within_balance_max(posted, pending_credit));

-- `force`: what the creating request asked; `post_force`: what the post of a hold asked.
ALTER TABLE transactions
  ADD COLUMN force boolean NOT NULL DEFAULT false,
  ADD COLUMN post_force boolean NOT NULL DEFAULT false,
  ADD CONSTRAINT force_on_consumes_only CHECK (NOT force OR type = 'consume'),
  ADD CONSTRAINT post_force_on_posted_consume_holds_only CHECK (NOT post_force OR (pending AND type = 'consume' AND status = 'posted')),
  DROP CONSTRAINT status_matches_kind,
  -- A forced post may post more than the hold, up to the largest amount.
  ADD CONSTRAINT status_matches_kind CHECK (
    CASE WHEN pending THEN
      (status = 'pending' AND posted_amount IS NULL AND resolved_at IS NULL)
      OR (status = 'posted' AND resolved_at IS NOT NULL
          AND (posted_amount BETWEEN 1 AND amount OR (post_force AND posted_amount BETWEEN 1 AND 1000000000000000)))
      OR (status IN ('voided', 'expired') AND posted_amount = 0 AND resolved_at IS NOT NULL)
    ELSE status = 'posted' AND posted_amount = amount AND resolved_at IS NULL END);

-- The only transactions that can be in debt, by account: credits look for them
-- only on an account in debt.
CREATE INDEX forced_debits_by_account ON transactions (debit_account_id, transaction_pk) WHERE force OR post_force;

-- NULL: drawn when the transaction was created. The transaction's own key:
-- drawn by its forced post. Another key: the credit (or released hold) whose
-- value repaid the transaction's debt.
ALTER TABLE lot_draws ADD COLUMN cause_pk bigint;

-- A resolution may also record that its post was forced.
CREATE OR REPLACE FUNCTION ledger_check_resolution() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_unchanged transactions;
BEGIN
  v_unchanged := NEW;
  v_unchanged.status := OLD.status;
  v_unchanged.posted_amount := OLD.posted_amount;
  v_unchanged.resolved_at := OLD.resolved_at;
  v_unchanged.resolved_balance_after := OLD.resolved_balance_after;
  v_unchanged.post_force := OLD.post_force;
  IF OLD.status <> 'pending' OR NEW.status = 'pending' OR v_unchanged IS DISTINCT FROM OLD THEN
    RAISE EXCEPTION 'the ledger is append-only: only a pending hold may be resolved, once'
      USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$;

-- Rules -------------------------------------------------------------------------

-- Whether an account can take a transaction of p_amount: with force, a debit
-- only needs to stay within DEBT_MAX.
CREATE FUNCTION ledger_balance_allows(p_type text, p_available bigint, p_credits bigint, p_amount bigint, p_force boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_force THEN p_available >= p_amount - ledger_debt_max() ELSE ledger_balance_allows(p_type, p_available, p_credits, p_amount) END
$$;

-- A consume's debt: what it keeps (its amount while pending, what was posted,
-- less what was refunded) and no lot covers (net of what was given back).
-- Never negative; 0 for a consume that was not forced.
CREATE FUNCTION ledger_uncovered(t transactions) RETURNS bigint LANGUAGE sql STABLE AS $$
  SELECT (CASE t.status WHEN 'pending' THEN t.amount WHEN 'posted' THEN t.posted_amount ELSE 0 END
          - coalesce((SELECT sum(r.amount) FROM transactions r WHERE r.refund_of = t.transaction_id AND r.balance_type = t.balance_type), 0)
          - coalesce((SELECT sum(d.amount) FROM lot_draws d WHERE d.transaction_pk = t.transaction_pk), 0)
          + coalesce((SELECT sum(x.amount) FROM lot_returns x JOIN lot_draws d USING (draw_id) WHERE d.transaction_pk = t.transaction_pk), 0))::bigint
$$;

-- Draws up to p_amount from the account's lots that have not expired at
-- p_alive_at, in draw order; no more than they hold. Returns the draws as a
-- response's `lots`, and their total.
CREATE FUNCTION ledger_draw_lots_up_to(p_account_id bigint, p_transaction_pk bigint, p_amount bigint, p_cause_pk bigint,
                                       p_alive_at timestamptz, OUT drawn jsonb, OUT total bigint)
LANGUAGE plpgsql AS $$
DECLARE
  v_take bigint;
  l record;
BEGIN
  drawn := '[]'::jsonb;
  total := 0;
  WHILE total < p_amount LOOP
    SELECT f.lot_id, f.remaining, f.expires_at, f.source_transaction_id INTO l
      FROM lots f
     WHERE f.account_id = p_account_id AND f.remaining > 0 AND (f.expires_at IS NULL OR f.expires_at > p_alive_at)
     ORDER BY f.expires_at NULLS LAST, f.lot_id
     LIMIT 1;
    EXIT WHEN NOT FOUND;
    v_take := least(l.remaining, p_amount - total);
    INSERT INTO lot_draws (transaction_pk, lot_id, amount, cause_pk) VALUES (p_transaction_pk, l.lot_id, v_take, p_cause_pk);
    UPDATE lots SET remaining = remaining - v_take WHERE lot_id = l.lot_id;
    drawn := drawn || ledger_lot_json(l.source_transaction_id, v_take, l.expires_at);
    total := total + v_take;
  END LOOP;
END $$;

-- Pays the account's debts, oldest first, from its lots that have not expired
-- at p_alive_at, until either runs out. p_cause_pk: the credit or release that
-- brought the value.
CREATE FUNCTION ledger_repay_debts(p_account_id bigint, p_cause_pk bigint, p_alive_at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  d record;
  v_paid bigint;
BEGIN
  FOR d IN
    SELECT t.transaction_pk, ledger_uncovered(t) AS debt FROM transactions t
     WHERE t.debit_account_id = p_account_id AND (t.force OR t.post_force)
     ORDER BY t.transaction_pk
  LOOP
    CONTINUE WHEN d.debt <= 0;
    SELECT p.total INTO v_paid FROM ledger_draw_lots_up_to(p_account_id, d.transaction_pk, d.debt, p_cause_pk, p_alive_at) p;
    EXIT WHEN v_paid < d.debt;
  END LOOP;
END $$;

-- As 0004's, with the draw's key last in the order: a transaction may now have
-- several draws from one lot (its post, the credits that repaid it), and value
-- goes back to the latest of them first.
CREATE OR REPLACE FUNCTION ledger_draws_to_return(p_drawn_pk bigint)
RETURNS TABLE (draw_id bigint, lot_id bigint, expires_at timestamptz, source_transaction_id text, net bigint, net_before numeric, return_rank bigint)
LANGUAGE sql STABLE AS $$
  SELECT d.draw_id, d.lot_id, l.expires_at, l.source_transaction_id, d.amount - r.returned,
         coalesce(sum(d.amount - r.returned) OVER back, 0),
         count(*) OVER back
    FROM lot_draws d
    JOIN lots l ON l.lot_id = d.lot_id
    CROSS JOIN LATERAL (SELECT coalesce(sum(x.amount), 0)::bigint AS returned FROM lot_returns x WHERE x.draw_id = d.draw_id) r
   WHERE d.transaction_pk = p_drawn_pk
  WINDOW back AS (ORDER BY l.expires_at DESC NULLS FIRST, d.lot_id DESC, d.draw_id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
   ORDER BY l.expires_at DESC NULLS FIRST, d.lot_id DESC, d.draw_id DESC
$$;

-- As 0004's, but a lot is refilled once with the sum of what goes back to it:
-- with several draws from one lot, an UPDATE … FROM joining each draw would
-- add only one of them.
CREATE OR REPLACE FUNCTION ledger_return_draws(p_account_id bigint, p_drawn_pk bigint, p_cause_pk bigint, p_amount bigint, p_at timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_given bigint;
  v_into_expired bigint;
  v_expires_first timestamptz;
BEGIN
  WITH given AS MATERIALIZED (
    SELECT d.draw_id, d.lot_id, d.expires_at, d.return_rank, ledger_return_share(d.net, d.net_before, p_amount) AS amount
      FROM ledger_draws_to_return(p_drawn_pk) d
  ),
  recorded AS (
    INSERT INTO lot_returns (draw_id, cause_pk, amount)
    SELECT draw_id, p_cause_pk, amount FROM given WHERE amount > 0 ORDER BY return_rank
  ),
  refilled AS (
    UPDATE lots l SET remaining = l.remaining + g.amount
      FROM (SELECT lot_id, sum(amount) AS amount FROM given GROUP BY lot_id) g
     WHERE l.lot_id = g.lot_id AND g.amount > 0
  )
  SELECT coalesce(sum(amount), 0), coalesce(sum(amount) FILTER (WHERE expires_at <= p_at), 0), min(expires_at) FILTER (WHERE amount > 0)
    INTO v_given, v_into_expired, v_expires_first
    FROM given;
  IF v_given <> p_amount THEN
    RAISE EXCEPTION 'ledger invariant broken: % of transaction % has no draw to return to', p_amount - v_given, p_drawn_pk;
  END IF;
  IF v_expires_first IS NOT NULL THEN
    UPDATE accounts SET next_expiry_at = least(next_expiry_at, v_expires_first) WHERE account_id = p_account_id;
  END IF;
  RETURN v_into_expired;
END $$;

-- Views --------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION ledger_transaction_json(t transactions, p_status text, p_posted_amount bigint, p_resolved_at timestamptz,
                                                   p_lots jsonb, p_balance_after bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'transaction_id', t.transaction_id, 'type', t.type, 'user_id', t.user_id, 'balance_type', t.balance_type,
    'amount', t.amount, 'status', p_status, 'pending', t.pending, 'posted_amount', p_posted_amount,
    'pending_expires_at', t.pending_expires_at, 'resolved_at', p_resolved_at, 'expires_at', t.expires_at,
    'refund_of', t.refund_of, 'force', t.force, 'lots', p_lots, 'description', t.description, 'metadata', t.metadata,
    'balance_after', p_balance_after, 'created_at', t.created_at)
$$;

-- A consume's `lots` are what it drew when created (and, net, by its own post
-- and resolution); draws that later repaid its debt are not among them, so
-- that a replay still answers as first answered.
CREATE OR REPLACE FUNCTION ledger_lots_json(p_transaction_pk bigint, p_type text, p_net boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN p_type = 'refund' THEN (
      SELECT coalesce(jsonb_agg(ledger_lot_json(l.source_transaction_id, r.amount, l.expires_at) ORDER BY r.return_id), '[]'::jsonb)
        FROM lot_returns r JOIN lot_draws d USING (draw_id) JOIN lots l ON l.lot_id = d.lot_id
       WHERE r.cause_pk = p_transaction_pk)
    WHEN p_type IN ('consume', 'expire') THEN (
      SELECT coalesce(jsonb_agg(ledger_lot_json(x.source_transaction_id, x.kept, x.expires_at) ORDER BY x.draw_id)
                        FILTER (WHERE x.kept > 0), '[]'::jsonb)
        FROM (
          SELECT d.draw_id, l.source_transaction_id, l.expires_at,
                 d.amount - CASE WHEN p_net THEN coalesce((SELECT sum(r.amount) FROM lot_returns r
                                                          WHERE r.draw_id = d.draw_id AND r.cause_pk = p_transaction_pk), 0)::bigint
                                 ELSE 0 END AS kept
            FROM lot_draws d JOIN lots l ON l.lot_id = d.lot_id
           WHERE d.transaction_pk = p_transaction_pk
             AND (d.cause_pk IS NULL OR (p_net AND d.cause_pk = p_transaction_pk))
        ) x)
    ELSE NULL END
$$;

-- One by one -----------------------------------------------------------------------

-- Expires what is due on one (locked) user account at p_at: holds past their
-- deadline, then lots past expires_at. A consume hold gives back at its
-- deadline (its own debt first, then its lots), and on an account in debt the
-- other debts draw from those lots as they stood at that deadline: the same
-- whenever the sweep runs. Idempotent: a second call finds nothing.
CREATE OR REPLACE FUNCTION ledger_sweep_account(p_account_id bigint, p_at timestamptz, p_system jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_account accounts%ROWTYPE;
  v_hold transactions%ROWTYPE;
  v_lot lots%ROWTYPE;
  v_expire_pk bigint;
  v_count integer := 0;
  v_in_debt boolean;
  v_to_lots bigint;
BEGIN
  SELECT posted - pending_debit < 0 INTO v_in_debt FROM accounts WHERE account_id = p_account_id;
  FOR v_hold IN
    SELECT * FROM transactions
     WHERE status = 'pending' AND pending_expires_at <= p_at
       AND (debit_account_id = p_account_id OR credit_account_id = p_account_id)
     ORDER BY pending_expires_at, transaction_pk
  LOOP
    v_to_lots := CASE WHEN v_hold.type <> 'consume' THEN 0
                      WHEN v_hold.force THEN v_hold.amount - ledger_uncovered(v_hold)
                      ELSE v_hold.amount END;
    -- An expired hold is a void at its deadline.
    UPDATE transactions SET status = 'expired', posted_amount = 0, resolved_at = v_hold.pending_expires_at
     WHERE transaction_pk = v_hold.transaction_pk;
    UPDATE accounts SET pending_debit = pending_debit - ledger_pending_debit(v_hold.type, true, v_hold.amount),
                        pending_credit = pending_credit - ledger_pending_credit(v_hold.type, true, v_hold.amount)
     WHERE account_id = p_account_id;
    IF v_to_lots > 0 THEN
      PERFORM ledger_return_draws(p_account_id, v_hold.transaction_pk, v_hold.transaction_pk, v_to_lots, p_at);
      IF v_in_debt THEN
        PERFORM ledger_repay_debts(p_account_id, v_hold.transaction_pk, v_hold.pending_expires_at);
      END IF;
    END IF;
    v_count := v_count + 1;
  END LOOP;

  FOR v_lot IN
    SELECT * FROM lots
     WHERE account_id = p_account_id AND remaining > 0 AND expires_at <= p_at
     ORDER BY expires_at, lot_id
     FOR UPDATE
  LOOP
    UPDATE accounts SET posted = posted + ledger_posted_change('expire', v_lot.remaining), updated_at = p_at
     WHERE account_id = p_account_id RETURNING * INTO v_account;
    -- Named by its own key: a lot refilled by a refund after it expired expires again.
    v_expire_pk := nextval(pg_get_serial_sequence('transactions', 'transaction_pk'));
    INSERT INTO transactions (transaction_pk, transaction_id, balance_type, type, user_id, amount, pending, description,
                              debit_account_id, credit_account_id, balance_after, created_at, status, posted_amount)
      OVERRIDING SYSTEM VALUE
      VALUES (v_expire_pk, ledger_system_transaction_id_prefix() || 'expire:' || v_expire_pk, v_account.balance_type, 'expire',
              v_account.owner_id, v_lot.remaining, false, 'expiry of a time-limited balance',
              ledger_debit_account_id('expire', p_account_id, p_system, v_account.balance_type),
              ledger_credit_account_id('expire', p_account_id, p_system, v_account.balance_type),
              v_account.posted - v_account.pending_debit, p_at, 'posted', v_lot.remaining);
    INSERT INTO lot_draws (transaction_pk, lot_id, amount) VALUES (v_expire_pk, v_lot.lot_id, v_lot.remaining);
    UPDATE lots SET remaining = 0 WHERE lot_id = v_lot.lot_id;
    v_count := v_count + 1;
  END LOOP;

  UPDATE accounts SET next_expiry_at = least(
      (SELECT min(expires_at) FROM lots WHERE account_id = p_account_id AND remaining > 0 AND expires_at IS NOT NULL),
      (SELECT min(pending_expires_at) FROM transactions WHERE status = 'pending' AND debit_account_id = p_account_id),
      (SELECT min(pending_expires_at) FROM transactions WHERE status = 'pending' AND credit_account_id = p_account_id))
   WHERE account_id = p_account_id;
  RETURN v_count;
END $$;

-- A repeated id: a replay if every field the caller chose matches, else a conflict naming those that differ.
CREATE OR REPLACE FUNCTION ledger_replay_or_conflict(p_existing transactions, p_op jsonb) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_fields text[] := array_remove(ARRAY[
    CASE WHEN p_existing.type IS DISTINCT FROM p_op->>'type' THEN 'type' END,
    CASE WHEN p_existing.user_id IS DISTINCT FROM p_op->>'user_id' THEN 'user_id' END,
    CASE WHEN p_existing.amount IS DISTINCT FROM (p_op->>'amount')::bigint THEN 'amount' END,
    CASE WHEN p_existing.pending IS DISTINCT FROM coalesce((p_op->>'pending')::boolean, false) THEN 'pending' END,
    CASE WHEN p_existing.requested_pending_expires_at IS DISTINCT FROM (p_op->>'pending_expires_at')::timestamptz THEN 'pending_expires_at' END,
    CASE WHEN p_existing.expires_at IS DISTINCT FROM (p_op->>'expires_at')::timestamptz THEN 'expires_at' END,
    CASE WHEN p_existing.refund_of IS DISTINCT FROM p_op->>'refund_of' THEN 'refund_of' END,
    CASE WHEN p_existing.force IS DISTINCT FROM coalesce((p_op->>'force')::boolean, false) THEN 'force' END,
    CASE WHEN p_existing.description IS DISTINCT FROM p_op->>'description' THEN 'description' END,
    CASE WHEN p_existing.metadata IS DISTINCT FROM p_op->'metadata' THEN 'metadata' END
  ], NULL);
BEGIN
  IF cardinality(v_fields) > 0 THEN
    RETURN ledger_outcome('conflict', jsonb_build_object('fields', to_jsonb(v_fields)));
  END IF;
  RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(p_existing, 'created', (p_op->>'at')::timestamptz)));
END $$;

-- A refund: checks what may still be refunded, credits the user, cancels its
-- consume's own debt first and gives the rest back to the consume's lots; on
-- an account in debt, the other debts then draw from those lots.
CREATE OR REPLACE FUNCTION ledger_create_refund(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_id text := p_op->>'transaction_id';
  v_balance_type text := p_op->>'balance_type';
  v_user_id text := p_op->>'user_id';
  v_amount bigint := (p_op->>'amount')::bigint;
  v_refund_of text := p_op->>'refund_of';
  v_at timestamptz := (p_op->>'at')::timestamptz;
  v_consume transactions%ROWTYPE;
  v_account accounts%ROWTYPE;
  v_stored transactions%ROWTYPE;
  v_pk bigint;
  v_refundable bigint;
  v_to_lots bigint;
  v_in_debt boolean;
  v_into_expired bigint := 0;
BEGIN
  SELECT * INTO v_consume FROM transactions WHERE transaction_id = v_refund_of AND balance_type = v_balance_type;
  IF NOT FOUND THEN
    RETURN ledger_outcome('refund_of_not_found');
  END IF;
  IF v_consume.type <> 'consume' THEN
    RETURN ledger_outcome('not_refundable', jsonb_build_object('reason', 'refund_of names a ' || v_consume.type || ', not a consume'));
  END IF;
  IF v_consume.user_id <> v_user_id THEN
    RETURN ledger_outcome('not_refundable', jsonb_build_object('reason', 'refund_of names a consume of another user'));
  END IF;
  v_account := ledger_lock_account(v_user_id, v_balance_type, false, v_at, p_system);
  -- Re-read under the account lock: a concurrent post or void of this hold has finished.
  SELECT * INTO v_consume FROM transactions WHERE transaction_pk = v_consume.transaction_pk;
  v_refundable := CASE WHEN v_consume.status = 'posted' THEN v_consume.posted_amount ELSE 0 END
    - coalesce((SELECT sum(amount) FROM transactions WHERE refund_of = v_refund_of AND balance_type = v_balance_type), 0);
  IF v_amount > v_refundable THEN
    RETURN ledger_outcome('exceeds_refundable_amount', jsonb_build_object('refundable', v_refundable));
  END IF;
  IF NOT ledger_within_balance_max(v_account.posted + v_account.pending_credit, v_amount) THEN
    RETURN ledger_outcome('balance_limit_exceeded', jsonb_build_object('available', v_account.posted - v_account.pending_debit));
  END IF;
  v_in_debt := v_account.posted - v_account.pending_debit < 0;
  v_to_lots := v_amount - CASE WHEN v_consume.force OR v_consume.post_force THEN least(v_amount, ledger_uncovered(v_consume)) ELSE 0 END;
  -- The refund's own row comes last, once its balance_after is known; its
  -- id is taken now so that its returns can name it.
  v_pk := nextval(pg_get_serial_sequence('transactions', 'transaction_pk'));
  UPDATE accounts SET posted = posted + ledger_posted_change('refund', v_amount), updated_at = v_at WHERE account_id = v_account.account_id;
  IF v_to_lots > 0 THEN
    v_into_expired := ledger_return_draws(v_account.account_id, v_consume.transaction_pk, v_pk, v_to_lots, v_at);
  END IF;
  IF v_into_expired > 0 THEN
    PERFORM ledger_sweep_account(v_account.account_id, v_at, p_system);
  END IF;
  SELECT * INTO v_account FROM accounts WHERE account_id = v_account.account_id;
  INSERT INTO transactions (transaction_pk, transaction_id, balance_type, type, user_id, amount, pending, refund_of,
                            description, metadata, debit_account_id, credit_account_id, balance_after, created_at,
                            status, posted_amount)
    OVERRIDING SYSTEM VALUE
    VALUES (v_pk, v_id, v_balance_type, 'refund', v_user_id, v_amount, false, v_refund_of, p_op->>'description', p_op->'metadata',
            ledger_debit_account_id('refund', v_account.account_id, p_system, v_balance_type),
            ledger_credit_account_id('refund', v_account.account_id, p_system, v_balance_type),
            v_account.posted - v_account.pending_debit, v_at, 'posted', v_amount)
    RETURNING * INTO v_stored;
  -- After the refund's row: the consume's debt counts it.
  IF v_in_debt AND v_to_lots > 0 THEN
    PERFORM ledger_repay_debts(v_account.account_id, v_pk, v_at);
  END IF;
  RETURN ledger_outcome('created', jsonb_build_object('transaction', ledger_view(v_stored, 'created', v_at)));
END $$;

-- add | consume | refund, posted at once or (add, consume) as a hold; a
-- consume with force even beyond the available balance.
CREATE OR REPLACE FUNCTION ledger_create(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_id text := p_op->>'transaction_id';
  v_balance_type text := p_op->>'balance_type';
  v_type text := p_op->>'type';
  v_user_id text := p_op->>'user_id';
  v_amount bigint := (p_op->>'amount')::bigint;
  v_pending boolean := coalesce((p_op->>'pending')::boolean, false);
  v_force boolean := coalesce((p_op->>'force')::boolean, false);
  v_requested_deadline timestamptz := (p_op->>'pending_expires_at')::timestamptz;
  v_expires_at timestamptz := (p_op->>'expires_at')::timestamptz;
  v_at timestamptz := (p_op->>'at')::timestamptz;
  v_deadline timestamptz;
  v_existing transactions%ROWTYPE;
  v_account accounts%ROWTYPE;
  v_stored transactions%ROWTYPE;
  v_drawn jsonb;
BEGIN
  SELECT * INTO v_existing FROM transactions WHERE transaction_id = v_id AND balance_type = v_balance_type;
  IF FOUND THEN
    RETURN ledger_replay_or_conflict(v_existing, p_op);
  END IF;

  -- Checked only when creating: a replay long after expires_at still replays.
  IF v_expires_at IS NOT NULL AND v_expires_at <= v_at THEN
    RETURN ledger_outcome('invalid', jsonb_build_object('field', 'expires_at', 'message', 'expires_at must be in the future'));
  END IF;
  IF v_requested_deadline IS NOT NULL AND v_requested_deadline <= v_at THEN
    RETURN ledger_outcome('invalid', jsonb_build_object('field', 'pending_expires_at', 'message', 'pending_expires_at must be in the future'));
  END IF;
  -- The service refuses it first; here so that no caller can store it.
  IF v_force AND v_type <> 'consume' THEN
    RETURN ledger_outcome('invalid', jsonb_build_object('field', 'force', 'message', 'force applies to consumes only'));
  END IF;
  IF v_type = 'refund' THEN
    RETURN ledger_create_refund(p_op, p_system);
  END IF;
  -- Only an add makes a lot that may expire (the service refuses expires_at on anything else).
  IF v_type <> 'add' THEN v_expires_at := NULL; END IF;
  v_deadline := ledger_hold_deadline(v_pending, v_requested_deadline, v_at, (p_op->>'hold_timeout_ms')::bigint);

  -- Fast path, one statement: the account exists, nothing on it is due to
  -- expire, and the balance allows. Otherwise lock it (creating it for an
  -- add or a forced consume), record what is due, and check again.
  UPDATE accounts
     SET posted = posted + ledger_posted_change(v_type, ledger_created_posted_amount(v_pending, v_amount)),
         pending_debit = pending_debit + ledger_pending_debit(v_type, v_pending, v_amount),
         pending_credit = pending_credit + ledger_pending_credit(v_type, v_pending, v_amount),
         next_expiry_at = least(next_expiry_at, ledger_created_expiry(v_pending, v_deadline, v_expires_at)),
         updated_at = v_at
   WHERE owner_kind = 'user' AND owner_id = v_user_id AND balance_type = v_balance_type
     AND ledger_nothing_due(next_expiry_at, v_at)
     AND ledger_balance_allows(v_type, posted - pending_debit, posted + pending_credit, v_amount, v_force)
   RETURNING * INTO v_account;
  IF NOT FOUND THEN
    v_account := ledger_lock_account(v_user_id, v_balance_type, v_type = 'add' OR v_force, v_at, p_system);
    IF v_account.account_id IS NULL OR NOT ledger_balance_allows(v_type, v_account.posted - v_account.pending_debit,
                                                                  v_account.posted + v_account.pending_credit, v_amount, v_force) THEN
      RETURN ledger_outcome(CASE WHEN v_type = 'add' OR v_force THEN 'balance_limit_exceeded' ELSE 'insufficient_balance' END,
                            jsonb_build_object('available', coalesce(v_account.posted - v_account.pending_debit, 0)));
    END IF;
    UPDATE accounts
       SET posted = posted + ledger_posted_change(v_type, ledger_created_posted_amount(v_pending, v_amount)),
           pending_debit = pending_debit + ledger_pending_debit(v_type, v_pending, v_amount),
           pending_credit = pending_credit + ledger_pending_credit(v_type, v_pending, v_amount),
           next_expiry_at = least(next_expiry_at, ledger_created_expiry(v_pending, v_deadline, v_expires_at)),
           updated_at = v_at
     WHERE account_id = v_account.account_id
     RETURNING * INTO v_account;
  END IF;
  INSERT INTO transactions (transaction_id, balance_type, type, user_id, amount, pending, pending_expires_at,
                            requested_pending_expires_at, expires_at, description, metadata,
                            debit_account_id, credit_account_id, balance_after, created_at, status, posted_amount, force)
    VALUES (v_id, v_balance_type, v_type, v_user_id, v_amount, v_pending, v_deadline, v_requested_deadline, v_expires_at,
            p_op->>'description', p_op->'metadata',
            ledger_debit_account_id(v_type, v_account.account_id, p_system, v_balance_type),
            ledger_credit_account_id(v_type, v_account.account_id, p_system, v_balance_type),
            v_account.posted - v_account.pending_debit, v_at,
            ledger_created_status(v_pending), ledger_created_posted_amount(v_pending, v_amount), v_force)
    RETURNING * INTO v_stored;
  IF v_type = 'add' AND NOT v_pending THEN
    INSERT INTO lots (account_id, source_transaction_pk, source_transaction_id, amount, remaining, expires_at, created_at)
      VALUES (v_account.account_id, v_stored.transaction_pk, v_id, v_amount, v_amount, v_expires_at, v_at);
    -- In debt before this add: the debt is paid from it first.
    IF v_account.posted - v_account.pending_debit - v_amount < 0 THEN
      PERFORM ledger_repay_debts(v_account.account_id, v_stored.transaction_pk, v_at);
    END IF;
  ELSIF v_type = 'consume' AND v_force THEN
    -- What no lot covers is the consume's debt.
    SELECT d.drawn INTO v_drawn FROM ledger_draw_lots_up_to(v_account.account_id, v_stored.transaction_pk, v_amount, NULL, v_at) d;
  ELSIF v_type = 'consume' THEN
    v_drawn := ledger_draw_lots(v_account.account_id, v_stored.transaction_pk, v_amount);
  END IF;
  RETURN ledger_outcome('created', jsonb_build_object('transaction', ledger_view(v_stored, 'created', v_at, v_drawn)));
END $$;

-- Posts (all or part; with force, more than the hold: the difference is a
-- forced debit) or voids a hold, at most once.
CREATE OR REPLACE FUNCTION ledger_resolve(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_action text := p_op->>'kind';
  v_at timestamptz := (p_op->>'at')::timestamptz;
  v_force boolean := coalesce((p_op->>'force')::boolean, false);
  v_hold transactions%ROWTYPE;
  v_account accounts%ROWTYPE;
  v_posted_amount bigint;
  v_released bigint;
  v_to_lots bigint := 0;
  v_in_debt boolean;
  v_into_expired bigint := 0;
  v_fields text[];
BEGIN
  SELECT * INTO v_hold FROM transactions WHERE transaction_id = p_op->>'transaction_id' AND balance_type = p_op->>'balance_type';
  IF NOT FOUND THEN
    RETURN ledger_outcome('not_found');
  END IF;
  IF NOT v_hold.pending THEN
    RETURN ledger_outcome('not_pending', jsonb_build_object('status', v_hold.status));
  END IF;
  IF v_force AND v_hold.type <> 'consume' THEN
    RETURN ledger_outcome('invalid', jsonb_build_object('field', 'force', 'message', 'force applies to holds on consumes only'));
  END IF;
  v_account := ledger_lock_account_by_id(ledger_user_account_id(v_hold.type, v_hold.debit_account_id, v_hold.credit_account_id), v_at, p_system);
  SELECT * INTO v_hold FROM transactions WHERE transaction_pk = v_hold.transaction_pk;
  v_posted_amount := ledger_posted_amount(v_action, (p_op->>'amount')::bigint, v_hold.amount);

  IF v_hold.status = 'posted' THEN
    IF v_action = 'void' THEN RETURN ledger_outcome('pending_already_posted'); END IF;
    v_fields := array_remove(ARRAY[CASE WHEN v_posted_amount <> v_hold.posted_amount THEN 'amount' END,
                                   CASE WHEN v_force <> v_hold.post_force THEN 'force' END], NULL);
    IF cardinality(v_fields) > 0 THEN
      RETURN ledger_outcome('conflict', jsonb_build_object('fields', to_jsonb(v_fields), 'posted_amount', v_hold.posted_amount));
    END IF;
    RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
  ELSIF v_hold.status = 'voided' THEN
    IF v_action = 'post' THEN RETURN ledger_outcome('pending_already_voided'); END IF;
    RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
  ELSIF v_hold.status = 'expired' THEN
    RETURN ledger_outcome('pending_expired', jsonb_build_object('pending_expires_at', v_hold.pending_expires_at));
  END IF;

  IF v_posted_amount > v_hold.amount AND NOT v_force THEN
    RETURN ledger_outcome('exceeds_pending_amount', jsonb_build_object('pending_amount', v_hold.amount));
  END IF;
  IF v_posted_amount > v_hold.amount
     AND NOT ledger_balance_allows('consume', v_account.posted - v_account.pending_debit, v_account.posted + v_account.pending_credit,
                                   v_posted_amount - v_hold.amount, true) THEN
    RETURN ledger_outcome('balance_limit_exceeded', jsonb_build_object('available', v_account.posted - v_account.pending_debit));
  END IF;
  v_in_debt := v_account.posted - v_account.pending_debit < 0;
  IF v_hold.type = 'consume' THEN
    v_released := ledger_hold_released(v_hold.type, v_hold.amount, v_posted_amount);
    -- What is released cancels the hold's own debt first; the rest goes back to its lots.
    v_to_lots := greatest(v_released, 0) - CASE WHEN v_hold.force THEN least(greatest(v_released, 0), ledger_uncovered(v_hold)) ELSE 0 END;
  END IF;

  UPDATE accounts
     SET posted = posted + ledger_posted_change(v_hold.type, v_posted_amount),
         pending_debit = pending_debit - ledger_pending_debit(v_hold.type, true, v_hold.amount),
         pending_credit = pending_credit - ledger_pending_credit(v_hold.type, true, v_hold.amount),
         next_expiry_at = CASE WHEN v_hold.type = 'add' AND v_posted_amount > 0 THEN least(next_expiry_at, v_hold.expires_at) ELSE next_expiry_at END,
         updated_at = v_at
   WHERE account_id = v_account.account_id;
  IF v_hold.type = 'consume' THEN
    IF v_to_lots > 0 THEN
      v_into_expired := ledger_return_draws(v_account.account_id, v_hold.transaction_pk, v_hold.transaction_pk, v_to_lots, v_at);
    ELSIF v_released < 0 THEN
      -- Posted beyond the hold: that part draws the lots it can, as a forced consume.
      PERFORM ledger_draw_lots_up_to(v_account.account_id, v_hold.transaction_pk, -v_released, v_hold.transaction_pk, v_at);
    END IF;
  ELSIF v_posted_amount > 0 THEN
    INSERT INTO lots (account_id, source_transaction_pk, source_transaction_id, amount, remaining, expires_at, created_at)
      VALUES (v_account.account_id, v_hold.transaction_pk, v_hold.transaction_id, v_posted_amount, v_posted_amount, v_hold.expires_at, v_at);
    IF v_hold.expires_at <= v_at THEN v_into_expired := v_posted_amount; END IF;
  END IF;
  IF v_into_expired > 0 THEN
    PERFORM ledger_sweep_account(v_account.account_id, v_at, p_system);
  END IF;
  SELECT * INTO v_account FROM accounts WHERE account_id = v_account.account_id;
  UPDATE transactions
     SET status = ledger_resolved_status(v_action), posted_amount = v_posted_amount, resolved_at = v_at,
         resolved_balance_after = v_account.posted - v_account.pending_debit, post_force = v_force AND v_action = 'post'
   WHERE transaction_pk = v_hold.transaction_pk
   RETURNING * INTO v_hold;
  -- After the hold's resolution: its own debt counts it.
  IF v_in_debt AND (v_to_lots > 0 OR (v_hold.type = 'add' AND v_posted_amount > 0)) THEN
    PERFORM ledger_repay_debts(v_account.account_id, v_hold.transaction_pk, v_at);
  END IF;
  RETURN ledger_outcome('resolved', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
END $$;

-- Set-based (0004's statements): forced operations, and every operation on an
-- account in debt, are left to the one-by-one path, which pays debts first.
-- The only changes: `force` is read, and `available_before >= 0` is required.

CREATE OR REPLACE FUNCTION ledger_apply_creates_set_based(p_ops jsonb, p_system jsonb, OUT ordinals integer[], OUT answers jsonb[])
LANGUAGE plpgsql AS $$
DECLARE
  v_accounts_written bigint;
  v_accounts_applied bigint;
BEGIN
  WITH ops AS (
    SELECT o.*, ledger_hold_deadline(o.pending, o.requested_deadline, o.at, o.hold_timeout_ms) AS deadline
      FROM (
        SELECT o.ordinal::integer AS ordinal, o.op->>'kind' AS kind, o.op->>'transaction_id' AS transaction_id,
               o.op->>'balance_type' AS balance_type, o.op->>'type' AS type, o.op->>'user_id' AS user_id,
               (o.op->>'amount')::bigint AS amount, coalesce((o.op->>'pending')::boolean, false) AS pending,
               (o.op->>'pending_expires_at')::timestamptz AS requested_deadline, (o.op->>'expires_at')::timestamptz AS expires_at,
               o.op->>'refund_of' AS refund_of, o.op->>'description' AS description, o.op->'metadata' AS metadata,
               (o.op->>'at')::timestamptz AS at, (o.op->>'hold_timeout_ms')::bigint AS hold_timeout_ms,
               coalesce((o.op->>'force')::boolean, false) AS force
          FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, ordinal)) o
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
       AND NOT ops.force AND coalesce(a.posted - a.pending_debit, 0) >= 0
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
           sum(ledger_created_available_change(p.type, p.pending, p.amount)) OVER running AS change_through,
           sum(p.amount) OVER running AS through
      FROM plain p
    WINDOW account AS (PARTITION BY p.account_id), running AS (PARTITION BY p.account_id ORDER BY p.ordinal)
  ),
  in_bounds AS (
    SELECT * FROM sized
     WHERE ledger_nothing_due(next_expiry_at, at_last) AND (adds_only OR consumes_only)
       AND ledger_balance_allows(type, available_before, credits_before, total_on_account::bigint)
  ),
  -- The lots consumes draw from, in draw order, with their running total.
  lots_fefo AS (
    SELECT b.account_id, l.lot_id, l.remaining, l.expires_at, l.source_transaction_id, l.through
      FROM in_bounds b
      CROSS JOIN LATERAL (SELECT * FROM ledger_lots_to_draw(b.account_id) LIMIT b.operations_on_account + ledger_lots_fetched_extra()) l
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
  -- lots laid end to end in draw order.
  draws AS (
    SELECT c.ordinal, c.transaction_pk, f.lot_id, f.expires_at, f.source_transaction_id, f.through AS lot_through,
           least(f.through, c.through) - greatest(f.through - f.remaining, c.through - c.amount) AS amount
      FROM applied c JOIN lots_fefo f ON f.account_id = c.account_id
     WHERE c.type = 'consume' AND f.through - f.remaining < c.through AND f.through > c.through - c.amount
  ),
  -- Each consume's `lots`, and each transaction's ordinal, by key: the answers
  -- look them up rather than join (the planner cannot size these sets, and a
  -- nested loop over them costs more than the rest of the statement).
  keyed AS MATERIALIZED (
    SELECT (SELECT jsonb_object_agg(transaction_pk, lots) FROM (
              SELECT transaction_pk, jsonb_agg(ledger_lot_json(source_transaction_id, amount::bigint, expires_at) ORDER BY lot_through) AS lots
                FROM draws GROUP BY transaction_pk) listed) AS lots,
           (SELECT jsonb_object_agg(transaction_pk, ordinal) FROM applied) AS ordinals
  ),
  balances_written AS (
    UPDATE accounts a
       SET posted = a.posted + s.posted_change, pending_debit = a.pending_debit + s.pending_debit_change,
           pending_credit = a.pending_credit + s.pending_credit_change, updated_at = s.at_last,
           next_expiry_at = least(a.next_expiry_at, s.expires_first)
      FROM (SELECT account_id,
                   sum(ledger_posted_change(type, ledger_created_posted_amount(pending, amount))) AS posted_change,
                   sum(ledger_pending_debit(type, pending, amount)) AS pending_debit_change,
                   sum(ledger_pending_credit(type, pending, amount)) AS pending_credit_change,
                   max(at) AS at_last, min(ledger_created_expiry(pending, deadline, expires_at)) AS expires_first,
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
    SELECT account_id, 'user', min(user_id), min(balance_type), sum(ledger_posted_change(type, ledger_created_posted_amount(pending, amount))),
           sum(ledger_pending_debit(type, pending, amount)), sum(ledger_pending_credit(type, pending, amount)),
           min(ledger_created_expiry(pending, deadline, expires_at)), min(at), max(at)
      FROM applied WHERE new_account GROUP BY account_id
    ON CONFLICT (owner_kind, owner_id, balance_type) DO NOTHING
    RETURNING account_id
  ),
  inserted AS (
    INSERT INTO transactions AS t (transaction_pk, transaction_id, balance_type, type, user_id, amount, pending, pending_expires_at,
                                   requested_pending_expires_at, expires_at, description, metadata,
                                   debit_account_id, credit_account_id, balance_after, created_at, status, posted_amount)
      OVERRIDING SYSTEM VALUE
    SELECT transaction_pk, transaction_id, balance_type, type, user_id, amount, pending, deadline,
           requested_deadline, expires_at, description, metadata,
           ledger_debit_account_id(type, account_id, p_system, balance_type),
           ledger_credit_account_id(type, account_id, p_system, balance_type),
           available_before + change_through, at,
           ledger_created_status(pending), ledger_created_posted_amount(pending, amount)
      FROM applied ORDER BY ordinal
    RETURNING t.*
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
  -- Answered from the rows as stored, as a replay will be, in batch order
  -- (OFFSET 0: each ordinal is looked up once).
  answered AS (
    SELECT x.ordinal, jsonb_build_object('outcome', 'created', 'transaction', x.transaction, 'ordinal', x.ordinal) AS answer
      FROM (SELECT (k.ordinals ->> i.transaction_pk::text)::integer AS ordinal,
                   ledger_created_json(i::transactions, k.lots -> i.transaction_pk::text) AS transaction
              FROM inserted i CROSS JOIN keyed k OFFSET 0) x
     ORDER BY x.ordinal
  )
  SELECT coalesce(array_agg(ordinal), '{}'), coalesce(array_agg(answer), '{}'),
         (SELECT count(*) FROM balances_written) + (SELECT count(*) FROM accounts_created),
         (SELECT count(DISTINCT account_id) FROM applied)
    INTO ordinals, answers, v_accounts_written, v_accounts_applied
    FROM answered;
  IF v_accounts_written <> v_accounts_applied THEN
    RAISE EXCEPTION 'an account changed while its batch was being applied; run the batch again'
      USING ERRCODE = 'serialization_failure';
  END IF;
END $$;

-- Post and void set-wise: holds still pending and not past their deadline, on
-- accounts with nothing due, whose released value goes back to lots that have
-- not expired. Resolutions only raise available balances, so they need no
-- balance check. Same version rule as above. Skips p_done.
CREATE OR REPLACE FUNCTION ledger_apply_resolutions_set_based(p_ops jsonb, p_system jsonb, p_done integer[], OUT ordinals integer[], OUT answers jsonb[])
LANGUAGE plpgsql AS $$
DECLARE
  v_written bigint;
  v_applied bigint;
BEGIN
  WITH resolutions AS (
    SELECT o.ordinal::integer AS ordinal, o.op->>'kind' AS action, (o.op->>'at')::timestamptz AS at,
           (o.op->>'amount')::bigint AS requested_amount, coalesce((o.op->>'force')::boolean, false) AS post_force, h.*
      FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, ordinal)
      CROSS JOIN LATERAL (
        SELECT t.transaction_pk, t.ctid AS hold_version, t.type, t.amount, t.pending, t.status, t.pending_expires_at, t.expires_at, t.force,
               t.transaction_id, ledger_user_account_id(t.type, t.debit_account_id, t.credit_account_id) AS account_id
          FROM transactions t
         WHERE t.transaction_id = o.op->>'transaction_id' AND t.balance_type = o.op->>'balance_type'
         LIMIT 1) h
     WHERE o.op->>'kind' IN ('post', 'void') AND o.ordinal <> ALL (p_done)
  ),
  -- Of a hold resolved twice in the batch, the first (the other then replays or is refused).
  resolvable AS (
    SELECT * FROM (
      SELECT r.*, row_number() OVER (PARTITION BY r.transaction_pk ORDER BY r.ordinal) AS nth,
             ledger_posted_amount(r.action, r.requested_amount, r.amount) AS posted_amount
        FROM resolutions r
       WHERE r.pending AND r.status = 'pending' AND r.pending_expires_at > r.at AND NOT r.force AND NOT r.post_force
         AND ledger_posted_amount(r.action, r.requested_amount, r.amount) <= r.amount
    ) numbered
     WHERE nth = 1
  ),
  with_accounts AS MATERIALIZED (
    SELECT r.*, a.ctid AS account_version, a.posted - a.pending_debit AS available_before, a.next_expiry_at,
           ledger_hold_released(r.type, r.amount, r.posted_amount) AS released,
           max(r.at) OVER (PARTITION BY r.account_id) AS at_last
      FROM resolvable r
      CROSS JOIN LATERAL (
        SELECT ctid, posted, pending_debit, next_expiry_at FROM accounts WHERE account_id = r.account_id LIMIT 1) a
  ),
  -- The unposted part of a consume hold goes back to the lots it drew, in return order.
  returns AS MATERIALIZED (
    SELECT w.ordinal, w.account_id, w.transaction_pk, w.at, d.draw_id, d.lot_id, d.net AS drawn, d.expires_at, d.source_transaction_id, d.return_rank,
           ledger_return_share(d.net, d.net_before, w.released) AS given
      FROM with_accounts w
      CROSS JOIN LATERAL ledger_draws_to_return(w.transaction_pk) d
     WHERE w.type = 'consume'
  ),
  blocked AS MATERIALIZED (
    SELECT account_id FROM with_accounts
     WHERE NOT ledger_nothing_due(next_expiry_at, at_last) OR available_before < 0
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
                   sum(ledger_posted_change(type, posted_amount)) AS posted_change,
                   sum(ledger_pending_debit(type, true, amount)) AS pending_debit_released,
                   sum(ledger_pending_credit(type, true, amount)) AS pending_credit_released,
                   min(CASE WHEN type = 'add' AND posted_amount > 0 THEN expires_at END) AS lots_expire_first
              FROM applied GROUP BY account_id) s
      LEFT JOIN returned_expiry e USING (account_id)
     WHERE a.account_id = s.account_id AND a.ctid = s.account_version
    RETURNING a.account_id
  ),
  holds_resolved AS (
    UPDATE transactions t
       SET status = ledger_resolved_status(s.action), posted_amount = s.posted_amount,
           resolved_at = s.at, resolved_balance_after = s.available_before + s.released_through
      FROM applied s
     WHERE t.transaction_pk = s.transaction_pk AND t.ctid = s.hold_version
    RETURNING t.*
  ),
  returns_recorded AS (
    INSERT INTO lot_returns (draw_id, cause_pk, amount)
    SELECT draw_id, transaction_pk, given FROM returns_applied ORDER BY ordinal, return_rank
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
  -- Each consume hold's lots, net of what its resolution gave back (as
  -- ledger_lots_json shows them), and each hold's ordinal, by key (see above).
  keyed AS MATERIALIZED (
    SELECT (SELECT jsonb_object_agg(transaction_pk, lots) FROM (
              SELECT transaction_pk,
                     coalesce(jsonb_agg(ledger_lot_json(source_transaction_id, drawn - given, expires_at) ORDER BY draw_id)
                                FILTER (WHERE drawn - given > 0), '[]'::jsonb) AS lots
                FROM returns GROUP BY transaction_pk) kept) AS lots,
           (SELECT jsonb_object_agg(transaction_pk, ordinal) FROM applied) AS ordinals
  ),
  -- Answered from the rows as stored, as a replay will be, in batch order (see above).
  answered AS (
    SELECT x.ordinal, jsonb_build_object('outcome', 'resolved', 'transaction', x.transaction, 'ordinal', x.ordinal) AS answer
      FROM (SELECT (k.ordinals ->> h.transaction_pk::text)::integer AS ordinal,
                   ledger_resolved_json(h::transactions, k.lots -> h.transaction_pk::text) AS transaction
              FROM holds_resolved h CROSS JOIN keyed k OFFSET 0) x
     ORDER BY x.ordinal
  )
  SELECT coalesce(array_agg(ordinal), '{}'), coalesce(array_agg(answer), '{}'),
         (SELECT count(*) FROM balances_written) + (SELECT count(*) FROM holds_resolved),
         (SELECT count(DISTINCT account_id) FROM applied) + (SELECT count(*) FROM applied)
    INTO ordinals, answers, v_written, v_applied
    FROM answered;
  IF v_written <> v_applied THEN
    RAISE EXCEPTION 'an account or hold changed while its batch was being applied; run the batch again'
      USING ERRCODE = 'serialization_failure';
  END IF;
END $$;

-- A user's balance of one type as it stands at p_at, exactly (see 0004). On an
-- account in debt, a hold past its deadline and not yet recorded lets other
-- debts draw from the lots it gives back, which this read cannot do: it says
-- so (`sweep_first`), and the caller reads after recording what is due.
CREATE OR REPLACE FUNCTION ledger_balance(a accounts, p_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_lapsed_debit bigint := 0;
  v_lapsed_credit bigint := 0;
  v_expired_lots bigint := 0;
  v_released_into_expired bigint := 0;
  v_expiring jsonb := '[]'::jsonb;
BEGIN
  IF NOT ledger_nothing_due(a.next_expiry_at, p_at) AND a.posted - a.pending_debit < 0
     AND EXISTS (SELECT 1 FROM transactions WHERE status = 'pending' AND debit_account_id = a.account_id AND pending_expires_at <= p_at) THEN
    RETURN jsonb_build_object('sweep_first', a.account_id);
  END IF;
  IF NOT ledger_nothing_due(a.next_expiry_at, p_at) THEN
    SELECT coalesce(sum(amount), 0) INTO v_lapsed_debit FROM transactions
     WHERE status = 'pending' AND debit_account_id = a.account_id AND pending_expires_at <= p_at;
    SELECT coalesce(sum(amount), 0) INTO v_lapsed_credit FROM transactions
     WHERE status = 'pending' AND credit_account_id = a.account_id AND pending_expires_at <= p_at;
    SELECT coalesce(sum(remaining), 0) INTO v_expired_lots FROM lots
     WHERE account_id = a.account_id AND remaining > 0 AND expires_at <= p_at;
    -- What a lapsed hold drew goes back to its lots; into an expired lot, it is gone.
    SELECT coalesce(sum(d.amount), 0) INTO v_released_into_expired
      FROM lot_draws d JOIN lots l ON l.lot_id = d.lot_id JOIN transactions t ON t.transaction_pk = d.transaction_pk
     WHERE t.status = 'pending' AND t.debit_account_id = a.account_id AND t.pending_expires_at <= p_at AND l.expires_at <= p_at;
  END IF;
  IF a.next_expiry_at IS NOT NULL THEN
    SELECT coalesce(jsonb_agg(jsonb_build_object('amount', s.amount, 'expires_at', s.expires_at) ORDER BY s.expires_at), '[]'::jsonb)
      INTO v_expiring
      FROM (
        SELECT x.expires_at, sum(x.amount) AS amount FROM (
          SELECT expires_at, remaining AS amount FROM lots
           WHERE account_id = a.account_id AND remaining > 0 AND expires_at > p_at
          UNION ALL
          SELECT l.expires_at, d.amount
            FROM lot_draws d JOIN lots l ON l.lot_id = d.lot_id JOIN transactions t ON t.transaction_pk = d.transaction_pk
           WHERE t.status = 'pending' AND t.debit_account_id = a.account_id AND t.pending_expires_at <= p_at AND l.expires_at > p_at
        ) x
        GROUP BY x.expires_at ORDER BY x.expires_at LIMIT ledger_expiring_listed_max()
      ) s;
  END IF;
  RETURN jsonb_build_object(
    'posted', a.posted - v_expired_lots - v_released_into_expired,
    'pending_debit', a.pending_debit - v_lapsed_debit,
    'pending_credit', a.pending_credit - v_lapsed_credit,
    'available', a.posted - v_expired_lots - v_released_into_expired - (a.pending_debit - v_lapsed_debit),
    'expiring', v_expiring);
END $$;
