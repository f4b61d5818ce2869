-- Ends a message's hold on its payment inside the statement that records its
-- outcome, instead of an unlock statement of its own after it: the lock passes
-- from the session to this transaction (taken again as a transaction lock,
-- then the session's released), so the next message still waits for the
-- commit — PostgreSQL releases a transaction's locks only once its commit is
-- visible — and one round trip per message goes. A session that did not hold
-- the lock is a bug: refused, nothing recorded.
CREATE FUNCTION payments_release_at_commit(lock_key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
  IF NOT pg_advisory_unlock(hashtextextended(lock_key, 0)) THEN
    RAISE EXCEPTION 'the lock of payment % is not held by this session', lock_key;
  END IF;
  RETURN true;
END
$$;
