//! The usage event: what the edge reports of each decision that identified a key, and what the
//! control plane's `POST /v1/usage/events` takes, stores and shows. One type for both sides.
//!
//! The edge writes it with [`UsageEvent::to_json`], a hand-written encoder (the Worker has a size
//! budget, and serde's derived serializer would add to it); the control plane reads it with the
//! derived `Deserialize` and checks it with [`UsageEvent::check`]. A test in this crate shows that
//! what the one writes is what the other reads, for every [`Outcome`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::key::KeyId;

/// The longest `event_id`, `method`, `route` and `colo` the control plane keeps.
pub const MAX_EVENT_ID_LEN: usize = 64;
pub const MAX_METHOD_LEN: usize = 16;
pub const MAX_ROUTE_LEN: usize = 512;
pub const MAX_COLO_LEN: usize = 16;
/// The longest latency an event may report: an hour, in milliseconds.
pub const MAX_LATENCY_MS: i64 = 3_600_000;

/// What became of a request that identified a key: allowed, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Revoked,
    Disabled,
    Expired,
    NotYetValid,
    IpNotAllowed,
    CustomerMismatch,
    CustomerRequired,
    InsufficientPermissions,
    RateLimited,
    /// The key has a rate limit and its limiter could not be reached (and the edge fails closed).
    RateLimiterUnavailable,
}

impl Outcome {
    pub const ALL: [Outcome; 11] = [
        Self::Ok,
        Self::Revoked,
        Self::Disabled,
        Self::Expired,
        Self::NotYetValid,
        Self::IpNotAllowed,
        Self::CustomerMismatch,
        Self::CustomerRequired,
        Self::InsufficientPermissions,
        Self::RateLimited,
        Self::RateLimiterUnavailable,
    ];

    /// `ok`, or the denial code the caller was answered with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::CustomerMismatch => "customer_mismatch",
            Self::CustomerRequired => "customer_required",
            Self::InsufficientPermissions => "insufficient_permissions",
            Self::RateLimited => "rate_limited",
            Self::RateLimiterUnavailable => "rate_limiter_unavailable",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }

    /// Whether the request went on to the origin (counted as allowed).
    pub fn is_allowed(self) -> bool {
        self == Self::Ok
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome as the wire carries it: one this build knows, or a name it does not (from a newer
/// edge). An unknown name is refused for that event alone, so a batch is never stuck on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireOutcome {
    Known(Outcome),
    Unknown(String),
}

impl Serialize for WireOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Known(outcome) => outcome.serialize(serializer),
            Self::Unknown(name) => serializer.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for WireOutcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match Outcome::parse(&name) {
            Some(outcome) => Self::Known(outcome),
            None => Self::Unknown(name),
        })
    }
}

impl From<Outcome> for WireOutcome {
    fn from(outcome: Outcome) -> Self {
        Self::Known(outcome)
    }
}

/// One decision at the edge, as `POST /v1/usage/events` takes it. The fields arrive as plain JSON
/// values and [`UsageEvent::check`] validates them one event at a time, so that one bad event is
/// refused on its own and the rest of its batch is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// Unique per event (1 to 64 of `A-Z a-z 0-9 - _`): a replayed event is counted once.
    pub event_id: String,
    pub key_id: String,
    /// Unix milliseconds.
    #[serde(deserialize_with = "crate::whole::i64")]
    pub occurred_at_ms: i64,
    pub method: String,
    /// The request path.
    pub route: String,
    /// `ok` or the denial code.
    #[cfg_attr(feature = "openapi", schema(value_type = Outcome))]
    pub outcome: WireOutcome,
    #[serde(deserialize_with = "crate::whole::i64")]
    pub status: i64,
    /// The Cloudflare location (`cf.colo`), or `local`.
    pub colo: String,
    #[serde(deserialize_with = "crate::whole::i64")]
    pub latency_ms: i64,
}

