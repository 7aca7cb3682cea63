//! What the API shows: resources as JSON, times as RFC 3339, and opaque page cursors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keygate_shared::{Environment, RateLimit, RateLimitFields};
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::store::Refusal;
use crate::store::keys::{Key, KeyStatus, Restriction};
use crate::store::users::{Role, User};

/// Unix seconds as RFC 3339 (`2026-11-22T10:00:00Z`).
pub(crate) fn rfc3339(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub(crate) fn parse_rfc3339(field: &str, text: &str) -> Result<i64, Refusal> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| {
            Refusal::invalid(
                "invalid_time",
                format!("{field} must be an RFC 3339 time such as 2030-01-31T00:00:00Z"),
            )
        })
}

/// A name people give a key or token: trimmed, 1 to `max_chars` characters, none of them hidden
/// (control, bidi or zero-width characters).
pub(crate) fn check_name(name: &str, max_chars: usize) -> Result<String, Refusal> {
    crate::text::check("name", "invalid_name", name, 1..=max_chars, false)
}

/// A key as listings and lookups show it. Never the key itself, nor its digest.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct KeyView {
    pub key_id: String,
    pub name: String,
    pub description: Option<String>,
    pub environment: Environment,
    pub status: KeyStatus,
    /// Grants as requested.
    pub permissions: Vec<String>,
    pub permission_sets: Vec<String>,
    /// What the key holds: `permissions` plus every set's, as the edge checks them.
    pub grants: Vec<String>,
    pub customer_id: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(value_type = Option<RateLimitFields>)]
    pub rate_limit: Option<RateLimit>,
    pub ip_allowlist: Vec<String>,
    pub metadata: Map<String, Value>,
    pub owner_id: String,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    /// Null until the edge reports usage.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    /// While a regeneration's grace period runs, the replaced secret works until this time.
    #[schema(format = DateTime)]
    pub previous_secret_expires_at: Option<String>,
    /// Bumped by every change; the edge's record carries the same number.
    pub version: u64,
    /// What a key manager or admin restricted on this key (`disabled`, `customer_id`,
    /// `expires_at`, `rate_limit`, `ip_allowlist`), and who: its owner may tighten these but not
    /// loosen or lift them.
    #[schema(value_type = std::collections::BTreeMap<String, RestrictionView>)]
    pub restrictions: std::collections::BTreeMap<Restriction, RestrictionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RestrictionView {
    /// The user who set it.
    pub set_by: String,
    #[schema(format = DateTime)]
    pub set_at: String,
}

impl KeyView {
    pub(crate) fn new(key: &Key, now: i64) -> Self {
        Self {
            key_id: key.key_id.to_string(),
            name: key.name.clone(),
            description: key.description.clone(),
            environment: key.environment,
            status: key.status_at(now),
            permissions: key.permissions.clone(),
            permission_sets: key.permission_sets.clone(),
            grants: key.grants.iter().map(ToString::to_string).collect(),
            customer_id: key.customer_id.as_ref().map(ToString::to_string),
            expires_at: key.expires_at.map(rfc3339),
            rate_limit: key.rate_limit,
            ip_allowlist: key.ip_allowlist.iter().map(ToString::to_string).collect(),
            metadata: key.metadata.clone(),
            owner_id: key.owner_id.to_string(),
            created_by: key.created_by.clone(),
            created_at: rfc3339(key.created_at),
            updated_at: rfc3339(key.updated_at),
            revoked_at: key.revoked_at.map(rfc3339),
            revoked_reason: key.revoked_reason.clone(),
            last_used_at: key.last_used_at.map(rfc3339),
            previous_secret_expires_at: key
                .previous
                .as_ref()
                .filter(|previous| previous.accepted_at(now))
                .map(|previous| rfc3339(previous.expires_at)),
            version: key.version,
            restrictions: key
                .restrictions
                .iter()
                .map(|(restriction, set_by)| {
                    let view = RestrictionView {
                        set_by: set_by.by.clone(),
                        set_at: rfc3339(set_by.at),
                    };
                    (*restriction, view)
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserView {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub active: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub deactivated_at: Option<String>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            user_id: user.user_id.clone(),
            email: user.email.clone(),
            role: user.role,
            active: user.deactivated_at.is_none(),
            created_at: rfc3339(user.created_at),
            updated_at: rfc3339(user.updated_at),
            deactivated_at: user.deactivated_at.map(rfc3339),
        }
    }
}

/// One page of a listing. `next_cursor` is absent on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub(crate) const DEFAULT_PAGE: u32 = 50;
pub(crate) const MAX_PAGE: u32 = 500;

pub(crate) fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        limit @ 1..=MAX_PAGE => Ok(limit),
        _ => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be 1 to {MAX_PAGE}"),
        )),
    }
}

impl<T> Page<T> {
    /// A page from `found`, fetched with a limit of `limit + 1`: the extra row only says that
    /// there is more, and the cursor continues from the last row shown.
    pub(crate) fn of<R>(
        mut found: Vec<R>,
        limit: u32,
        position: impl Fn(&R) -> String,
        view: impl FnMut(R) -> T,
    ) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = found.len() > limit;
        found.truncate(limit);
        let next_cursor = more
            .then(|| found.last())
            .flatten()
            .map(|last| URL_SAFE_NO_PAD.encode(position(last)));
        Self {
            items: found.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// Cursors are opaque to clients: base64url of the position they continue from, read back with
/// `parse`.
pub(crate) fn decode_cursor<P>(
    cursor: &str,
    parse: impl FnOnce(&str) -> Option<P>,
) -> Result<P, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|position| parse(&position))
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "cursor is not one this server issued",
            )
        })
}
