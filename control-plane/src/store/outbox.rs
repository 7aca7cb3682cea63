//! The outbox: each key change leaves the snapshot record the edge must see, in the change's own
//! transaction. The pusher ([`crate::sync`]) drains it to Workers KV.
//!
//! Pushers claim keys, not rows: a claim (`sync_claim`) covers every pending and future record of
//! a key until it is released, so two pushers never send two versions of one key at once, even
//! when a change is written while a push is in flight. A claim is a lease with an expiry, taken
//! by an upsert that only succeeds on a free or expired claim: the database's own row locking
//! decides races between replicas (the equivalent of `FOR UPDATE SKIP LOCKED` for a lock that
//! must outlive the transaction that takes it: no transaction stays open across an HTTP call).
//! A pusher sends only the newest pending record of each key it holds and then deletes the rows
//! it read; rows written meanwhile stay for the next round.

use std::collections::HashMap;

use keygate_shared::{RecordState, SnapshotRecord, Status};
use sqlx::{AnyConnection, Row};

use super::{Backend, CHUNK, Db, StoreError, placeholders};

/// The order in which pending keys are pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// The key must stop working: revoked, disabled or deleted. Ahead of everything else.
    Stop = 0,
    /// Any other change.
    Change = 1,
    /// A rebuild or repair of a key that is not being stopped.
    Rebuild = 2,
}

impl Priority {
    fn of(record: &SnapshotRecord, otherwise: Self) -> Self {
        match &record.state {
            RecordState::Deleted => Self::Stop,
            RecordState::Present(body) if body.status != Status::Active => Self::Stop,
            RecordState::Present(_) => otherwise,
        }
    }
}

fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// Queues a change's record. A second record with the same version for the same key is an error:
/// it means two transactions wrote one version.
pub(crate) async fn enqueue(
    connection: &mut AnyConnection,
    record: &SnapshotRecord,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (api_key_id, version, record, enqueued_at, priority) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(record.key_id.as_str())
    .bind(sql_version(record.version))
    .bind(record.encode())
    .bind(now)
    .bind(Priority::of(record, Priority::Change) as i64)
    .execute(connection)
    .await?;
    Ok(())
}

/// Queues records to send again (rebuild, repair); a record already pending stays as it is.
pub(crate) async fn enqueue_again(
    connection: &mut AnyConnection,
    records: &[SnapshotRecord],
    now: i64,
) -> Result<u64, StoreError> {
    let mut queued = 0;
    for chunk in records.chunks(CHUNK / 5) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|row| {
                let n = row * 5;
                format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO outbox (api_key_id, version, record, enqueued_at, priority) VALUES {} \
             ON CONFLICT (api_key_id, version) DO NOTHING",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for record in chunk {
            query = query
                .bind(record.key_id.as_str())
                .bind(sql_version(record.version))
                .bind(record.encode())
                .bind(now)
                .bind(Priority::of(record, Priority::Rebuild) as i64);
        }
        queued += query.execute(&mut *connection).await?.rows_affected();
    }
    Ok(queued)
}

/// Remembers a deleted key's tombstone version, in the transaction that deletes it.
pub(crate) async fn bury(
    connection: &mut AnyConnection,
    tombstone: &SnapshotRecord,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO key_tombstone (api_key_id, version, deleted_at) VALUES ($1, $2, $3)")
        .bind(tombstone.key_id.as_str())
        .bind(sql_version(tombstone.version))
        .bind(now)
        .execute(connection)
        .await?;
    Ok(())
}

/// A key a pusher holds: the newest record pending for it and the outbox rows that record covers.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub key_id: String,
    pub version: u64,
    pub record: String,
    pub priority: Priority,
    /// Failed pushes of this key so far, for its backoff.
    pub attempts: u32,
    outbox_ids: Vec<i64>,
}

/// The database server's time, in Unix milliseconds. Leases and backoffs are measured by it, so
/// replicas whose clocks disagree still agree on when a claim ends.
pub async fn database_now_ms(db: &Db) -> Result<i64, StoreError> {
    let sql = match db.backend() {
        Backend::Sqlite => {
            "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) AS now_ms"
        }
        Backend::Postgres => {
            "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT) AS now_ms"
        }
    };
    Ok(sqlx::query(sql)
        .fetch_one(db.writer())
        .await?
        .try_get("now_ms")?)
}

/// `now_ms` when given (a hand-set clock in tests), else the database's time.
async fn lease_now(db: &Db, now_ms: Option<i64>) -> Result<i64, StoreError> {
    match now_ms {
        Some(now_ms) => Ok(now_ms),
        None => database_now_ms(db).await,
    }
}

