-- The bus's registry, shared by every adapter: declared topics and
-- subscriptions, and the dead letters of adapters whose broker keeps none
-- (NATS JetStream; SNS+SQS), so list, redrive and discard work alike.
-- A database from before the registry had migrations of its own ran the bus's
-- single 0001_bus.sql, which made these tables already (the dead letters as
-- nats_dead_letters): they are kept, renamed, with their rows.

DO $$
BEGIN
  IF to_regclass('nats_dead_letters') IS NOT NULL AND to_regclass('dead_letters') IS NULL THEN
    ALTER TABLE nats_dead_letters RENAME TO dead_letters;
    ALTER SEQUENCE nats_dead_letters_seq_seq RENAME TO dead_letters_seq_seq;
    ALTER TABLE dead_letters RENAME CONSTRAINT nats_dead_letters_pkey TO dead_letters_pkey;
    ALTER TABLE dead_letters RENAME CONSTRAINT nats_dead_letters_subscription_fkey TO dead_letters_subscription_fkey;
    ALTER TABLE dead_letters RENAME CONSTRAINT nats_dead_letters_state_check TO dead_letters_state_check;
    ALTER TABLE dead_letters RENAME CONSTRAINT nats_dead_letters_subscription_event_id_key TO dead_letters_subscription_event_id_key;
    ALTER INDEX nats_dead_letters_listing RENAME TO dead_letters_listing;
  END IF;
END
$$;

CREATE TABLE IF NOT EXISTS topics (
  name text PRIMARY KEY,
  declared_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS subscriptions (
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

-- One row per subscription x event id. `redriven` rows wait in the broker
-- again; dying again turns the same row back to `dead`.
CREATE TABLE IF NOT EXISTS dead_letters (
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

CREATE INDEX IF NOT EXISTS dead_letters_listing ON dead_letters (subscription, state, seq);
