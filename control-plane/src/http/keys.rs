//! `/v1/keys`: create, list, show, update, disable, enable, revoke, regenerate and delete keys.
//! Members manage only the keys they own; someone else's key is "not found" to them, so its
//! existence does not leak. The full key is returned exactly once, by create and regenerate.
#![allow(
    unused_qualifications,
    reason = "utoipa's expansion of `params(Query)` qualifies the type it is given"
)]

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use keygate_shared::{
    CustomerId, Environment, Grants, IpAllowlist, KeyId, OwnerId, PermissionError, PermissionSet,
    PreviousDigest, RateLimit, RateLimitFields, Status, is_expired,
};
use rand_core::{OsRng, UnwrapErr};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::document::networks;
use super::error::{ApiError, ApiJson, ApiQuery, ErrorResponse, OptionalJson};
use super::views::{KeyView, Page, check_name, decode_cursor, page_size, parse_rfc3339};
use super::{AppState, Caller, actor};
use crate::policy::{self, Bound, Changer, Restricted};
use crate::store::catalog::{self, Catalogue};
use crate::store::keys::{self, Key, KeyFilter, KeyStatus, Restrictions};
use crate::store::{Refusal, StoreError, users};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, delete_key))
        .routes(routes!(disable_key))
        .routes(routes!(enable_key))
        .routes(routes!(revoke_key))
        .routes(routes!(regenerate_key))
}

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 2_000;
const MAX_REASON_CHARS: usize = 500;
const MAX_METADATA_BYTES: usize = 4_096;
const MAX_EXPIRY_DAYS: u32 = 3_650;
/// A regenerated key's old secret may keep working for at most this long.
const MAX_GRACE_SECONDS: u32 = 7 * 24 * 3_600;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKeyRequest {
    /// 1 to 200 characters; surrounding white space is dropped.
    #[schema(min_length = 1, max_length = 200, pattern = "keygate:name")]
    name: String,
    /// Up to 2000 characters; line breaks allowed.
    #[schema(max_length = 2000, pattern = "keygate:lines")]
    description: Option<String>,
    /// Defaults to `production` (keys read `kg_live_...`).
    environment: Option<Environment>,
    /// Catalogued permissions (`customer:read`), or wildcards over them (`customer:*`, `*`).
    #[serde(default)]
    #[schema(schema_with = keygate_shared::openapi::grant_list)]
    permissions: Vec<String>,
    /// Names of catalogued permission sets, expanded into the key's grants now.
    #[serde(default)]
    #[schema(schema_with = keygate_shared::openapi::set_name_list)]
    permission_sets: Vec<String>,
    /// Scope the key to one of your customers.
    #[schema(schema_with = keygate_shared::openapi::optional_reference)]
    customer_id: Option<String>,
    /// Expire this many days from now (1 to 3650). Not with `expires_at`. Neither: never expires.
    #[serde(default, deserialize_with = "keygate_shared::whole::option_u32")]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
    /// Expire at this RFC 3339 time, which must be in the future and within 3650 days.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    rate_limit: Option<RateLimitFields>,
    /// CIDR networks the key may be used from (`203.0.113.0/24`, `2001:db8::/32`), host bits
    /// zero.
    #[serde(default)]
    #[schema(schema_with = networks)]
    ip_allowlist: Vec<String>,
    /// Your own labels, at most 4 KiB of JSON.
    metadata: Option<Map<String, Value>>,
    /// The user who owns the key; defaults to the caller. Members can only create their own.
    #[schema(min_length = 1, max_length = 64)]
    owner_id: Option<String>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub(super) struct CreatedKey {
    /// The full key. Shown this once: only its digest is stored.
    key: String,
    key_id: String,
    record: KeyView,
}

/// `null` clears a field; leaving it out keeps it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateKeyRequest {
    #[schema(min_length = 1, max_length = 200, pattern = "keygate:name")]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2000, pattern = "keygate:lines")]
    description: Option<Option<String>>,
    #[schema(schema_with = keygate_shared::openapi::grant_list)]
    permissions: Option<Vec<String>>,
    #[schema(schema_with = keygate_shared::openapi::set_name_list)]
    permission_sets: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = keygate_shared::openapi::optional_reference)]
    customer_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "keygate_shared::whole::option_u32")]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RateLimitFields>)]
    rate_limit: Option<Option<RateLimitFields>>,
    #[schema(schema_with = networks)]
    ip_allowlist: Option<Vec<String>>,
    metadata: Option<Map<String, Value>>,
    /// Give the key to another active user (key managers and admins only). The key must be
    /// within the new owner's grant ceiling.
    #[schema(min_length = 1, max_length = 64)]
    owner_id: Option<String>,
}

fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeKeyRequest {
    /// Why, for the audit log (1 to 500 characters).
    #[schema(min_length = 1, max_length = 500, pattern = "keygate:name")]
    reason: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegenerateKeyRequest {
    /// Keep the old secret working this long (at most 604800, 7 days) for a zero-downtime
    /// rotation. 0 or absent: it stops at once.
    #[serde(default, deserialize_with = "keygate_shared::whole::u32")]
    #[schema(maximum = 604_800)]
    grace_period_seconds: u32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListKeysQuery {
    status: Option<KeyStatus>,
    environment: Option<Environment>,
    /// Keys of this user (members may only ask for their own).
    owner_id: Option<String>,
    customer_id: Option<String>,
    /// Case-insensitive part of the name.
    name: Option<String>,
    /// Keys not used for this many days (never used: created that long ago), as the edge
    /// reported use; for finding orphaned keys.
    unused_days: Option<u32>,
    /// `true`: only keys whose owner is deactivated (kept working with `disable_keys: false`).
    owner_deactivated: Option<bool>,
    /// 1 to 500; 50 if absent.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The validated, typed form of what a create or update asks for.
struct Config {
    permissions: Vec<String>,
    permission_sets: Vec<String>,
    grants: Grants,
}

fn check_description(description: Option<String>) -> Result<Option<String>, Refusal> {
    description
        .map(|text| {
            crate::text::check(
                "description",
                "invalid_description",
                &text,
                0..=MAX_DESCRIPTION_CHARS,
                true,
            )
        })
        .transpose()
}

fn check_customer(customer: Option<String>) -> Result<Option<CustomerId>, Refusal> {
    customer
        .map(|text| CustomerId::parse(&text))
        .transpose()
        .map_err(|error| Refusal::invalid("invalid_customer_id", error.to_string()))
}

fn check_rate_limit(limit: Option<RateLimitFields>) -> Result<Option<RateLimit>, Refusal> {
    limit
        .map(RateLimit::try_from)
        .transpose()
        .map_err(|error| Refusal::invalid("invalid_rate_limit", error.to_string()))
}

fn check_allowlist(networks: &[String]) -> Result<IpAllowlist, Refusal> {
    IpAllowlist::parse(networks)
        .map_err(|error| Refusal::invalid("invalid_ip_allowlist", error.to_string()))
}

fn check_metadata(metadata: Map<String, Value>) -> Result<Map<String, Value>, Refusal> {
    if Value::Object(metadata.clone()).to_string().len() > MAX_METADATA_BYTES {
        return Err(Refusal::invalid(
            "metadata_too_large",
            format!("metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }
    Ok(metadata)
}

/// The expiry asked for: `expires_in_days` or `expires_at` (not both), in the future.
fn check_expiry(in_days: Option<u32>, at: Option<&str>, now: i64) -> Result<Option<i64>, Refusal> {
    let expires_at = match (in_days, at) {
        (Some(_), Some(_)) => {
            return Err(Refusal::invalid(
                "conflicting_expiry",
                "give expires_in_days or expires_at, not both",
            ));
        }
        (Some(days), None) if (1..=MAX_EXPIRY_DAYS).contains(&days) => {
            return Ok(Some(now + i64::from(days) * 86_400));
        }
        (Some(_), None) => {
            return Err(Refusal::invalid(
                "invalid_expiry",
                format!("expires_in_days must be 1 to {MAX_EXPIRY_DAYS}"),
            ));
        }
        (None, Some(text)) => parse_rfc3339("expires_at", text)?,
        (None, None) => return Ok(None),
    };
    if is_expired(Some(expires_at), now) {
        return Err(Refusal::invalid(
            "expiry_in_past",
            "expires_at must be in the future",
        ));
    }
    if expires_at > now + i64::from(MAX_EXPIRY_DAYS) * 86_400 {
        return Err(Refusal::invalid(
            "invalid_expiry",
            format!("expires_at must be within {MAX_EXPIRY_DAYS} days"),
        ));
    }
    Ok(Some(expires_at))
}

/// Checks requested grants and sets against the catalogue and expands the sets.
fn check_grants(
    catalogue: &Catalogue,
    permissions: Vec<String>,
    permission_sets: Vec<String>,
) -> Result<Config, Refusal> {
    let direct = Grants::parse(&permissions).map_err(|error| match error {
        PermissionError::Duplicate(_) => {
            Refusal::invalid("duplicate_permission", error.to_string())
        }
        other => Refusal::invalid("invalid_permission", other.to_string()),
    })?;
    if let Some(unknown) = direct.iter().find(|grant| !catalogue.covers(grant)) {
        return Err(Refusal::invalid(
            "unknown_permission",
            format!("{unknown} is not in the permission catalogue (GET /v1/permissions)"),
        ));
    }
    let mut sets = Vec::with_capacity(permission_sets.len());
    for (index, name) in permission_sets.iter().enumerate() {
        if permission_sets[..index].contains(name) {
            return Err(Refusal::invalid(
                "duplicate_permission_set",
                format!("permission set {name:?} is listed twice"),
            ));
        }
        let set = catalogue.set(name).ok_or_else(|| {
            Refusal::invalid(
                "unknown_permission_set",
                format!("{name:?} is not a permission set in the catalogue"),
            )
        })?;
        let grants = Grants::parse(&set.permissions).map_err(|error| {
            Refusal::invalid(
                "invalid_permission_set",
                format!("permission set {name:?}: {error}"),
            )
        })?;
        sets.push(PermissionSet {
            name: set.name.clone(),
            grants,
        });
    }
    let grants = direct
        .expand(&sets)
        .map_err(|error| Refusal::invalid("too_many_permissions", error.to_string()))?;
    Ok(Config {
        permissions: direct.iter().map(ToString::to_string).collect(),
        permission_sets,
        grants,
    })
}

/// The user a key is for, who must exist and be active.
async fn active_owner(state: &AppState, owner_id: &str) -> Result<(), ApiError> {
    let owner = users::get(state.db(), owner_id).await?;
    if owner.is_none_or(|owner| owner.deactivated_at.is_some()) {
        return Err(ApiError::invalid(
            "unknown_owner",
            format!("{owner_id:?} is not an active user"),
        ));
    }
    Ok(())
}

fn changer(caller: &Caller) -> Changer<'_> {
    Changer {
        user_id: &caller.user_id,
        authority: caller.role.manages_all_keys(),
    }
}

/// `summary` with what the change restricted and lifted, when it did.
fn noting(mut summary: Value, restricted: &Restricted) -> Value {
    if let Value::Object(fields) = &mut summary {
        if !restricted.placed.is_empty() {
            fields.insert("restricted".into(), json!(restricted.placed));
        }
        if !restricted.lifted.is_empty() {
            fields.insert("lifted".into(), json!(restricted.lifted));
        }
    }
    summary
}

/// What a change to an existing key is held to: the ceilings that bind the caller for the key's
/// owner, read before the change's transaction. The change itself re-reads the key and refuses
/// to go on if its owner changed in between.
struct Guard {
    owner_id: String,
    bounds: Vec<Bound>,
    catalogue: Catalogue,
}

impl Guard {
    async fn load(
        state: &AppState,
        caller: &Caller,
        key_id: &KeyId,
        owner_id: Option<&str>,
    ) -> Result<Self, ApiError> {
        let key = keys::get(state.db(), key_id)
            .await?
            .ok_or_else(|| ApiError::not_found("key"))?;
        managed(caller, &key)?;
        let owner_id = owner_id.unwrap_or(key.owner_id.as_str()).to_owned();
        Ok(Self {
            bounds: policy::bounds(state.db(), &caller.user_id, caller.role, &owner_id).await?,
            catalogue: catalog::load(state.db()).await?,
            owner_id,
        })
    }

    /// Holds the change from `before` to `after` to the ceilings (`whole`: the whole key, as for
    /// enabling, renewing or a new owner; otherwise only what the change widened) and to the
    /// restrictions on the key.
    fn admit(
        &self,
        caller: &Caller,
        before: &Key,
        after: &mut Key,
        whole: bool,
        now: i64,
    ) -> Result<Restricted, StoreError> {
        if after.owner_id.as_str() != self.owner_id {
            return Err(keys::concurrent_update());
        }
        let from = (!whole).then_some(before);
        policy::check(&self.bounds, &self.catalogue, after, from, now)?;
        Ok(policy::restrict(changer(caller), Some(before), after, now)?)
    }
}

fn created(
    key: &keygate_shared::ApiKey,
    record: KeyView,
    status: StatusCode,
) -> (StatusCode, HeaderMap, Json<CreatedKey>) {
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let body = CreatedKey {
        key: key.expose_secret().to_owned(),
        key_id: key.key_id().to_string(),
        record,
    };
    (status, headers, Json(body))
}

fn summary_of(key: &Key) -> Value {
    json!({
        "name": key.name,
        "environment": key.environment.name(),
        "owner_id": key.owner_id.as_str(),
        "grants": key.grants.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "customer_id": key.customer_id.as_ref().map(CustomerId::as_str),
        "expires_at": key.expires_at,
    })
}

/// Create a key. The response holds the full key, once.
#[utoipa::path(
    post, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    request_body = CreateKeyRequest,
    extensions(("x-semantic-refusals" = json!([
        "unknown_owner", "unknown_permission", "unknown_permission_set", "too_many_permissions",
        "conflicting_expiry", "expiry_in_past", "invalid_expiry", "invalid_ip_allowlist",
        "metadata_too_large"
    ]))),
    responses(
        (status = 201, description = "Created; `key` is shown only now", body = CreatedKey),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "A member creating a key for someone else", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 415, description = "Not application/json", body = ErrorResponse),
        (status = 422, description = "Invalid field (unknown permission, past expiry, ...)", body = ErrorResponse),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (api_key, view) = create(&state, &caller, request).await?;
    Ok(created(&api_key, view, StatusCode::CREATED))
}

/// Creates the key `request` asks for, as `caller`: the key itself (to be shown once) and its
/// view. The API and the dashboard both create keys through this.
pub(super) async fn create(
    state: &AppState,
    caller: &Caller,
    request: CreateKeyRequest,
) -> Result<(keygate_shared::ApiKey, KeyView), ApiError> {
    let now = state.now();
    let owner_id = request.owner_id.unwrap_or_else(|| caller.user_id.clone());
    if !caller.manages(&owner_id) {
        return Err(ApiError::forbidden(
            "members can only create keys for themselves",
        ));
    }
    active_owner(state, &owner_id).await?;
    let bounds = policy::bounds(state.db(), &caller.user_id, caller.role, &owner_id).await?;
    let catalogue = catalog::load(state.db()).await?;
    let config = check_grants(&catalogue, request.permissions, request.permission_sets)?;
    let environment = request.environment.unwrap_or(Environment::Production);
    let api_key = state
        .settings()
        .key_format
        .generate(environment, &mut UnwrapErr(OsRng));
    let mut key = Key {
        key_id: api_key.key_id(),
        name: check_name(&request.name, MAX_NAME_CHARS)?,
        description: check_description(request.description)?,
        environment,
        status: Status::Active,
        digest: api_key.digest(),
        previous: None,
        permissions: config.permissions,
        permission_sets: config.permission_sets,
        grants: config.grants,
        customer_id: check_customer(request.customer_id)?,
        expires_at: check_expiry(request.expires_in_days, request.expires_at.as_deref(), now)?,
        rate_limit: check_rate_limit(request.rate_limit)?,
        ip_allowlist: check_allowlist(&request.ip_allowlist)?,
        metadata: check_metadata(request.metadata.unwrap_or_default())?,
        owner_id: OwnerId::parse(&owner_id).map_err(ApiError::internal)?,
        created_by: caller.user_id.clone(),
        created_at: now,
        updated_at: now,
        revoked_at: None,
        revoked_reason: None,
        last_used_at: None,
        version: 1,
        restrictions: Restrictions::new(),
    };
    policy::check(&bounds, &catalogue, &key, None, now)?;
    let restricted = policy::restrict(changer(caller), None, &mut key, now)?;
    let summary = noting(summary_of(&key), &restricted);
    keys::create(state.db(), &key, &actor(state, caller), &summary).await?;
    state.key_changed();
    Ok((api_key, KeyView::new(&key, now)))
}

/// List keys, newest first, one page at a time.
#[utoipa::path(
    get, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    params(ListKeysQuery),
    extensions(("x-semantic-refusals" = json!(["invalid_cursor"]))),
    responses(
        (status = 200, description = "One page", body = Page<KeyView>),
        (status = 400, description = "Bad query parameter or cursor", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "A member asking for someone else's keys", body = ErrorResponse),
    )
)]
pub(super) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListKeysQuery>,
) -> Result<Json<Page<KeyView>>, ApiError> {
    let limit = page_size(query.limit)?;
    let owner_id = match query.owner_id {
        Some(owner) if !caller.manages(&owner) => {
            return Err(ApiError::forbidden("members can only list their own keys"));
        }
        Some(owner) => Some(owner),
        None if caller.role.manages_all_keys() => None,
        None => Some(caller.user_id.clone()),
    };
    let after = query
        .cursor
        .map(|cursor| {
            decode_cursor(&cursor, |position| {
                let (at, id) = position.split_once(':')?;
                Some((at.parse().ok()?, id.to_owned()))
            })
        })
        .transpose()?;
    let filter = KeyFilter {
        status: query.status,
        environment: query.environment,
        owner_id,
        customer_id: query.customer_id,
        name: query.name,
        unused_since: query
            .unused_days
            .map(|days| state.now() - i64::from(days.min(36_500)) * 86_400),
        owner_deactivated: query.owner_deactivated.unwrap_or(false),
        after,
    };
    let now = state.now();
    let found = keys::list(state.db(), &filter, now, limit + 1).await?;
    Ok(Json(Page::of(
        found,
        limit,
        |key| format!("{}:{}", key.created_at, key.key_id),
        |key| KeyView::new(&key, now),
    )))
}

fn key_id(text: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(text).map_err(|_| ApiError::not_found("key"))
}

/// Someone else's key is "not found" to a member.
fn managed(caller: &Caller, key: &Key) -> Result<(), StoreError> {
    if caller.manages(key.owner_id.as_str()) {
        Ok(())
    } else {
        Err(Refusal::NotFound("key").into())
    }
}

fn not_revoked(key: &Key, doing: &str) -> Result<(), StoreError> {
    if key.status == Status::Revoked {
        Err(Refusal::conflict(
            "key_revoked",
            format!("the key is revoked; a revoked key cannot be {doing}"),
        )
        .into())
    } else {
        Ok(())
    }
}

/// Show one key.
#[utoipa::path(
    get, path = "/v1/keys/{key_id}", tag = "keys", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key", body = KeyView),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such key (or not yours)", body = ErrorResponse),
    )
)]
pub(super) async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = keys::get(state.db(), &key_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("key"))?;
    managed(&caller, &key)?;
    Ok(Json(KeyView::new(&key, state.now())))
}

