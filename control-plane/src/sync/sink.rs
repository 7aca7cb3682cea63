//! Where snapshot records go: a Workers KV namespace, reached through one of the [`KvSink`]s.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;

/// Workers KV's limits on one bulk write: pairs per request and bytes per request body.
pub const MAX_BULK_PAIRS: usize = 10_000;
pub const MAX_BULK_BYTES: usize = 100_000_000;
/// Workers KV's limit on one bulk read.
pub const MAX_BULK_GETS: usize = 100;

/// One KV entry: the key id, the encoded [`keygate_shared::SnapshotRecord`], and its version,
/// which also goes into the entry's KV metadata so reconciliation can compare versions from a
/// listing without reading values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    pub name: String,
    pub value: String,
    pub version: u64,
}

/// The metadata keygate stores with each entry.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) struct EntryMetadata {
    pub version: u64,
}

/// The version in an entry's KV metadata, if it has keygate's metadata.
pub(super) fn version_in(metadata: Option<serde_json::Value>) -> Option<u64> {
    metadata
        .and_then(|metadata| serde_json::from_value::<EntryMetadata>(metadata).ok())
        .map(|metadata| metadata.version)
}

/// An entry as a listing returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    /// From the entry's metadata; `None` when it has none (not written by keygate).
    pub version: Option<u64>,
}

/// One page of a listing, and where the next one starts.
#[derive(Debug, Default)]
pub struct KvPage {
    pub entries: Vec<Listed>,
    pub cursor: Option<String>,
}

/// A bulk write or delete that was accepted, possibly with some keys that were not written.
#[derive(Debug, Default)]
pub struct Written {
    pub unsuccessful: Vec<String>,
}

/// A request that did not go through. Every kind is tried again later: dropping a change is
/// never right, but `Refused` needs an operator (a bad token or namespace id, say).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error("throttled (429){}", retry_hint(.retry_after))]
    Throttled { retry_after: Option<Duration> },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("refused: {0}")]
    Refused(String),
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |after| {
        format!("; retry after {}s", after.as_secs())
    })
}

impl SinkError {
    /// How long the sink asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// A Workers KV namespace. Implementations: [`super::CloudflareKv`] (the REST API) and
/// [`super::WranglerKv`] (the local store `wrangler dev` reads).
pub trait KvSink: Send + Sync + 'static {
    /// What it writes to, for logs and `GET /v1/sync/status` (never a credential).
    fn describe(&self) -> String;

    /// The most entries one bulk request may carry: KV's limit, [`MAX_BULK_PAIRS`].
    fn max_pairs(&self) -> usize {
        MAX_BULK_PAIRS
    }

    /// Writes at most [`KvSink::max_pairs`] entries, [`MAX_BULK_BYTES`] in all.
    fn put(&self, entries: &[KvEntry]) -> impl Future<Output = Result<Written, SinkError>> + Send;

    /// The most entries one bulk read may ask for: KV's limit, [`MAX_BULK_GETS`].
    fn max_gets(&self) -> usize {
        MAX_BULK_GETS
    }

    /// The values of at most [`KvSink::max_gets`] entries; a name KV does not hold maps to `None`.
    fn get(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Option<String>>, SinkError>> + Send;

    /// Deletes at most [`KvSink::max_pairs`] entries.
    fn delete(&self, names: &[String]) -> impl Future<Output = Result<Written, SinkError>> + Send;

    /// One page of the namespace's entries, from `cursor` (`None`: the first page).
    fn list(&self, cursor: Option<&str>) -> impl Future<Output = Result<KvPage, SinkError>> + Send;
}

/// One entry of a bulk write's body, as the REST API and `wrangler kv bulk put` take it.
fn bulk_entry(entry: &KvEntry) -> serde_json::Value {
    serde_json::json!({
        "key": entry.name,
        "value": entry.value,
        "metadata": EntryMetadata { version: entry.version },
    })
}

/// A bulk write's body: `[{"key", "value", "metadata": {"version"}}, ...]`.
pub(super) fn bulk_body(entries: &[KvEntry]) -> serde_json::Value {
    serde_json::Value::Array(entries.iter().map(bulk_entry).collect())
}

/// The bulk-body size of one entry, with a separating comma.
pub(super) fn encoded_len(entry: &KvEntry) -> usize {
    serde_json::to_vec(&bulk_entry(entry)).map_or(usize::MAX, |json| json.len() + 1)
}

/// Splits `entries` into consecutive bulk requests of at most `max_pairs` entries and
/// `max_bytes` of body each (an entry larger than `max_bytes` goes alone).
pub fn batches(entries: &[KvEntry], max_pairs: usize, max_bytes: usize) -> Vec<&[KvEntry]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 2usize);
    for (index, entry) in entries.iter().enumerate() {
        let size = encoded_len(entry);
        let count = index - start;
        if count > 0 && (count == max_pairs || bytes.saturating_add(size) > max_bytes) {
            batches.push(&entries[start..index]);
            (start, bytes) = (index, 2);
        }
        bytes = bytes.saturating_add(size);
    }
    if start < entries.len() {
        batches.push(&entries[start..]);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value_len: usize) -> KvEntry {
        KvEntry {
            name: name.to_owned(),
            value: "v".repeat(value_len),
            version: 7,
        }
    }

    #[test]
    fn batches_respect_pairs_and_bytes() {
        let entries: Vec<KvEntry> = (0..25).map(|n| entry(&format!("k{n:02}"), 10)).collect();
        let sizes: Vec<usize> = batches(&entries, 10, usize::MAX)
            .iter()
            .map(|batch| batch.len())
            .collect();
        assert_eq!(sizes, [10, 10, 5]);

        // Each entry is 60 bytes of body (with its comma): 2 brackets + 3 entries fit in 182, 4 do not.
        assert_eq!(encoded_len(&entries[0]), 60);
        let by_bytes = batches(&entries[..7], 100, 182);
        let sizes: Vec<usize> = by_bytes.iter().map(|batch| batch.len()).collect();
        assert_eq!(sizes, [3, 3, 1]);
        let body = serde_json::to_vec(
            &by_bytes[0]
                .iter()
                .map(|e| {
                    serde_json::json!({"key": e.name, "value": e.value, "metadata": {"version": e.version}})
                })
                .collect::<Vec<_>>(),
        )
        .expect("json");
        assert!(body.len() <= 182, "{}", body.len());

        // Nothing is lost or reordered, and an oversized entry still goes, alone.
        let mut mixed = entries[..3].to_vec();
        mixed.insert(1, entry("huge", 1_000));
        let split = batches(&mixed, 100, 200);
        assert_eq!(split.concat(), mixed);
        assert!(
            split
                .iter()
                .any(|batch| batch.len() == 1 && batch[0].name == "huge")
        );
        assert!(batches(&[], 10, 10).is_empty());
    }
}
