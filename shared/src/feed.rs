//! The change feed: an ordered log of signed records that every edge isolate follows, so a
//! revocation reaches them in seconds rather than after KV's propagation and caches.
//!
//! The control plane appends ([`Append`]) the very entries it writes to KV, signed records
//! included, so a feed entry can never do more than a KV entry: the edge checks its signature the
//! same way. The feed numbers them in order ([`FeedEntry::seq`]) and keeps them for a retention
//! period; an isolate asks for the entries after the last one it saw and gets a [`FeedPage`].
//!
//! ```json
//! POST {"entries": [{"key_id": "...", "record": "<signed record>"}]}
//! GET ?after=41 -> {"head": 43, "first": 12, "entries": [{"seq": 42, "key_id": "...", "record": "..."}, ...]}
//! ```

use serde::{Deserialize, Serialize};

use crate::key::KeyId;
use crate::record::RecordError;
use crate::signed::MAX_SIGNED_BYTES;

/// The most entries one append carries, and one page returns.
pub const MAX_FEED_ENTRIES: usize = 500;
/// The largest append body: that many entries of the largest signed record, with their names.
pub const MAX_APPEND_BYTES: usize = MAX_FEED_ENTRIES * (MAX_SIGNED_BYTES + 64);

/// One change to append: a key's signed record, exactly as KV gets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appended {
    pub key_id: String,
    pub record: String,
}

/// What the control plane posts to the feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Append {
    pub entries: Vec<Appended>,
}

impl Append {
    /// Reads an append strictly: at most [`MAX_FEED_ENTRIES`] entries, each a key id and a record
    /// of at most [`MAX_SIGNED_BYTES`]. Nothing in a record is trusted here: the edge checks its
    /// signature when it applies the entry, as it does for KV.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_APPEND_BYTES {
            return Err(RecordError::Invalid(format!(
                "an append is at most {MAX_APPEND_BYTES} bytes"
            )));
        }
        let append: Self = serde_json::from_slice(bytes)
            .map_err(|error| RecordError::Invalid(error.to_string()))?;
        if append.entries.is_empty() || append.entries.len() > MAX_FEED_ENTRIES {
            return Err(RecordError::Invalid(format!(
                "an append has 1 to {MAX_FEED_ENTRIES} entries"
            )));
        }
        for entry in &append.entries {
            KeyId::parse(&entry.key_id).map_err(|error| RecordError::Invalid(error.to_string()))?;
            if entry.record.len() > MAX_SIGNED_BYTES {
                return Err(RecordError::Invalid(format!(
                    "a record is at most {MAX_SIGNED_BYTES} bytes"
                )));
            }
        }
        Ok(append)
    }
}

/// One entry of the feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedEntry {
    pub seq: u64,
    pub key_id: String,
    pub record: String,
}

/// The entries after a sequence number, up to [`MAX_FEED_ENTRIES`], in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedPage {
    /// The newest sequence number the feed has handed out (0: none yet).
    pub head: u64,
    /// The oldest it still keeps (0: none kept).
    pub first: u64,
    pub entries: Vec<FeedEntry>,
}

impl FeedPage {
    /// Whether a reader that last saw `after` has missed entries the feed no longer keeps: it
    /// must then forget what it holds, as it cannot know what changed.
    pub fn missed(&self, after: u64) -> bool {
        after > 0 && self.first > after + 1 || after > self.head
    }

    /// Whether more entries wait after this page.
    pub fn more(&self) -> bool {
        self.entries.last().is_some_and(|last| last.seq < self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(head: u64, first: u64, seqs: &[u64]) -> FeedPage {
        FeedPage {
            head,
            first,
            entries: seqs
                .iter()
                .map(|&seq| FeedEntry {
                    seq,
                    key_id: "k".into(),
                    record: "r".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_reader_knows_when_it_missed_entries() {
        // Read up to 41; the feed still keeps 42 onwards: nothing missed.
        assert!(!page(50, 42, &[42, 43]).missed(41));
        // The feed has trimmed 42: something may have changed unseen.
        assert!(page(50, 43, &[43]).missed(41));
        // A fresh reader (0) has nothing to miss; a reader ahead of the feed (reset) has.
        assert!(!page(50, 43, &[43]).missed(0));
        assert!(page(5, 1, &[]).missed(9));
        assert!(!page(9, 1, &[]).missed(9));
        assert!(page(50, 42, &[42, 43]).more());
        assert!(!page(43, 42, &[42, 43]).more());
    }

    #[test]
    fn appends_are_read_strictly() {
        let key_id = "a".repeat(22);
        let good = format!(r#"{{"entries":[{{"key_id":"{key_id}","record":"x"}}]}}"#);
        assert_eq!(Append::decode(good.as_bytes()).unwrap().entries.len(), 1);
        for bad in [
            r#"{"entries":[]}"#.to_owned(),
            r#"{"entries":[{"key_id":"nope","record":"x"}]}"#.to_owned(),
            format!(r#"{{"entries":[{{"key_id":"{key_id}","record":"x","extra":1}}]}}"#),
            format!(
                r#"{{"entries":[{{"key_id":"{key_id}","record":"{}"}}]}}"#,
                "x".repeat(MAX_SIGNED_BYTES + 1)
            ),
            "[]".to_owned(),
        ] {
            assert!(Append::decode(bad.as_bytes()).is_err(), "{bad}");
        }
        let many = format!(
            r#"{{"entries":[{}]}}"#,
            vec![format!(r#"{{"key_id":"{key_id}","record":"x"}}"#); MAX_FEED_ENTRIES + 1]
                .join(",")
        );
        assert!(Append::decode(many.as_bytes()).is_err());
    }
}
