-- Per subscription, the events handed to its handlers, for adapters whose
-- broker may carry one event as two messages (SNS standard topics keep no
-- ids: a publish repeated after the publisher died before recording it is a
-- second message) or bring back a message whose handler already succeeded
-- (an SQS delete that was lost). The first message to claim an event owns it:
-- another message with the same event id is dropped unhandled, and the owner
-- itself once its handler succeeded. A redrive hands the event to the new
-- message it sends. Lookups go by the primary key; pruning is for later.
CREATE TABLE consumed_events (
  subscription text NOT NULL REFERENCES subscriptions (name),
  event_id text NOT NULL,
  -- The broker's id of the message that owns the event.
  message_id text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  -- Set once a handler returned for it; null while it is retried or dead.
  handled_at timestamptz,
  PRIMARY KEY (subscription, event_id)
);