/// Change a key's name, description, permissions, customer, expiry, rate limit, allowlist or
/// metadata. The key string stays the same.
#[utoipa::path(
    patch, path = "/v1/keys/{key_id}", tag = "keys", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "The key's id")),
    request_body = UpdateKeyRequest,
    extensions(("x-semantic-refusals" = json!([
        "unknown_owner", "unknown_permission", "unknown_permission_set", "too_many_permissions",
        "conflicting_expiry", "expiry_in_past", "invalid_expiry", "invalid_ip_allowlist",
        "metadata_too_large"
    ]))),
    responses(
        (status = 200, description = "The updated key", body = KeyView),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such key (or not yours)", body = ErrorResponse),
        (status = 409, description = "The key is revoked", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 422, description = "Invalid field", body = ErrorResponse),
    )
)]
pub(super) async fn update_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UpdateKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let id = key_id(&id)?;
    let now = state.now();
    let new_owner = patch.owner_id.clone();
    if let Some(owner_id) = &new_owner {
        if !caller.role.manages_all_keys() {
            return Err(ApiError::forbidden(
                "only key managers and admins can give a key to someone else",
            ));
        }
        active_owner(&state, owner_id).await?;
    }
    let guard = Guard::load(&state, &caller, &id, new_owner.as_deref()).await?;
    let key = modify(&state, &id, &actor(&state, &caller), "key.update", |key| {
        managed(&caller, key)?;
        not_revoked(key, "updated")?;
        let before = key.clone();
        let changed = apply_patch(key, patch, &guard.catalogue, now)?;
        if changed.is_empty() {
            return Ok(None);
        }
        let whole = changed.contains(&"owner_id");
        let restricted = guard.admit(&caller, &before, key, whole, now)?;
        Ok(Some(noting(json!({ "changed": changed }), &restricted)))
    })
    .await?;
    Ok(Json(KeyView::new(&key, now)))
}

