-- Whether an outbox row has been appended to the edge's change feed. With a feed configured, the
-- pusher appends rows first and writes to KV only rows already fed; without one, it is unused.
ALTER TABLE outbox ADD COLUMN fed INTEGER NOT NULL DEFAULT 0;
