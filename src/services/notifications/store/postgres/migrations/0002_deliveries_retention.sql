-- Retention: delivered deliveries are pruned once delivered longer ago than
-- the retention, oldest first; notices are kept (users read them), and so are
-- pending and dead deliveries (the worker and redrive need them).
CREATE INDEX deliveries_delivered_at ON deliveries (delivered_at) WHERE status = 'delivered';
