//! Usage reported by the edge: each decision that identified a key becomes a row of the request
//! log (`usage_event`, kept for the retention period) and a count in its key's hour
//! (`key_usage`, kept), and moves the key's `last_used_at`. Event ids make ingest idempotent: an
//! event seen before changes nothing, so at-least-once delivery counts each request once.

use keygate_shared::{CheckedEvent, KeyId, Outcome};
use sqlx::Row;

use super::{Conditions, Db, Param, StoreError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: u64,
    pub duplicates: u64,
}

/// Stores a batch in one transaction: new events are logged, counted and move `last_used_at`;
/// events already stored are counted as duplicates and change nothing.
pub async fn ingest(db: &Db, events: &[CheckedEvent], now: i64) -> Result<Ingested, StoreError> {
    let mut tx = db.begin().await?;
    let mut ingested = Ingested::default();
    for event in events {
        let inserted = sqlx::query(
            "INSERT INTO usage_event (usage_event_id, api_key_id, occurred_at_ms, method, route, \
             outcome, status, colo, latency_ms, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (usage_event_id) DO NOTHING",
        )
        .bind(&event.event_id)
        .bind(event.key_id.as_str())
        .bind(event.occurred_at_ms)
        .bind(&event.method)
        .bind(&event.route)
        .bind(event.outcome.as_str())
        .bind(i64::from(event.status))
        .bind(&event.colo)
        .bind(event.latency_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            ingested.duplicates += 1;
            continue;
        }
        ingested.accepted += 1;
        let seconds = event.occurred_at_ms.div_euclid(1000);
        let allowed = i64::from(event.outcome.is_allowed());
        sqlx::query(
            "INSERT INTO key_usage (api_key_id, hour_start, allowed, denied) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (api_key_id, hour_start) DO UPDATE SET \
             allowed = key_usage.allowed + excluded.allowed, \
             denied = key_usage.denied + excluded.denied",
        )
        .bind(event.key_id.as_str())
        .bind(seconds - seconds.rem_euclid(3600))
        .bind(allowed)
        .bind(1 - allowed)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE api_key SET last_used_at = $2 \
             WHERE api_key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(event.key_id.as_str())
        .bind(seconds)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(ingested)
}

/// Requests of one bucket: allowed and denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageBucket {
    pub start: i64,
    pub allowed: i64,
    pub denied: i64,
}

/// A key's counts from `from` (inclusive) to `to` (exclusive), in buckets of `bucket_seconds`
/// (3600 or 86400), Unix seconds; buckets without requests are left out.
pub async fn usage(
    db: &Db,
    key_id: &str,
    from: i64,
    to: i64,
    bucket_seconds: i64,
) -> Result<Vec<UsageBucket>, StoreError> {
    let rows = sqlx::query(
        "SELECT (hour_start / $4) * $4 AS bucket, CAST(SUM(allowed) AS BIGINT) AS allowed, \
         CAST(SUM(denied) AS BIGINT) AS denied FROM key_usage \
         WHERE api_key_id = $1 AND hour_start >= $2 AND hour_start < $3 \
         GROUP BY (hour_start / $4) * $4 ORDER BY bucket",
    )
    .bind(key_id)
    .bind(from)
    .bind(to)
    .bind(bucket_seconds)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UsageBucket {
                start: row.try_get("bucket")?,
                allowed: row.try_get("allowed")?,
                denied: row.try_get("denied")?,
            })
        })
        .collect()
}

/// Each key's requests (allowed and denied) per hour from `from` (inclusive, Unix seconds) on,
/// for at most [`super::CHUNK`] keys: `(key id, hour start, requests)`, hours without requests
/// left out.
pub async fn hourly(
    db: &Db,
    key_ids: &[&str],
    from: i64,
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    if key_ids.is_empty() {
        return Ok(Vec::new());
    }
    let key_ids = &key_ids[..key_ids.len().min(super::CHUNK)];
    let sql = format!(
        "SELECT api_key_id, hour_start, CAST(allowed + denied AS BIGINT) AS requests \
         FROM key_usage WHERE hour_start >= $1 AND api_key_id IN ({})",
        super::placeholders(2, key_ids.len())
    );
    let mut query = sqlx::query(&sql).bind(from);
    for key_id in key_ids {
        query = query.bind(*key_id);
    }
    let rows = query.fetch_all(db.reader()).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("api_key_id")?,
                row.try_get("hour_start")?,
                row.try_get("requests")?,
            ))
        })
        .collect()
}

