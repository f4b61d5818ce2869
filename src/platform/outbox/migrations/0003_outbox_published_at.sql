-- Published rows are pruned once older than the retention (oldest first, in
-- bounded batches): found by when they were published. Unpublished rows are
-- not in the index and are never pruned.
CREATE INDEX events_published_at ON events (published_at) WHERE published_at IS NOT NULL;
