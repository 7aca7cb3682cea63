-- Dashboard sessions (/ui). The browser holds a random session id in an HttpOnly cookie; only its
-- SHA-256 is stored. A session acts as the token it was started with: revoking the token or
-- deactivating its user ends the session at its next request, on every replica.
CREATE TABLE ui_session (
    session_digest TEXT PRIMARY KEY,
    access_token_id TEXT NOT NULL REFERENCES access_token (access_token_id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX ui_session_by_token ON ui_session (access_token_id);
