-- no-transaction
-- `CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced'))`: SQLite checks a
-- table's CHECK constraint with an `IN` list by building a throwaway table of the values
-- for every row it writes (an `IN` list in a query is built once per statement). That
-- was nearly a third of SQLite's work in an import. The same rule as comparisons costs a
-- few instructions a row. A CHECK constraint cannot be changed in SQLite: the table is
-- built again with it, as migration 0120 did, the way SQLite's documentation gives
-- (https://www.sqlite.org/lang_altertable.html#otheralter), with foreign keys off while
-- the old table goes, which needs this migration outside sqlx's transaction. Ran twice
-- (a crash before sqlx records it), it builds the same table again.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE subscribers_rebuilt (
    -- Tokens sign this id: it must never be reused, hence AUTOINCREMENT.
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The address as `SubscriberEmail` normalises it (domain lower-cased, local part
    -- kept); the unique index `subscribers_by_mailbox` keeps one subscriber per mailbox.
    email               TEXT    NOT NULL,
    name                TEXT,
    status              TEXT    NOT NULL
                        CHECK (status = 'pending' OR status = 'active'
                               OR status = 'unsubscribed' OR status = 'bounced'),
    -- The consent record: when, how (e.g. 'import:list.csv', 'cli', 'web') and from where.
    consent_at          INTEGER,
    consent_source      TEXT,
    consent_ip          TEXT,
    -- Permanent failures (5xx, DSNs) since the last successful delivery.
    bounce_count        INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    -- The withdrawal of consent: when, how ('cli', 'web:one-click', 'web:page', 'reply').
    withdrawn_at        INTEGER,
    withdrawn_source    TEXT,
    -- `gazette subscribers reactivate`: who brought a bounced address back, and when.
    reactivated_at      INTEGER,
    reactivated_by      TEXT,
    -- What shows the withdrawal: who ran the command, the client's address, the reply's key.
    withdrawn_evidence  TEXT
);

INSERT INTO subscribers_rebuilt (id, email, name, status, consent_at, consent_source,
    consent_ip, bounce_count, created_at, updated_at, withdrawn_at, withdrawn_source,
    reactivated_at, reactivated_by, withdrawn_evidence)
SELECT id, email, name, status, consent_at, consent_source, consent_ip, bounce_count,
    created_at, updated_at, withdrawn_at, withdrawn_source, reactivated_at, reactivated_by,
    withdrawn_evidence
FROM subscribers ORDER BY id;

-- The highest id ever handed out, which may be above every id left (a removed row).
CREATE TEMP TABLE subscribers_sequence AS
SELECT seq FROM sqlite_sequence WHERE name = 'subscribers';

DROP TABLE subscribers;
ALTER TABLE subscribers_rebuilt RENAME TO subscribers;

UPDATE sqlite_sequence
SET seq = MAX(seq, COALESCE((SELECT seq FROM temp.subscribers_sequence), 0))
WHERE name = 'subscribers';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'subscribers', seq FROM temp.subscribers_sequence
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'subscribers');
DROP TABLE temp.subscribers_sequence;

CREATE INDEX subscribers_by_status ON subscribers (status, id);
-- `subscribers_by_mailbox` goes with the old table and is made again by `Store::open`
-- right after the migrations, as for every store (src/store/mailbox_merge.rs).

-- From migration 0040: a subscriber who leaves closes their open sign-up links.
CREATE TRIGGER web_signups_close_on_leaving
AFTER UPDATE OF status ON subscribers
WHEN NEW.status IN ('unsubscribed', 'bounced') AND OLD.status <> NEW.status
BEGIN
    UPDATE web_signups SET closed_at = NEW.updated_at
    WHERE subscriber_id = NEW.id AND closed_at IS NULL;
END;

COMMIT;
PRAGMA foreign_keys = ON;
