-- keygate schema 5 (SQLite): grant ceilings and restrictions members cannot lift.
-- Twin of the other dialect's 0005_ceilings.sql, identical below this header.

-- What an admin lets a role, or one user, put on a key (docs/security.md). subject is
-- 'role:member', 'role:key_manager' or 'user:<app_user_id>'; no row: the built-in default.
CREATE TABLE grant_ceiling (
    subject TEXT PRIMARY KEY,
    ceiling TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL REFERENCES app_user (app_user_id)
);

-- The restrictions a key manager or admin placed on someone else's key, which the owner cannot
-- lift: a JSON object from the restricted field to who set it and when.
ALTER TABLE api_key ADD COLUMN restrictions TEXT NOT NULL DEFAULT '{}';
