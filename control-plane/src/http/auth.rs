//! Who is calling: `Authorization: Bearer <token>`, where the token is a keygate key of the
//! control plane's own prefix, checked by keygate-shared exactly as the edge checks API keys
//! (format, checksum, environment, then the digest in constant time). Looked up on every request,
//! so a revoked token or a deactivated user stops working at once on every replica; the one
//! exception is `POST /v1/verify`'s [`CachedCaller`], within the read cache's TTL.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::Extensions;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use keygate_shared::{
    Decision, Denial, Grants, KeyRecord, OwnerId, RecordState, Request, SnapshotRecord, Status,
    is_expired,
};

use super::error::ApiError;
use super::{AppState, ClientIp, RequestId};
use crate::store::users::{self, Role, TokenHolder};

/// Whether the request's `Authorization: Bearer` is the shared secret whose digest is `expected`
/// (the ingest token, the metrics token). Digest equality is constant-time.
pub(super) fn bearer_is(parts: &Parts, expected: &keygate_shared::Digest) -> bool {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| keygate_shared::Digest::of_key(token) == *expected)
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
    pub token_id: String,
    /// When the caller's token expires; `None`: never.
    pub token_expires_at: Option<i64>,
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the admin role"))
        }
    }

    /// May act on a key owned by `owner_id`.
    pub fn manages(&self, owner_id: &str) -> bool {
        self.role.manages_all_keys() || self.user_id == owner_id
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        from_parts(parts, state, Freshness::Current).await
    }
}

/// The caller of `POST /v1/verify`, authenticated through the read cache (`http::cache`): a
/// token revoked or a user deactivated on another replica is refused here within the cache's
/// TTL rather than at once. Every other route takes a [`Caller`], read afresh.
pub(super) struct CachedCaller;

impl FromRequestParts<AppState> for CachedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        from_parts(parts, state, Freshness::Cached).await?;
        Ok(Self)
    }
}

/// Where a token's holder is read from.
#[derive(Clone, Copy)]
enum Freshness {
    /// The database, now.
    Current,
    /// The read cache: as of at most its TTL ago, or of the last change made here.
    Cached,
}

async fn from_parts(
    parts: &Parts,
    state: &AppState,
    freshness: Freshness,
) -> Result<Caller, ApiError> {
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .map(|value| value.to_str().map_err(|_| invalid_token()))
        .transpose()?;
    let (request_id, client_ip) = origin_of(&parts.extensions);
    authenticate_from(state, authorization, request_id, client_ip, freshness).await
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized("missing or invalid bearer token")
}

/// The request's id and client address, as `observe` noted them.
pub(super) fn origin_of(extensions: &Extensions) -> (String, Option<IpAddr>) {
    let request_id = extensions
        .get::<RequestId>()
        .map(|RequestId(id)| id.clone())
        .unwrap_or_default();
    let client_ip = extensions.get::<ClientIp>().and_then(|ClientIp(ip)| *ip);
    (request_id, client_ip)
}

/// The caller presenting `authorization` (`Bearer <token>`): the token checked by keygate-shared
/// exactly as the edge checks API keys, then its holder's standing.
pub(super) async fn authenticate(
    state: &AppState,
    authorization: Option<&str>,
    request_id: String,
    client_ip: Option<IpAddr>,
) -> Result<Caller, ApiError> {
    authenticate_from(
        state,
        authorization,
        request_id,
        client_ip,
        Freshness::Current,
    )
    .await
}

async fn authenticate_from(
    state: &AppState,
    authorization: Option<&str>,
    request_id: String,
    client_ip: Option<IpAddr>,
    freshness: Freshness,
) -> Result<Caller, ApiError> {
    let verifier = state.token_verifier();
    let token = verifier
        .identify(authorization, None)
        .map_err(|_| invalid_token())?;
    let holder = match freshness {
        Freshness::Current => users::token_holder(state.db(), &token.key_id()).await?,
        Freshness::Cached => state
            .cache()
            .token_holder(state.db(), state.now_ms(), &token.key_id())
            .await?
            .map(|holder| TokenHolder::clone(&holder)),
    };
    let record = match &holder {
        Some(holder) => Some(SnapshotRecord {
            key_id: token.key_id(),
            version: 1,
            state: RecordState::Present(KeyRecord {
                status: if holder.revoked || !holder.user_active {
                    Status::Revoked
                } else {
                    Status::Active
                },
                expires_at: holder.expires_at,
                ..KeyRecord::active(
                    holder.digest,
                    verifier.environment(),
                    Grants::default(),
                    OwnerId::parse(&holder.user_id).map_err(ApiError::internal)?,
                )
            }),
        }),
        None => None,
    };
    match (
        token.decide(record.as_ref(), &Request::at(state.now())),
        holder,
    ) {
        (Decision::Allowed(_), Some(holder)) => Ok(Caller::of(holder, request_id, client_ip)),
        (Decision::Denied(Denial::Revoked), _) => Err(revoked()),
        _ => Err(invalid_token()),
    }
}

fn revoked() -> ApiError {
    ApiError::unauthorized("this token was revoked, or its user deactivated")
}

impl Caller {
    fn of(holder: TokenHolder, request_id: String, client_ip: Option<IpAddr>) -> Self {
        Self {
            user_id: holder.user_id,
            role: holder.role,
            token_id: holder.token_id,
            token_expires_at: holder.expires_at,
            request_id,
            client_ip,
        }
    }

    /// The caller a dashboard session acts for: its token's holder, if the token still stands
    /// (not revoked, its user active, not expired) at `now`. The token itself was checked when
    /// the session started; the session's secret stands in for it since.
    pub(super) fn of_session(
        holder: TokenHolder,
        now: i64,
        request_id: String,
        client_ip: Option<IpAddr>,
    ) -> Result<Self, ApiError> {
        if holder.revoked || !holder.user_active {
            return Err(revoked());
        }
        if is_expired(holder.expires_at, now) {
            return Err(ApiError::unauthorized("this token has expired"));
        }
        Ok(Self::of(holder, request_id, client_ip))
    }
}
