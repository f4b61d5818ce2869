-- The points service's own database. point_payments holds, per card payment,
-- what was seen of it and what the ledger was told (JSON read and written
-- whole under the payment's lock); point_grants is what users read, one row
-- per grant; the totals feed the earning rules' caps and change in the same
-- transaction as the grant they count; point_commands journals ledger writes
-- decided but not yet done (deleted once done), so a crash between the
-- decision and the ledger is finished by the next delivery for that key.
CREATE TABLE point_payments (
  payment_id text PRIMARY KEY,
  user_id text NOT NULL,
  record jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE TABLE point_grants (
  -- Creation order: the key of the newest-first pages.
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  grant_id text PRIMARY KEY,
  user_id text NOT NULL,
  source text NOT NULL CHECK (source IN ('payment', 'reward', 'referral')),
  reference text NOT NULL,
  points bigint NOT NULL CHECK (points >= 0),
  status text NOT NULL CHECK (status IN ('pending', 'confirmed', 'voided', 'clawed_back')),
  clawed_back_points bigint NOT NULL DEFAULT 0 CHECK (clawed_back_points >= 0),
  rule_version text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);

CREATE INDEX point_grants_by_user ON point_grants (user_id, seq DESC);

-- Points a user earned per JST calendar month (YYYY-MM), for the monthly cap.
CREATE TABLE point_month_totals (
  user_id text NOT NULL,
  month text NOT NULL,
  points bigint NOT NULL,
  PRIMARY KEY (user_id, month)
);

-- Points a user earned per campaign, for its per-user cap.
CREATE TABLE point_campaign_totals (
  user_id text NOT NULL,
  campaign_id text NOT NULL,
  points bigint NOT NULL,
  PRIMARY KEY (user_id, campaign_id)
);

CREATE TABLE point_commands (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- The lock key of what decided it: a payment, a purchase, a referral, a user's welcome.
  key text NOT NULL,
  command jsonb NOT NULL,
  created_at timestamptz NOT NULL
);

CREATE INDEX point_commands_by_key ON point_commands (key, seq);

-- Events that earned nothing on purpose (a self-referral), recorded once so a repeat is known.
CREATE TABLE point_skipped (
  source text NOT NULL,
  reference text NOT NULL,
  user_id text NOT NULL,
  reason text NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (source, reference)
);

-- The time-limited cash each new account got, once per user.
CREATE TABLE welcome_balances (
  user_id text PRIMARY KEY,
  amount bigint NOT NULL,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL
);
