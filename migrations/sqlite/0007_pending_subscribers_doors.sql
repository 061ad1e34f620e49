-- Email subscriptions waiting for their confirmation are purged once their window has
-- passed and counted against a bound on every request: an index for both.
CREATE INDEX subscribers_pending ON subscribers (updated_at, village_id) WHERE status = 'pending';
