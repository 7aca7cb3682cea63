//! Users of the control plane, their roles, and their access tokens. A token is a keygate key of
//! the control plane's own prefix: shown once, stored as its digest, revocable, and dead as soon as
//! its user is deactivated.

use keygate_shared::{ApiKey, Digest, Environment, KeyFormat, KeyId};
use rand_core::{OsRng, UnwrapErr};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AnyConnection, FromRow, Row};

use super::{Actor, Backend, Db, Refusal, StoreError, audit, keys};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users and the permission catalogue.
    Admin,
    /// Manages anyone's keys.
    KeyManager,
    /// Manages only keys they own.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::KeyManager => "key_manager",
            Self::Member => "member",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Admin, Self::KeyManager, Self::Member]
            .into_iter()
            .find(|role| role.as_str() == text)
    }

    /// May act on keys owned by someone else.
    pub fn manages_all_keys(self) -> bool {
        matches!(self, Self::Admin | Self::KeyManager)
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub created_at: i64,
    pub updated_at: i64,
    pub deactivated_at: Option<i64>,
}

#[derive(FromRow)]
struct UserRow {
    app_user_id: String,
    email: String,
    role: String,
    created_at: i64,
    updated_at: i64,
    deactivated_at: Option<i64>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| super::corrupt("user", &row.app_user_id, "unknown role"))?;
        Ok(Self {
            user_id: row.app_user_id,
            email: row.email,
            role,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deactivated_at: row.deactivated_at,
        })
    }
}

const USER_COLUMNS: &str = "app_user_id, email, role, created_at, updated_at, deactivated_at";

/// A token as issued: the secret string (shown once) and its id.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: ApiKey,
    pub name: String,
    /// `None`: it does not expire (only the first admin's).
    pub expires_at: Option<i64>,
}

/// What authenticating a token needs to know about it and its user.
#[derive(Clone, Debug)]
pub struct TokenHolder {
    pub token_id: String,
    pub digest: Digest,
    pub revoked: bool,
    pub user_id: String,
    pub role: Role,
    pub user_active: bool,
    pub expires_at: Option<i64>,
}

fn new_user_id() -> String {
    format!("usr_{}", KeyId::generate(&mut UnwrapErr(OsRng)))
}

async fn insert_user(
    connection: &mut AnyConnection,
    email: &str,
    role: Role,
    now: i64,
) -> Result<User, StoreError> {
    let user = User {
        user_id: new_user_id(),
        email: email.to_owned(),
        role,
        created_at: now,
        updated_at: now,
        deactivated_at: None,
    };
    let inserted = sqlx::query(
        "INSERT INTO app_user (app_user_id, email, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&user.user_id)
    .bind(&user.email)
    .bind(role.as_str())
    .bind(now)
    .execute(&mut *connection)
    .await
    .map_err(StoreError::from);
    match inserted {
        Err(error) if error.is_unique_violation() => Err(Refusal::conflict(
            "user_exists",
            format!("a user with email {email:?} already exists"),
        )
        .into()),
        other => other.map(|_| user),
    }
}

/// What a token is issued as: its name, and when it expires (`None`: never).
#[derive(Clone, Copy, Debug)]
pub struct TokenSpec<'a> {
    pub name: &'a str,
    pub expires_at: Option<i64>,
}

