//! API keys: the rows behind `/v1/keys`. Each change bumps the key's version and queues the new
//! [`SnapshotRecord`] in the outbox in the same transaction; a change made from a stale read loses
//! (optimistic concurrency on `version`) rather than overwriting a newer one.

use keygate_shared::{
    CustomerId, Digest, Environment, Grants, IpAllowlist, KeyId, KeyRecord, OwnerId,
    PreviousDigest, RateLimit, RecordState, SnapshotRecord, Status, is_expired,
};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, FromRow, Row};

use super::{Actor, Conditions, Db, Param, Refusal, StoreError, audit, outbox, placeholders};

/// A key as the control plane knows it: the edge's record plus what people manage it by.
#[derive(Clone, Debug)]
pub struct Key {
    pub key_id: KeyId,
    pub name: String,
    pub description: Option<String>,
    pub environment: Environment,
    pub status: Status,
    pub digest: Digest,
    pub previous: Option<PreviousDigest>,
    /// The grants as requested, before the sets were expanded.
    pub permissions: Vec<String>,
    pub permission_sets: Vec<String>,
    /// What the key holds: `permissions` plus every set's, as the edge checks them.
    pub grants: Grants,
    pub customer_id: Option<CustomerId>,
    pub expires_at: Option<i64>,
    pub rate_limit: Option<RateLimit>,
    pub ip_allowlist: IpAllowlist,
    pub metadata: Map<String, Value>,
    pub owner_id: OwnerId,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub last_used_at: Option<i64>,
    pub version: u64,
    /// What a key manager or admin restricted on this key, which its owner cannot lift.
    pub restrictions: Restrictions,
}

/// What a key manager or admin can restrict on someone else's key. The owner may tighten it
/// further, but only someone who manages others' keys can loosen or lift it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Restriction {
    /// The key is disabled.
    Disabled,
    CustomerId,
    ExpiresAt,
    RateLimit,
    IpAllowlist,
}

impl Restriction {
    pub const ALL: [Self; 5] = [
        Self::Disabled,
        Self::CustomerId,
        Self::ExpiresAt,
        Self::RateLimit,
        Self::IpAllowlist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::CustomerId => "customer_id",
            Self::ExpiresAt => "expires_at",
            Self::RateLimit => "rate_limit",
            Self::IpAllowlist => "ip_allowlist",
        }
    }
}

/// Who placed a restriction, and when (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBy {
    pub by: String,
    pub at: i64,
}

pub type Restrictions = BTreeMap<Restriction, SetBy>;

/// The SQL mirror of [`is_expired`] for a key that is `active`: `expired` (or not) at the
/// parameter `now`. The listing filters and the metrics' counts both use these, and a test holds
/// them to the Rust rule at the boundary.
fn expired_sql(now: &str) -> String {
    format!("status = 'active' AND expires_at <= {now}")
}

fn live_sql(now: &str) -> String {
    format!("status = 'active' AND (expires_at IS NULL OR expires_at > {now})")
}

/// What a listing shows as a key's status: [`Status`] plus `expired`, which is a matter of time.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Disabled,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

impl Key {
    pub fn status_at(&self, now: i64) -> KeyStatus {
        match self.status {
            Status::Revoked => KeyStatus::Revoked,
            Status::Disabled => KeyStatus::Disabled,
            Status::Active if is_expired(self.expires_at, now) => KeyStatus::Expired,
            Status::Active => KeyStatus::Active,
        }
    }

    /// The record the edge decides this key by.
    pub fn snapshot(&self) -> SnapshotRecord {
        SnapshotRecord {
            key_id: self.key_id,
            version: self.version,
            state: RecordState::Present(KeyRecord {
                status: self.status,
                digest: self.digest,
                previous: self.previous.clone(),
                environment: self.environment,
                not_before: None,
                expires_at: self.expires_at,
                permissions: self.grants.clone(),
                customer_id: self.customer_id.clone(),
                rate_limit: self.rate_limit,
                ip_allowlist: self.ip_allowlist.clone(),
                owner_id: self.owner_id.clone(),
            }),
        }
    }
}

