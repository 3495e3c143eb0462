-- `gazette subscribers reactivate`: who brought a bounced address back, and when. Kept
-- beside the consent record (which still says when and how the subscriber agreed), so
-- an operator's decision is never mistaken for the subscriber's own consent.
ALTER TABLE subscribers ADD COLUMN reactivated_at INTEGER;
ALTER TABLE subscribers ADD COLUMN reactivated_by TEXT;
