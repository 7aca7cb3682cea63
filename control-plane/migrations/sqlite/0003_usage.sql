-- keygate schema 3 (SQLite): usage.
-- Twin of the other dialect's 0003_usage.sql, identical below this header.
-- What the edge reports back: one row per decision that identified a key (the request log, kept
-- for KEYGATE_LOG_RETENTION_DAYS), and hourly counts per key (kept).

CREATE TABLE usage_event (
    usage_event_id TEXT PRIMARY KEY,
    api_key_id TEXT NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status BIGINT NOT NULL,
    colo TEXT NOT NULL,
    latency_ms BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX usage_event_by_key ON usage_event (api_key_id, occurred_at_ms);
CREATE INDEX usage_event_by_time ON usage_event (occurred_at_ms);

-- Counted once per event id, in the transaction that stores the event, so a replayed batch
-- counts nothing twice.
CREATE TABLE key_usage (
    api_key_id TEXT NOT NULL,
    hour_start BIGINT NOT NULL,
    allowed BIGINT NOT NULL,
    denied BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, hour_start)
);