/// Applies a patch, returning the names of the fields it changed.
fn apply_patch(
    key: &mut Key,
    patch: UpdateKeyRequest,
    catalogue: &Catalogue,
    now: i64,
) -> Result<Vec<&'static str>, Refusal> {
    let mut changed = Vec::new();
    let mut note = |field: &'static str, differs: bool| {
        if differs {
            changed.push(field);
        }
    };
    if let Some(name) = patch.name {
        let name = check_name(&name, MAX_NAME_CHARS)?;
        note("name", name != key.name);
        key.name = name;
    }
    if let Some(description) = patch.description {
        let description = check_description(description)?;
        note("description", description != key.description);
        key.description = description;
    }
    if patch.permissions.is_some() || patch.permission_sets.is_some() {
        let config = check_grants(
            catalogue,
            patch.permissions.unwrap_or_else(|| key.permissions.clone()),
            patch
                .permission_sets
                .unwrap_or_else(|| key.permission_sets.clone()),
        )?;
        note("permissions", config.permissions != key.permissions);
        note(
            "permission_sets",
            config.permission_sets != key.permission_sets,
        );
        note("grants", config.grants != key.grants);
        key.permissions = config.permissions;
        key.permission_sets = config.permission_sets;
        key.grants = config.grants;
    }
    if let Some(customer) = patch.customer_id {
        let customer = check_customer(customer)?;
        note("customer_id", customer != key.customer_id);
        key.customer_id = customer;
    }
    let expiry = match (patch.expires_in_days, patch.expires_at) {
        (None, None) => None,
        (None, Some(None)) => Some(None),
        (days, at) => Some(check_expiry(days, at.flatten().as_deref(), now)?),
    };
    if let Some(expires_at) = expiry {
        note("expires_at", expires_at != key.expires_at);
        key.expires_at = expires_at;
    }
    if let Some(limit) = patch.rate_limit {
        let limit = check_rate_limit(limit)?;
        note("rate_limit", limit != key.rate_limit);
        key.rate_limit = limit;
    }
    if let Some(networks) = patch.ip_allowlist {
        let allowlist = check_allowlist(&networks)?;
        note("ip_allowlist", allowlist != key.ip_allowlist);
        key.ip_allowlist = allowlist;
    }
    if let Some(metadata) = patch.metadata {
        let metadata = check_metadata(metadata)?;
        note("metadata", metadata != key.metadata);
        key.metadata = metadata;
    }
    if let Some(owner_id) = patch.owner_id {
        let owner_id = OwnerId::parse(&owner_id)
            .map_err(|error| Refusal::invalid("unknown_owner", error.to_string()))?;
        note("owner_id", owner_id != key.owner_id);
        key.owner_id = owner_id;
    }
    Ok(changed)
}