/// Requests of one key in one bucket with one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutcomeCount {
    /// The bucket's start, Unix seconds.
    pub start: i64,
    pub outcome: Outcome,
    pub requests: i64,
}

/// A key's logged requests from `from` (inclusive) to `to` (exclusive), Unix seconds, counted
/// per bucket of `bucket_seconds` and outcome: what the request log still holds (its retention).
pub async fn outcomes(
    db: &Db,
    key_id: &str,
    from: i64,
    to: i64,
    bucket_seconds: i64,
) -> Result<Vec<OutcomeCount>, StoreError> {
    let rows = sqlx::query(
        "SELECT (occurred_at_ms / $4) * $4 AS bucket_ms, outcome, COUNT(*) AS requests \
         FROM usage_event WHERE api_key_id = $1 AND occurred_at_ms >= $2 AND occurred_at_ms < $3 \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(key_id)
    .bind(from * 1000)
    .bind(to * 1000)
    .bind(bucket_seconds * 1000)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            let outcome: String = row.try_get("outcome")?;
            let bucket_ms: i64 = row.try_get("bucket_ms")?;
            Ok(OutcomeCount {
                start: bucket_ms.div_euclid(1000),
                outcome: Outcome::parse(&outcome)
                    .ok_or_else(|| super::corrupt("usage event", key_id, "unknown outcome"))?,
                requests: row.try_get("requests")?,
            })
        })
        .collect()
}

/// Which log rows to list; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub key_id: Option<String>,
    /// Only events of keys this user owns.
    pub owner_id: Option<String>,
    pub outcome: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only events after this one in listing order (newest first).
    pub before: Option<(i64, String)>,
}

/// Newest first, by `(occurred_at_ms, event id)`.
pub async fn log(db: &Db, filter: &LogFilter, limit: u32) -> Result<Vec<CheckedEvent>, StoreError> {
    let mut conditions = Conditions::default();
    if let Some(key_id) = &filter.key_id {
        conditions.text("e.api_key_id =", key_id);
    }
    if let Some(owner) = &filter.owner_id {
        let placeholder = conditions.param(Param::Text(owner.clone()));
        conditions.clause(format!(
            "e.api_key_id IN (SELECT api_key_id FROM api_key WHERE owner_id = {placeholder})"
        ));
    }
    if let Some(outcome) = &filter.outcome {
        conditions.text("e.outcome =", outcome);
    }
    if let Some(since) = filter.since_ms {
        conditions.int("e.occurred_at_ms >=", since);
    }
    if let Some(until) = filter.until_ms {
        conditions.int("e.occurred_at_ms <", until);
    }
    if let Some((at, id)) = &filter.before {
        let at = conditions.param(Param::Int(*at));
        let id = conditions.param(Param::Text(id.clone()));
        conditions.clause(format!(
            "(e.occurred_at_ms, e.usage_event_id) < ({at}, {id})"
        ));
    }
    let limit = conditions.param(Param::Int(i64::from(limit)));
    let sql = format!(
        "SELECT e.usage_event_id, e.api_key_id, e.occurred_at_ms, e.method, e.route, e.outcome, \
         e.status, e.colo, e.latency_ms FROM usage_event e{} \
         ORDER BY e.occurred_at_ms DESC, e.usage_event_id DESC LIMIT {limit}",
        conditions.where_clause()
    );
    let rows = conditions
        .bind_all(sqlx::query(&sql))
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| {
            let event_id: String = row.try_get("usage_event_id")?;
            let bad = |detail: &str| super::corrupt("usage event", &event_id, detail);
            let key_id: String = row.try_get("api_key_id")?;
            let outcome: String = row.try_get("outcome")?;
            let status: i64 = row.try_get("status")?;
            Ok(CheckedEvent {
                key_id: KeyId::parse(&key_id).map_err(|_| bad("key id"))?,
                occurred_at_ms: row.try_get("occurred_at_ms")?,
                method: row.try_get("method")?,
                route: row.try_get("route")?,
                outcome: Outcome::parse(&outcome).ok_or_else(|| bad("unknown outcome"))?,
                status: u16::try_from(status).map_err(|_| bad("status"))?,
                colo: row.try_get("colo")?,
                latency_ms: row.try_get("latency_ms")?,
                event_id,
            })
        })
        .collect()
}

/// Deletes log rows older than `cutoff_ms`; the hourly counts stay. Returns how many went.
pub async fn purge(db: &Db, cutoff_ms: i64) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM usage_event WHERE occurred_at_ms < $1")
            .bind(cutoff_ms)
            .execute(db.writer())
            .await?
            .rows_affected(),
    )
}
