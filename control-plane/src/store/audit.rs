//! The audit log: one row per mutation, written in the mutation's own transaction. Summaries name
//! what changed and never carry a key, token or digest.

use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{Actor, Conditions, Db, StoreError};

#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    pub audit_event_id: i64,
    pub occurred_at: i64,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub summary: Value,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

pub(crate) async fn record(
    connection: &mut AnyConnection,
    actor: &Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    summary: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_event \
         (occurred_at, actor_id, action, target_type, target_id, summary, request_id, client_ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(actor.now)
    .bind(actor.user_id.as_deref())
    .bind(action)
    .bind(target_type)
    .bind(target_id)
    .bind(summary.to_string())
    .bind(actor.request_id.as_deref())
    .bind(actor.client_ip.as_deref())
    .execute(connection)
    .await?;
    Ok(())
}

/// Which events to list; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only events older than this id (the cursor of the previous page).
    pub before: Option<i64>,
}

/// Newest first, `limit` at most.
pub async fn list(
    db: &Db,
    filter: &AuditFilter,
    limit: u32,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut query = Conditions::default();
    if let Some(actor) = &filter.actor_id {
        query.text("actor_id =", actor);
    }
    if let Some(action) = &filter.action {
        query.text("action =", action);
    }
    if let Some(target) = &filter.target_id {
        query.text("target_id =", target);
    }
    if let Some(since) = filter.since {
        query.int("occurred_at >=", since);
    }
    if let Some(until) = filter.until {
        query.int("occurred_at <", until);
    }
    if let Some(before) = filter.before {
        query.int("audit_event_id <", before);
    }
    let sql = format!(
        "SELECT audit_event_id, occurred_at, actor_id, action, target_type, target_id, summary, \
         request_id, client_ip FROM audit_event{} ORDER BY audit_event_id DESC LIMIT {limit}",
        query.where_clause()
    );
    let rows = query
        .bind_all(sqlx::query(&sql))
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get("audit_event_id")?;
            let summary: String = row.try_get("summary")?;
            Ok(AuditEvent {
                audit_event_id: id,
                occurred_at: row.try_get("occurred_at")?,
                actor_id: row.try_get("actor_id")?,
                action: row.try_get("action")?,
                target_type: row.try_get("target_type")?,
                target_id: row.try_get("target_id")?,
                summary: serde_json::from_str(&summary)
                    .map_err(|error| super::corrupt("audit event", &id.to_string(), error))?,
                request_id: row.try_get("request_id")?,
                client_ip: row.try_get("client_ip")?,
            })
        })
        .collect()
}
