-- Retention: handled claims and published fingerprints are pruned once older
-- than the retention, oldest first. Found by when they were claimed (set once,
-- at insert), not by handled_at or published_at, so marking one handled or
-- published stays an update of no indexed column.
CREATE INDEX consumed_events_claimed_at ON consumed_events (claimed_at);
CREATE INDEX event_fingerprints_claimed_at ON event_fingerprints (claimed_at);
