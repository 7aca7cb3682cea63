-- keygate schema 4 (PostgreSQL): control-plane tokens may expire.
-- Twin of the other dialect's 0004_token_expiry.sql, identical below this header.
-- NULL: the token does not expire (the first admin's); new tokens get a lifetime.
ALTER TABLE access_token ADD COLUMN expires_at BIGINT;
