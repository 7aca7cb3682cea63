-- The outbox in the order the pusher drains it: keys that must stop working first, then as
-- written. A claim reads the first free rows of this index and stops, so a batch costs its own
-- size however long the backlog is (grouping the whole outbox for every batch made draining a
-- backlog of n rows cost about n^2 / batch row reads).
CREATE INDEX outbox_kv_pending ON outbox (kv_done, priority, outbox_id);
