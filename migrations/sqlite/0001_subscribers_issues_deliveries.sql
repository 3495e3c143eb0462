-- Subscribers, frozen issues and the delivery ledger.
--
-- Times are INTEGER seconds since the Unix epoch (UTC): they compare and sort as numbers,
-- and a PostgreSQL backend can store them as BIGINT or convert at its boundary.
-- Later migrations (0002+) add the daemon's slot claims, the inbox and the web; they refer
-- to subscribers(id) and issues(id), which never change once written.

CREATE TABLE subscribers (
    -- Tokens sign this id: it must never be reused, hence AUTOINCREMENT.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The address as `SubscriberEmail` normalises it (domain lower-cased, local part kept);
    -- the lookup key, so two spellings of one mailbox are one subscriber.
    email           TEXT    NOT NULL UNIQUE,
    name            TEXT,
    status          TEXT    NOT NULL
                    CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced')),
    -- The consent record: when, how (e.g. 'import:list.csv', 'cli', 'web') and from where.
    consent_at      INTEGER,
    consent_source  TEXT,
    consent_ip      TEXT,
    -- Permanent failures (5xx, DSNs) since the last successful delivery.
    bounce_count    INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE INDEX subscribers_by_status ON subscribers (status, id);

-- An issue as it was frozen: rendered once, with per-recipient slots, so every message
-- (and every resend after a crash) is built from the same text.
CREATE TABLE issues (
    id              TEXT    PRIMARY KEY,            -- YYYY-MM-DD
    subject         TEXT    NOT NULL,
    -- Rendered HTML and text with the slot markers `Personalized::marked` writes.
    html_template   TEXT    NOT NULL,
    text_template   TEXT    NOT NULL,
    -- The Date header of every message of the issue.
    message_date    INTEGER NOT NULL,
    frozen_at       INTEGER NOT NULL
);

-- The section files an issue was composed from.
CREATE TABLE issue_sources (
    issue_id        TEXT    NOT NULL REFERENCES issues (id),
    file_name       TEXT    NOT NULL,
    content         TEXT    NOT NULL,
    PRIMARY KEY (issue_id, file_name)
);

-- The delivery ledger: one row per issue and subscriber, written when the audience is
-- snapshotted and updated only after the transport answered.
CREATE TABLE deliveries (
    issue_id          TEXT    NOT NULL REFERENCES issues (id),
    subscriber_id     INTEGER NOT NULL REFERENCES subscribers (id),
    status            TEXT    NOT NULL
                      CHECK (status IN ('queued', 'sent', 'retrying', 'failed', 'skipped')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    -- When the row is due (queued and retrying rows only).
    next_attempt_at   INTEGER NOT NULL,
    first_attempt_at  INTEGER,
    last_error        TEXT,
    sent_at           INTEGER,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (issue_id, subscriber_id)
) WITHOUT ROWID;

-- What the worker asks for: due rows, oldest first.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, issue_id, subscriber_id)
    WHERE status IN ('queued', 'retrying');
