-- User accounts, in the accounts service's own database. A row is written
-- once, in the transaction that also writes its account.created event to the
-- outbox (a schema of its own), and is never changed or deleted afterwards:
-- the database refuses both, so what a create answered stays true.
CREATE TABLE accounts (
  user_id text PRIMARY KEY,
  created_at timestamptz NOT NULL
);

CREATE FUNCTION accounts_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'accounts are append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER accounts_no_change BEFORE UPDATE OR DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION accounts_refuse_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts FOR EACH STATEMENT EXECUTE FUNCTION accounts_refuse_change();
