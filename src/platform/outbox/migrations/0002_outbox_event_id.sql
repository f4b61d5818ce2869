-- Producers show when each of their events was published (a payment's
-- events, say): found by event id.
CREATE INDEX events_event_id ON events (event_id);