/// Switch a key off, reversibly: the edge answers 401 `disabled` until it is enabled.
#[utoipa::path(
    post, path = "/v1/keys/{key_id}/disable", tag = "keys", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key, disabled (unchanged if it already was)", body = KeyView),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such key (or not yours)", body = ErrorResponse),
        (status = 409, description = "The key is revoked", body = ErrorResponse),
    )
)]
pub(super) async fn disable_key(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    set_status(state, caller, id, Status::Disabled).await
}

/// Switch a disabled key back on.
#[utoipa::path(
    post, path = "/v1/keys/{key_id}/enable", tag = "keys", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key, active (unchanged if it already was)", body = KeyView),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such key (or not yours)", body = ErrorResponse),
        (status = 409, description = "The key is revoked: revocation cannot be undone", body = ErrorResponse),
    )
)]
pub(super) async fn enable_key(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    set_status(state, caller, id, Status::Active).await
}

async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    status: Status,
) -> Result<Json<KeyView>, ApiError> {
    let (action, doing) = match status {
        Status::Disabled => ("key.disable", "disabled"),
        _ => ("key.enable", "enabled"),
    };
    let id = key_id(&id)?;
    let guard = Guard::load(&state, &caller, &id, None).await?;
    let now = state.now();
    let key = modify(&state, &id, &actor(&state, &caller), action, |key| {
        managed(&caller, key)?;
        not_revoked(key, doing)?;
        if key.status == status {
            return Ok(None);
        }
        let before = key.clone();
        key.status = status;
        // Switching a key back on is held to the ceilings as a whole.
        let restricted = guard.admit(&caller, &before, key, status == Status::Active, now)?;
        Ok(Some(noting(json!({ "name": key.name }), &restricted)))
    })
    .await?;
    Ok(Json(KeyView::new(&key, now)))
}