#[derive(FromRow)]
struct KeyRow {
    api_key_id: String,
    name: String,
    description: Option<String>,
    environment: String,
    status: String,
    digest: String,
    previous_digest: Option<String>,
    previous_expires_at: Option<i64>,
    permissions: String,
    permission_sets: String,
    grants: String,
    customer_id: Option<String>,
    expires_at: Option<i64>,
    rate_limit_requests: Option<i64>,
    rate_limit_window_seconds: Option<i64>,
    ip_allowlist: String,
    metadata: String,
    owner_id: String,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
    last_used_at: Option<i64>,
    version: i64,
    restrictions: String,
}

const KEY_COLUMNS: &str = "api_key_id, name, description, environment, status, digest, \
    previous_digest, previous_expires_at, permissions, permission_sets, grants, customer_id, \
    expires_at, rate_limit_requests, rate_limit_window_seconds, ip_allowlist, metadata, owner_id, \
    created_by, created_at, updated_at, revoked_at, revoked_reason, last_used_at, version, \
    restrictions";

impl TryFrom<KeyRow> for Key {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let id = row.api_key_id.clone();
        let bad = |detail: String| super::corrupt("key", &id, detail);
        let status = Status::parse(&row.status)
            .ok_or_else(|| bad(format!("unknown status {:?}", row.status)))?;
        let previous = match (row.previous_digest, row.previous_expires_at) {
            (Some(digest), Some(expires_at)) => Some(PreviousDigest {
                digest: Digest::from_hex(&digest).map_err(|error| bad(error.to_string()))?,
                expires_at,
            }),
            _ => None,
        };
        let rate_limit = match (row.rate_limit_requests, row.rate_limit_window_seconds) {
            (Some(requests), Some(window)) => Some(
                u32::try_from(requests)
                    .ok()
                    .zip(u32::try_from(window).ok())
                    .and_then(|(requests, window)| RateLimit::new(requests, window).ok())
                    .ok_or_else(|| bad("rate limit out of range".into()))?,
            ),
            _ => None,
        };
        Ok(Self {
            key_id: KeyId::parse(&row.api_key_id).map_err(|error| bad(error.to_string()))?,
            name: row.name,
            description: row.description,
            environment: Environment::from_name(&row.environment)
                .ok_or_else(|| bad("unknown environment".into()))?,
            status,
            digest: Digest::from_hex(&row.digest).map_err(|error| bad(error.to_string()))?,
            previous,
            permissions: from_json(&id, &row.permissions)?,
            permission_sets: from_json(&id, &row.permission_sets)?,
            grants: from_json(&id, &row.grants)?,
            customer_id: row
                .customer_id
                .map(|customer| CustomerId::parse(&customer))
                .transpose()
                .map_err(|error| bad(error.to_string()))?,
            expires_at: row.expires_at,
            rate_limit,
            ip_allowlist: from_json(&id, &row.ip_allowlist)?,
            metadata: from_json(&id, &row.metadata)?,
            owner_id: OwnerId::parse(&row.owner_id).map_err(|error| bad(error.to_string()))?,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            revoked_at: row.revoked_at,
            revoked_reason: row.revoked_reason,
            last_used_at: row.last_used_at,
            version: u64::try_from(row.version).map_err(|error| bad(error.to_string()))?,
            restrictions: from_json(&id, &row.restrictions)?,
        })
    }
}

fn from_json<T: serde::de::DeserializeOwned>(id: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| super::corrupt("key", id, error))
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("key fields serialise to JSON")
}

