-- The ledger: accounts, the transactions that move value between them, the
-- lots that time-limited value lives in, and the draws that record which lots
-- each consumption took from.
--
-- Double entry in TigerBeetle's form: every transaction debits one account and
-- credits another by the same amount, so the sum over all accounts of one
-- balance type is zero by construction; the audit proves that the balances
-- stored for users agree with their transactions.
--
-- Nothing is ever deleted. Rows are inserted; a few state columns are updated
-- (a user's balances, a lot's remaining value, a hold's one resolution), and
-- triggers refuse any other change.

CREATE TABLE accounts (
  account_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_kind     text NOT NULL CHECK (owner_kind IN ('user', 'system')),
  owner_id       text NOT NULL,
  balance_type   text NOT NULL,
  -- Stored for user accounts only. System accounts (issuance, redemption,
  -- expiry) are the other side of every transaction; a stored balance there
  -- would be one hot row updated by everyone, so theirs is derived.
  posted         bigint,
  pending_debit  bigint,
  pending_credit bigint,
  -- The earliest instant at which a lot of this account expires or one of its
  -- holds times out: writes and reads before it need not look for either.
  next_expiry_at timestamptz,
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL,
  UNIQUE (owner_kind, owner_id, balance_type),
  CONSTRAINT stored_balances_for_users_only CHECK (
    (owner_kind = 'user') = (posted IS NOT NULL AND pending_debit IS NOT NULL AND pending_credit IS NOT NULL)),
  CONSTRAINT user_balances_in_range CHECK (
    posted BETWEEN 0 AND 9007199254740991
    AND pending_debit BETWEEN 0 AND posted
    AND pending_credit BETWEEN 0 AND 9007199254740991 - posted)
);

CREATE INDEX accounts_due_for_sweep ON accounts (next_expiry_at) WHERE next_expiry_at IS NOT NULL;

CREATE TABLE transactions (
  transaction_pk          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id          text NOT NULL,
  balance_type            text NOT NULL,
  type                    text NOT NULL CHECK (type IN ('add', 'consume', 'refund', 'expire')),
  user_id                 text NOT NULL,
  amount                  bigint NOT NULL CHECK (amount BETWEEN 1 AND 1000000000000000),
  pending                 boolean NOT NULL,
  -- When a hold times out; what the caller asked for is kept apart from the
  -- effective deadline so that a replay without one still matches.
  pending_expires_at      timestamptz,
  requested_pending_expires_at timestamptz,
  expires_at              timestamptz,
  refund_of               text,
  description             text,
  metadata                jsonb,
  debit_account_id        bigint NOT NULL REFERENCES accounts,
  credit_account_id       bigint NOT NULL REFERENCES accounts,
  -- The user's available balance right after the transaction was created.
  balance_after           bigint NOT NULL,
  created_at              timestamptz NOT NULL,
  -- A hold's resolution, written once: pending → posted | voided | expired.
  status                  text NOT NULL CHECK (status IN ('pending', 'posted', 'voided', 'expired')),
  posted_amount           bigint,
  resolved_at             timestamptz,
  resolved_balance_after  bigint,
  CONSTRAINT one_operation_per_id_and_balance_type UNIQUE (transaction_id, balance_type),
  CONSTRAINT two_different_accounts CHECK (debit_account_id <> credit_account_id),
  CONSTRAINT holds_only_for_add_and_consume CHECK (NOT pending OR type IN ('add', 'consume')),
  CONSTRAINT hold_has_deadline CHECK (pending = (pending_expires_at IS NOT NULL)),
  CONSTRAINT status_matches_kind CHECK (
    CASE WHEN pending THEN
      (status = 'pending' AND posted_amount IS NULL AND resolved_at IS NULL)
      OR (status = 'posted' AND posted_amount BETWEEN 1 AND amount AND resolved_at IS NOT NULL)
      OR (status IN ('voided', 'expired') AND posted_amount = 0 AND resolved_at IS NOT NULL)
    ELSE status = 'posted' AND posted_amount = amount AND resolved_at IS NULL END),
  CONSTRAINT refund_names_its_consume CHECK ((type = 'refund') = (refund_of IS NOT NULL)),
  CONSTRAINT lots_come_from_adds CHECK (expires_at IS NULL OR type = 'add')
);

-- One history index per user: a query for one balance type filters it, which
-- costs at most a few rows per balance type, and saves an index write per row.
CREATE INDEX transactions_by_user ON transactions (user_id, transaction_pk DESC);
-- No plain index on debit/credit account: every row would land under the same
-- few system-account keys (a hot index page); holds are found by the partial
-- indexes below, and the audit reads everything anyway.
CREATE INDEX transactions_refunds ON transactions (refund_of, balance_type) WHERE refund_of IS NOT NULL;
CREATE INDEX pending_debits_by_deadline ON transactions (debit_account_id, pending_expires_at) WHERE status = 'pending';
CREATE INDEX pending_credits_by_deadline ON transactions (credit_account_id, pending_expires_at) WHERE status = 'pending';

-- A lot is value credited to a user, possibly with an expiry. Consumption
-- draws from lots soonest-expiring first; refunds and released holds return
-- value to the lots it was drawn from.
CREATE TABLE lots (
  lot_id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id            bigint NOT NULL REFERENCES accounts,
  source_transaction_pk bigint NOT NULL REFERENCES transactions,
  -- Copied from the source so that a draw names its lot without a join.
  source_transaction_id text NOT NULL,
  amount                bigint NOT NULL CHECK (amount > 0),
  remaining             bigint NOT NULL CHECK (remaining >= 0),
  expires_at            timestamptz,
  created_at            timestamptz NOT NULL
);

CREATE INDEX lots_fefo ON lots (account_id, expires_at NULLS LAST, lot_id) WHERE remaining > 0;

-- What a consume, a pending consume or an expiry took from which lot.
CREATE TABLE lot_draws (
  draw_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_pk bigint NOT NULL REFERENCES transactions,
  lot_id         bigint NOT NULL REFERENCES lots,
  amount         bigint NOT NULL CHECK (amount > 0)
);

CREATE INDEX lot_draws_by_transaction ON lot_draws (transaction_pk);

-- Value given back to the lot of a draw: by the hold's own resolution (the
-- part not posted), or by a refund (cause_pk is the refund).
CREATE TABLE lot_returns (
  return_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  draw_id   bigint NOT NULL REFERENCES lot_draws,
  -- Deferred: a refund records its returns before its own row, whose
  -- balance_after depends on them.
  cause_pk  bigint NOT NULL REFERENCES transactions DEFERRABLE INITIALLY DEFERRED,
  amount    bigint NOT NULL CHECK (amount > 0)
);

