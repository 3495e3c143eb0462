-- Merges twins (two spellings of one mailbox) found in a store written before addresses
-- were compared whole; see migrations/0030_one_subscriber_per_mailbox.sql for the rules.
-- Run by `mailbox_merge.rs` in one transaction, in two parts around the repointing of
-- every other table that refers to subscribers(id), which the Rust side finds from the
-- schema (so tables added later are repointed too).

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
    withdrawn_evidence = (SELECT f.withdrawn_evidence FROM twin_best b
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

-- @@ repoint @@

DELETE FROM subscribers WHERE id IN (SELECT id FROM twin_members WHERE id <> kept_id);

DROP TABLE temp.twin_deliveries_dropped;
DROP TABLE temp.twin_best;
DROP TABLE temp.twin_members;

-- From now on the database itself refuses a second spelling of one mailbox, whichever
-- code path writes it. Lookups use `lower(email) = ?` so they are served by this index.
CREATE UNIQUE INDEX subscribers_by_mailbox ON subscribers (lower(email));