/// Writes every column of `key`. `expected` is the version the change was computed from: `Some`
/// updates only if the row still has it, `None` inserts a new row.
async fn write(
    connection: &mut AnyConnection,
    key: &Key,
    expected: Option<u64>,
) -> Result<bool, StoreError> {
    let sql = match expected {
        None => format!(
            "INSERT INTO api_key ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)"
        ),
        Some(_) => "UPDATE api_key SET name = $2, description = $3, environment = $4, \
             status = $5, digest = $6, previous_digest = $7, previous_expires_at = $8, \
             permissions = $9, permission_sets = $10, grants = $11, customer_id = $12, \
             expires_at = $13, rate_limit_requests = $14, rate_limit_window_seconds = $15, \
             ip_allowlist = $16, metadata = $17, owner_id = $18, created_by = $19, \
             created_at = $20, updated_at = $21, revoked_at = $22, revoked_reason = $23, \
             last_used_at = COALESCE(last_used_at, $24), version = $25, restrictions = $26 \
             WHERE api_key_id = $1 AND version = $27"
            .to_owned(),
    };
    let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let mut query = sqlx::query(&sql)
        .bind(key.key_id.as_str())
        .bind(&key.name)
        .bind(key.description.as_deref())
        .bind(key.environment.name())
        .bind(key.status.as_str())
        .bind(key.digest.to_hex())
        .bind(
            key.previous
                .as_ref()
                .map(|previous| previous.digest.to_hex()),
        )
        .bind(key.previous.as_ref().map(|previous| previous.expires_at))
        .bind(to_json(&key.permissions))
        .bind(to_json(&key.permission_sets))
        .bind(to_json(&key.grants))
        .bind(key.customer_id.as_ref().map(CustomerId::as_str))
        .bind(key.expires_at)
        .bind(key.rate_limit.map(|limit| i64::from(limit.requests())))
        .bind(
            key.rate_limit
                .map(|limit| i64::from(limit.window_seconds())),
        )
        .bind(to_json(&key.ip_allowlist))
        .bind(to_json(&key.metadata))
        .bind(key.owner_id.as_str())
        .bind(&key.created_by)
        .bind(key.created_at)
        .bind(key.updated_at)
        .bind(key.revoked_at)
        .bind(key.revoked_reason.as_deref())
        .bind(key.last_used_at)
        .bind(as_i64(key.version))
        .bind(to_json(&key.restrictions));
    if let Some(expected) = expected {
        query = query.bind(as_i64(expected));
    }
    Ok(query.execute(connection).await?.rows_affected() == 1)
}

async fn fetch(connection: &mut AnyConnection, key_id: &KeyId) -> Result<Option<Key>, StoreError> {
    sqlx::query_as::<_, KeyRow>(&format!(
        "SELECT {KEY_COLUMNS} FROM api_key WHERE api_key_id = $1"
    ))
    .bind(key_id.as_str())
    .fetch_optional(connection)
    .await?
    .map(Key::try_from)
    .transpose()
}

/// The current records of up to `limit` keys whose ids follow `after`, in id order.
pub(crate) async fn snapshots_after(
    connection: &mut AnyConnection,
    after: &str,
    limit: usize,
) -> Result<Vec<SnapshotRecord>, StoreError> {
    sqlx::query_as::<_, KeyRow>(&format!(
        "SELECT {KEY_COLUMNS} FROM api_key WHERE api_key_id > $1 ORDER BY api_key_id LIMIT $2"
    ))
    .bind(after)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(connection)
    .await?
    .into_iter()
    .map(|row| Ok(Key::try_from(row)?.snapshot()))
    .collect()
}

/// The current records of those of `key_ids` that exist.
pub(crate) async fn snapshots_of(
    connection: &mut AnyConnection,
    key_ids: &[String],
) -> Result<Vec<SnapshotRecord>, StoreError> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_key WHERE api_key_id IN ({})",
        placeholders(1, key_ids.len())
    );
    let mut query = sqlx::query_as::<_, KeyRow>(&sql);
    for key_id in key_ids {
        query = query.bind(key_id.as_str());
    }
    query
        .fetch_all(connection)
        .await?
        .into_iter()
        .map(|row| Ok(Key::try_from(row)?.snapshot()))
        .collect()
}

