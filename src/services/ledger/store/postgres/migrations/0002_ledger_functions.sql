-- The ledger's write path: one function call applies a batch of operations
-- in one database transaction (group commit). Each operation returns one
-- outcome; rejections change nothing, so only successes are stored.
--
-- Every operation on a user's balances first locks that user's account row,
-- then (if due) sweeps it: holds past their deadline become `expired`, and
-- lots past `expires_at` are expired by an `expire` transaction. So an expired
-- hold or lot never counts, whether or not the background sweeper has run.

-- System account ids come with each batch ({"points": {"issuance": 1, ...}}),
-- read once by the service at start-up, instead of one lookup per operation.
CREATE FUNCTION ledger_system_account(p_system jsonb, p_owner_id text, p_balance_type text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
  SELECT (p_system -> p_balance_type ->> p_owner_id)::bigint
$$;

-- The lots a transaction drew from, net of what its own resolution gave back.
CREATE FUNCTION ledger_lots_json(p_transaction_pk bigint, p_type text, p_net boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN p_type = 'refund' THEN (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
               'source_transaction_id', l.source_transaction_id, 'amount', r.amount, 'expires_at', l.expires_at) ORDER BY r.return_id), '[]'::jsonb)
        FROM lot_returns r JOIN lot_draws d USING (draw_id) JOIN lots l ON l.lot_id = d.lot_id
       WHERE r.cause_pk = p_transaction_pk)
    WHEN p_type IN ('consume', 'expire') THEN (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
               'source_transaction_id', x.source_id, 'amount', x.net, 'expires_at', x.expires_at) ORDER BY x.draw_id), '[]'::jsonb)
        FROM (
          SELECT d.draw_id, l.source_transaction_id AS source_id, l.expires_at,
                 d.amount - CASE WHEN p_net THEN coalesce((SELECT sum(r.amount) FROM lot_returns r
                                                          WHERE r.draw_id = d.draw_id AND r.cause_pk = p_transaction_pk), 0)
                                 ELSE 0 END AS net
            FROM lot_draws d JOIN lots l ON l.lot_id = d.lot_id
           WHERE d.transaction_pk = p_transaction_pk
        ) x
       WHERE x.net > 0)
    ELSE NULL END
$$;

