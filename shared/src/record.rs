//! The snapshot record: what KV holds per key id, written only by the control plane and read by the
//! edge. Both sides use these types, so they agree on the format by construction.
//!
//! Decoding is strict. An unknown field or a newer format version is an error, not something to
//! skip: a field an older edge ignored could be a restriction, and ignoring it would fail open.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cidr::IpAllowlist;
use crate::digest::Digest;
use crate::environment::Environment;
use crate::key::KeyId;
use crate::permission::Grants;

/// The wire format this crate reads and writes. Bump it with any change an older reader must not
/// misread; readers refuse formats they do not know.
pub const RECORD_FORMAT: u32 = 1;
/// No encoded record is longer (the largest possible one is well under it); longer input is refused
/// before it is parsed.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
pub const MAX_REFERENCE_LEN: usize = 128;
pub const MAX_RATE_LIMIT_REQUESTS: u32 = 1_000_000;
pub const MAX_RATE_LIMIT_WINDOW_SECONDS: u32 = 86_400;

/// Seconds since the Unix epoch. Passed in, never read from a clock here.
pub type UnixSeconds = i64;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes; the limit is {MAX_RECORD_BYTES}")]
    TooLarge(usize),
    #[error("record format {0} is not supported (this build reads format {RECORD_FORMAT})")]
    UnsupportedFormat(u32),
    #[error("record is not valid: {0}")]
    Invalid(String),
    /// A format-1 record where a signed one (format 2) is required.
    #[error("the record is not signed")]
    Unsigned,
    /// A signed record of one key, read under another key id's name.
    #[error("the record is {record}'s, read under {read_under}")]
    Moved { record: String, read_under: String },
    #[error("the record of a key with status {status} lacks {field}")]
    MissingField {
        status: &'static str,
        field: &'static str,
    },
    #[error("a deleted key's record carries {0}; tombstones carry nothing")]
    TombstoneWithData(&'static str),
    #[error("{0}")]
    BadReference(String),
    #[error(
        "rate limit must be 1..={MAX_RATE_LIMIT_REQUESTS} requests per 1..={MAX_RATE_LIMIT_WINDOW_SECONDS} seconds"
    )]
    BadRateLimit,
}

macro_rules! reference_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// 1 to [`MAX_REFERENCE_LEN`] characters from `A-Z a-z 0-9 _ - . : @`, so it is safe to
        /// forward as an HTTP header value and to print in a log line.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, RecordError> {
                let valid = (1..=MAX_REFERENCE_LEN).contains(&text.len())
                    && text.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@')
                    });
                if valid {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(RecordError::BadReference(format!(
                        concat!($what, " must be 1 to {} characters of A-Z a-z 0-9 _ - . : @"),
                        MAX_REFERENCE_LEN
                    )))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

reference_type!(
    /// The customer a key is scoped to (the API platform's own customer id).
    CustomerId,
    "a customer id"
);
reference_type!(
    /// The control-plane user who owns a key.
    OwnerId,
    "an owner id"
);

/// A key's state as the edge acts on it. Deleted keys have no status: they are tombstones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Disabled,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 3] = [Self::Active, Self::Disabled, Self::Revoked];

    /// The status as records, the database and the API write it: `active`, `disabled`, `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a key that expires at `expires_at` has expired at `now`: from that second on. The one
/// definition of expiry; SQL that filters by it mirrors it (and a test holds the two together).
pub fn is_expired(expires_at: Option<UnixSeconds>, now: UnixSeconds) -> bool {
    expires_at.is_some_and(|at| now >= at)
}

/// `requests` per `window_seconds`, enforced by the edge. Always within range: built by
/// [`RateLimit::new`], or from its [`RateLimitFields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RateLimitFields", into = "RateLimitFields")]
pub struct RateLimit {
    requests: u32,
    window_seconds: u32,
}

/// A rate limit as JSON carries it, before its range is checked (`RateLimit::try_from`). Its
/// schema, named `RateLimit`, is the one a [`RateLimit`] field documents itself with
/// (`schema(value_type = RateLimitFields)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RateLimit))]
#[serde(deny_unknown_fields)]
pub struct RateLimitFields {
    /// 1 to 1,000,000 requests ...
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    #[serde(deserialize_with = "crate::whole::u32")]
    pub requests: u32,
    /// ... per 1 to 86,400 seconds.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400))]
    #[serde(deserialize_with = "crate::whole::u32")]
    pub window_seconds: u32,
}

impl TryFrom<RateLimitFields> for RateLimit {
    type Error = RecordError;

    fn try_from(fields: RateLimitFields) -> Result<Self, RecordError> {
        Self::new(fields.requests, fields.window_seconds)
    }
}

impl From<RateLimit> for RateLimitFields {
    fn from(limit: RateLimit) -> Self {
        Self {
            requests: limit.requests,
            window_seconds: limit.window_seconds,
        }
    }
}

impl RateLimit {
    pub fn new(requests: u32, window_seconds: u32) -> Result<Self, RecordError> {
        if (1..=MAX_RATE_LIMIT_REQUESTS).contains(&requests)
            && (1..=MAX_RATE_LIMIT_WINDOW_SECONDS).contains(&window_seconds)
        {
            Ok(Self {
                requests,
                window_seconds,
            })
        } else {
            Err(RecordError::BadRateLimit)
        }
    }

    pub fn requests(&self) -> u32 {
        self.requests
    }

    pub fn window_seconds(&self) -> u32 {
        self.window_seconds
    }

    /// Whether this limit is no looser than `other`: no larger burst (`requests`) and no higher
    /// sustained rate (`requests / window_seconds`, compared without division).
    pub fn within(&self, other: &RateLimit) -> bool {
        self.requests <= other.requests
            && u64::from(self.requests) * u64::from(other.window_seconds)
                <= u64::from(other.requests) * u64::from(self.window_seconds)
    }
}

/// Whether an expiry ends no later than `other` (`None`: never).
pub fn expires_by(expires_at: Option<UnixSeconds>, other: Option<UnixSeconds>) -> bool {
    match (expires_at, other) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(at), Some(other)) => at <= other,
    }
}

