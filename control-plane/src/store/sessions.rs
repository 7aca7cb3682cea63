//! Dashboard sessions: a random id in the browser's cookie, its SHA-256 here, and the token the
//! session acts as. The token's standing is checked on every request ([`find`] joins it), so a
//! revoked token or a deactivated user ends its sessions at once, on every replica.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keygate_shared::{Digest, KeyId};
use rand_core::{OsRng, RngCore, UnwrapErr};
use sqlx::Row;

use super::users::{self, TokenHolder};
use super::{Db, StoreError};

/// How long a session lasts: since its last request, and since it started.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub idle_seconds: i64,
    pub absolute_seconds: i64,
}

/// A session that is still within both lifetimes, with its token's holder as of now.
#[derive(Debug)]
pub struct Session {
    pub holder: TokenHolder,
    pub last_seen_at: i64,
}

/// Starts a session acting as `token_id`; returns the secret for the cookie (32 random bytes,
/// base64url), which is not stored. Sessions past either lifetime are deleted first, so
/// abandoned ones do not pile up.
pub async fn start(
    db: &Db,
    token_id: &str,
    lifetimes: Lifetimes,
    now: i64,
) -> Result<String, StoreError> {
    sqlx::query("DELETE FROM ui_session WHERE last_seen_at <= $1 OR created_at <= $2")
        .bind(now - lifetimes.idle_seconds)
        .bind(now - lifetimes.absolute_seconds)
        .execute(db.writer())
        .await?;
    let mut bytes = [0u8; 32];
    UnwrapErr(OsRng).fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    sqlx::query(
        "INSERT INTO ui_session (session_digest, access_token_id, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $3)",
    )
    .bind(Digest::of_key(&secret).to_hex())
    .bind(token_id)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(secret)
}

/// The session whose cookie secret is `secret`, if it exists and has not outlived `lifetimes`
/// (an outlived one is deleted). Its token's standing is the caller's to judge.
pub async fn find(
    db: &Db,
    secret: &str,
    lifetimes: Lifetimes,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    let digest = Digest::of_key(secret).to_hex();
    let row = sqlx::query(
        "SELECT access_token_id, created_at, last_seen_at FROM ui_session WHERE session_digest = $1",
    )
    .bind(&digest)
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let created_at: i64 = row.try_get("created_at")?;
    let last_seen_at: i64 = row.try_get("last_seen_at")?;
    if now - last_seen_at >= lifetimes.idle_seconds
        || now - created_at >= lifetimes.absolute_seconds
    {
        end(db, secret).await?;
        return Ok(None);
    }
    let token_id: String = row.try_get("access_token_id")?;
    let token_id = KeyId::parse(&token_id)
        .map_err(|error| super::corrupt("session's token", &token_id, error))?;
    Ok(users::token_holder(db, &token_id)
        .await?
        .map(|holder| Session {
            holder,
            last_seen_at,
        }))
}

/// Notes a request at `now`, which restarts the idle lifetime.
pub async fn touch(db: &Db, secret: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE ui_session SET last_seen_at = $1 WHERE session_digest = $2")
        .bind(now)
        .bind(Digest::of_key(secret).to_hex())
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Ends the session (signing out); ending one that does not exist is not an error.
pub async fn end(db: &Db, secret: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM ui_session WHERE session_digest = $1")
        .bind(Digest::of_key(secret).to_hex())
        .execute(db.writer())
        .await?;
    Ok(())
}
