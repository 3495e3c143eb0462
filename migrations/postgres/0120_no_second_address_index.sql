-- `email ... UNIQUE` kept a second unique index on the address beside
-- `subscribers_by_mailbox` (lower(email), unique), which already refuses any address the
-- column's own index would. Every lookup goes through `lower(email)`, so the second
-- index only cost time on each insert. (SQLite's migration of the same number.)
ALTER TABLE subscribers DROP CONSTRAINT IF EXISTS subscribers_email_key;