/// The digest of the secret a regeneration replaced, accepted until `expires_at` so clients can
/// roll over without downtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousDigest {
    pub digest: Digest,
    pub expires_at: UnixSeconds,
}

impl PreviousDigest {
    /// Whether the replaced secret still works at `now`: until, not at, `expires_at`.
    pub fn accepted_at(&self, now: UnixSeconds) -> bool {
        now < self.expires_at
    }
}

/// Everything the edge needs to decide a request for one existing key, and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub status: Status,
    pub digest: Digest,
    pub previous: Option<PreviousDigest>,
    pub environment: Environment,
    pub not_before: Option<UnixSeconds>,
    pub expires_at: Option<UnixSeconds>,
    pub permissions: Grants,
    pub customer_id: Option<CustomerId>,
    pub rate_limit: Option<RateLimit>,
    pub ip_allowlist: IpAllowlist,
    pub owner_id: OwnerId,
}

impl KeyRecord {
    /// Whether the key has expired at `now` ([`is_expired`]).
    pub fn is_expired(&self, now: UnixSeconds) -> bool {
        is_expired(self.expires_at, now)
    }

    /// An active key with these grants and owner, and no other restriction (no expiry, customer,
    /// rate limit or allowlist): set those fields on the result as needed.
    pub fn active(
        digest: Digest,
        environment: Environment,
        permissions: Grants,
        owner_id: OwnerId,
    ) -> Self {
        Self {
            status: Status::Active,
            digest,
            previous: None,
            environment,
            not_before: None,
            expires_at: None,
            permissions,
            customer_id: None,
            rate_limit: None,
            ip_allowlist: IpAllowlist::default(),
            owner_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every record is Present; boxing would cost an allocation per record to save space on rare tombstones"
)]
pub enum RecordState {
    Present(KeyRecord),
    /// The key was deleted. The tombstone stays so a stale write with a lower version cannot bring
    /// the key back.
    Deleted,
}

/// One KV entry: a key id, its monotonic version, and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireRecord", into = "WireRecord")]
pub struct SnapshotRecord {
    pub key_id: KeyId,
    pub version: u64,
    pub state: RecordState,
}

impl SnapshotRecord {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a SnapshotRecord has only string keys and plain values")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        match serde_json::from_slice::<WireRecord>(bytes) {
            Ok(wire) => Self::try_from(wire),
            // A newer writer may add fields this build rejects; name the real cause.
            Err(error) => Err(match serde_json::from_slice::<FormatProbe>(bytes) {
                Ok(probe) if probe.format != RECORD_FORMAT => {
                    RecordError::UnsupportedFormat(probe.format)
                }
                _ => RecordError::Invalid(error.to_string()),
            }),
        }
    }
}

