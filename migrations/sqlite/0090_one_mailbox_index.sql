-- `subscribers_by_mailbox`, the unique index on lower(email) made when twins were merged,
-- answers every lookup that `subscribers_by_lower_email` answered. The second copy only
-- cost time on every insert (an import of a million rows spent a seventh of its time on it).
DROP INDEX IF EXISTS subscribers_by_lower_email;