async fn insert_token(
    connection: &mut AnyConnection,
    user_id: &str,
    spec: TokenSpec<'_>,
    format: &KeyFormat,
    environment: Environment,
    actor: &Actor,
) -> Result<IssuedToken, StoreError> {
    let TokenSpec { name, expires_at } = spec;
    let token = format.generate(environment, &mut UnwrapErr(OsRng));
    sqlx::query(
        "INSERT INTO access_token \
         (access_token_id, app_user_id, name, digest, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.key_id().as_str())
    .bind(user_id)
    .bind(name)
    .bind(token.digest().to_hex())
    .bind(actor.user_id.as_deref())
    .bind(actor.now)
    .bind(expires_at)
    .execute(&mut *connection)
    .await?;
    audit::record(
        connection,
        actor,
        "token.issue",
        "user",
        user_id,
        &json!({ "token_id": token.key_id().as_str(), "name": name, "expires_at": expires_at }),
    )
    .await?;
    Ok(IssuedToken {
        token,
        name: name.to_owned(),
        expires_at,
    })
}

/// Whether the first admin was created (here or on another replica).
pub async fn bootstrapped(db: &Db) -> Result<bool, StoreError> {
    let done: i64 = sqlx::query("SELECT COUNT(*) AS done FROM bootstrap")
        .fetch_one(db.reader())
        .await?
        .try_get("done")?;
    Ok(done > 0)
}

/// Creates the first admin and its token, once per database: `None` if that already happened
/// (here or on another replica).
pub async fn bootstrap(
    db: &Db,
    email: &str,
    format: &KeyFormat,
    environment: Environment,
    now: i64,
) -> Result<Option<(User, IssuedToken)>, StoreError> {
    let mut tx = db.begin().await?;
    let done: i64 = sqlx::query("SELECT COUNT(*) AS done FROM bootstrap")
        .fetch_one(&mut *tx)
        .await?
        .try_get("done")?;
    if done > 0 {
        return Ok(None);
    }
    // Two replicas starting together both see no admin; the loser fails on the email's (or
    // below, the bootstrap row's) uniqueness, and finds the winner's admin.
    let user = match insert_user(&mut tx, email, Role::Admin, now).await {
        Err(StoreError::Refused(Refusal::Conflict { .. })) => return Ok(None),
        other => other?,
    };
    let claimed = sqlx::query(
        "INSERT INTO bootstrap (bootstrap_id, app_user_id, created_at) VALUES (1, $1, $2)",
    )
    .bind(&user.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::from);
    match claimed {
        Err(error) if error.is_unique_violation() => return Ok(None),
        other => other?,
    };
    let actor = Actor {
        user_id: None,
        request_id: None,
        client_ip: None,
        now,
    };
    audit::record(
        &mut tx,
        &actor,
        "user.bootstrap",
        "user",
        &user.user_id,
        &json!({ "email": email, "role": "admin" }),
    )
    .await?;
    // The first admin's token does not expire: nobody could bootstrap again to replace it. Admins
    // issue themselves expiring tokens and revoke this one.
    let spec = TokenSpec {
        name: "bootstrap",
        expires_at: None,
    };
    let token = insert_token(&mut tx, &user.user_id, spec, format, environment, &actor).await?;
    tx.commit().await?;
    Ok(Some((user, token)))
}

pub async fn create(db: &Db, email: &str, role: Role, actor: &Actor) -> Result<User, StoreError> {
    let mut tx = db.begin().await?;
    let user = insert_user(&mut tx, email, role, actor.now).await?;
    audit::record(
        &mut tx,
        actor,
        "user.create",
        "user",
        &user.user_id,
        &json!({ "email": email, "role": role.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

pub async fn list(db: &Db) -> Result<Vec<User>, StoreError> {
    sqlx::query_as::<_, UserRow>(&format!(
        "SELECT {USER_COLUMNS} FROM app_user ORDER BY created_at, app_user_id"
    ))
    .fetch_all(db.reader())
    .await?
    .into_iter()
    .map(User::try_from)
    .collect()
}

pub async fn get(db: &Db, user_id: &str) -> Result<Option<User>, StoreError> {
    fetch(db.reader(), user_id).await
}

async fn fetch<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(
    executor: E,
    user_id: &str,
) -> Result<Option<User>, StoreError> {
    sqlx::query_as::<_, UserRow>(&format!(
        "SELECT {USER_COLUMNS} FROM app_user WHERE app_user_id = $1"
    ))
    .bind(user_id)
    .fetch_optional(executor)
    .await?
    .map(User::try_from)
    .transpose()
}

/// The user, who must exist and be active.
async fn active_user(connection: &mut AnyConnection, user_id: &str) -> Result<User, StoreError> {
    let user = fetch(connection, user_id)
        .await?
        .ok_or(Refusal::NotFound("user"))?;
    if user.deactivated_at.is_some() {
        return Err(Refusal::conflict("user_deactivated", "the user is deactivated").into());
    }
    Ok(user)
}

/// Sets a user's role, or deactivates them (`role: None`); refuses to leave no active admin.
pub async fn change(
    db: &Db,
    user_id: &str,
    change: UserChange,
    actor: &Actor,
) -> Result<User, StoreError> {
    let mut tx = db.begin().await?;
    // Changes that may remove an admin take turns: under READ COMMITTED, two admins demoting each
    // other at once would each count the other and leave none. Locking every active admin's row
    // first makes the second wait and then count what the first committed. (SQLite has one
    // writer at a time already.)
    if db.backend() == Backend::Postgres {
        sqlx::query(
            "SELECT app_user_id FROM app_user WHERE role = 'admin' AND deactivated_at IS NULL \
             FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
    }
    let user = active_user(&mut tx, user_id).await?;
    let (action, summary) = match change {
        UserChange::Role(role) => {
            sqlx::query("UPDATE app_user SET role = $2, updated_at = $3 WHERE app_user_id = $1")
                .bind(user_id)
                .bind(role.as_str())
                .bind(actor.now)
                .execute(&mut *tx)
                .await?;
            let summary = json!({ "from": user.role.as_str(), "to": role.as_str() });
            ("user.role", summary)
        }
        UserChange::Deactivate { disable_keys } => {
            sqlx::query(
                "UPDATE app_user SET deactivated_at = $2, updated_at = $2 WHERE app_user_id = $1",
            )
            .bind(user_id)
            .bind(actor.now)
            .execute(&mut *tx)
            .await?;
            let keys_disabled = if disable_keys {
                keys::disable_all_of(&mut tx, user_id, actor).await?
            } else {
                0
            };
            let summary = json!({ "email": user.email, "keys_disabled": keys_disabled });
            ("user.deactivate", summary)
        }
    };
    let admins: i64 = sqlx::query(
        "SELECT COUNT(*) AS admins FROM app_user WHERE role = 'admin' AND deactivated_at IS NULL",
    )
    .fetch_one(&mut *tx)
    .await?
    .try_get("admins")?;
    if admins == 0 {
        return Err(
            Refusal::conflict("last_admin", "at least one active admin must remain").into(),
        );
    }
    audit::record(&mut tx, actor, action, "user", user_id, &summary).await?;
    let changed = fetch(&mut *tx, user_id)
        .await?
        .ok_or(Refusal::NotFound("user"))?;
    tx.commit().await?;
    Ok(changed)
}

#[derive(Clone, Copy, Debug)]
pub enum UserChange {
    Role(Role),
    /// Deactivate; with `disable_keys`, every active key the user owns is disabled in the same
    /// transaction.
    Deactivate {
        disable_keys: bool,
    },
}

pub async fn issue_token(
    db: &Db,
    user_id: &str,
    spec: TokenSpec<'_>,
    format: &KeyFormat,
    environment: Environment,
    actor: &Actor,
) -> Result<IssuedToken, StoreError> {
    let mut tx = db.begin().await?;
    active_user(&mut tx, user_id).await?;
    let token = insert_token(&mut tx, user_id, spec, format, environment, actor).await?;
    tx.commit().await?;
    Ok(token)
}

pub async fn revoke_token(
    db: &Db,
    user_id: &str,
    token_id: &str,
    actor: &Actor,
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let revoked = sqlx::query(
        "UPDATE access_token SET revoked_at = $3 \
         WHERE access_token_id = $1 AND app_user_id = $2 AND revoked_at IS NULL",
    )
    .bind(token_id)
    .bind(user_id)
    .bind(actor.now)
    .execute(&mut *tx)
    .await?;
    if revoked.rows_affected() == 0 {
        return Err(Refusal::NotFound("active token").into());
    }
    audit::record(
        &mut tx,
        actor,
        "token.revoke",
        "user",
        user_id,
        &json!({ "token_id": token_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Clone, Debug, Serialize)]
pub struct TokenInfo {
    pub token_id: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub async fn tokens(db: &Db, user_id: &str) -> Result<Vec<TokenInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT access_token_id, name, created_at, expires_at, revoked_at FROM access_token \
         WHERE app_user_id = $1 ORDER BY created_at, access_token_id",
    )
    .bind(user_id)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(TokenInfo {
                token_id: row.try_get("access_token_id")?,
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        })
        .collect()
}

/// The token with this id and its user, for authenticating a request.
pub async fn token_holder(db: &Db, token_id: &KeyId) -> Result<Option<TokenHolder>, StoreError> {
    let row = sqlx::query(
        "SELECT t.digest, t.revoked_at, t.expires_at, u.app_user_id, u.role, u.deactivated_at \
         FROM access_token t JOIN app_user u ON u.app_user_id = t.app_user_id \
         WHERE t.access_token_id = $1",
    )
    .bind(token_id.as_str())
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id = token_id.as_str();
    let digest: String = row.try_get("digest")?;
    let role: String = row.try_get("role")?;
    Ok(Some(TokenHolder {
        token_id: id.to_owned(),
        digest: Digest::from_hex(&digest).map_err(|error| super::corrupt("token", id, error))?,
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        user_id: row.try_get("app_user_id")?,
        role: Role::parse(&role).ok_or_else(|| super::corrupt("token", id, "unknown role"))?,
        user_active: row.try_get::<Option<i64>, _>("deactivated_at")?.is_none(),
        expires_at: row.try_get("expires_at")?,
    }))
}
