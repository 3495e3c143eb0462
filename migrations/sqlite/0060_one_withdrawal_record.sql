-- One shape for a withdrawal of consent, whatever the channel (src/store/consent.rs):
-- `withdrawn_at` (when), `withdrawn_source` (how: 'cli', 'web:one-click', 'web:page',
-- 'reply') and, new here, `withdrawn_evidence` (what shows it: who ran the command, the
-- client's address, the reply's key in inbox_messages). Cleared, like the other two,
-- when the subscriber comes back through a confirmed sign-up.
ALTER TABLE subscribers ADD COLUMN withdrawn_evidence TEXT;

-- Replies were recorded as 'inbox:<key>': the key moves to the evidence.
UPDATE subscribers
SET withdrawn_source = 'reply', withdrawn_evidence = substr(withdrawn_source, 7)
WHERE withdrawn_source LIKE 'inbox:%';

-- Rows that say 'web' stay as they are: one-click or the page, from an address not kept.

-- `subscribers remove` recorded no withdrawal at all, so the 2-day rule of `gazette
-- doctor` could not see those removals. Every unsubscribed row without a record came
-- from it (the web and replies always wrote one); its last change is the best time
-- known, never earlier than the removal. No status changes here, so the trigger of
-- migration 0040 does not fire.
UPDATE subscribers
SET withdrawn_at = updated_at, withdrawn_source = 'cli'
WHERE status = 'unsubscribed' AND withdrawn_at IS NULL;