/// Revoke a key: immediate and permanent. The key and its history stay visible.
#[utoipa::path(
    post, path = "/v1/keys/{key_id}/revoke", tag = "keys", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "The key's id")),
    request_body = RevokeKeyRequest,
    responses(
        (status = 200, description = "The key, revoked", body = KeyView),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such key (or not yours)", body = ErrorResponse),
        (status = 409, description = "Already revoked", body = ErrorResponse),
        (status = 422, description = "Missing or too long reason", body = ErrorResponse),
    )
)]
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RevokeKeyRequest>,
) -> Result<Json<KeyView>, ApiError> {
    let reason = crate::text::check(
        "reason",
        "invalid_reason",
        &request.reason,
        1..=MAX_REASON_CHARS,
        false,
    )?;
    let actor = actor(&state, &caller);
    let now = actor.now;
    let key = modify(&state, &key_id(&id)?, &actor, "key.revoke", |key| {
        managed(&caller, key)?;
        not_revoked(key, "revoked again")?;
        revoke(key, reason.clone(), now);
        Ok(Some(json!({ "name": key.name, "reason": reason })))
    })
    .await?;
    Ok(Json(KeyView::new(&key, now)))
}

/// Revokes `key` at `now` for `reason`: for good, and its replaced secret with it.
pub(super) fn revoke(key: &mut Key, reason: String, now: i64) {
    key.status = Status::Revoked;
    key.previous = None;
    key.revoked_at = Some(now);
    key.revoked_reason = Some(reason);
}