/// Stores a new key (version 1), its outbox record and its audit row.
pub async fn create(db: &Db, key: &Key, actor: &Actor, summary: &Value) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    write(&mut tx, key, None).await?;
    outbox::enqueue(&mut tx, &key.snapshot(), actor.now).await?;
    audit::record(
        &mut tx,
        actor,
        "key.create",
        "key",
        key.key_id.as_str(),
        summary,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn get(db: &Db, key_id: &KeyId) -> Result<Option<Key>, StoreError> {
    let mut connection = db.reader().acquire().await?;
    fetch(&mut connection, key_id).await
}

/// Applies `change` to the key and stores the result as its next version, with its outbox and
/// audit rows. `change` returns the audit summary, or `None` when there is nothing to change (the
/// key is returned as it is and nothing is written), or a refusal (nothing is written).
pub async fn modify(
    db: &Db,
    key_id: &KeyId,
    actor: &Actor,
    action: &str,
    change: impl FnOnce(&mut Key) -> Result<Option<Value>, StoreError>,
) -> Result<Key, StoreError> {
    let mut tx = db.begin().await?;
    let mut key = fetch(&mut tx, key_id)
        .await?
        .ok_or(Refusal::NotFound("key"))?;
    let expected = key.version;
    let Some(summary) = change(&mut key)? else {
        return Ok(key);
    };
    key.version = expected + 1;
    key.updated_at = actor.now;
    if !write(&mut tx, &key, Some(expected)).await? {
        return Err(concurrent_update());
    }
    outbox::enqueue(&mut tx, &key.snapshot(), actor.now).await?;
    audit::record(&mut tx, actor, action, "key", key_id.as_str(), &summary).await?;
    tx.commit().await?;
    Ok(key)
}

/// Every key `owner_id` owns that is not revoked.
pub async fn not_revoked_of(db: &Db, owner_id: &str) -> Result<Vec<Key>, StoreError> {
    sqlx::query_as::<_, KeyRow>(&format!(
        "SELECT {KEY_COLUMNS} FROM api_key WHERE owner_id = $1 AND status <> 'revoked'"
    ))
    .bind(owner_id)
    .fetch_all(db.reader())
    .await?
    .into_iter()
    .map(Key::try_from)
    .collect()
}

/// Disables every active key `owner_id` owns, in the caller's transaction (a user's
/// deactivation): each gets its next version, its outbox record (a stop, pushed first) and an
/// audit row. Returns how many keys were disabled.
pub(crate) async fn disable_all_of(
    connection: &mut AnyConnection,
    owner_id: &str,
    actor: &Actor,
) -> Result<u64, StoreError> {
    let rows = sqlx::query_as::<_, KeyRow>(&format!(
        "SELECT {KEY_COLUMNS} FROM api_key WHERE owner_id = $1 AND status = 'active'"
    ))
    .bind(owner_id)
    .fetch_all(&mut *connection)
    .await?;
    let mut disabled = 0;
    for row in rows {
        let mut key = Key::try_from(row)?;
        let expected = key.version;
        key.status = Status::Disabled;
        // The admin's doing: the owner, if reactivated, cannot switch the keys back on.
        if let Some(by) = actor
            .user_id
            .as_ref()
            .filter(|by| *by != key.owner_id.as_str())
        {
            let set_by = SetBy {
                by: by.clone(),
                at: actor.now,
            };
            key.restrictions.insert(Restriction::Disabled, set_by);
        }
        key.version = expected + 1;
        key.updated_at = actor.now;
        if !write(connection, &key, Some(expected)).await? {
            return Err(concurrent_update());
        }
        outbox::enqueue(connection, &key.snapshot(), actor.now).await?;
        let summary = serde_json::json!({ "name": key.name, "because": "owner deactivated" });
        audit::record(
            connection,
            actor,
            "key.disable",
            "key",
            key.key_id.as_str(),
            &summary,
        )
        .await?;
        disabled += 1;
    }
    Ok(disabled)
}

/// Another request changed the key between this one's read and its write.
pub(crate) fn concurrent_update() -> StoreError {
    Refusal::conflict(
        "concurrent_update",
        "the key changed while this request ran; read it again and retry",
    )
    .into()
}

/// Deletes the key for good once `allowed` accepts it. The edge gets a tombstone one version
/// above the last record, so no stale write can bring the key back; the audit trail stays.
pub async fn delete(
    db: &Db,
    key_id: &KeyId,
    actor: &Actor,
    allowed: impl FnOnce(&Key) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let key = fetch(&mut tx, key_id)
        .await?
        .ok_or(Refusal::NotFound("key"))?;
    allowed(&key)?;
    let deleted = sqlx::query("DELETE FROM api_key WHERE api_key_id = $1 AND version = $2")
        .bind(key_id.as_str())
        .bind(i64::try_from(key.version).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() != 1 {
        return Err(concurrent_update());
    }
    let tombstone = SnapshotRecord {
        key_id: *key_id,
        version: key.version + 1,
        state: RecordState::Deleted,
    };
    outbox::enqueue(&mut tx, &tombstone, actor.now).await?;
    outbox::bury(&mut tx, &tombstone, actor.now).await?;
    let summary = serde_json::json!({ "name": key.name, "owner_id": key.owner_id.as_str() });
    audit::record(
        &mut tx,
        actor,
        "key.delete",
        "key",
        key_id.as_str(),
        &summary,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Which keys to list; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    pub status: Option<KeyStatus>,
    pub environment: Option<Environment>,
    pub owner_id: Option<String>,
    pub customer_id: Option<String>,
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// Only keys not used since this time (Unix seconds): last used before it, or never used
    /// and created before it.
    pub unused_since: Option<i64>,
    /// Only keys whose owner is deactivated.
    pub owner_deactivated: bool,
    /// Only keys after this one in listing order (newest first): the previous page's last key.
    pub after: Option<(i64, String)>,
}

/// Newest first, by `(created_at, key id)`, so pages are stable while keys are added.
pub async fn list(
    db: &Db,
    filter: &KeyFilter,
    now: i64,
    limit: u32,
) -> Result<Vec<Key>, StoreError> {
    let mut conditions = Conditions::default();
    if let Some(status) = filter.status {
        let clause = match status {
            KeyStatus::Active | KeyStatus::Expired => {
                let now = conditions.param(Param::Int(now));
                if status == KeyStatus::Active {
                    live_sql(&now)
                } else {
                    expired_sql(&now)
                }
            }
            KeyStatus::Disabled => "status = 'disabled'".to_owned(),
            KeyStatus::Revoked => "status = 'revoked'".to_owned(),
        };
        conditions.clause(clause);
    }
    if let Some(environment) = filter.environment {
        conditions.text("environment =", environment.name());
    }
    if let Some(owner) = &filter.owner_id {
        conditions.text("owner_id =", owner);
    }
    if filter.owner_deactivated {
        conditions.clause(
            "owner_id IN (SELECT app_user_id FROM app_user WHERE deactivated_at IS NOT NULL)"
                .to_owned(),
        );
    }
    if let Some(customer) = &filter.customer_id {
        conditions.text("customer_id =", customer);
    }
    if let Some(cutoff) = filter.unused_since {
        let cutoff = conditions.param(Param::Int(cutoff));
        conditions.clause(format!(
            "(last_used_at < {cutoff} OR (last_used_at IS NULL AND created_at < {cutoff}))"
        ));
    }
    if let Some(name) = &filter.name {
        let escaped: String = name
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = conditions.param(Param::Text(format!("%{escaped}%")));
        conditions.clause(format!("LOWER(name) LIKE {pattern} ESCAPE '\\'"));
    }
    if let Some((created_at, key_id)) = &filter.after {
        let at = conditions.param(Param::Int(*created_at));
        let id = conditions.param(Param::Text(key_id.clone()));
        // A row-value comparison, which both engines answer from the (created_at, api_key_id)
        // index; the equivalent OR form makes PostgreSQL scan every newer row.
        conditions.clause(format!("(created_at, api_key_id) < ({at}, {id})"));
    }
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_key{} ORDER BY created_at DESC, api_key_id DESC LIMIT {limit}",
        conditions.where_clause()
    );
    let rows = conditions
        .bind_all(sqlx::query(&sql))
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| Key::try_from(KeyRow::from_row(row)?))
        .collect()
}

/// How many keys are in each listing status, for `/metrics`.
pub async fn count_by_status(db: &Db, now: i64) -> Result<Vec<(KeyStatus, i64)>, StoreError> {
    let sql = format!(
        "SELECT \
           COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) AS active, \
           COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) AS expired, \
           COALESCE(SUM(CASE WHEN status = 'disabled' THEN 1 ELSE 0 END), 0) AS disabled, \
           COALESCE(SUM(CASE WHEN status = 'revoked' THEN 1 ELSE 0 END), 0) AS revoked \
         FROM api_key",
        live_sql("$1"),
        expired_sql("$1"),
    );
    let row = sqlx::query(&sql).bind(now).fetch_one(db.reader()).await?;
    Ok(vec![
        (KeyStatus::Active, row.try_get("active")?),
        (KeyStatus::Expired, row.try_get("expired")?),
        (KeyStatus::Disabled, row.try_get("disabled")?),
        (KeyStatus::Revoked, row.try_get("revoked")?),
    ])
}