/// An event that passed [`UsageEvent::check`]: every field within its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedEvent {
    pub event_id: String,
    pub key_id: KeyId,
    pub occurred_at_ms: i64,
    /// Upper case.
    pub method: String,
    pub route: String,
    pub outcome: Outcome,
    pub status: u16,
    pub colo: String,
    pub latency_ms: i64,
}

fn token_chars(text: &str, max: usize, extra: &[u8]) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

impl UsageEvent {
    /// `path` cut to the longest route the control plane keeps. Paths are percent-encoded
    /// ASCII, so the cut never splits a character; anything else is left whole (and refused by
    /// [`UsageEvent::check`]).
    pub fn route_of(path: &str) -> &str {
        path.get(..MAX_ROUTE_LEN).unwrap_or(path)
    }

    /// The event as JSON, written by hand (see the module's comment); every string still goes
    /// through serde_json's escaping.
    pub fn to_json(&self) -> String {
        let text = |value: &str| serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned());
        let outcome = match &self.outcome {
            WireOutcome::Known(outcome) => outcome.as_str(),
            WireOutcome::Unknown(name) => name,
        };
        format!(
            r#"{{"event_id":{},"key_id":{},"occurred_at_ms":{},"method":{},"route":{},"outcome":{},"status":{},"colo":{},"latency_ms":{}}}"#,
            text(&self.event_id),
            text(&self.key_id),
            self.occurred_at_ms,
            text(&self.method),
            text(&self.route),
            text(outcome),
            self.status,
            text(&self.colo),
            self.latency_ms,
        )
    }

    /// Checks every field, given the receiver's clock (`now_ms`) and the oldest time its log
    /// keeps. The message names the field and its rule, never its value.
    pub fn check(
        self,
        now_ms: i64,
        oldest_ms: i64,
        max_skew_ms: i64,
    ) -> Result<CheckedEvent, String> {
        if !token_chars(&self.event_id, MAX_EVENT_ID_LEN, b"-_") {
            return Err(format!(
                "event_id must be 1 to {MAX_EVENT_ID_LEN} of A-Z a-z 0-9 - _"
            ));
        }
        let key_id = KeyId::parse(&self.key_id).map_err(|_| "key_id is not a key id".to_owned())?;
        if self.occurred_at_ms > now_ms.saturating_add(max_skew_ms)
            || self.occurred_at_ms < oldest_ms
        {
            return Err("occurred_at_ms is in the future or older than the log keeps".into());
        }
        if !token_chars(&self.method, MAX_METHOD_LEN, b"") {
            return Err(format!("method must be 1 to {MAX_METHOD_LEN} letters"));
        }
        if self.route.is_empty()
            || self.route.len() > MAX_ROUTE_LEN
            || self.route.chars().any(char::is_control)
        {
            return Err(format!(
                "route must be 1 to {MAX_ROUTE_LEN} printable characters"
            ));
        }
        let WireOutcome::Known(outcome) = self.outcome else {
            return Err("outcome must be ok or a denial code".into());
        };
        let status = u16::try_from(self.status)
            .ok()
            .filter(|status| (100..=599).contains(status))
            .ok_or_else(|| "status must be 100 to 599".to_owned())?;
        if !token_chars(&self.colo, MAX_COLO_LEN, b"-") {
            return Err(format!("colo must be 1 to {MAX_COLO_LEN} of A-Z a-z 0-9 -"));
        }
        if !(0..=MAX_LATENCY_MS).contains(&self.latency_ms) {
            return Err(format!("latency_ms must be 0 to {MAX_LATENCY_MS}"));
        }
        Ok(CheckedEvent {
            event_id: self.event_id,
            key_id,
            occurred_at_ms: self.occurred_at_ms,
            method: self.method.to_ascii_uppercase(),
            route: self.route,
            outcome,
            status,
            colo: self.colo,
            latency_ms: self.latency_ms,
        })
    }
}
