-- One mailbox, one subscriber: addresses are compared with A-Z folded, over the whole
-- address (`SubscriberEmail::key`). Until now only the domain was folded, so a store may
-- hold twins such as `ada@example.org` and `Ada@example.org`. They are merged here into
-- the oldest row (its spelling is the one first given, kept for sending):
--   * status: the strongest (unsubscribed, then bounced, then active, then pending), with
--     that twin's withdrawal record;
--   * consent: the earliest recorded;
--   * name: the oldest row's, else the first twin's that has one;
--   * bounce count: the highest;
--   * the ledger, the inbox's records and notices, and sign-up requests are repointed;
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

CREATE TEMP TABLE twin_members AS
    SELECT s.id AS id, g.kept_id AS kept_id
    FROM subscribers s
    JOIN (SELECT lower(email) AS email_key, min(id) AS kept_id
          FROM subscribers GROUP BY lower(email) HAVING count(*) > 1) g
      ON lower(s.email) = g.email_key;

CREATE TEMP TABLE twin_best AS
    SELECT k.kept_id AS kept_id,
        (SELECT m.id FROM twin_members m JOIN subscribers s ON s.id = m.id
         WHERE m.kept_id = k.kept_id
         ORDER BY CASE s.status WHEN 'unsubscribed' THEN 4 WHEN 'bounced' THEN 3
                                WHEN 'active' THEN 2 ELSE 1 END DESC, s.id
         LIMIT 1) AS status_from,
        (SELECT m.id FROM twin_members m JOIN subscribers s ON s.id = m.id
         WHERE m.kept_id = k.kept_id AND s.consent_at IS NOT NULL
         ORDER BY s.consent_at, s.id LIMIT 1) AS consent_from,
        (SELECT s.name FROM twin_members m JOIN subscribers s ON s.id = m.id
         WHERE m.kept_id = k.kept_id AND s.name IS NOT NULL
         ORDER BY s.id LIMIT 1) AS name,
        (SELECT max(s.bounce_count) FROM twin_members m JOIN subscribers s ON s.id = m.id
         WHERE m.kept_id = k.kept_id) AS bounce_count,
        (SELECT max(s.updated_at) FROM twin_members m JOIN subscribers s ON s.id = m.id
         WHERE m.kept_id = k.kept_id) AS updated_at
    FROM (SELECT DISTINCT kept_id FROM twin_members) k;

UPDATE subscribers SET
    status = (SELECT f.status FROM twin_best b JOIN subscribers f ON f.id = b.status_from
              WHERE b.kept_id = subscribers.id),
    withdrawn_at = (SELECT f.withdrawn_at FROM twin_best b
                    JOIN subscribers f ON f.id = b.status_from WHERE b.kept_id = subscribers.id),
    withdrawn_source = (SELECT f.withdrawn_source FROM twin_best b
                        JOIN subscribers f ON f.id = b.status_from
                        WHERE b.kept_id = subscribers.id),
    consent_at = COALESCE((SELECT f.consent_at FROM twin_best b
                           JOIN subscribers f ON f.id = b.consent_from
                           WHERE b.kept_id = subscribers.id), consent_at),
    consent_source = COALESCE((SELECT f.consent_source FROM twin_best b
                               JOIN subscribers f ON f.id = b.consent_from
                               WHERE b.kept_id = subscribers.id), consent_source),
    consent_ip = (SELECT CASE WHEN b.consent_from IS NULL THEN subscribers.consent_ip
                              ELSE f.consent_ip END
                  FROM twin_best b LEFT JOIN subscribers f ON f.id = b.consent_from
                  WHERE b.kept_id = subscribers.id),
    name = (SELECT b.name FROM twin_best b WHERE b.kept_id = subscribers.id),
    bounce_count = (SELECT b.bounce_count FROM twin_best b WHERE b.kept_id = subscribers.id),
    updated_at = (SELECT b.updated_at FROM twin_best b WHERE b.kept_id = subscribers.id)
WHERE id IN (SELECT kept_id FROM twin_best);

INSERT INTO subscriber_merges
    (merged_id, kept_id, merged_email, merged_status, kept_email, kept_status, merged_at)
SELECT s.id, m.kept_id, s.email, s.status, k.email, k.status, CAST(strftime('%s', 'now') AS INTEGER)
FROM twin_members m
JOIN subscribers s ON s.id = m.id
JOIN subscribers k ON k.id = m.kept_id
WHERE m.id <> m.kept_id;

-- The ledger: of two twins' rows for one issue, the one furthest along stays.
CREATE TEMP TABLE twin_deliveries_dropped AS
    SELECT d.issue_id AS issue_id, d.subscriber_id AS subscriber_id
    FROM deliveries d JOIN twin_members md ON md.id = d.subscriber_id
    WHERE EXISTS (
        SELECT 1 FROM deliveries o JOIN twin_members mo ON mo.id = o.subscriber_id
        WHERE o.issue_id = d.issue_id AND mo.kept_id = md.kept_id
          AND o.subscriber_id <> d.subscriber_id
          AND (CASE o.status WHEN 'sent' THEN 5 WHEN 'failed' THEN 4 WHEN 'retrying' THEN 3
                             WHEN 'queued' THEN 2 ELSE 1 END,
               -o.subscriber_id)
            > (CASE d.status WHEN 'sent' THEN 5 WHEN 'failed' THEN 4 WHEN 'retrying' THEN 3
                             WHEN 'queued' THEN 2 ELSE 1 END,
               -d.subscriber_id));

DELETE FROM deliveries WHERE (issue_id, subscriber_id) IN
    (SELECT issue_id, subscriber_id FROM twin_deliveries_dropped);

UPDATE deliveries SET subscriber_id =
    (SELECT kept_id FROM twin_members WHERE id = deliveries.subscriber_id)
WHERE subscriber_id IN (SELECT id FROM twin_members WHERE id <> kept_id);

UPDATE inbox_messages SET subscriber_id =
    (SELECT kept_id FROM twin_members WHERE id = inbox_messages.subscriber_id)
WHERE subscriber_id IN (SELECT id FROM twin_members WHERE id <> kept_id);

UPDATE inbox_notices SET subscriber_id =
    (SELECT kept_id FROM twin_members WHERE id = inbox_notices.subscriber_id)
WHERE subscriber_id IN (SELECT id FROM twin_members WHERE id <> kept_id);

UPDATE web_signups SET subscriber_id =
    (SELECT kept_id FROM twin_members WHERE id = web_signups.subscriber_id)
WHERE subscriber_id IN (SELECT id FROM twin_members WHERE id <> kept_id);

DELETE FROM subscribers WHERE id IN (SELECT id FROM twin_members WHERE id <> kept_id);

DROP TABLE temp.twin_deliveries_dropped;
DROP TABLE temp.twin_best;
DROP TABLE temp.twin_members;

-- From now on the database itself refuses a second spelling of one mailbox, whichever
-- code path writes it. Lookups use `lower(email) = ?` so they are served by this index.
CREATE UNIQUE INDEX subscribers_by_mailbox ON subscribers (lower(email));
