-- What reconciliation found when it read KV's values: entries at the right version that are not
-- what keygate signed, in the last pass, and the last time any were found.
ALTER TABLE sync_state ADD COLUMN last_reconcile_tampered BIGINT;
ALTER TABLE sync_state ADD COLUMN last_tampering_at BIGINT;
ALTER TABLE sync_state ADD COLUMN last_tampering_entries BIGINT;
