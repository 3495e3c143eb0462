-- SQLite's migration of the same number writes the subscribers' status check as
-- comparisons, because SQLite checks an `IN` list in a CHECK constraint by building a
-- table of its values for every row. PostgreSQL compares an `IN` list of constants
-- directly: its schema stays as it is, at the same version.
SELECT 1;
