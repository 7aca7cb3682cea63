//! keygate-shared: the rules both halves of keygate must agree on, compiled into each.
//!
//! - the key string ([`KeyFormat`]): generate, parse, checksum;
//! - the [`Digest`] it is stored as, compared in constant time;
//! - permissions ([`Grant`], [`Permission`], [`PermissionSet`]) and IP allowlists ([`IpAllowlist`]);
//! - the [`SnapshotRecord`] KV holds per key, and its strict encoding;
//! - the verification sequence ([`Verifier::identify`], then [`Candidate::decide`]) and its public
//!   answer ([`Denial`]);
//! - the usage event the edge reports and the control plane ingests ([`UsageEvent`], [`Outcome`]);
//! - the request target as it is authorised: [`Method`] and [`canonical_path`];
//! - the identity assertion the edge signs for the origin ([`AssertionClaims`], [`signing_input`]);
//! - per-key rate limiting ([`TokenBucket`]), exact integer arithmetic the edge runs per key.
//! - the change feed the control plane appends to and every isolate follows ([`Append`],
//!   [`FeedPage`]).
//!
//! It deliberately does no I/O, reads no clock and draws no randomness of its own: time comes in as
//! `now`, randomness as a `CryptoRng`, records from the caller. So it is synchronous, builds for
//! `wasm32-unknown-unknown` as well as natively, and every result is reproducible in a test.
//!
//! The `openapi` feature derives utoipa schemas for the types the control plane's API carries, so
//! its OpenAPI document describes these very types; the Worker builds without it.

mod assertion;
mod base62;
mod bucket;
mod cidr;
mod decision;
mod digest;
mod environment;
mod feed;
mod key;
#[cfg(feature = "openapi")]
pub mod openapi;
mod permission;
mod record;
mod signed;
mod target;
mod usage;
pub mod whole;

pub use assertion::{
    ASSERTION_ALGORITHM, ASSERTION_HEADER, AssertionClaims, AssertionHeader, Jwks, PublicJwk,
    SigningJwk, compact, signing_input,
};
pub use bucket::{
    Admission, BucketCopy, FAST_MAX_AGE_MS, FAST_MIN_SLACK, FastTake, TokenBucket, fast_slack,
};
pub use cidr::{CidrError, IpAllowlist, IpNetwork, MAX_CIDR_LEN, MAX_NETWORKS};
pub use decision::{
    Candidate, Decision, Denial, ErrorBody, ErrorDetail, Identity, Request, Verifier,
    VerifyRequest, VerifyResponse,
};
pub use digest::Digest;
pub use environment::Environment;
pub use feed::{Append, Appended, FeedEntry, FeedPage, MAX_APPEND_BYTES, MAX_FEED_ENTRIES};
pub use key::{
    ApiKey, CHECKSUM_LEN, KEY_ID_LEN, KeyError, KeyField, KeyFormat, KeyId, MAX_KEY_LEN,
    MAX_PREFIX_LEN, ParsedKey, PrefixError, SECRET_LEN,
};
pub use permission::{
    Grant, Grants, MAX_GRANTS, MAX_PERMISSION_LEN, MAX_SET_NAME_LEN, Permission, PermissionError,
    PermissionSet, valid_set_name,
};
pub use record::{
    CustomerId, KeyRecord, MAX_RATE_LIMIT_REQUESTS, MAX_RATE_LIMIT_WINDOW_SECONDS,
    MAX_RECORD_BYTES, MAX_REFERENCE_LEN, OwnerId, PreviousDigest, RECORD_FORMAT, RateLimit,
    RateLimitFields, RecordError, RecordState, SnapshotRecord, Status, UnixSeconds, expires_by,
    is_expired,
};
pub use signed::{
    Envelope, MAX_KID_LEN, MAX_SIGNED_BYTES, RECORD_CONTEXT, SIGNED_FORMAT, record_signing_input,
    seal,
};
pub use target::{MAX_PATH_LEN, Method, PathError, canonical_path};
pub use usage::{
    CheckedEvent, MAX_COLO_LEN, MAX_EVENT_ID_LEN, MAX_LATENCY_MS, MAX_METHOD_LEN, MAX_ROUTE_LEN,
    Outcome, UsageEvent, WireOutcome,
};
