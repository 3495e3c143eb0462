-- One mailbox, one subscriber: addresses are compared with A-Z folded, over the whole
-- address (`SubscriberEmail::key`). Until now only the domain was folded, so a store may
-- hold twins such as `ada@example.org` and `Ada@example.org`. When the store opens
-- after this migration (src/store/mailbox_merge.sql, run once, before the unique index
-- on lower(email) exists) they are merged into the oldest row (its spelling is the one first given, kept for sending):
--   * status: the strongest (unsubscribed, then bounced, then active, then pending), with
--     that twin's withdrawal record;
--   * consent: the earliest recorded;
--   * name: the oldest row's, else the first twin's that has one;
--   * bounce count: the highest;
--   * the ledger and every other table that refers to subscribers(id) are repointed;
--     where two twins both have a ledger row for one issue, the row furthest along
--     (sent, failed, retrying, queued, skipped) is kept.
-- Every merged row is written to `subscriber_merges`; the store reports the rows it has
-- not reported yet each time it opens, and a merged id keeps resolving to the row it
-- was merged into (tokens in mail already sent sign the old id).

CREATE TABLE subscriber_merges (
    merged_id       INTEGER PRIMARY KEY,
    kept_id         INTEGER NOT NULL REFERENCES subscribers (id),
    merged_email    TEXT    NOT NULL,
    merged_status   TEXT    NOT NULL,
    kept_email      TEXT    NOT NULL,
    -- The kept row's status after the merge.
    kept_status     TEXT    NOT NULL,
    merged_at       INTEGER NOT NULL,
    -- Set once the merge has been logged at start-up.
    reported_at     INTEGER
);
