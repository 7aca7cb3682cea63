-- The outbox in the order it is drained: keys that must stop working first, then as written.
-- The pusher's claim and the change feed read the first rows of these and stop, so a batch costs
-- its own size however long the backlog is (a full scan and sort per batch made draining a
-- backlog of n rows cost about n^2 / batch rows).
CREATE INDEX outbox_kv_pending ON outbox (kv_done, priority, outbox_id);
CREATE INDEX outbox_unfed ON outbox (fed, priority, outbox_id);
