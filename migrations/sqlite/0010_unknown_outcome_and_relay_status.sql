-- Delivery outcomes that cannot be known, and the relay's state.
--
-- 1. A ledger row may be 'unknown': the message went out but no answer came (the
--    connection broke after the final dot, or gazette stopped before the relay
--    answered). SQLite cannot change a CHECK constraint in place, so the table is
--    copied into a new one with the wider constraint; every row keeps its values.
CREATE TABLE deliveries_new (
    issue_id          TEXT    NOT NULL REFERENCES issues (id),
    subscriber_id     INTEGER NOT NULL REFERENCES subscribers (id),
    status            TEXT    NOT NULL
                      CHECK (status IN ('queued', 'sent', 'retrying', 'failed', 'skipped',
                                        'unknown')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    -- When the row is due (queued, retrying and unknown rows only).
    next_attempt_at   INTEGER NOT NULL,
    first_attempt_at  INTEGER,
    last_error        TEXT,
    sent_at           INTEGER,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (issue_id, subscriber_id)
) WITHOUT ROWID;

INSERT INTO deliveries_new (issue_id, subscriber_id, status, attempts, next_attempt_at,
                            first_attempt_at, last_error, sent_at, updated_at)
    SELECT issue_id, subscriber_id, status, attempts, next_attempt_at,
           first_attempt_at, last_error, sent_at, updated_at
    FROM deliveries;

DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;

CREATE INDEX deliveries_due ON deliveries (next_attempt_at, issue_id, subscriber_id)
    WHERE status IN ('queued', 'retrying', 'unknown');

-- 2. What the last delivery worker found out about the relay (one row): up, or down
--    since a time and tried again at retry_at. Read by `gazette status` and /metrics.
CREATE TABLE relay_status (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    up          INTEGER NOT NULL,
    since       INTEGER NOT NULL,
    retry_at    INTEGER,
    failures    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    updated_at  INTEGER NOT NULL
);