/// How many outbox rows a claim reads per key it may take. Most keys have one pending row; a key
/// with more (changed again while KV was down) only makes the batch smaller, never stalls it.
const CLAIM_WINDOW: usize = 4;

/// Claims up to `limit` keys with pending records, those that must stop working first, then in
/// the order they were queued. Keys another pusher holds, or that wait out a backoff, are skipped.
/// `now_ms: None` measures the lease by the database's clock (see [`database_now_ms`]). Rows KV
/// has already written (`kv_done`, while the feed lagged) are not taken again.
pub async fn claim(
    db: &Db,
    holder: &str,
    now_ms: Option<i64>,
    lease_ms: i64,
    limit: usize,
    takes: KvTakes,
) -> Result<Vec<Claimed>, StoreError> {
    let now_ms = lease_now(db, now_ms).await?;
    let fed = match takes {
        KvTakes::All => " AND o.kv_done = 0".to_owned(),
        KvTakes::FedOrQueuedBy(cutoff) => {
            format!(" AND o.kv_done = 0 AND (o.fed = 1 OR o.enqueued_at <= {cutoff})")
        }
    };
    let mut tx = db.begin().await?;
    // The first free rows in drain order (index `outbox_kv_pending`), then their keys: the walk
    // stops after a window of rows instead of grouping the whole backlog for every batch.
    let window = limit.saturating_mul(CLAIM_WINDOW);
    let candidates: Vec<String> = sqlx::query(&format!(
        "SELECT api_key_id, MIN(priority) AS priority, MIN(outbox_id) AS first FROM (\
         SELECT o.api_key_id, o.priority, o.outbox_id FROM outbox o \
         WHERE NOT EXISTS (SELECT 1 FROM sync_claim c \
         WHERE c.api_key_id = o.api_key_id AND c.until_ms > $1){fed} \
         ORDER BY o.priority, o.outbox_id LIMIT $3) w \
         GROUP BY api_key_id ORDER BY priority, first LIMIT $2"
    ))
    .bind(now_ms)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(i64::try_from(window).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| row.try_get("api_key_id"))
    .collect::<Result<_, _>>()?;
    let mut attempts = HashMap::new();
    for chunk in candidates.chunks(CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|n| format!("(${}, $1, $2, 0)", n + 4))
            .collect();
        // A live claim is left alone: the WHERE fails and the row is not returned.
        let sql = format!(
            "INSERT INTO sync_claim (api_key_id, holder, until_ms, attempts) VALUES {} \
             ON CONFLICT (api_key_id) DO UPDATE SET holder = excluded.holder, \
             until_ms = excluded.until_ms WHERE sync_claim.until_ms <= $3 \
             RETURNING api_key_id, attempts",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(holder)
            .bind(now_ms + lease_ms)
            .bind(now_ms);
        for key_id in chunk {
            query = query.bind(key_id.as_str());
        }
        for row in query.fetch_all(&mut *tx).await? {
            let tries: i64 = row.try_get("attempts")?;
            attempts.insert(
                row.try_get::<String, _>("api_key_id")?,
                u32::try_from(tries).unwrap_or_default(),
            );
        }
    }
    let held: Vec<&String> = candidates
        .iter()
        .filter(|id| attempts.contains_key(*id))
        .collect();
    let mut claimed: HashMap<String, Claimed> = HashMap::new();
    for chunk in held.chunks(CHUNK) {
        let sql = format!(
            "SELECT outbox_id, api_key_id, version, record, priority FROM outbox o \
             WHERE api_key_id IN ({}){fed}",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for key_id in chunk {
            query = query.bind(key_id.as_str());
        }
        for row in query.fetch_all(&mut *tx).await? {
            let key_id: String = row.try_get("api_key_id")?;
            let version = u64::try_from(row.try_get::<i64, _>("version")?).unwrap_or_default();
            let priority = match row.try_get::<i64, _>("priority")? {
                0 => Priority::Stop,
                1 => Priority::Change,
                _ => Priority::Rebuild,
            };
            let outbox_id: i64 = row.try_get("outbox_id")?;
            let record: String = row.try_get("record")?;
            let entry = claimed.entry(key_id.clone()).or_insert_with(|| Claimed {
                attempts: attempts.get(&key_id).copied().unwrap_or_default(),
                key_id,
                version,
                record: record.clone(),
                priority,
                outbox_ids: Vec::new(),
            });
            entry.outbox_ids.push(outbox_id);
            entry.priority = entry.priority.min(priority);
            if version > entry.version {
                entry.version = version;
                entry.record = record;
            }
        }
    }
    tx.commit().await?;
    // In claim order: keys that must stop working first.
    Ok(held
        .into_iter()
        .filter_map(|key_id| claimed.remove(key_id))
        .collect())
}

/// Which outbox rows KV may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvTakes {
    /// Every row: there is no change feed.
    All,
    /// Rows the change feed has taken, and rows queued at or before this Unix second: KV gets a
    /// record after the feed has it, but does not wait for a failing feed longer than the hold.
    FedOrQueuedBy(i64),
}

