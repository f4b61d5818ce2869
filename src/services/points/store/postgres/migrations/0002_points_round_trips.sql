-- Fewer round trips per event: each statement is a trip to the database and,
-- in a sandboxed or busy host, a syscall-heavy one. Opening a key takes its
-- lock and reads its journal (and a payment's record) in one call; closing it
-- forgets the writes done and unlocks in one; the cap totals are created,
-- locked and read in one.

-- Takes the key's session-level advisory lock (released by points_close, or
-- by the session's end), then reads the key's journaled ledger writes, oldest
-- first, and the payment's record when a payment id is given.
CREATE FUNCTION points_open(p_key text, p_payment_id text, OUT commands jsonb, OUT record jsonb)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_lock(hashtextextended(p_key, 0));
  SELECT coalesce(jsonb_agg(jsonb_build_object('seq', c.seq, 'command', c.command) ORDER BY c.seq), '[]'::jsonb) INTO commands
    FROM point_commands c WHERE c.key = p_key;
  IF p_payment_id IS NOT NULL THEN
    SELECT p.record INTO record FROM point_payments p WHERE p.payment_id = p_payment_id;
  END IF;
END $$;

-- Forgets the journaled writes that were done, then releases the key's lock.
CREATE FUNCTION points_close(p_key text, p_done bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF cardinality(p_done) > 0 THEN
    DELETE FROM point_commands WHERE seq = ANY (p_done) AND key = p_key;
  END IF;
  PERFORM pg_advisory_unlock(hashtextextended(p_key, 0));
END $$;

-- The user's total of the month and per campaign, created if need be and
-- locked until the transaction ends: two payments of one user count one after
-- the other when a cap depends on it.
CREATE FUNCTION points_cap_totals(p_user_id text, p_month text, OUT month_points bigint, OUT campaigns jsonb)
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO point_month_totals (user_id, month, points) VALUES (p_user_id, p_month, 0) ON CONFLICT DO NOTHING;
  SELECT t.points INTO month_points FROM point_month_totals t WHERE t.user_id = p_user_id AND t.month = p_month FOR UPDATE;
  SELECT coalesce(jsonb_object_agg(c.campaign_id, c.points), '{}'::jsonb) INTO campaigns
    FROM (SELECT campaign_id, points FROM point_campaign_totals WHERE user_id = p_user_id ORDER BY campaign_id FOR UPDATE) c;
END $$;
