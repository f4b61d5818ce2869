-- Each rule of the ledger once. Migrations 0002 (one operation at a time) and
-- 0003 (a batch set-wise) wrote the same rules twice; this migration replaces
-- their functions with versions that share one small function per rule:
--
--   limits           ledger_balance_max, ledger_expiring_listed_max,
--                    ledger_system_transaction_id_prefix (the TypeScript
--                    constants of domain/limits.ts; a test checks they agree)
--   balance cap      ledger_within_balance_max, ledger_balance_allows
--   expiry due       ledger_nothing_due
--   hold deadline    ledger_hold_deadline
--   creation         ledger_created_status, ledger_created_posted_amount,
--                    ledger_created_expiry, ledger_created_available_change
--   balances         ledger_posted_change, ledger_pending_debit, ledger_pending_credit
--   accounts         ledger_debit_account_id, ledger_credit_account_id, ledger_user_account_id
--   post and void    ledger_posted_amount, ledger_resolved_status, ledger_hold_released
--   draw order       ledger_lots_to_draw (soonest-expiring first)
--   return order     ledger_draws_to_return, ledger_return_share (latest-expiring first)
--   lots shown       ledger_lot_json
--   field list       ledger_transaction_json (the only list of the API's fields),
--                    ledger_created_json, ledger_resolved_json
--
-- Small helpers are LANGUAGE sql with one expression (or one SELECT for the
-- two set-returning ones) and declared no more volatile than their bodies, so
-- that the planner inlines them: the hot path pays no function call for them.
--
-- ledger_apply is split: ledger_apply_creates_set_based, then
-- ledger_apply_resolutions_set_based, then ledger_apply_one_by_one (each
-- operation through ledger_apply_operation: ledger_create, with
-- ledger_replay_or_conflict and ledger_create_refund apart, or ledger_resolve).
-- ledger_apply_one_by_one alone is the reference the set-based parts are
-- tested against (set-based.int.test.ts).

-- Limits ----------------------------------------------------------------------

-- BALANCE_MAX: the largest balance an account may hold (Number.MAX_SAFE_INTEGER).
CREATE FUNCTION ledger_balance_max() RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 9007199254740991::bigint
$$;

-- EXPIRING_LISTED_MAX: upcoming expirations listed on a balance.
CREATE FUNCTION ledger_expiring_listed_max() RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 20
$$;

-- SYSTEM_TRANSACTION_ID_PREFIX: ids of the ledger's own transactions start with it.
CREATE FUNCTION ledger_system_transaction_id_prefix() RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 'sys:'::text
$$;

-- Whether p_amount more keeps credits (posted + pending_credit) within the cap.
-- Written as a subtraction so that it cannot overflow.
CREATE FUNCTION ledger_within_balance_max(p_credits bigint, p_amount bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_credits <= ledger_balance_max() - p_amount
$$;

-- The stored balances obey the same cap (this constraint spelled the literal three times).
ALTER TABLE accounts DROP CONSTRAINT user_balances_in_range,
  ADD CONSTRAINT user_balances_in_range CHECK (
    posted >= 0 AND pending_debit BETWEEN 0 AND posted AND pending_credit >= 0
    AND ledger_within_balance_max(posted, pending_credit));

-- Whether an account can take an add (the cap) or a consume (the available
-- balance) of p_amount, posted or held.
CREATE FUNCTION ledger_balance_allows(p_type text, p_available bigint, p_credits bigint, p_amount bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_type = 'add' THEN ledger_within_balance_max(p_credits, p_amount) ELSE p_available >= p_amount END
$$;

-- Nothing on an account is due to expire at p_at: no sweep needed before writing it.
CREATE FUNCTION ledger_nothing_due(p_next_expiry_at timestamptz, p_at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_next_expiry_at IS NULL OR p_next_expiry_at > p_at
$$;

-- Creation ----------------------------------------------------------------------

-- When a hold times out: as asked, else after the service's default timeout.
-- STABLE, as timestamptz + interval is.
CREATE FUNCTION ledger_hold_deadline(p_pending boolean, p_requested timestamptz, p_at timestamptz, p_hold_timeout_ms bigint)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_pending THEN coalesce(p_requested, p_at + make_interval(secs => p_hold_timeout_ms / 1000.0)) END
$$;

CREATE FUNCTION ledger_created_status(p_pending boolean) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_pending THEN 'pending' ELSE 'posted' END
$$;

CREATE FUNCTION ledger_created_posted_amount(p_pending boolean, p_amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_pending THEN NULL ELSE p_amount END
$$;

-- The instant a new transaction adds to its account's next_expiry_at: a hold's deadline, a lot's expiry.
CREATE FUNCTION ledger_created_expiry(p_pending boolean, p_deadline timestamptz, p_expires_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_pending THEN p_deadline ELSE p_expires_at END
$$;

-- Balances ---------------------------------------------------------------------

-- What p_posted_amount of a transaction of p_type does to its user's posted balance.
CREATE FUNCTION ledger_posted_change(p_type text, p_posted_amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_type IN ('add', 'refund') THEN coalesce(p_posted_amount, 0) ELSE -coalesce(p_posted_amount, 0) END
$$;

-- What a hold reserves while pending: a consume hold from pending_debit, an add hold in pending_credit.
CREATE FUNCTION ledger_pending_debit(p_type text, p_pending boolean, p_amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_pending AND p_type = 'consume' THEN p_amount ELSE 0 END
$$;

CREATE FUNCTION ledger_pending_credit(p_type text, p_pending boolean, p_amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_pending AND p_type = 'add' THEN p_amount ELSE 0 END
$$;

-- What creating a transaction changes of its user's available balance (posted - pending_debit).
CREATE FUNCTION ledger_created_available_change(p_type text, p_pending boolean, p_amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ledger_posted_change(p_type, ledger_created_posted_amount(p_pending, p_amount)) - ledger_pending_debit(p_type, p_pending, p_amount)
$$;

-- Accounts: a consume or expiry debits the user, an add or refund credits it;
-- the other side is the balance type's system account for that type.
CREATE FUNCTION ledger_debit_account_id(p_type text, p_user_account_id bigint, p_system jsonb, p_balance_type text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE p_type WHEN 'consume' THEN p_user_account_id WHEN 'expire' THEN p_user_account_id
                     ELSE ledger_system_account(p_system, CASE p_type WHEN 'add' THEN 'issuance' ELSE 'redemption' END, p_balance_type) END
$$;

CREATE FUNCTION ledger_credit_account_id(p_type text, p_user_account_id bigint, p_system jsonb, p_balance_type text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE p_type WHEN 'add' THEN p_user_account_id WHEN 'refund' THEN p_user_account_id
                     ELSE ledger_system_account(p_system, CASE p_type WHEN 'expire' THEN 'expiry' ELSE 'redemption' END, p_balance_type) END
$$;

CREATE FUNCTION ledger_user_account_id(p_type text, p_debit_account_id bigint, p_credit_account_id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_type IN ('consume', 'expire') THEN p_debit_account_id ELSE p_credit_account_id END
$$;

-- Post and void -----------------------------------------------------------------

-- What a post (all, or the amount asked) or a void (nothing) posts of a hold.
CREATE FUNCTION ledger_posted_amount(p_action text, p_requested bigint, p_hold_amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_action = 'void' THEN 0 ELSE coalesce(p_requested, p_hold_amount) END
$$;

CREATE FUNCTION ledger_resolved_status(p_action text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_action = 'post' THEN 'posted' ELSE 'voided' END
$$;

-- What resolving a hold gives back to the available balance: a consume hold
-- its unposted part (returned to its lots), an add hold what is posted.
CREATE FUNCTION ledger_hold_released(p_type text, p_amount bigint, p_posted_amount bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_type = 'consume' THEN p_amount - p_posted_amount ELSE p_posted_amount END
$$;

-- Lots --------------------------------------------------------------------------

-- An account's lots with value left, in the order consumes draw them: soonest-
-- expiring first, then lots without expiry, ties by creation; `through` is the
-- running total. Read in index order (lots_fefo), so LIMIT stops early.
CREATE FUNCTION ledger_lots_to_draw(p_account_id bigint)
RETURNS TABLE (lot_id bigint, remaining bigint, expires_at timestamptz, source_transaction_id text, through numeric)
LANGUAGE sql STABLE AS $$
  SELECT l.lot_id, l.remaining, l.expires_at, l.source_transaction_id,
         sum(l.remaining) OVER (ORDER BY l.expires_at NULLS LAST, l.lot_id ROWS UNBOUNDED PRECEDING)
    FROM lots l
   WHERE l.account_id = p_account_id AND l.remaining > 0
   ORDER BY l.expires_at NULLS LAST, l.lot_id
$$;

-- What a transaction drew, net of what was given back, in the order value goes
-- back to lots: latest-expiring first, so what stays consumed is what expires
-- soonest. `net_before` is the net of the draws before this one in that
-- order, `return_rank` their number (one window: one sort per call).
CREATE FUNCTION ledger_draws_to_return(p_drawn_pk bigint)
RETURNS TABLE (draw_id bigint, lot_id bigint, expires_at timestamptz, source_transaction_id text, net bigint, net_before numeric, return_rank bigint)
LANGUAGE sql STABLE AS $$
  SELECT d.draw_id, d.lot_id, l.expires_at, l.source_transaction_id, d.amount - r.returned,
         coalesce(sum(d.amount - r.returned) OVER back, 0),
         count(*) OVER back
    FROM lot_draws d
    JOIN lots l ON l.lot_id = d.lot_id
    -- Lateral, so that the sum is taken once per draw.
    CROSS JOIN LATERAL (SELECT coalesce(sum(x.amount), 0)::bigint AS returned FROM lot_returns x WHERE x.draw_id = d.draw_id) r
   WHERE d.transaction_pk = p_drawn_pk
  WINDOW back AS (ORDER BY l.expires_at DESC NULLS FIRST, d.lot_id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
   ORDER BY l.expires_at DESC NULLS FIRST, d.lot_id DESC
$$;

-- What a draw gives back when p_to_return goes back in return order.
CREATE FUNCTION ledger_return_share(p_net bigint, p_net_before numeric, p_to_return bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT greatest(0, least(p_net, p_to_return - p_net_before))::bigint
$$;

-- One entry of a transaction's `lots`.
CREATE FUNCTION ledger_lot_json(p_source_transaction_id text, p_amount bigint, p_expires_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object('source_transaction_id', p_source_transaction_id, 'amount', p_amount, 'expires_at', p_expires_at)
$$;

-- The lots a transaction drew from (net of what its own resolution gave
-- back), or a refund returned to, in the order they were recorded.
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
        ) x)
    ELSE NULL END
$$;

-- The API's fields ----------------------------------------------------------------

-- A transaction as the API shows it: its stored row, with what the snapshot
-- shown decides. The only list of the API's fields in SQL.
DROP FUNCTION ledger_transaction_json(text, text, text, text, bigint, text, boolean, bigint, timestamptz, timestamptz,
                                      timestamptz, text, jsonb, text, jsonb, bigint, timestamptz);
CREATE FUNCTION ledger_transaction_json(t transactions, p_status text, p_posted_amount bigint, p_resolved_at timestamptz,
                                        p_lots jsonb, p_balance_after bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'transaction_id', t.transaction_id, 'type', t.type, 'user_id', t.user_id, 'balance_type', t.balance_type,
    'amount', t.amount, 'status', p_status, 'pending', t.pending, 'posted_amount', p_posted_amount,
    'pending_expires_at', t.pending_expires_at, 'resolved_at', p_resolved_at, 'expires_at', t.expires_at,
    'refund_of', t.refund_of, 'lots', p_lots, 'description', t.description, 'metadata', t.metadata,
    'balance_after', p_balance_after, 'created_at', t.created_at)
$$;

-- As first answered: what a replay of the creating request returns.
CREATE FUNCTION ledger_created_json(t transactions, p_lots jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT ledger_transaction_json(t, ledger_created_status(t.pending), ledger_created_posted_amount(t.pending, t.amount), NULL, p_lots, t.balance_after)
$$;

-- As it stands (resolved or not).
CREATE FUNCTION ledger_resolved_json(t transactions, p_lots jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT ledger_transaction_json(t, t.status, t.posted_amount, t.resolved_at, p_lots, coalesce(t.resolved_balance_after, t.balance_after))
$$;

-- `created`: as first answered; `resolved`: as its post or void answered;
-- `current`: as it stands at p_at (a hold past its deadline shows as expired
-- even before the sweeper records it).
CREATE OR REPLACE FUNCTION ledger_view(t transactions, p_snapshot text, p_at timestamptz, p_lots jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF p_snapshot = 'created' THEN
    -- A fresh consume passes the lots it just drew: no need to read them back.
    RETURN ledger_created_json(t, coalesce(p_lots, ledger_lots_json(t.transaction_pk, t.type, false)));
  ELSIF p_snapshot = 'current' AND t.status = 'pending' AND t.pending_expires_at <= p_at THEN
    RETURN ledger_transaction_json(t, 'expired', 0, t.pending_expires_at, CASE WHEN t.type = 'consume' THEN '[]'::jsonb END,
                                   coalesce(t.resolved_balance_after, t.balance_after));
  END IF;
  RETURN ledger_resolved_json(t, ledger_lots_json(t.transaction_pk, t.type, true));
END $$;

-- Append-only checks name only what may change, not every other column twice.
CREATE OR REPLACE FUNCTION ledger_check_resolution() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_unchanged transactions;
BEGIN
  v_unchanged := NEW;
  v_unchanged.status := OLD.status;
  v_unchanged.posted_amount := OLD.posted_amount;
  v_unchanged.resolved_at := OLD.resolved_at;
  v_unchanged.resolved_balance_after := OLD.resolved_balance_after;
  IF OLD.status <> 'pending' OR NEW.status = 'pending' OR v_unchanged IS DISTINCT FROM OLD THEN
    RAISE EXCEPTION 'the ledger is append-only: only a pending hold may be resolved, once'
      USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION ledger_check_lot_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_unchanged lots;
BEGIN
  v_unchanged := NEW;
  v_unchanged.remaining := OLD.remaining;
  IF v_unchanged IS DISTINCT FROM OLD THEN
    RAISE EXCEPTION 'the ledger is append-only: only remaining may change on a lot' USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$;

-- One by one (0002's functions, on the shared rules) -----------------------------

-- Draws p_amount from the account's lots in draw order and returns them as the
-- response's `lots`. The caller has locked the account and checked its
-- balance. One lot per query: a consume usually needs one lot.
CREATE OR REPLACE FUNCTION ledger_draw_lots(p_account_id bigint, p_transaction_pk bigint, p_amount bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_left bigint := p_amount;
  v_take bigint;
  v_drawn jsonb := '[]'::jsonb;
  l record;
BEGIN
  WHILE v_left > 0 LOOP
    SELECT f.lot_id, f.remaining, f.expires_at, f.source_transaction_id INTO l FROM ledger_lots_to_draw(p_account_id) f LIMIT 1;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'ledger invariant broken: lots of account % short by % for transaction %', p_account_id, v_left, p_transaction_pk;
    END IF;
    v_take := least(l.remaining, v_left);
    INSERT INTO lot_draws (transaction_pk, lot_id, amount) VALUES (p_transaction_pk, l.lot_id, v_take);
    UPDATE lots SET remaining = remaining - v_take WHERE lot_id = l.lot_id;
    v_drawn := v_drawn || ledger_lot_json(l.source_transaction_id, v_take, l.expires_at);
    v_left := v_left - v_take;
  END LOOP;
  RETURN v_drawn;
END $$;

-- Gives back p_amount of what p_drawn_pk drew, to the same lots, in return
-- order. Returns how much went back into lots already expired at p_at.
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
    UPDATE lots l SET remaining = l.remaining + g.amount FROM given g WHERE l.lot_id = g.lot_id AND g.amount > 0
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

-- Expires what is due on one (locked) user account at p_at: holds past their
-- deadline, then lots past expires_at. Idempotent: a second call finds nothing.
CREATE OR REPLACE FUNCTION ledger_sweep_account(p_account_id bigint, p_at timestamptz, p_system jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_account accounts%ROWTYPE;
  v_hold transactions%ROWTYPE;
  v_lot lots%ROWTYPE;
  v_expire_pk bigint;
  v_count integer := 0;
BEGIN
  FOR v_hold IN
    SELECT * FROM transactions
     WHERE status = 'pending' AND pending_expires_at <= p_at
       AND (debit_account_id = p_account_id OR credit_account_id = p_account_id)
     ORDER BY pending_expires_at, transaction_pk
  LOOP
    -- An expired hold is a void at its deadline.
    UPDATE transactions SET status = 'expired', posted_amount = 0, resolved_at = v_hold.pending_expires_at
     WHERE transaction_pk = v_hold.transaction_pk;
    UPDATE accounts SET pending_debit = pending_debit - ledger_pending_debit(v_hold.type, true, v_hold.amount),
                        pending_credit = pending_credit - ledger_pending_credit(v_hold.type, true, v_hold.amount)
     WHERE account_id = p_account_id;
    IF v_hold.type = 'consume' THEN
      PERFORM ledger_return_draws(p_account_id, v_hold.transaction_pk, v_hold.transaction_pk,
                                  ledger_hold_released(v_hold.type, v_hold.amount, 0), p_at);
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

-- Locks a user's account (creating it if asked) and sweeps it if due.
CREATE OR REPLACE FUNCTION ledger_lock_account(p_user_id text, p_balance_type text, p_create boolean, p_at timestamptz, p_system jsonb)
RETURNS accounts LANGUAGE plpgsql AS $$
DECLARE
  v_account accounts%ROWTYPE;
BEGIN
  SELECT * INTO v_account FROM accounts
   WHERE owner_kind = 'user' AND owner_id = p_user_id AND balance_type = p_balance_type FOR UPDATE;
  IF NOT FOUND THEN
    IF NOT p_create THEN RETURN NULL; END IF;
    INSERT INTO accounts (owner_kind, owner_id, balance_type, posted, pending_debit, pending_credit, created_at, updated_at)
      VALUES ('user', p_user_id, p_balance_type, 0, 0, 0, p_at, p_at)
      ON CONFLICT (owner_kind, owner_id, balance_type) DO NOTHING;
    SELECT * INTO v_account FROM accounts
     WHERE owner_kind = 'user' AND owner_id = p_user_id AND balance_type = p_balance_type FOR UPDATE;
  END IF;
  IF NOT ledger_nothing_due(v_account.next_expiry_at, p_at) THEN
    PERFORM ledger_sweep_account(v_account.account_id, p_at, p_system);
    SELECT * INTO v_account FROM accounts WHERE account_id = v_account.account_id;
  END IF;
  RETURN v_account;
END $$;

CREATE OR REPLACE FUNCTION ledger_lock_account_by_id(p_account_id bigint, p_at timestamptz, p_system jsonb) RETURNS accounts
LANGUAGE plpgsql AS $$
DECLARE
  v_account accounts%ROWTYPE;
BEGIN
  SELECT * INTO v_account FROM accounts WHERE account_id = p_account_id FOR UPDATE;
  IF NOT ledger_nothing_due(v_account.next_expiry_at, p_at) THEN
    PERFORM ledger_sweep_account(p_account_id, p_at, p_system);
    SELECT * INTO v_account FROM accounts WHERE account_id = p_account_id;
  END IF;
  RETURN v_account;
END $$;

-- A repeated id: a replay if every field the caller chose matches, else a conflict naming those that differ.
CREATE FUNCTION ledger_replay_or_conflict(p_existing transactions, p_op jsonb) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_fields text[] := array_remove(ARRAY[
    CASE WHEN p_existing.type IS DISTINCT FROM p_op->>'type' THEN 'type' END,
    CASE WHEN p_existing.user_id IS DISTINCT FROM p_op->>'user_id' THEN 'user_id' END,
    CASE WHEN p_existing.amount IS DISTINCT FROM (p_op->>'amount')::bigint THEN 'amount' END,
    CASE WHEN p_existing.pending IS DISTINCT FROM coalesce((p_op->>'pending')::boolean, false) THEN 'pending' END,
    CASE WHEN p_existing.requested_pending_expires_at IS DISTINCT FROM (p_op->>'pending_expires_at')::timestamptz THEN 'pending_expires_at' END,
    CASE WHEN p_existing.expires_at IS DISTINCT FROM (p_op->>'expires_at')::timestamptz THEN 'expires_at' END,
    CASE WHEN p_existing.refund_of IS DISTINCT FROM p_op->>'refund_of' THEN 'refund_of' END,
    CASE WHEN p_existing.description IS DISTINCT FROM p_op->>'description' THEN 'description' END,
    CASE WHEN p_existing.metadata IS DISTINCT FROM p_op->'metadata' THEN 'metadata' END
  ], NULL);
BEGIN
  IF cardinality(v_fields) > 0 THEN
    RETURN ledger_outcome('conflict', jsonb_build_object('fields', to_jsonb(v_fields)));
  END IF;
  RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(p_existing, 'created', (p_op->>'at')::timestamptz)));
END $$;

-- A refund: checks what may still be refunded, credits the user, gives the
-- value back to the consume's lots.
CREATE FUNCTION ledger_create_refund(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
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
  v_into_expired bigint;
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
  -- The refund's own row comes last, once its balance_after is known; its
  -- id is taken now so that its returns can name it.
  v_pk := nextval(pg_get_serial_sequence('transactions', 'transaction_pk'));
  UPDATE accounts SET posted = posted + ledger_posted_change('refund', v_amount), updated_at = v_at WHERE account_id = v_account.account_id;
  v_into_expired := ledger_return_draws(v_account.account_id, v_consume.transaction_pk, v_pk, v_amount, v_at);
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
  RETURN ledger_outcome('created', jsonb_build_object('transaction', ledger_view(v_stored, 'created', v_at)));
END $$;

-- add | consume | refund, posted at once or (add, consume) as a hold.
CREATE OR REPLACE FUNCTION ledger_create(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_id text := p_op->>'transaction_id';
  v_balance_type text := p_op->>'balance_type';
  v_type text := p_op->>'type';
  v_user_id text := p_op->>'user_id';
  v_amount bigint := (p_op->>'amount')::bigint;
  v_pending boolean := coalesce((p_op->>'pending')::boolean, false);
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
  IF v_type = 'refund' THEN
    RETURN ledger_create_refund(p_op, p_system);
  END IF;
  -- Only an add makes a lot that may expire (the service refuses expires_at on anything else).
  IF v_type <> 'add' THEN v_expires_at := NULL; END IF;
  v_deadline := ledger_hold_deadline(v_pending, v_requested_deadline, v_at, (p_op->>'hold_timeout_ms')::bigint);

  -- Fast path, one statement: the account exists, nothing on it is due to
  -- expire, and the balance allows. Otherwise lock it (creating it for an
  -- add), record what is due, and check again.
  UPDATE accounts
     SET posted = posted + ledger_posted_change(v_type, ledger_created_posted_amount(v_pending, v_amount)),
         pending_debit = pending_debit + ledger_pending_debit(v_type, v_pending, v_amount),
         pending_credit = pending_credit + ledger_pending_credit(v_type, v_pending, v_amount),
         next_expiry_at = least(next_expiry_at, ledger_created_expiry(v_pending, v_deadline, v_expires_at)),
         updated_at = v_at
   WHERE owner_kind = 'user' AND owner_id = v_user_id AND balance_type = v_balance_type
     AND ledger_nothing_due(next_expiry_at, v_at)
     AND ledger_balance_allows(v_type, posted - pending_debit, posted + pending_credit, v_amount)
   RETURNING * INTO v_account;
  IF NOT FOUND THEN
    v_account := ledger_lock_account(v_user_id, v_balance_type, v_type = 'add', v_at, p_system);
    IF v_account.account_id IS NULL OR NOT ledger_balance_allows(v_type, v_account.posted - v_account.pending_debit,
                                                                  v_account.posted + v_account.pending_credit, v_amount) THEN
      RETURN ledger_outcome(CASE WHEN v_type = 'add' THEN 'balance_limit_exceeded' ELSE 'insufficient_balance' END,
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
                            debit_account_id, credit_account_id, balance_after, created_at, status, posted_amount)
    VALUES (v_id, v_balance_type, v_type, v_user_id, v_amount, v_pending, v_deadline, v_requested_deadline, v_expires_at,
            p_op->>'description', p_op->'metadata',
            ledger_debit_account_id(v_type, v_account.account_id, p_system, v_balance_type),
            ledger_credit_account_id(v_type, v_account.account_id, p_system, v_balance_type),
            v_account.posted - v_account.pending_debit, v_at,
            ledger_created_status(v_pending), ledger_created_posted_amount(v_pending, v_amount))
    RETURNING * INTO v_stored;
  IF v_type = 'add' AND NOT v_pending THEN
    INSERT INTO lots (account_id, source_transaction_pk, source_transaction_id, amount, remaining, expires_at, created_at)
      VALUES (v_account.account_id, v_stored.transaction_pk, v_id, v_amount, v_amount, v_expires_at, v_at);
  ELSIF v_type = 'consume' THEN
    v_drawn := ledger_draw_lots(v_account.account_id, v_stored.transaction_pk, v_amount);
  END IF;
  RETURN ledger_outcome('created', jsonb_build_object('transaction', ledger_view(v_stored, 'created', v_at, v_drawn)));
END $$;

-- Posts (all or part) or voids a hold, at most once.
CREATE OR REPLACE FUNCTION ledger_resolve(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_action text := p_op->>'kind';
  v_at timestamptz := (p_op->>'at')::timestamptz;
  v_hold transactions%ROWTYPE;
  v_account accounts%ROWTYPE;
  v_posted_amount bigint;
  v_into_expired bigint := 0;
BEGIN
  SELECT * INTO v_hold FROM transactions WHERE transaction_id = p_op->>'transaction_id' AND balance_type = p_op->>'balance_type';
  IF NOT FOUND THEN
    RETURN ledger_outcome('not_found');
  END IF;
  IF NOT v_hold.pending THEN
    RETURN ledger_outcome('not_pending', jsonb_build_object('status', v_hold.status));
  END IF;
  v_account := ledger_lock_account_by_id(ledger_user_account_id(v_hold.type, v_hold.debit_account_id, v_hold.credit_account_id), v_at, p_system);
  SELECT * INTO v_hold FROM transactions WHERE transaction_pk = v_hold.transaction_pk;
  v_posted_amount := ledger_posted_amount(v_action, (p_op->>'amount')::bigint, v_hold.amount);

  IF v_hold.status = 'posted' THEN
    IF v_action = 'void' THEN RETURN ledger_outcome('pending_already_posted'); END IF;
    IF v_posted_amount <> v_hold.posted_amount THEN
      RETURN ledger_outcome('conflict', jsonb_build_object('fields', jsonb_build_array('amount'), 'posted_amount', v_hold.posted_amount));
    END IF;
    RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
  ELSIF v_hold.status = 'voided' THEN
    IF v_action = 'post' THEN RETURN ledger_outcome('pending_already_voided'); END IF;
    RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
  ELSIF v_hold.status = 'expired' THEN
    RETURN ledger_outcome('pending_expired', jsonb_build_object('pending_expires_at', v_hold.pending_expires_at));
  END IF;

  IF v_posted_amount > v_hold.amount THEN
    RETURN ledger_outcome('exceeds_pending_amount', jsonb_build_object('pending_amount', v_hold.amount));
  END IF;

  UPDATE accounts
     SET posted = posted + ledger_posted_change(v_hold.type, v_posted_amount),
         pending_debit = pending_debit - ledger_pending_debit(v_hold.type, true, v_hold.amount),
         pending_credit = pending_credit - ledger_pending_credit(v_hold.type, true, v_hold.amount),
         next_expiry_at = CASE WHEN v_hold.type = 'add' AND v_posted_amount > 0 THEN least(next_expiry_at, v_hold.expires_at) ELSE next_expiry_at END,
         updated_at = v_at
   WHERE account_id = v_account.account_id;
  IF v_hold.type = 'consume' THEN
    IF ledger_hold_released(v_hold.type, v_hold.amount, v_posted_amount) > 0 THEN
      v_into_expired := ledger_return_draws(v_account.account_id, v_hold.transaction_pk, v_hold.transaction_pk,
                                            ledger_hold_released(v_hold.type, v_hold.amount, v_posted_amount), v_at);
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
         resolved_balance_after = v_account.posted - v_account.pending_debit
   WHERE transaction_pk = v_hold.transaction_pk
   RETURNING * INTO v_hold;
  RETURN ledger_outcome('resolved', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
END $$;

-- One operation of a batch, on its own.
CREATE FUNCTION ledger_apply_operation(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_account accounts%ROWTYPE;
BEGIN
  CASE p_op->>'kind'
    WHEN 'create' THEN RETURN ledger_create(p_op, p_system);
    WHEN 'post', 'void' THEN RETURN ledger_resolve(p_op, p_system);
    WHEN 'sweep' THEN
      v_account := ledger_lock_account_by_id((p_op->>'account_id')::bigint, (p_op->>'at')::timestamptz, p_system);
      RETURN ledger_outcome('swept');
    ELSE RAISE EXCEPTION 'unknown ledger operation %', p_op->>'kind';
  END CASE;
END $$;

-- The operations of a batch not in p_done, one by one in batch order. Also
-- callable alone: it is the reference the set-based parts are tested against.
CREATE FUNCTION ledger_apply_one_by_one(p_ops jsonb, p_system jsonb, p_done integer[] DEFAULT '{}')
RETURNS SETOF jsonb LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
  v_op jsonb;
  v_ordinal integer;
BEGIN
  FOR v_op, v_ordinal IN
    SELECT o.op, o.ordinal FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, ordinal)
     WHERE o.ordinal <> ALL (p_done)
     ORDER BY o.ordinal
  LOOP
    RETURN NEXT ledger_apply_operation(v_op, p_system) || jsonb_build_object('ordinal', v_ordinal);
  END LOOP;
END $$;

-- Set-based (0003's statements, on the shared rules) ------------------------------

-- Creates of new ids set-wise: see 0003 for why reordering is safe and how a
-- balance is written only if its row is still the version read. Returns the
-- ordinals it answered (in batch order, the serial order it applied them in)
-- and their answers.
CREATE FUNCTION ledger_apply_creates_set_based(p_ops jsonb, p_system jsonb, OUT ordinals integer[], OUT answers jsonb[])
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
               (o.op->>'at')::timestamptz AS at, (o.op->>'hold_timeout_ms')::bigint AS hold_timeout_ms
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
CREATE FUNCTION ledger_apply_resolutions_set_based(p_ops jsonb, p_system jsonb, p_done integer[], OUT ordinals integer[], OUT answers jsonb[])
LANGUAGE plpgsql AS $$
DECLARE
  v_written bigint;
  v_applied bigint;
BEGIN
  WITH resolutions AS (
    SELECT o.ordinal::integer AS ordinal, o.op->>'kind' AS action, (o.op->>'at')::timestamptz AS at,
           (o.op->>'amount')::bigint AS requested_amount, h.*
      FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS o(op, ordinal)
      CROSS JOIN LATERAL (
        SELECT t.transaction_pk, t.ctid AS hold_version, t.type, t.amount, t.pending, t.status, t.pending_expires_at, t.expires_at,
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
       WHERE r.pending AND r.status = 'pending' AND r.pending_expires_at > r.at
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
     WHERE NOT ledger_nothing_due(next_expiry_at, at_last)
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

-- A batch: what can be applied set-wise first (creates, then posts and voids),
-- then the rest one by one, in batch order. Outcomes come in the serial order
-- the batch was applied in; each names its operation's ordinal.
CREATE OR REPLACE FUNCTION ledger_apply(p_ops jsonb, p_system jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql
-- Each pooled connection caches a generic plan for these statements, made
-- with the statistics of the moment; a plan made while a table was small
-- must not scan it whole once it is large. Every lookup here has an index.
SET enable_seqscan = off AS $$
DECLARE
  v_done integer[];
  v_answers jsonb[];
  v_count integer := jsonb_array_length(p_ops);
BEGIN
  SELECT s.ordinals, s.answers INTO v_done, v_answers FROM ledger_apply_creates_set_based(p_ops, p_system) s;
  RETURN QUERY SELECT unnest(v_answers);
  IF cardinality(v_done) = v_count THEN
    RETURN;
  END IF;
  IF jsonb_path_exists(p_ops, '$[*] ? (@.kind == "post" || @.kind == "void")') THEN
    SELECT v_done || s.ordinals, s.answers INTO v_done, v_answers FROM ledger_apply_resolutions_set_based(p_ops, p_system, v_done) s;
    RETURN QUERY SELECT unnest(v_answers);
  END IF;
  IF cardinality(v_done) < v_count THEN
    RETURN QUERY SELECT * FROM ledger_apply_one_by_one(p_ops, p_system, v_done);
  END IF;
END $$;

-- A user's balance of one type as it stands at p_at, exactly: holds past their
-- deadline count as voided and lots past expires_at as expired, whether or not
-- the sweeper has recorded them yet.
CREATE OR REPLACE FUNCTION ledger_balance(a accounts, p_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_lapsed_debit bigint := 0;
  v_lapsed_credit bigint := 0;
  v_expired_lots bigint := 0;
  v_released_into_expired bigint := 0;
  v_expiring jsonb := '[]'::jsonb;
BEGIN
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
