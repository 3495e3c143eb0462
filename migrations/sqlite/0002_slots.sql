-- The daemon's schedule: one row per slot it has acted on.
--
-- A slot is claimed here before anything is sent (state 'claimed', by an UPDATE that only
-- one daemon can win), so a restart, a second daemon on the same store, or a catch-up
-- never sends it twice.

CREATE TABLE slots (
    -- The slot's time, seconds since the epoch (UTC).
    at              INTEGER PRIMARY KEY,
    issue_id        TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'held', 'claimed', 'given_up', 'missed')),
    -- When the proof went to the editors (claimed before sending, so it goes once).
    proof_sent_at   INTEGER,
    -- For a held slot: when to look at the sections folder again.
    next_check_at   INTEGER,
    claimed_by      TEXT,
    claimed_at      INTEGER,
    -- Set once the claimed issue is frozen and its files archived: until then a restart
    -- finishes the job.
    frozen_at       INTEGER,
    -- What held, gave up or missed it, for `gazette status`.
    note            TEXT,
    updated_at      INTEGER NOT NULL
);

-- Leases: one holder at a time for work that must not run twice at once (the delivery
-- worker). A holder renews its lease as it works; an expired lease, or one whose holder
-- process is gone from this host, can be taken over.
CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);
