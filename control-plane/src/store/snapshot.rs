//! What the edge should hold: the current record of every key and the tombstone of every deleted
//! one. The full rebuild and reconciliation read it here and queue it in the [`outbox`] again;
//! the [`keys`] module's own changes queue their records as they commit.

use std::collections::HashMap;

use keygate_shared::{KeyId, RecordState, SnapshotRecord};
use sqlx::Row;

use super::{CHUNK, Db, StoreError, keys, outbox, placeholders};

fn tombstone(key_id: &str, version: i64) -> Result<SnapshotRecord, StoreError> {
    Ok(SnapshotRecord {
        key_id: KeyId::parse(key_id).map_err(|error| super::corrupt("tombstone", key_id, error))?,
        version: u64::try_from(version).unwrap_or_default(),
        state: RecordState::Deleted,
    })
}

/// Queues the current record of every key and tombstone, for a full rebuild of the snapshot.
/// Returns how many records were queued.
pub async fn enqueue_everything(db: &Db, now: i64) -> Result<u64, StoreError> {
    let mut queued = 0;
    let mut after = String::new();
    loop {
        let mut tx = db.begin().await?;
        let records = keys::snapshots_after(&mut tx, &after, CHUNK).await?;
        let Some(last) = records.last() else { break };
        after = last.key_id.as_str().to_owned();
        queued += outbox::enqueue_again(&mut tx, &records, now).await?;
        tx.commit().await?;
    }
    after.clear();
    loop {
        let mut tx = db.begin().await?;
        let rows = sqlx::query(
            "SELECT api_key_id, version FROM key_tombstone WHERE api_key_id > $1 \
             ORDER BY api_key_id LIMIT $2",
        )
        .bind(&after)
        .bind(CHUNK as i64)
        .fetch_all(&mut *tx)
        .await?;
        let records = rows
            .iter()
            .map(|row| tombstone(row.try_get("api_key_id")?, row.try_get("version")?))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = records.last() else { break };
        after = last.key_id.as_str().to_owned();
        queued += outbox::enqueue_again(&mut tx, &records, now).await?;
        tx.commit().await?;
    }
    Ok(queued)
}

/// The current record (or tombstone) of each of `key_ids` that the database knows.
pub async fn current(db: &Db, key_ids: &[String]) -> Result<Vec<SnapshotRecord>, StoreError> {
    let mut records = Vec::with_capacity(key_ids.len());
    for chunk in key_ids.chunks(CHUNK) {
        let mut tx = db.begin().await?;
        records.extend(current_in(&mut tx, chunk).await?);
        tx.commit().await?;
    }
    Ok(records)
}

async fn current_in(
    connection: &mut sqlx::AnyConnection,
    key_ids: &[String],
) -> Result<Vec<SnapshotRecord>, StoreError> {
    let mut records = keys::snapshots_of(&mut *connection, key_ids).await?;
    let sql = format!(
        "SELECT api_key_id, version FROM key_tombstone WHERE api_key_id IN ({})",
        placeholders(1, key_ids.len())
    );
    let mut query = sqlx::query(&sql);
    for key_id in key_ids {
        query = query.bind(key_id.as_str());
    }
    for row in query.fetch_all(&mut *connection).await? {
        records.push(tombstone(
            row.try_get("api_key_id")?,
            row.try_get("version")?,
        )?);
    }
    Ok(records)
}

/// Queues the current record (or tombstone) of each of `key_ids` that the database knows.
/// Returns how many were queued.
pub async fn enqueue_current(db: &Db, key_ids: &[String], now: i64) -> Result<u64, StoreError> {
    let mut queued = 0;
    for chunk in key_ids.chunks(CHUNK) {
        let mut tx = db.begin().await?;
        let records = current_in(&mut tx, chunk).await?;
        queued += outbox::enqueue_again(&mut tx, &records, now).await?;
        tx.commit().await?;
    }
    Ok(queued)
}

/// The version the edge should hold for every key the database knows, tombstones included.
pub async fn expected_versions(db: &Db) -> Result<HashMap<String, u64>, StoreError> {
    let rows = sqlx::query(
        "SELECT api_key_id, version FROM api_key \
         UNION ALL SELECT api_key_id, version FROM key_tombstone",
    )
    .fetch_all(db.reader())
    .await?;
    rows.into_iter()
        .map(|row| {
            let version: i64 = row.try_get("version")?;
            Ok((
                row.try_get("api_key_id")?,
                u64::try_from(version).unwrap_or_default(),
            ))
        })
        .collect()
}
