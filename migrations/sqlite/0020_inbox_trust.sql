-- Delivery reports count only when they prove to be about a message we sent, and then
-- once per message: the first report of a permanent failure of `issue` to a subscriber
-- stamps that ledger row; later reports quoting the same message change nothing.
ALTER TABLE deliveries ADD COLUMN bounce_reported_at INTEGER;

-- The inbox matches a sender to a subscriber by address, case-insensitively as a whole:
-- this index serves `lower(email) = lower(?)`.
CREATE INDEX subscribers_by_lower_email ON subscribers (lower(email));
