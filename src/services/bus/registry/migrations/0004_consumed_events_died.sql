-- When the message that owns an event died (its last delivery failed, or SQS
-- moved it to the dead-letter queue), its claim says so. A redrive frees only
-- such a claim for the message it sends: a claim whose message may still be
-- delivered or handled (a redrive's earlier message, say, after a redrive that
-- failed half-way) is never freed, so a second message of that event is
-- dropped as a copy instead of handled twice.
ALTER TABLE consumed_events ADD COLUMN died_at timestamptz;

-- Claims of what is dead now died before this column existed.
UPDATE consumed_events c SET died_at = d.dead_lettered_at
  FROM dead_letters d
 WHERE d.subscription = c.subscription AND d.event_id = c.event_id AND d.state IN ('dead', 'discarded') AND c.handled_at IS NULL;
