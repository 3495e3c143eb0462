-- When the inbox worker last finished a poll, for /metrics: one row, rewritten each poll.
CREATE TABLE inbox_polls (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  INTEGER NOT NULL
);
