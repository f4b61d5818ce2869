-- Event ids published through an adapter whose broker forgets them (NATS
-- JetStream dedupes only within its duplicate window), per topic, with a
-- fingerprint of the content (a digest per attribute, `time` left out): a
-- repeat is compared with it however late it comes, so an identical one is a
-- duplicate and a different one a conflict, as on the postgres adapter,
-- whose messages table keeps the events themselves. Kept for good, like those.
CREATE TABLE event_fingerprints (
  topic text NOT NULL REFERENCES topics (name),
  event_id text NOT NULL,
  fingerprint jsonb NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  -- Set once the broker acknowledged the event. Null: it may not have reached
  -- the broker (a failed or interrupted publish); the same event is published
  -- again when it comes again, and the broker's window absorbs a copy.
  published_at timestamptz,
  PRIMARY KEY (topic, event_id)
);
