-- A card route's payments, in the route's own database. A payment row holds
-- the state the domain decides from (open holds, captures and their ledger
-- draws as JSON, read and written whole under the payment's lock); network
-- messages hold each message's answer, so a resend is answered from what was
-- stored; a payment's `events` lists the events it published, in order (the
-- outbox holds the events themselves); payment_intents journals each decision
-- before its ledger writes, so one that was cut short (a crash, a lost
-- connection) is finished before anything else happens to the payment.
CREATE TABLE payments (
  payment_id text PRIMARY KEY,
  route text NOT NULL,
  authorization_id text NOT NULL,
  user_id text NOT NULL,
  status text NOT NULL,
  state jsonb NOT NULL,
  -- Set while cash is held: the sweeper expires what passes it.
  hold_expires_at timestamptz,
  -- [{id, type, occurred_at}] of every event it published, appended by each outcome.
  events jsonb NOT NULL DEFAULT '[]',
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payments_holding ON payments (hold_expires_at) WHERE hold_expires_at IS NOT NULL;

-- One row per network message, keyed by its kind and the network's own id.
CREATE TABLE network_messages (
  kind text NOT NULL,
  message_id text NOT NULL,
  payment_id text NOT NULL,
  -- What the network sent, for telling a resend from a conflicting reuse of the id.
  request jsonb NOT NULL,
  -- The answer's body exactly as first sent, and its status code.
  response text NOT NULL,
  status_code integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, message_id)
);

-- A decision is written here (and committed) before its ledger writes run,
-- and deleted in the transaction that records its outcome: the table holds
-- only decisions in progress (a journal, not a record; the outcome is the
-- record). An unfinished one is re-run first — its ledger writes replay, their
-- ids being derived — so no later message decides from a state the ledger has
-- left. Deleting, not marking, keeps the write path to one small WAL record.
CREATE TABLE payment_intents (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  payment_id text NOT NULL,
  intent jsonb NOT NULL,
  created_at timestamptz NOT NULL
);

CREATE INDEX payment_intents_payment ON payment_intents (payment_id, seq);

-- Opening a message in one round trip: the payment's lock (session-level, held
-- until the outcome is committed), then, read after it, what the service
-- decides from. Each statement of a volatile function takes a fresh snapshot,
-- so the reads see everything committed by the lock's previous holder.
CREATE FUNCTION payments_open(lock_key text, message_namespace text, message_key text, payment_key text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_lock(hashtextextended(lock_key, 0));
  RETURN jsonb_build_object(
    'intents', coalesce((
      SELECT jsonb_agg(jsonb_build_object('seq', i.seq, 'intent', i.intent) ORDER BY i.seq)
        FROM payment_intents i WHERE i.payment_id = payment_key), '[]'::jsonb),
    'message', (
      SELECT jsonb_build_object('payment_id', m.payment_id, 'request', m.request, 'response', m.response, 'status_code', m.status_code)
        FROM network_messages m WHERE m.kind = message_namespace AND m.message_id = message_key),
    'payment', (SELECT p.state FROM payments p WHERE p.payment_id = payment_key));
END
$$;

-- Journals a decision before its ledger writes, in a transaction of its own
-- that does not wait for its WAL flush: a crash of Koban cannot lose it
-- (PostgreSQL writes it out within wal_writer_delay), and with the ledger on
-- the same server the ledger's own commit flushes it first, WAL being one
-- sequence. SET LOCAL in a function without a SET clause of its own lasts to
-- the end of the caller's transaction: this statement's.
CREATE FUNCTION payments_journal(payment_key text, decision jsonb, journalled_at timestamptz) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  journalled bigint;
BEGIN
  SET LOCAL synchronous_commit TO off;
  INSERT INTO payment_intents (payment_id, intent, created_at) VALUES (payment_key, decision, journalled_at) RETURNING seq INTO journalled;
  RETURN journalled;
END
$$;
