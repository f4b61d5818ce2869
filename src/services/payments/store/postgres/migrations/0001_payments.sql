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
-- and marked finished in the transaction that records its outcome. An
-- unfinished one is re-run first — its ledger writes replay, their ids being
-- derived — so no later message decides from a state the ledger has left.
CREATE TABLE payment_intents (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  payment_id text NOT NULL,
  intent jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  -- The ledger refused its first write for good: finished with no effect.
  abandoned boolean NOT NULL DEFAULT false
);

CREATE INDEX payment_intents_unfinished ON payment_intents (payment_id, seq) WHERE finished_at IS NULL;
