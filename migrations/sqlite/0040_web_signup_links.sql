-- Confirmation links name one sign-up request and die with it.
--
-- `closed_at` is when a request's link stopped working: it was used, another request
-- of the same subscriber was confirmed, or the subscriber unsubscribed or bounced
-- after it was made. `confirmed_at` now marks only the request whose link was used.
--
-- Links sent before this migration named the subscriber; they no longer verify, so
-- every request open until now is closed here (whoever waits for one signs up again).
ALTER TABLE web_signups ADD COLUMN closed_at INTEGER;

UPDATE web_signups SET closed_at = COALESCE(confirmed_at, requested_at);

DROP INDEX IF EXISTS web_signups_open;

CREATE INDEX web_signups_open ON web_signups (subscriber_id, requested_at)
    WHERE closed_at IS NULL;

-- Whatever makes a subscriber unsubscribed or bounced (the web, a reply, a bounce, the
-- command line, an import) closes their open requests: a link issued before someone
-- left can never bring them back.
CREATE TRIGGER web_signups_close_on_leaving
AFTER UPDATE OF status ON subscribers
WHEN NEW.status IN ('unsubscribed', 'bounced') AND OLD.status <> NEW.status
BEGIN
    UPDATE web_signups SET closed_at = NEW.updated_at
    WHERE subscriber_id = NEW.id AND closed_at IS NULL;
END;