/// A row the change feed has not had yet.
#[derive(Clone, Debug)]
pub struct Unfed {
    pub outbox_id: i64,
    pub key_id: String,
    pub record: String,
}

/// Up to `limit` rows not yet appended to the change feed: keys that must stop working first,
/// then in the order they were written.
pub async fn unfed(db: &Db, limit: usize) -> Result<Vec<Unfed>, StoreError> {
    sqlx::query(
        "SELECT outbox_id, api_key_id, record FROM outbox WHERE fed = 0 \
         ORDER BY priority, outbox_id LIMIT $1",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(db.writer())
    .await?
    .iter()
    .map(|row| {
        Ok(Unfed {
            outbox_id: row.try_get("outbox_id")?,
            key_id: row.try_get("api_key_id")?,
            record: row.try_get("record")?,
        })
    })
    .collect()
}

/// These rows are in the change feed: KV may have them now. Rows KV has written already are done
/// and leave the outbox.
pub async fn fed(db: &Db, rows: &[Unfed]) -> Result<(), StoreError> {
    for chunk in rows.chunks(CHUNK) {
        let mut tx = db.begin().await?;
        for statement in [
            "DELETE FROM outbox WHERE kv_done = 1 AND outbox_id IN",
            "UPDATE outbox SET fed = 1 WHERE outbox_id IN",
        ] {
            let sql = format!("{statement} ({})", placeholders(1, chunk.len()));
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query.bind(row.outbox_id);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// The pushed keys' rows are done in KV: deletes them (not rows written since) and frees the keys.
/// With a change feed (`takes` is not [`KvTakes::All`]), a row the feed has not taken stays,
/// marked `kv_done`, until it has.
pub async fn pushed(
    db: &Db,
    holder: &str,
    done: &[&Claimed],
    takes: KvTakes,
) -> Result<(), StoreError> {
    let statements: &[&str] = match takes {
        KvTakes::All => &["DELETE FROM outbox WHERE outbox_id IN"],
        KvTakes::FedOrQueuedBy(_) => &[
            "DELETE FROM outbox WHERE fed = 1 AND outbox_id IN",
            "UPDATE outbox SET kv_done = 1 WHERE outbox_id IN",
        ],
    };
    for chunk in done.chunks(CHUNK) {
        let mut tx = db.begin().await?;
        let ids: Vec<i64> = chunk
            .iter()
            .flat_map(|claimed| claimed.outbox_ids.iter().copied())
            .collect();
        for ids in ids.chunks(CHUNK) {
            for statement in statements {
                let sql = format!("{statement} ({})", placeholders(1, ids.len()));
                let mut query = sqlx::query(&sql);
                for id in ids {
                    query = query.bind(*id);
                }
                query.execute(&mut *tx).await?;
            }
        }
        let sql = format!(
            "DELETE FROM sync_claim WHERE holder = $1 AND api_key_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(holder);
        for claimed in chunk {
            query = query.bind(claimed.key_id.as_str());
        }
        query.execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The keys were not pushed: frees them for another attempt `delay_ms` from now (`now_ms` as for
/// [`claim`]).
pub async fn retry_later(
    db: &Db,
    holder: &str,
    failed: &[&Claimed],
    now_ms: Option<i64>,
    delay_ms: i64,
) -> Result<(), StoreError> {
    let retry_at_ms = lease_now(db, now_ms).await? + delay_ms;
    for chunk in failed.chunks(CHUNK) {
        let sql = format!(
            "UPDATE sync_claim SET holder = '', until_ms = $2, attempts = attempts + 1 \
             WHERE holder = $1 AND api_key_id IN ({})",
            placeholders(3, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(holder).bind(retry_at_ms);
        for claimed in chunk {
            query = query.bind(claimed.key_id.as_str());
        }
        query.execute(db.writer()).await?;
    }
    Ok(())
}

/// What is waiting to be pushed.
#[derive(Clone, Debug, Default)]
pub struct Backlog {
    /// Outbox rows KV has not written.
    pub depth: i64,
    /// Distinct keys among them.
    pub keys: i64,
    /// When the oldest of them was written (Unix seconds).
    pub oldest_enqueued_at: Option<i64>,
    /// Rows not yet appended to the change feed (all rows, when there is no feed), and when the
    /// oldest of them was written.
    pub unfed: i64,
    pub oldest_unfed_at: Option<i64>,
}

pub async fn backlog(db: &Db) -> Result<Backlog, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(CASE WHEN kv_done = 0 THEN 1 END) AS depth, \
         COUNT(DISTINCT CASE WHEN kv_done = 0 THEN api_key_id END) AS pending_keys, \
         MIN(CASE WHEN kv_done = 0 THEN enqueued_at END) AS oldest, \
         COUNT(CASE WHEN fed = 0 THEN 1 END) AS unfed, \
         MIN(CASE WHEN fed = 0 THEN enqueued_at END) AS oldest_unfed FROM outbox",
    )
    .fetch_one(db.reader())
    .await?;
    Ok(Backlog {
        depth: row.try_get("depth")?,
        keys: row.try_get("pending_keys")?,
        oldest_enqueued_at: row.try_get("oldest")?,
        unfed: row.try_get("unfed")?,
        oldest_unfed_at: row.try_get("oldest_unfed")?,
    })
}

/// Records written but not yet pushed.
pub async fn depth(db: &Db) -> Result<i64, StoreError> {
    Ok(backlog(db).await?.depth)
}

/// The newest record queued for a key, if any.
pub async fn latest(db: &Db, key_id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT record FROM outbox WHERE api_key_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(key_id)
    .fetch_optional(db.reader())
    .await?;
    row.map(|row| {
        let text: String = row.try_get("record")?;
        SnapshotRecord::decode(text.as_bytes())
            .map_err(|error| super::corrupt("outbox record", key_id, error))
    })
    .transpose()
}

/// The last outcomes of the pushers, shared by every replica.
#[derive(Clone, Debug, Default)]
pub struct SyncState {
    pub last_success_at: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_reconcile_at: Option<i64>,
    pub last_reconcile_repairs: Option<i64>,
    pub last_reconcile_tampered: Option<i64>,
    pub last_tampering_at: Option<i64>,
    pub last_tampering_entries: Option<i64>,
}

pub async fn sync_state(db: &Db) -> Result<SyncState, StoreError> {
    let row = sqlx::query(
        "SELECT last_success_at, last_error_at, last_error, last_reconcile_at, \
         last_reconcile_repairs, last_reconcile_tampered, last_tampering_at, \
         last_tampering_entries FROM sync_state WHERE sync_state_id = 1",
    )
    .fetch_one(db.reader())
    .await?;
    Ok(SyncState {
        last_success_at: row.try_get("last_success_at")?,
        last_error_at: row.try_get("last_error_at")?,
        last_error: row.try_get("last_error")?,
        last_reconcile_at: row.try_get("last_reconcile_at")?,
        last_reconcile_repairs: row.try_get("last_reconcile_repairs")?,
        last_reconcile_tampered: row.try_get("last_reconcile_tampered")?,
        last_tampering_at: row.try_get("last_tampering_at")?,
        last_tampering_entries: row.try_get("last_tampering_entries")?,
    })
}

/// A push or reconciliation step succeeded (`Ok`) or failed with this message (`Err`).
pub async fn record_outcome(
    db: &Db,
    outcome: Result<(), &str>,
    now: i64,
) -> Result<(), StoreError> {
    let query = match outcome {
        Ok(()) => sqlx::query("UPDATE sync_state SET last_success_at = $1 WHERE sync_state_id = 1")
            .bind(now),
        Err(message) => sqlx::query(
            "UPDATE sync_state SET last_error_at = $1, last_error = $2 WHERE sync_state_id = 1",
        )
        .bind(now)
        .bind(message.to_owned()),
    };
    query.execute(db.writer()).await?;
    Ok(())
}

/// A reconciliation pass ended, having queued again, rewritten or deleted `repairs` entries, of
/// which `tampered` were not what keygate signed. Tampering found is remembered until a later
/// pass finds more, so an alert polling `/v1/sync/status` does not miss it after a clean pass.
pub async fn record_reconcile(
    db: &Db,
    repairs: u64,
    tampered: u64,
    now: i64,
) -> Result<(), StoreError> {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query(
        "UPDATE sync_state SET last_reconcile_at = $1, last_reconcile_repairs = $2, \
         last_reconcile_tampered = $3, \
         last_tampering_at = CASE WHEN $3 > 0 THEN $1 ELSE last_tampering_at END, \
         last_tampering_entries = CASE WHEN $3 > 0 THEN $3 ELSE last_tampering_entries END \
         WHERE sync_state_id = 1",
    )
    .bind(now)
    .bind(count(repairs))
    .bind(count(tampered))
    .execute(db.writer())
    .await?;
    Ok(())
}
