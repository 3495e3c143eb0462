-- Every slot ends in a state of its own, the scheduler knows since when it has kept the
-- current schedule, and a frozen issue remembers a fingerprint of its section files.
--
-- SQLite cannot change a CHECK constraint in place: the slots table is rebuilt and its
-- rows copied. A claimed slot whose issue was frozen becomes 'sent'.

CREATE TABLE slots_new (
    -- The slot's time, seconds since the epoch (UTC).
    at              INTEGER PRIMARY KEY,
    issue_id        TEXT    NOT NULL,
    -- open: nothing done yet (a proof may have gone out); held: errors, re-checked;
    -- claimed: a daemon is freezing the issue; then one of the final states:
    -- sent: frozen and handed to delivery; served: its date already had an issue (sent by
    -- `send-now` or an earlier slot that day); superseded: its files went out with another
    -- issue; given_up: held until the window ended, or could not be finished after a
    -- crash; missed: the daemon was not running in time.
    state           TEXT    NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'held', 'claimed', 'sent', 'served',
                                     'superseded', 'given_up', 'missed')),
    proof_sent_at   INTEGER,
    next_check_at   INTEGER,
    claimed_by      TEXT,
    claimed_at      INTEGER,
    frozen_at       INTEGER,
    note            TEXT,
    -- For a slot that was held: the errors that held it. A later slot held for the same
    -- issue and the same errors does not tell the editors again.
    hold_errors     TEXT,
    -- When the editors were last told about this slot.
    editors_told_at INTEGER,
    updated_at      INTEGER NOT NULL
);

INSERT INTO slots_new (at, issue_id, state, proof_sent_at, next_check_at, claimed_by,
                       claimed_at, frozen_at, note, hold_errors, updated_at)
SELECT at, issue_id,
       CASE WHEN state = 'claimed' AND frozen_at IS NOT NULL THEN 'sent' ELSE state END,
       proof_sent_at, next_check_at, claimed_by, claimed_at, frozen_at, note,
       CASE WHEN state = 'held' THEN note END, updated_at
FROM slots;

DROP TABLE slots;
ALTER TABLE slots_new RENAME TO slots;

-- Since when the scheduler has kept the schedule `send` in `timezone`: slots before it
-- were never its to send, so a fresh store or a changed schedule has missed nothing.
-- A store the daemon already ran on keeps its history: it counts from its first slot.
CREATE TABLE schedule_epoch (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    -- NULL until a scheduler records the schedule it runs (a store from before this table).
    send        TEXT,
    timezone    TEXT,
    since       INTEGER NOT NULL
);

INSERT INTO schedule_epoch (id, send, timezone, since)
SELECT 1, NULL, NULL, MIN(at) FROM slots HAVING COUNT(*) > 0;

-- SHA-256 over the issue's section files (names and bytes): the same files composed
-- again are recognised as an issue already sent. Filled in for older issues when first
-- needed.
ALTER TABLE issues ADD COLUMN sources_hash TEXT;
CREATE INDEX issues_by_sources_hash ON issues (sources_hash);
