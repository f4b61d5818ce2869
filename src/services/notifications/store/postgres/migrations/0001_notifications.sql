-- Notices (one per event, however often the bus delivers it), what each user
-- chose (language, webhook), and the deliveries of notices to channels: an
-- outbox worked by the delivery worker, never by the event handler. Nothing
-- is deleted: a delivery ends delivered or dead (and a dead one may be redriven).

CREATE TABLE notices (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  notice_id uuid NOT NULL UNIQUE,
  topic text NOT NULL,
  event_id text NOT NULL,
  user_id text NOT NULL,
  type text NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  language text NOT NULL CHECK (language IN ('ja', 'en')),
  created_at timestamptz NOT NULL,
  -- Event ids are unique per topic: a redelivered event finds its notice here.
  UNIQUE (topic, event_id)
);

-- A user's notices, newest first.
CREATE INDEX notices_by_user ON notices (user_id, seq DESC);

CREATE TABLE user_settings (
  user_id text PRIMARY KEY,
  language text CHECK (language IN ('ja', 'en')),
  webhook_url text,
  updated_at timestamptz NOT NULL
);

CREATE TABLE deliveries (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id uuid NOT NULL UNIQUE,
  notice_seq bigint NOT NULL REFERENCES notices (seq),
  channel text NOT NULL CHECK (channel IN ('log', 'webhook')),
  -- The webhook's URL as it was when the notice was made; null for the log.
  target text,
  -- The exact bytes every attempt sends.
  payload text NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
  -- Attempts started since it was made or last redriven; a claim counts one.
  attempts integer NOT NULL DEFAULT 0,
  -- When it is due; while an attempt runs, the end of its lease.
  next_attempt_at timestamptz NOT NULL,
  last_error text,
  delivered_at timestamptz,
  dead_lettered_at timestamptz,
  redrives integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL,
  UNIQUE (notice_seq, channel)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_dead ON deliveries (seq) WHERE status = 'dead';
