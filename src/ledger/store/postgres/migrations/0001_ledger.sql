-- The ledger: accounts and the transactions that move value between them.
-- Double entry in TigerBeetle's form: every transaction debits one account and
-- credits another by the same amount, so the sum over all accounts of one
-- balance type is zero by construction, and the audit proves the stored
-- balances agree.

CREATE TABLE accounts (
  account_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_kind   text NOT NULL CHECK (owner_kind IN ('user', 'system')),
  owner_id     text NOT NULL,
  balance_type text NOT NULL,
  -- Stored for user accounts only. System accounts (issuance, redemption) are
  -- the other side of every transaction; a stored balance there would be one
  -- hot row updated by everyone, so theirs is derived from transactions.
  balance      bigint,
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  UNIQUE (owner_kind, owner_id, balance_type),
  CONSTRAINT stored_balance_for_users_only CHECK ((owner_kind = 'user') = (balance IS NOT NULL)),
  CONSTRAINT user_balance_in_range CHECK (balance BETWEEN 0 AND 9007199254740991)
);

CREATE TABLE transactions (
  transaction_pk    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id    text NOT NULL,
  balance_type      text NOT NULL,
  type              text NOT NULL CHECK (type IN ('add', 'consume')),
  user_id           text NOT NULL,
  amount            bigint NOT NULL CHECK (amount BETWEEN 1 AND 1000000000000000),
  status            text NOT NULL CHECK (status = 'posted'),
  description       text,
  metadata          jsonb,
  debit_account_id  bigint NOT NULL REFERENCES accounts,
  credit_account_id bigint NOT NULL REFERENCES accounts,
  balance_after     bigint NOT NULL,
  created_at        timestamptz NOT NULL,
  CONSTRAINT one_operation_per_id_and_balance_type UNIQUE (transaction_id, balance_type),
  CONSTRAINT two_different_accounts CHECK (debit_account_id <> credit_account_id)
);

CREATE INDEX transactions_by_user ON transactions (user_id, transaction_pk DESC);
CREATE INDEX transactions_by_user_and_balance_type ON transactions (user_id, balance_type, transaction_pk DESC);
CREATE INDEX transactions_by_debit_account ON transactions (debit_account_id);
CREATE INDEX transactions_by_credit_account ON transactions (credit_account_id);

