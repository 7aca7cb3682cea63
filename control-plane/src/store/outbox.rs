//! The outbox: each key change leaves the snapshot record the edge must see, in the change's own
//! transaction. The pusher drains it to Workers KV in `(api_key_id, version)` order.

use keygate_shared::SnapshotRecord;
use sqlx::{AnyConnection, Row};

use super::{Db, StoreError};

pub(crate) async fn enqueue(
    connection: &mut AnyConnection,
    record: &SnapshotRecord,
    now: i64,
) -> Result<(), StoreError> {
    let version = i64::try_from(record.version).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO outbox (api_key_id, version, record, enqueued_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(record.key_id.as_str())
    .bind(version)
    .bind(record.encode())
    .bind(now)
    .execute(connection)
    .await?;
    Ok(())
}

/// Records written but not yet pushed.
pub async fn depth(db: &Db) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS depth FROM outbox")
        .fetch_one(db.reader())
        .await?;
    Ok(row.try_get("depth")?)
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
