-- The transactional outbox, in the producing service's own database, in a
-- schema of its own so its migrations never mix with the service's. A row is
-- written in the same transaction as the state change it announces and is
-- marked, never deleted, once the relay has published it.
CREATE TABLE events (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  topic text NOT NULL,
  event_id text NOT NULL,
  event json NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  -- The relay leaves a row alone until then (after a refusal such as an unknown topic).
  available_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  last_error text
);

CREATE INDEX events_unpublished ON events (seq) WHERE published_at IS NULL;
