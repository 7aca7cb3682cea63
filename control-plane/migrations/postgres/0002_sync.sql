-- keygate schema 2 (PostgreSQL): snapshot sync.
-- Twin of the other dialect's 0002_sync.sql, identical below this header.
-- What the snapshot pusher needs beyond the outbox itself.

-- 0 = the key must stop working (revoked, disabled, deleted): pushed before anything else;
-- 1 = any other change; 2 = a rebuild or repair (`keygate sync --full`, anti-entropy).
ALTER TABLE outbox ADD COLUMN priority BIGINT NOT NULL DEFAULT 1;
CREATE INDEX outbox_by_key ON outbox (api_key_id, version);

-- Which pusher works on a key, or until when a key that failed waits before its next attempt.
-- One claim per key, not per outbox row: a change written while a push is in flight must wait
-- for it, or two pushers could land two versions of one key in the wrong order.
CREATE TABLE sync_claim (
    api_key_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);

-- Deleted keys, so that reconciliation can tell a tombstone in KV from an entry nobody wrote.
CREATE TABLE key_tombstone (
    api_key_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    deleted_at BIGINT NOT NULL
);

-- The last outcome of any pusher, shared by all replicas: what GET /v1/sync/status reports.
CREATE TABLE sync_state (
    sync_state_id INTEGER PRIMARY KEY,
    last_success_at BIGINT,
    last_error_at BIGINT,
    last_error TEXT,
    last_reconcile_at BIGINT,
    last_reconcile_repairs BIGINT
);
INSERT INTO sync_state (sync_state_id) VALUES (1);
