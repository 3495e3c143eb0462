-- Row claims on the delivery ledger, so several processes on one store can send one
-- issue together. A worker claims a batch of due rows (claimed_by: its batch token,
-- `host:pid:n#batch`; claim_expires_at: whole seconds), sends them, and writes a result
-- only to a row it still holds, clearing the claim. A claim past its time is free for
-- any worker to take: that is how the rows of a worker that died are sent after all.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claim_expires_at INTEGER;

-- What the claim asks for: due rows in order, skipping those under a live claim. The
-- claim's expiry is in the index, so rows claimed by others are passed over in it.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, issue_id, subscriber_id, claim_expires_at)
    WHERE status IN ('queued', 'retrying', 'unknown');

-- A batch's rows by its token (renewing, recording, `status`): only claimed rows,
-- at most a few batches per worker, are in it.
CREATE INDEX deliveries_claimed ON deliveries (claimed_by) WHERE claimed_by IS NOT NULL;
