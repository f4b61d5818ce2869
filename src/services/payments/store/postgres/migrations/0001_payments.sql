-- A card route's payments, in the route's own database. A payment row holds
-- the state the domain decides from (open holds, captures and their ledger
-- draws as JSON, read and written whole under the payment's lock); network
-- messages hold each message's answer, so a resend is answered from what was
-- stored; payment_events lists the events each payment published (the
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

CREATE TABLE payment_events (
  payment_id text NOT NULL,
  seq integer NOT NULL,
  event_id text NOT NULL,
  type text NOT NULL,
  occurred_at timestamptz NOT NULL,
  PRIMARY KEY (payment_id, seq)
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