CREATE INDEX lot_returns_by_draw ON lot_returns (draw_id);
CREATE INDEX lot_returns_by_cause ON lot_returns (cause_pk);

-- History is append-only ------------------------------------------------------

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the ledger is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'restrict_violation';
END $$;

-- A transaction may change once, and only a hold, only from pending to its resolution.
CREATE FUNCTION ledger_check_resolution() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status <> 'pending' OR NEW.status = 'pending'
     OR (NEW.transaction_pk, NEW.transaction_id, NEW.balance_type, NEW.type, NEW.user_id, NEW.amount, NEW.pending,
         NEW.pending_expires_at, NEW.requested_pending_expires_at, NEW.expires_at, NEW.refund_of, NEW.description,
         NEW.metadata, NEW.debit_account_id, NEW.credit_account_id, NEW.balance_after, NEW.created_at)
        IS DISTINCT FROM
        (OLD.transaction_pk, OLD.transaction_id, OLD.balance_type, OLD.type, OLD.user_id, OLD.amount, OLD.pending,
         OLD.pending_expires_at, OLD.requested_pending_expires_at, OLD.expires_at, OLD.refund_of, OLD.description,
         OLD.metadata, OLD.debit_account_id, OLD.credit_account_id, OLD.balance_after, OLD.created_at) THEN
    RAISE EXCEPTION 'the ledger is append-only: only a pending hold may be resolved, once'
      USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER transactions_resolve_once BEFORE UPDATE ON transactions
  FOR EACH ROW EXECUTE FUNCTION ledger_check_resolution();

-- A lot's identity and size never change; only what remains of it.
CREATE FUNCTION ledger_check_lot_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.lot_id, NEW.account_id, NEW.source_transaction_pk, NEW.source_transaction_id, NEW.amount, NEW.expires_at, NEW.created_at)
     IS DISTINCT FROM (OLD.lot_id, OLD.account_id, OLD.source_transaction_pk, OLD.source_transaction_id, OLD.amount, OLD.expires_at, OLD.created_at) THEN
    RAISE EXCEPTION 'the ledger is append-only: only remaining may change on a lot' USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER lots_remaining_only BEFORE UPDATE ON lots
  FOR EACH ROW EXECUTE FUNCTION ledger_check_lot_update();

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['accounts', 'transactions', 'lots', 'lot_draws', 'lot_returns'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON %I FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()', t || '_no_delete', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()', t || '_no_truncate', t);
  END LOOP;
  FOREACH t IN ARRAY ARRAY['lot_draws', 'lot_returns'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()', t || '_no_update', t);
  END LOOP;
END $$;
