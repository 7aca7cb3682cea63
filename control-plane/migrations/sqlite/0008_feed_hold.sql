-- An outbox row KV has written while the change feed had not taken it (the feed was failing for
-- longer than the hold, KEYGATE_FEED_HOLD_SECONDS): KV does not take it again, and the row stays
-- until the feed has it too.
ALTER TABLE outbox ADD COLUMN kv_done INTEGER NOT NULL DEFAULT 0;
