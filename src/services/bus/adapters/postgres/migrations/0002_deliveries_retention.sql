-- Retention: a message is pruned with its deliveries once every delivery is
-- acknowledged and it is older than the retention. Messages are found oldest
-- first by when they were published; a message's deliveries by its seq (the
-- primary key leads with the subscription), which the foreign key's check on
-- each deleted message needs too.
CREATE INDEX messages_published_at ON messages (published_at);
CREATE INDEX deliveries_by_message ON deliveries (message_seq);
