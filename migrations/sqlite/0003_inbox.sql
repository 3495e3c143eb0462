-- The inbox worker: what it has handled, the notices it owes, and withdrawn consent.

-- Every message the worker has looked at, recorded before the message is flagged or
-- moved, so a crash or a restart never acts on it twice.
CREATE TABLE inbox_messages (
    -- 'mid:<Message-ID>' or, for a message without one, 'sha256:<hex of its bytes>'.
    key             TEXT    PRIMARY KEY,
    -- unsubscribe | bounce | ignore | for-a-person
    command         TEXT    NOT NULL,
    -- What became of it in the mailbox: moved to the processed folder, or left unread.
    disposition     TEXT    NOT NULL CHECK (disposition IN ('processed', 'for-a-person')),
    subscriber_id   INTEGER REFERENCES subscribers (id),
    detail          TEXT,
    processed_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Unsubscribe notices: written in the transaction that unsubscribes, sent afterwards,
-- so a crash in between still sends the notice (once) on the next poll. The rows also
-- carry the per-address daily limit.
CREATE TABLE inbox_notices (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id),
    email           TEXT    NOT NULL,
    message_key     TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Set when the notice is given up (sent or too many failures).
    done            INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);

CREATE INDEX inbox_notices_by_email ON inbox_notices (email, created_at);
CREATE INDEX inbox_notices_owed ON inbox_notices (id) WHERE done = 0;

-- The other half of the consent record: when and how consent was withdrawn
-- (e.g. 'inbox:mid:<Message-ID>'). Cleared when the subscriber comes back.
ALTER TABLE subscribers ADD COLUMN withdrawn_at INTEGER;
ALTER TABLE subscribers ADD COLUMN withdrawn_source TEXT;
