-- keygate schema 1 (SQLite). Its PostgreSQL twin is migrations/postgres/0001_init.sql: the same
-- tables, columns and constraints, differing only where the dialects do (identity columns).
-- Times are Unix seconds; lists and maps are JSON text, read and written only through keygate.

-- "user" is reserved in PostgreSQL, hence app_user.
CREATE TABLE app_user (
    app_user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'key_manager', 'member')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deactivated_at BIGINT
);

-- One row at most: several replicas starting together bootstrap exactly one first admin.
CREATE TABLE bootstrap (
    bootstrap_id INTEGER PRIMARY KEY CHECK (bootstrap_id = 1),
    app_user_id TEXT NOT NULL REFERENCES app_user (app_user_id),
    created_at BIGINT NOT NULL
);

-- Control-plane tokens: keygate keys of the control plane's own prefix; only the digest is kept.
CREATE TABLE access_token (
    access_token_id TEXT PRIMARY KEY,
    app_user_id TEXT NOT NULL REFERENCES app_user (app_user_id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_by TEXT REFERENCES app_user (app_user_id),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX access_token_by_user ON access_token (app_user_id);

-- The permission catalogue: the only permissions a key may hold, and the named sets of them.
CREATE TABLE permission (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE permission_set (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_key (
    api_key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    environment TEXT NOT NULL CHECK (environment IN ('production', 'staging', 'development')),
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
    digest TEXT NOT NULL,
    previous_digest TEXT,
    previous_expires_at BIGINT,
    permissions TEXT NOT NULL,
    permission_sets TEXT NOT NULL,
    grants TEXT NOT NULL,
    customer_id TEXT,
    expires_at BIGINT,
    rate_limit_requests BIGINT,
    rate_limit_window_seconds BIGINT,
    ip_allowlist TEXT NOT NULL,
    metadata TEXT NOT NULL,
    owner_id TEXT NOT NULL REFERENCES app_user (app_user_id),
    created_by TEXT NOT NULL REFERENCES app_user (app_user_id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT,
    last_used_at BIGINT,
    version BIGINT NOT NULL,
    CHECK ((previous_digest IS NULL) = (previous_expires_at IS NULL)),
    CHECK ((rate_limit_requests IS NULL) = (rate_limit_window_seconds IS NULL))
);
-- Listings run newest first, by (created_at, api_key_id), overall or per owner.
CREATE INDEX api_key_by_created ON api_key (created_at, api_key_id);
CREATE INDEX api_key_by_owner ON api_key (owner_id, created_at, api_key_id);

CREATE TABLE audit_event (
    audit_event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at BIGINT NOT NULL,
    actor_id TEXT,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    summary TEXT NOT NULL,
    request_id TEXT,
    client_ip TEXT
);
CREATE INDEX audit_event_by_target ON audit_event (target_id, audit_event_id);

-- Snapshot records waiting for the pusher, written in the transaction that changed the key.
CREATE TABLE outbox (
    outbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
    api_key_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    record TEXT NOT NULL,
    enqueued_at BIGINT NOT NULL,
    UNIQUE (api_key_id, version)
);