-- Nothing is ever deleted: the ledger only reads, inserts and updates balances.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the ledger is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Applies a batch of add/consume operations in one database transaction
-- (group commit), in order, and returns one outcome per operation:
--   created | replayed | conflict | insufficient_balance | balance_limit_exceeded.
-- Only successes are stored. Rejections change nothing, so a later retry of
-- the same operation may succeed.
CREATE FUNCTION ledger_apply_batch(
  p_transaction_ids text[],
  p_balance_types   text[],
  p_types           text[],
  p_user_ids        text[],
  p_amounts         bigint[],
  p_descriptions    text[],
  p_metadata        jsonb[],
  p_created_at      timestamptz[]
) RETURNS TABLE (
  out_ordinal          integer,
  out_outcome          text,
  out_differing_fields text[],
  out_available        bigint,
  out_transaction_id   text,
  out_balance_type     text,
  out_type             text,
  out_user_id          text,
  out_amount           bigint,
  out_status           text,
  out_description      text,
  out_metadata         jsonb,
  out_balance_after    bigint,
  out_created_at       timestamptz
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  i            integer;
  existing     transactions%ROWTYPE;
  stored       transactions%ROWTYPE;
  user_account bigint;
  system_account bigint;
  new_balance  bigint;
  differing    text[];
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_transaction_ids, 1), 0) LOOP
    SELECT * INTO existing FROM transactions
      WHERE transaction_id = p_transaction_ids[i] AND balance_type = p_balance_types[i];
    IF FOUND THEN
      differing := array_remove(ARRAY[
        CASE WHEN existing.type IS DISTINCT FROM p_types[i] THEN 'type' END,
        CASE WHEN existing.user_id IS DISTINCT FROM p_user_ids[i] THEN 'user_id' END,
        CASE WHEN existing.amount IS DISTINCT FROM p_amounts[i] THEN 'amount' END,
        CASE WHEN existing.description IS DISTINCT FROM p_descriptions[i] THEN 'description' END,
        CASE WHEN existing.metadata IS DISTINCT FROM p_metadata[i] THEN 'metadata' END
      ], NULL);
      IF cardinality(differing) > 0 THEN
        RETURN QUERY SELECT i, 'conflict'::text, differing, NULL::bigint,
          NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::text, NULL::jsonb, NULL::bigint, NULL::timestamptz;
      ELSE
        RETURN QUERY SELECT i, 'replayed'::text, NULL::text[], NULL::bigint,
          existing.transaction_id, existing.balance_type, existing.type, existing.user_id, existing.amount,
          existing.status, existing.description, existing.metadata, existing.balance_after, existing.created_at;
      END IF;
      CONTINUE;
    END IF;

    IF p_types[i] = 'add' THEN
      INSERT INTO accounts AS a (owner_kind, owner_id, balance_type, balance, created_at, updated_at)
        VALUES ('user', p_user_ids[i], p_balance_types[i], p_amounts[i], p_created_at[i], p_created_at[i])
        ON CONFLICT (owner_kind, owner_id, balance_type) DO UPDATE
          SET balance = a.balance + excluded.balance, updated_at = excluded.updated_at
          WHERE a.balance <= 9007199254740991 - excluded.balance
        RETURNING account_id, balance INTO user_account, new_balance;
      IF NOT FOUND THEN
        RETURN QUERY SELECT i, 'balance_limit_exceeded'::text, NULL::text[],
          (SELECT balance FROM accounts WHERE owner_kind = 'user' AND owner_id = p_user_ids[i] AND balance_type = p_balance_types[i]),
          NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::text, NULL::jsonb, NULL::bigint, NULL::timestamptz;
        CONTINUE;
      END IF;
      SELECT account_id INTO STRICT system_account FROM accounts
        WHERE owner_kind = 'system' AND owner_id = 'issuance' AND balance_type = p_balance_types[i];
      INSERT INTO transactions (transaction_id, balance_type, type, user_id, amount, status, description, metadata,
                                debit_account_id, credit_account_id, balance_after, created_at)
        VALUES (p_transaction_ids[i], p_balance_types[i], 'add', p_user_ids[i], p_amounts[i], 'posted', p_descriptions[i],
                p_metadata[i], system_account, user_account, new_balance, p_created_at[i])
        RETURNING * INTO stored;
    ELSE
      UPDATE accounts SET balance = balance - p_amounts[i], updated_at = p_created_at[i]
        WHERE owner_kind = 'user' AND owner_id = p_user_ids[i] AND balance_type = p_balance_types[i]
          AND balance >= p_amounts[i]
        RETURNING account_id, balance INTO user_account, new_balance;
      IF NOT FOUND THEN
        RETURN QUERY SELECT i, 'insufficient_balance'::text, NULL::text[],
          coalesce((SELECT balance FROM accounts WHERE owner_kind = 'user' AND owner_id = p_user_ids[i] AND balance_type = p_balance_types[i]), 0),
          NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::text, NULL::jsonb, NULL::bigint, NULL::timestamptz;
        CONTINUE;
      END IF;
      SELECT account_id INTO STRICT system_account FROM accounts
        WHERE owner_kind = 'system' AND owner_id = 'redemption' AND balance_type = p_balance_types[i];
      INSERT INTO transactions (transaction_id, balance_type, type, user_id, amount, status, description, metadata,
                                debit_account_id, credit_account_id, balance_after, created_at)
        VALUES (p_transaction_ids[i], p_balance_types[i], 'consume', p_user_ids[i], p_amounts[i], 'posted', p_descriptions[i],
                p_metadata[i], user_account, system_account, new_balance, p_created_at[i])
        RETURNING * INTO stored;
    END IF;

    RETURN QUERY SELECT i, 'created'::text, NULL::text[], NULL::bigint,
      stored.transaction_id, stored.balance_type, stored.type, stored.user_id, stored.amount,
      stored.status, stored.description, stored.metadata, stored.balance_after, stored.created_at;
  END LOOP;
END $$;
