-- The web's sign-up requests (double opt-in).
--
-- A sign-up writes a request; the confirmation link (a Confirm token naming the
-- subscriber) is good only while the subscriber has an open request younger than the
-- confirmation window, so an old link cannot bring back someone who left since. The
-- name given on the form is applied only when the request is confirmed: a stranger
-- cannot rename a subscription. The request's address is kept as the sign-up half of
-- the consent record; the subscriber row gets the confirmation's time and address.
CREATE TABLE web_signups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id),
    name            TEXT,
    requested_at    INTEGER NOT NULL,
    requested_ip    TEXT    NOT NULL,
    confirmed_at    INTEGER,
    confirmed_ip    TEXT
);

CREATE INDEX web_signups_open ON web_signups (subscriber_id, requested_at)
    WHERE confirmed_at IS NULL;
