-- The PostgreSQL adapter's queue, beside the registry's topics and
-- subscriptions: every published message once, and one delivery per
-- subscription x message. Nothing is deleted: acknowledged, dead-lettered and
-- discarded deliveries keep their rows (a dead letter here is a delivery in
-- state dead). IF NOT EXISTS: a database from before the registry had
-- migrations of its own made these tables, the same, in the bus's 0001_bus.sql.

-- One row per (topic, event id): the unique key is what makes a repeated
-- publish (relay crash between publish and mark, a partner's retry) a duplicate.
CREATE TABLE IF NOT EXISTS messages (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  topic text NOT NULL REFERENCES topics (name),
  event_id text NOT NULL,
  -- json, not jsonb: never queried inside, and kept byte for byte as published.
  event json NOT NULL,
  published_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (topic, event_id)
);

CREATE TABLE IF NOT EXISTS deliveries (
  subscription text NOT NULL REFERENCES subscriptions (name),
  message_seq bigint NOT NULL REFERENCES messages (seq),
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'acked', 'dead', 'discarded')),
  -- Deliveries so far; reset to 0 by a redrive.
  attempts integer NOT NULL DEFAULT 0,
  -- A pending delivery may be claimed once visible_at has passed (retry delay, ack deadline).
  visible_at timestamptz NOT NULL DEFAULT now(),
  -- Set while a consumer holds the delivery; null while it waits.
  leased_until timestamptz,
  last_error text,
  acked_at timestamptz,
  dead_lettered_at timestamptz,
  discarded_at timestamptz,
  redriven_at timestamptz,
  redrive_count integer NOT NULL DEFAULT 0,
  PRIMARY KEY (subscription, message_seq)
);

CREATE INDEX IF NOT EXISTS deliveries_claimable ON deliveries (subscription, visible_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_dead_letters ON deliveries (subscription, state, message_seq) WHERE state IN ('dead', 'discarded');