-- A transaction as the API shows it. `created`: as first answered (what a
-- replay of the creating request returns); `resolved`: as its post or void
-- answered; `current`: as it stands at p_at (a hold past its deadline shows
-- as expired even before the sweeper records it).
CREATE FUNCTION ledger_view(t transactions, p_snapshot text, p_at timestamptz, p_lots jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_status text := t.status;
  v_posted_amount bigint := t.posted_amount;
  v_resolved_at timestamptz := t.resolved_at;
  v_balance_after bigint := coalesce(t.resolved_balance_after, t.balance_after);
  v_lots jsonb;
BEGIN
  IF p_snapshot = 'created' THEN
    v_status := CASE WHEN t.pending THEN 'pending' ELSE 'posted' END;
    v_posted_amount := CASE WHEN t.pending THEN NULL ELSE t.amount END;
    v_resolved_at := NULL;
    v_balance_after := t.balance_after;
    -- A fresh consume passes the lots it just drew: no need to read them back.
    v_lots := coalesce(p_lots, ledger_lots_json(t.transaction_pk, t.type, false));
  ELSIF p_snapshot = 'current' AND t.status = 'pending' AND t.pending_expires_at <= p_at THEN
    v_status := 'expired';
    v_posted_amount := 0;
    v_resolved_at := t.pending_expires_at;
    v_lots := CASE WHEN t.type = 'consume' THEN '[]'::jsonb END;
  ELSE
    v_lots := ledger_lots_json(t.transaction_pk, t.type, true);
  END IF;
  RETURN jsonb_build_object(
    'transaction_id', t.transaction_id, 'type', t.type, 'user_id', t.user_id, 'balance_type', t.balance_type,
    'amount', t.amount, 'status', v_status, 'pending', t.pending, 'posted_amount', v_posted_amount,
    'pending_expires_at', t.pending_expires_at, 'resolved_at', v_resolved_at, 'expires_at', t.expires_at,
    'refund_of', t.refund_of, 'lots', v_lots, 'description', t.description, 'metadata', t.metadata,
    'balance_after', v_balance_after, 'created_at', t.created_at);
END $$;

-- Gives back up to p_amount of what p_drawn_pk drew, to the same lots,
-- latest-expiring first (so what stays consumed is what expires soonest).
-- Returns how much went back into lots already expired at p_at.
CREATE FUNCTION ledger_return_draws(p_account_id bigint, p_drawn_pk bigint, p_cause_pk bigint, p_amount bigint, p_at timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_left bigint := p_amount;
  v_into_expired bigint := 0;
  v_give bigint;
  d record;
BEGIN
  FOR d IN
    SELECT dr.draw_id, dr.lot_id, l.expires_at,
           dr.amount - coalesce((SELECT sum(r.amount) FROM lot_returns r WHERE r.draw_id = dr.draw_id), 0) AS net
      FROM lot_draws dr JOIN lots l ON l.lot_id = dr.lot_id
     WHERE dr.transaction_pk = p_drawn_pk
     ORDER BY l.expires_at DESC NULLS FIRST, dr.lot_id DESC
  LOOP
    EXIT WHEN v_left = 0;
    v_give := least(d.net, v_left);
    CONTINUE WHEN v_give <= 0;
    INSERT INTO lot_returns (draw_id, cause_pk, amount) VALUES (d.draw_id, p_cause_pk, v_give);
    UPDATE lots SET remaining = remaining + v_give WHERE lot_id = d.lot_id;
    IF d.expires_at IS NOT NULL THEN
      UPDATE accounts SET next_expiry_at = least(next_expiry_at, d.expires_at) WHERE account_id = p_account_id;
      IF d.expires_at <= p_at THEN v_into_expired := v_into_expired + v_give; END IF;
    END IF;
    v_left := v_left - v_give;
  END LOOP;
  IF v_left <> 0 THEN
    RAISE EXCEPTION 'ledger invariant broken: % of transaction % has no draw to return to', v_left, p_drawn_pk;
  END IF;
  RETURN v_into_expired;
END $$;

-- Draws p_amount from the account's lots, soonest-expiring first, then lots
-- without expiry, ties by creation order, and returns them as the response's
-- `lots`. The caller has locked the account and checked its balance. One lot
-- per query, LIMIT 1 in index order: a consume usually needs one lot, and the
-- planner must not sort an account's thousands of lots to find it.
CREATE FUNCTION ledger_draw_lots(p_account_id bigint, p_transaction_pk bigint, p_amount bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_left bigint := p_amount;
  v_take bigint;
  v_drawn jsonb := '[]'::jsonb;
  l record;
BEGIN
  WHILE v_left > 0 LOOP
    SELECT lot_id, remaining, expires_at, source_transaction_id INTO l FROM lots
     WHERE account_id = p_account_id AND remaining > 0
     ORDER BY expires_at NULLS LAST, lot_id
     LIMIT 1;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'ledger invariant broken: lots of account % short by % for transaction %', p_account_id, v_left, p_transaction_pk;
    END IF;
    v_take := least(l.remaining, v_left);
    INSERT INTO lot_draws (transaction_pk, lot_id, amount) VALUES (p_transaction_pk, l.lot_id, v_take);
    UPDATE lots SET remaining = remaining - v_take WHERE lot_id = l.lot_id;
    v_drawn := v_drawn || jsonb_build_object('source_transaction_id', l.source_transaction_id, 'amount', v_take, 'expires_at', l.expires_at);
    v_left := v_left - v_take;
  END LOOP;
  RETURN v_drawn;
END $$;

-- Expires what is due on one (locked) user account at p_at: holds past their
-- deadline, then lots past expires_at. Idempotent: a second call finds nothing.
CREATE FUNCTION ledger_sweep_account(p_account_id bigint, p_at timestamptz, p_system jsonb) RETURNS integer
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
    UPDATE transactions SET status = 'expired', posted_amount = 0, resolved_at = v_hold.pending_expires_at
     WHERE transaction_pk = v_hold.transaction_pk;
    IF v_hold.type = 'consume' THEN
      UPDATE accounts SET pending_debit = pending_debit - v_hold.amount WHERE account_id = p_account_id;
      PERFORM ledger_return_draws(p_account_id, v_hold.transaction_pk, v_hold.transaction_pk, v_hold.amount, p_at);
    ELSE
      UPDATE accounts SET pending_credit = pending_credit - v_hold.amount WHERE account_id = p_account_id;
    END IF;
    v_count := v_count + 1;
  END LOOP;

  FOR v_lot IN
    SELECT * FROM lots
     WHERE account_id = p_account_id AND remaining > 0 AND expires_at <= p_at
     ORDER BY expires_at, lot_id
     FOR UPDATE
  LOOP
    UPDATE accounts SET posted = posted - v_lot.remaining, updated_at = p_at
     WHERE account_id = p_account_id RETURNING * INTO v_account;
    -- Named by its own key: a lot refilled by a refund after it expired expires again.
    v_expire_pk := nextval(pg_get_serial_sequence('transactions', 'transaction_pk'));
    INSERT INTO transactions (transaction_pk, transaction_id, balance_type, type, user_id, amount, pending, description,
                              debit_account_id, credit_account_id, balance_after, created_at, status, posted_amount)
      OVERRIDING SYSTEM VALUE
      VALUES (v_expire_pk, 'sys:expire:' || v_expire_pk, v_account.balance_type, 'expire', v_account.owner_id,
              v_lot.remaining, false, 'expiry of a time-limited balance',
              p_account_id, ledger_system_account(p_system, 'expiry', v_account.balance_type),
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
CREATE FUNCTION ledger_lock_account(p_user_id text, p_balance_type text, p_create boolean, p_at timestamptz, p_system jsonb)
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
  IF v_account.next_expiry_at <= p_at THEN
    PERFORM ledger_sweep_account(v_account.account_id, p_at, p_system);
    SELECT * INTO v_account FROM accounts WHERE account_id = v_account.account_id;
  END IF;
  RETURN v_account;
END $$;

CREATE FUNCTION ledger_lock_account_by_id(p_account_id bigint, p_at timestamptz, p_system jsonb) RETURNS accounts
LANGUAGE plpgsql AS $$
DECLARE
  v_account accounts%ROWTYPE;
BEGIN
  SELECT * INTO v_account FROM accounts WHERE account_id = p_account_id FOR UPDATE;
  IF v_account.next_expiry_at <= p_at THEN
    PERFORM ledger_sweep_account(p_account_id, p_at, p_system);
    SELECT * INTO v_account FROM accounts WHERE account_id = p_account_id;
  END IF;
  RETURN v_account;
END $$;

CREATE FUNCTION ledger_outcome(p_outcome text, p_details jsonb DEFAULT '{}'::jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_build_object('outcome', p_outcome) || p_details $$;

-- add | consume | refund, posted at once or (add, consume) as a hold.
CREATE FUNCTION ledger_create(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_id text := p_op->>'transaction_id';
  v_balance_type text := p_op->>'balance_type';
  v_type text := p_op->>'type';
  v_user_id text := p_op->>'user_id';
  v_amount bigint := (p_op->>'amount')::bigint;
  v_pending boolean := coalesce((p_op->>'pending')::boolean, false);
  v_requested_deadline timestamptz := (p_op->>'pending_expires_at')::timestamptz;
  v_expires_at timestamptz := (p_op->>'expires_at')::timestamptz;
  v_refund_of text := p_op->>'refund_of';
  v_description text := p_op->>'description';
  v_metadata jsonb := p_op->'metadata';
  v_at timestamptz := (p_op->>'at')::timestamptz;
  v_deadline timestamptz;
  v_existing transactions%ROWTYPE;
  v_consume transactions%ROWTYPE;
  v_account accounts%ROWTYPE;
  v_stored transactions%ROWTYPE;
  v_fields text[];
  v_pk bigint;
  v_refundable bigint;
  v_into_expired bigint;
  v_drawn jsonb;
BEGIN
  SELECT * INTO v_existing FROM transactions WHERE transaction_id = v_id AND balance_type = v_balance_type;
  IF FOUND THEN
    v_fields := array_remove(ARRAY[
      CASE WHEN v_existing.type IS DISTINCT FROM v_type THEN 'type' END,
      CASE WHEN v_existing.user_id IS DISTINCT FROM v_user_id THEN 'user_id' END,
      CASE WHEN v_existing.amount IS DISTINCT FROM v_amount THEN 'amount' END,
      CASE WHEN v_existing.pending IS DISTINCT FROM v_pending THEN 'pending' END,
      CASE WHEN v_existing.requested_pending_expires_at IS DISTINCT FROM v_requested_deadline THEN 'pending_expires_at' END,
      CASE WHEN v_existing.expires_at IS DISTINCT FROM v_expires_at THEN 'expires_at' END,
      CASE WHEN v_existing.refund_of IS DISTINCT FROM v_refund_of THEN 'refund_of' END,
      CASE WHEN v_existing.description IS DISTINCT FROM v_description THEN 'description' END,
      CASE WHEN v_existing.metadata IS DISTINCT FROM v_metadata THEN 'metadata' END
    ], NULL);
    IF cardinality(v_fields) > 0 THEN
      RETURN ledger_outcome('conflict', jsonb_build_object('fields', to_jsonb(v_fields)));
    END IF;
    RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(v_existing, 'created', v_at)));
  END IF;

  -- Checked only when creating: a replay long after expires_at still replays.
  IF v_expires_at IS NOT NULL AND v_expires_at <= v_at THEN
    RETURN ledger_outcome('invalid', jsonb_build_object('field', 'expires_at', 'message', 'expires_at must be in the future'));
  END IF;
  IF v_requested_deadline IS NOT NULL AND v_requested_deadline <= v_at THEN
    RETURN ledger_outcome('invalid', jsonb_build_object('field', 'pending_expires_at', 'message', 'pending_expires_at must be in the future'));
  END IF;
  IF v_pending THEN
    v_deadline := coalesce(v_requested_deadline, v_at + make_interval(secs => (p_op->>'hold_timeout_ms')::bigint / 1000.0));
  END IF;

  -- Fast path, one statement: the account exists, nothing on it is due to
  -- expire, and the balance allows. Otherwise lock it (creating it for an
  -- add), record what is due, and check again.
  IF v_type = 'add' THEN
    UPDATE accounts
       SET posted = posted + CASE WHEN v_pending THEN 0 ELSE v_amount END,
           pending_credit = pending_credit + CASE WHEN v_pending THEN v_amount ELSE 0 END,
           next_expiry_at = least(next_expiry_at, CASE WHEN v_pending THEN v_deadline ELSE v_expires_at END),
           updated_at = v_at
     WHERE owner_kind = 'user' AND owner_id = v_user_id AND balance_type = v_balance_type
       AND (next_expiry_at IS NULL OR next_expiry_at > v_at)
       AND posted + pending_credit <= 9007199254740991 - v_amount
     RETURNING * INTO v_account;
    IF NOT FOUND THEN
      v_account := ledger_lock_account(v_user_id, v_balance_type, true, v_at, p_system);
      IF v_account.posted + v_account.pending_credit > 9007199254740991 - v_amount THEN
        RETURN ledger_outcome('balance_limit_exceeded', jsonb_build_object('available', v_account.posted - v_account.pending_debit));
      END IF;
      UPDATE accounts
         SET posted = posted + CASE WHEN v_pending THEN 0 ELSE v_amount END,
             pending_credit = pending_credit + CASE WHEN v_pending THEN v_amount ELSE 0 END,
             next_expiry_at = least(next_expiry_at, CASE WHEN v_pending THEN v_deadline ELSE v_expires_at END),
             updated_at = v_at
       WHERE account_id = v_account.account_id
       RETURNING * INTO v_account;
    END IF;
    INSERT INTO transactions (transaction_id, balance_type, type, user_id, amount, pending, pending_expires_at,
                              requested_pending_expires_at, expires_at, description, metadata,
                              debit_account_id, credit_account_id, balance_after, created_at, status, posted_amount)
      VALUES (v_id, v_balance_type, 'add', v_user_id, v_amount, v_pending, v_deadline, v_requested_deadline, v_expires_at,
              v_description, v_metadata, ledger_system_account(p_system, 'issuance', v_balance_type), v_account.account_id,
              v_account.posted - v_account.pending_debit, v_at,
              CASE WHEN v_pending THEN 'pending' ELSE 'posted' END, CASE WHEN v_pending THEN NULL ELSE v_amount END)
      RETURNING * INTO v_stored;
    IF NOT v_pending THEN
      INSERT INTO lots (account_id, source_transaction_pk, source_transaction_id, amount, remaining, expires_at, created_at)
        VALUES (v_account.account_id, v_stored.transaction_pk, v_id, v_amount, v_amount, v_expires_at, v_at);
    END IF;

  ELSIF v_type = 'consume' THEN
    UPDATE accounts
       SET posted = posted - CASE WHEN v_pending THEN 0 ELSE v_amount END,
           pending_debit = pending_debit + CASE WHEN v_pending THEN v_amount ELSE 0 END,
           next_expiry_at = CASE WHEN v_pending THEN least(next_expiry_at, v_deadline) ELSE next_expiry_at END,
           updated_at = v_at
     WHERE owner_kind = 'user' AND owner_id = v_user_id AND balance_type = v_balance_type
       AND (next_expiry_at IS NULL OR next_expiry_at > v_at)
       AND posted - pending_debit >= v_amount
     RETURNING * INTO v_account;
    IF NOT FOUND THEN
      v_account := ledger_lock_account(v_user_id, v_balance_type, false, v_at, p_system);
      IF v_account.account_id IS NULL OR v_account.posted - v_account.pending_debit < v_amount THEN
        RETURN ledger_outcome('insufficient_balance', jsonb_build_object('available', coalesce(v_account.posted - v_account.pending_debit, 0)));
      END IF;
      UPDATE accounts
         SET posted = posted - CASE WHEN v_pending THEN 0 ELSE v_amount END,
             pending_debit = pending_debit + CASE WHEN v_pending THEN v_amount ELSE 0 END,
             next_expiry_at = CASE WHEN v_pending THEN least(next_expiry_at, v_deadline) ELSE next_expiry_at END,
             updated_at = v_at
       WHERE account_id = v_account.account_id
       RETURNING * INTO v_account;
    END IF;
    INSERT INTO transactions (transaction_id, balance_type, type, user_id, amount, pending, pending_expires_at,
                              requested_pending_expires_at, description, metadata,
                              debit_account_id, credit_account_id, balance_after, created_at, status, posted_amount)
      VALUES (v_id, v_balance_type, 'consume', v_user_id, v_amount, v_pending, v_deadline, v_requested_deadline,
              v_description, v_metadata, v_account.account_id, ledger_system_account(p_system, 'redemption', v_balance_type),
              v_account.posted - v_account.pending_debit, v_at,
              CASE WHEN v_pending THEN 'pending' ELSE 'posted' END, CASE WHEN v_pending THEN NULL ELSE v_amount END)
      RETURNING * INTO v_stored;
    v_drawn := ledger_draw_lots(v_account.account_id, v_stored.transaction_pk, v_amount);

  ELSE -- refund
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
    IF v_account.posted + v_account.pending_credit > 9007199254740991 - v_amount THEN
      RETURN ledger_outcome('balance_limit_exceeded', jsonb_build_object('available', v_account.posted - v_account.pending_debit));
    END IF;
    -- The refund's own row comes last, once its balance_after is known; its
    -- id is taken now so that its returns can name it.
    v_pk := nextval(pg_get_serial_sequence('transactions', 'transaction_pk'));
    UPDATE accounts SET posted = posted + v_amount, updated_at = v_at WHERE account_id = v_account.account_id;
    v_into_expired := ledger_return_draws(v_account.account_id, v_consume.transaction_pk, v_pk, v_amount, v_at);
    IF v_into_expired > 0 THEN
      PERFORM ledger_sweep_account(v_account.account_id, v_at, p_system);
    END IF;
    SELECT * INTO v_account FROM accounts WHERE account_id = v_account.account_id;
    INSERT INTO transactions (transaction_pk, transaction_id, balance_type, type, user_id, amount, pending, refund_of,
                              description, metadata, debit_account_id, credit_account_id, balance_after, created_at,
                              status, posted_amount)
      OVERRIDING SYSTEM VALUE
      VALUES (v_pk, v_id, v_balance_type, 'refund', v_user_id, v_amount, false, v_refund_of, v_description, v_metadata,
              ledger_system_account(p_system, 'redemption', v_balance_type), v_account.account_id,
              v_account.posted - v_account.pending_debit, v_at, 'posted', v_amount)
      RETURNING * INTO v_stored;
  END IF;

  RETURN ledger_outcome('created', jsonb_build_object('transaction', ledger_view(v_stored, 'created', v_at, v_drawn)));
END $$;

-- Posts (all or part) or voids a hold, at most once.
CREATE FUNCTION ledger_resolve(p_op jsonb, p_system jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_action text := p_op->>'kind';
  v_at timestamptz := (p_op->>'at')::timestamptz;
  v_hold transactions%ROWTYPE;
  v_account accounts%ROWTYPE;
  v_requested bigint;
  v_into_expired bigint := 0;
BEGIN
  SELECT * INTO v_hold FROM transactions WHERE transaction_id = p_op->>'transaction_id' AND balance_type = p_op->>'balance_type';
  IF NOT FOUND THEN
    RETURN ledger_outcome('not_found');
  END IF;
  IF NOT v_hold.pending THEN
    RETURN ledger_outcome('not_pending', jsonb_build_object('status', v_hold.status));
  END IF;
  v_account := ledger_lock_account_by_id(CASE WHEN v_hold.type = 'consume' THEN v_hold.debit_account_id ELSE v_hold.credit_account_id END, v_at, p_system);
  SELECT * INTO v_hold FROM transactions WHERE transaction_pk = v_hold.transaction_pk;
  v_requested := coalesce((p_op->>'amount')::bigint, v_hold.amount);

  IF v_hold.status = 'posted' THEN
    IF v_action = 'void' THEN RETURN ledger_outcome('pending_already_posted'); END IF;
    IF v_requested <> v_hold.posted_amount THEN
      RETURN ledger_outcome('conflict', jsonb_build_object('fields', jsonb_build_array('amount'), 'posted_amount', v_hold.posted_amount));
    END IF;
    RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
  ELSIF v_hold.status = 'voided' THEN
    IF v_action = 'post' THEN RETURN ledger_outcome('pending_already_voided'); END IF;
    RETURN ledger_outcome('replayed', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
  ELSIF v_hold.status = 'expired' THEN
    RETURN ledger_outcome('pending_expired', jsonb_build_object('pending_expires_at', v_hold.pending_expires_at));
  END IF;

  IF v_action = 'post' AND v_requested > v_hold.amount THEN
    RETURN ledger_outcome('exceeds_pending_amount', jsonb_build_object('pending_amount', v_hold.amount));
  END IF;
  IF v_action = 'void' THEN v_requested := 0; END IF;

  IF v_hold.type = 'consume' THEN
    UPDATE accounts SET posted = posted - v_requested, pending_debit = pending_debit - v_hold.amount, updated_at = v_at
     WHERE account_id = v_account.account_id;
    IF v_hold.amount > v_requested THEN
      v_into_expired := ledger_return_draws(v_account.account_id, v_hold.transaction_pk, v_hold.transaction_pk, v_hold.amount - v_requested, v_at);
    END IF;
  ELSE
    UPDATE accounts SET posted = posted + v_requested, pending_credit = pending_credit - v_hold.amount, updated_at = v_at,
                        next_expiry_at = CASE WHEN v_requested > 0 THEN least(next_expiry_at, v_hold.expires_at) ELSE next_expiry_at END
     WHERE account_id = v_account.account_id;
    IF v_requested > 0 THEN
      INSERT INTO lots (account_id, source_transaction_pk, source_transaction_id, amount, remaining, expires_at, created_at)
        VALUES (v_account.account_id, v_hold.transaction_pk, v_hold.transaction_id, v_requested, v_requested, v_hold.expires_at, v_at);
      IF v_hold.expires_at <= v_at THEN v_into_expired := v_requested; END IF;
    END IF;
  END IF;
  IF v_into_expired > 0 THEN
    PERFORM ledger_sweep_account(v_account.account_id, v_at, p_system);
  END IF;
  SELECT * INTO v_account FROM accounts WHERE account_id = v_account.account_id;
  UPDATE transactions
     SET status = CASE WHEN v_action = 'post' THEN 'posted' ELSE 'voided' END,
         posted_amount = v_requested, resolved_at = v_at, resolved_balance_after = v_account.posted - v_account.pending_debit
   WHERE transaction_pk = v_hold.transaction_pk
   RETURNING * INTO v_hold;
  RETURN ledger_outcome('resolved', jsonb_build_object('transaction', ledger_view(v_hold, 'resolved', v_at)));
END $$;

CREATE FUNCTION ledger_apply(p_ops jsonb, p_system jsonb) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_op jsonb;
  v_ordinal integer := 0;
  v_account accounts%ROWTYPE;
  v_result jsonb;
BEGIN
  FOR v_op IN SELECT value FROM jsonb_array_elements(p_ops) LOOP
    v_ordinal := v_ordinal + 1;
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

-- A user's balance of one type as it stands at p_at, exactly: holds past their
-- deadline count as voided and lots past expires_at as expired, whether or not
-- the sweeper has recorded them yet.
CREATE FUNCTION ledger_balance(a accounts, p_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_lapsed_debit bigint := 0;
  v_lapsed_credit bigint := 0;
  v_expired_lots bigint := 0;
  v_released_into_expired bigint := 0;
  v_expiring jsonb := '[]'::jsonb;
BEGIN
  IF a.next_expiry_at <= p_at THEN
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
        GROUP BY x.expires_at ORDER BY x.expires_at LIMIT 20
      ) s;
  END IF;
  RETURN jsonb_build_object(
    'posted', a.posted - v_expired_lots - v_released_into_expired,
    'pending_debit', a.pending_debit - v_lapsed_debit,
    'pending_credit', a.pending_credit - v_lapsed_credit,
    'available', a.posted - v_expired_lots - v_released_into_expired - (a.pending_debit - v_lapsed_debit),
    'expiring', v_expiring);
END $$;
