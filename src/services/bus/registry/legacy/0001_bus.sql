-- The bus database: declared topics and subscriptions, every published
-- message once, and one delivery per subscription x message. Nothing is
-- deleted: acknowledged, dead-lettered and discarded deliveries keep their rows.

CREATE TABLE topics (
  name text PRIMARY KEY,
  declared_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
  name text PRIMARY KEY,
  topic text NOT NULL REFERENCES topics (name),
  filter jsonb,
  max_deliveries integer NOT NULL CHECK (max_deliveries >= 1),
  ack_wait_ms integer NOT NULL CHECK (ack_wait_ms >= 1),
  retry_backoff_initial_ms integer NOT NULL,
  retry_backoff_max_ms integer NOT NULL,
  declared_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per (topic, event id): the unique key is what makes a repeated
-- publish (relay crash between publish and mark, a partner's retry) a duplicate.
CREATE TABLE messages (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  topic text NOT NULL REFERENCES topics (name),
  event_id text NOT NULL,
  -- json, not jsonb: never queried inside, and kept byte for byte as published.
  event json NOT NULL,
  published_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (topic, event_id)
);

CREATE TABLE deliveries (
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

CREATE INDEX deliveries_claimable ON deliveries (subscription, visible_at) WHERE state = 'pending';
CREATE INDEX deliveries_dead_letters ON deliveries (subscription, state, message_seq) WHERE state IN ('dead', 'discarded');

-- Dead letters of the NATS adapter: JetStream carries the messages, and its
-- dead letters are kept here so list, redrive and discard work as for postgres.
CREATE TABLE nats_dead_letters (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  subscription text NOT NULL REFERENCES subscriptions (name),
  event_id text NOT NULL,
  event json NOT NULL,
  state text NOT NULL CHECK (state IN ('dead', 'redriven', 'discarded')),
  attempts integer NOT NULL,
  last_error text,
  dead_lettered_at timestamptz NOT NULL,
  discarded_at timestamptz,
  redriven_at timestamptz,
  redrive_count integer NOT NULL DEFAULT 0,
  UNIQUE (subscription, event_id)
);

CREATE INDEX nats_dead_letters_listing ON nats_dead_letters (subscription, state, seq);