/// Issue a new secret for the same key id, name and configuration. The old secret stops at
/// once, or after `grace_period_seconds`. The response holds the new key, once.
#[utoipa::path(
    post, path = "/v1/keys/{key_id}/regenerate", tag = "keys", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "The key's id")),
    request_body(content = Option<RegenerateKeyRequest>, description = "Optional; `{}` or no body means no grace period"),
    responses(
        (status = 200, description = "The new key, shown only now", body = CreatedKey),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such key (or not yours)", body = ErrorResponse),
        (status = 409, description = "The key is revoked", body = ErrorResponse),
        (status = 422, description = "Grace period over 7 days", body = ErrorResponse),
    )
)]
async fn regenerate_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<RegenerateKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (api_key, view) = regenerate(&state, &caller, &id, request.grace_period_seconds).await?;
    Ok(created(&api_key, view, StatusCode::OK))
}

/// A new secret for the key `id`, the old one accepted for `grace` more seconds: the new key (to
/// be shown once) and the key's view. The API and the dashboard both regenerate through this.
pub(super) async fn regenerate(
    state: &AppState,
    caller: &Caller,
    id: &str,
    grace: u32,
) -> Result<(keygate_shared::ApiKey, KeyView), ApiError> {
    if grace > MAX_GRACE_SECONDS {
        return Err(ApiError::invalid(
            "invalid_grace_period",
            format!("grace_period_seconds must be at most {MAX_GRACE_SECONDS} (7 days)"),
        ));
    }
    let id = key_id(id)?;
    let guard = Guard::load(state, caller, &id, None).await?;
    let actor = actor(state, caller);
    let now = actor.now;
    let mut issued = None;
    let key = modify(state, &id, &actor, "key.regenerate", |key| {
        managed(caller, key)?;
        not_revoked(key, "regenerated")?;
        // A new secret renews the key: it is held to the ceilings as a whole.
        let before = key.clone();
        guard.admit(caller, &before, key, true, now)?;
        let api_key =
            state
                .settings()
                .key_format
                .regenerate(key.environment, id, &mut UnwrapErr(OsRng));
        key.previous = (grace > 0).then(|| PreviousDigest {
            digest: key.digest,
            expires_at: now + i64::from(grace),
        });
        key.digest = api_key.digest();
        issued = Some(api_key);
        Ok(Some(
            json!({ "name": key.name, "grace_period_seconds": grace }),
        ))
    })
    .await?;
    let api_key = issued.ok_or_else(|| ApiError::internal("regeneration issued no key"))?;
    Ok((api_key, KeyView::new(&key, now)))
}

/// Delete a key for good. The edge keeps a tombstone; the audit trail stays.
#[utoipa::path(
    delete, path = "/v1/keys/{key_id}", tag = "keys", security(("bearer" = [])),
    params(("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such key (or not yours)", body = ErrorResponse),
    )
)]
pub(super) async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    keys::delete(state.db(), &key_id(&id)?, &actor(&state, &caller), |key| {
        managed(&caller, key)
    })
    .await?;
    state.key_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// [`keys::modify`], then a wake-up for this process's pusher.
async fn modify(
    state: &AppState,
    key_id: &KeyId,
    actor: &crate::store::Actor,
    action: &str,
    change: impl FnOnce(&mut Key) -> Result<Option<Value>, StoreError>,
) -> Result<Key, StoreError> {
    let key = keys::modify(state.db(), key_id, actor, action, change).await?;
    state.key_changed();
    Ok(key)
}
