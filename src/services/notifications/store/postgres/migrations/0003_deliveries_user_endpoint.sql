-- Whether a webhook delivery goes to the endpoint its user chose (which may
-- reach public addresses only, unless NOTIFICATIONS_USER_WEBHOOK_PRIVATE_ALLOWED)
-- or to the operator's NOTIFICATIONS_WEBHOOK_URL. Recorded with the delivery:
-- the global URL may change while deliveries to the former one wait.
ALTER TABLE deliveries ADD COLUMN user_endpoint boolean NOT NULL DEFAULT false;

-- Deliveries made before this column: one still to be sent (or redriven)
-- whose URL is its user's own current webhook counts as the user's.
UPDATE deliveries d SET user_endpoint = true
  FROM notices n, user_settings s
 WHERE d.status <> 'delivered' AND d.channel = 'webhook'
   AND n.seq = d.notice_seq AND s.user_id = n.user_id AND s.webhook_url = d.target;

-- From now on every insert says which it is.
ALTER TABLE deliveries ALTER COLUMN user_endpoint DROP DEFAULT;
