-- A message that would create its payment (a first authorization or advice)
-- opens and journals its decision in one round trip: the decision is made
-- before the lock, from no payment, and is journalled only if the lock finds
-- it so — no payment, no answer to this message, no unfinished decision.
-- Otherwise nothing is written and the caller decides from what it returns,
-- as after payments_open. The journal entry does not wait for its flush, as
-- in payments_journal (SET LOCAL lasts to the end of this statement's
-- transaction; the lock is the session's and outlives it).
CREATE FUNCTION payments_open_fresh(lock_key text, message_namespace text, message_key text, payment_key text, decision jsonb, journalled_at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  opened jsonb;
  journalled bigint;
BEGIN
  opened := payments_open(lock_key, message_namespace, message_key, payment_key);
  IF opened->'intents' = '[]'::jsonb AND opened->'message' = 'null'::jsonb AND opened->'payment' = 'null'::jsonb THEN
    SET LOCAL synchronous_commit TO off;
    INSERT INTO payment_intents (payment_id, intent, created_at) VALUES (payment_key, decision, journalled_at) RETURNING seq INTO journalled;
    RETURN jsonb_build_object('journalled', journalled);
  END IF;
  RETURN opened;
END
$$;
