-- Which worker sent each message: its batch token (`host:pid:n#batch`), kept when the
-- claim is cleared. With several daemons on one store, the share each one sent; after a
-- duplicate, which process sent the row last. Empty for rows sent before this column.
ALTER TABLE deliveries ADD COLUMN sent_by TEXT;