#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

/// The flat JSON shape on the wire; `SnapshotRecord` is its checked, typed form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRecord {
    format: u32,
    key_id: KeyId,
    version: u64,
    status: WireStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<PreviousDigest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<Environment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_before: Option<UnixSeconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<UnixSeconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    permissions: Option<Grants>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer_id: Option<CustomerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_allowlist: Option<IpAllowlist>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner_id: Option<OwnerId>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireStatus {
    Active,
    Disabled,
    Revoked,
    Deleted,
}

impl From<SnapshotRecord> for WireRecord {
    fn from(record: SnapshotRecord) -> Self {
        let mut wire = WireRecord {
            format: RECORD_FORMAT,
            key_id: record.key_id,
            version: record.version,
            status: WireStatus::Deleted,
            digest: None,
            previous: None,
            environment: None,
            not_before: None,
            expires_at: None,
            permissions: None,
            customer_id: None,
            rate_limit: None,
            ip_allowlist: None,
            owner_id: None,
        };
        if let RecordState::Present(key) = record.state {
            wire.status = match key.status {
                Status::Active => WireStatus::Active,
                Status::Disabled => WireStatus::Disabled,
                Status::Revoked => WireStatus::Revoked,
            };
            wire.digest = Some(key.digest);
            wire.previous = key.previous;
            wire.environment = Some(key.environment);
            wire.not_before = key.not_before;
            wire.expires_at = key.expires_at;
            wire.permissions = Some(key.permissions);
            wire.customer_id = key.customer_id;
            wire.rate_limit = key.rate_limit;
            wire.ip_allowlist = (!key.ip_allowlist.is_empty()).then_some(key.ip_allowlist);
            wire.owner_id = Some(key.owner_id);
        }
        wire
    }
}

impl TryFrom<WireRecord> for SnapshotRecord {
    type Error = RecordError;

    fn try_from(wire: WireRecord) -> Result<Self, RecordError> {
        if wire.format != RECORD_FORMAT {
            return Err(RecordError::UnsupportedFormat(wire.format));
        }
        let status = match wire.status {
            WireStatus::Active => Status::Active,
            WireStatus::Disabled => Status::Disabled,
            WireStatus::Revoked => Status::Revoked,
            WireStatus::Deleted => return tombstone(wire),
        };
        let missing = |field| RecordError::MissingField {
            status: status.as_str(),
            field,
        };
        let key = KeyRecord {
            status,
            digest: wire.digest.ok_or_else(|| missing("digest"))?,
            previous: wire.previous,
            environment: wire.environment.ok_or_else(|| missing("environment"))?,
            not_before: wire.not_before,
            expires_at: wire.expires_at,
            permissions: wire.permissions.ok_or_else(|| missing("permissions"))?,
            customer_id: wire.customer_id,
            rate_limit: wire.rate_limit,
            ip_allowlist: wire.ip_allowlist.unwrap_or_default(),
            owner_id: wire.owner_id.ok_or_else(|| missing("owner_id"))?,
        };
        Ok(Self {
            key_id: wire.key_id,
            version: wire.version,
            state: RecordState::Present(key),
        })
    }
}

fn tombstone(wire: WireRecord) -> Result<SnapshotRecord, RecordError> {
    let carried = [
        ("digest", wire.digest.is_some()),
        ("previous", wire.previous.is_some()),
        ("environment", wire.environment.is_some()),
        ("not_before", wire.not_before.is_some()),
        ("expires_at", wire.expires_at.is_some()),
        ("permissions", wire.permissions.is_some()),
        ("customer_id", wire.customer_id.is_some()),
        ("rate_limit", wire.rate_limit.is_some()),
        ("ip_allowlist", wire.ip_allowlist.is_some()),
        ("owner_id", wire.owner_id.is_some()),
    ];
    if let Some((field, _)) = carried.iter().find(|(_, present)| *present) {
        return Err(RecordError::TombstoneWithData(field));
    }
    Ok(SnapshotRecord {
        key_id: wire.key_id,
        version: wire.version,
        state: RecordState::Deleted,
    })
}
