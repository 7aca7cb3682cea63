//! Grant ceilings: what each role, or one user, may put on a key (`crate::policy` holds keys to
//! them). Admins set them; key managers read them; anyone reads their own. Setting a ceiling
//! never changes a key: the answer lists the keys left above it. The statuses every operation
//! shares (401, 413, 415, 500, ...) come from `document.rs`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keygate_shared::Grants;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiJson, ErrorResponse};
use super::views::rfc3339;
use super::{AppState, Caller, actor};
use crate::policy;
use crate::store::catalog;
use crate::store::ceilings::{self, Ceiling, Effective, Source, Subject};
use crate::store::keys;
use crate::store::users::{self, Role, User};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            get_role_ceiling,
            put_role_ceiling,
            reset_role_ceiling
        ))
        .routes(routes!(my_ceiling))
        .routes(routes!(
            get_user_ceiling,
            put_user_ceiling,
            reset_user_ceiling
        ))
}

/// At most this many of the keys a new ceiling leaves above it are listed by id.
const MAX_LISTED_KEYS: usize = 100;
const MAX_CEILING_SETS: usize = keygate_shared::MAX_GRANTS;
const MAX_LIFETIME_DAYS: u32 = 3_650;

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CeilingView {
    pub(super) ceiling: Ceiling,
    pub(super) source: Source,
    /// Null for a built-in default.
    #[schema(format = DateTime)]
    pub(super) updated_at: Option<String>,
    pub(super) updated_by: Option<String>,
    /// After a change: the keys (not revoked) that the ceiling now in force leaves above it.
    /// They keep working as they are; they cannot be widened, enabled or regenerated until they
    /// fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) keys_above: Option<KeysAbove>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct KeysAbove {
    count: usize,
    /// The first 100 of them.
    key_ids: Vec<String>,
}

impl CeilingView {
    fn of(effective: Effective) -> Self {
        Self {
            ceiling: effective.ceiling,
            source: effective.source,
            updated_at: effective.updated_at.map(rfc3339),
            updated_by: effective.updated_by,
            keys_above: None,
        }
    }
}

/// A role that has a ceiling: `admin` has none, so it is not a path this API serves.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum BoundedRole {
    Member,
    KeyManager,
}

impl From<BoundedRole> for Role {
    fn from(role: BoundedRole) -> Self {
        match role {
            BoundedRole::Member => Role::Member,
            BoundedRole::KeyManager => Role::KeyManager,
        }
    }
}

/// May read ceilings other than their own.
fn require_key_manager(caller: &Caller) -> Result<(), ApiError> {
    if caller.role.manages_all_keys() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "this needs the key_manager or admin role",
        ))
    }
}

fn not_admin(role: Role) -> Result<(), ApiError> {
    if role == Role::Admin {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "admin_unbounded",
            "the user is an admin, and admins have no grant ceiling: they set everyone else's",
        ))
    } else {
        Ok(())
    }
}

/// Refuses a ceiling that does not parse or names what the catalogue lacks.
async fn check(state: &AppState, ceiling: &Ceiling) -> Result<(), ApiError> {
    if let Some(permissions) = &ceiling.permissions {
        Grants::parse(permissions)
            .map_err(|error| ApiError::invalid("invalid_permission", error.to_string()))?;
    }
    if ceiling.permission_sets.len() > MAX_CEILING_SETS {
        return Err(ApiError::invalid(
            "too_many_permission_sets",
            format!("at most {MAX_CEILING_SETS} permission sets"),
        ));
    }
    let catalogue = catalog::load(state.db()).await?;
    for (index, name) in ceiling.permission_sets.iter().enumerate() {
        if ceiling.permission_sets[..index].contains(name) {
            return Err(ApiError::invalid(
                "duplicate_permission_set",
                format!("permission set {name:?} is listed twice"),
            ));
        }
        if catalogue.set(name).is_none() {
            return Err(ApiError::invalid(
                "unknown_permission_set",
                format!("{name:?} is not a permission set in the catalogue"),
            ));
        }
    }
    if ceiling
        .max_lifetime_days
        .is_some_and(|days| !(1..=MAX_LIFETIME_DAYS).contains(&days))
    {
        return Err(ApiError::invalid(
            "invalid_lifetime",
            format!("max_lifetime_days must be 1 to {MAX_LIFETIME_DAYS}"),
        ));
    }
    Ok(())
}

/// The keys of `owners` that their ceilings, as now in force, leave above.
async fn keys_above(state: &AppState, owners: &[User]) -> Result<KeysAbove, ApiError> {
    let catalogue = catalog::load(state.db()).await?;
    let now = state.now();
    let mut above = Vec::new();
    for owner in owners {
        let ceiling = ceilings::of_user(state.db(), &owner.user_id, owner.role).await?;
        for key in keys::not_revoked_of(state.db(), &owner.user_id).await? {
            if !policy::within(&ceiling.ceiling, &catalogue, &key, now) {
                above.push(key.key_id.to_string());
            }
        }
    }
    above.sort();
    let count = above.len();
    above.truncate(MAX_LISTED_KEYS);
    Ok(KeysAbove {
        count,
        key_ids: above,
    })
}

/// Stores (or removes) a ceiling, then shows the one now in force with the keys it leaves above.
async fn put(
    state: &AppState,
    caller: &Caller,
    subject: Subject,
    ceiling: Option<Ceiling>,
) -> Result<Json<CeilingView>, ApiError> {
    if let Some(ceiling) = &ceiling {
        check(state, ceiling).await?;
    }
    ceilings::put(
        state.db(),
        &subject,
        ceiling.as_ref(),
        &actor(state, caller),
    )
    .await?;
    let (effective, owners) = match &subject {
        Subject::Role(role) => {
            let mut owners = Vec::new();
            for user in users::list(state.db()).await? {
                let own = ceilings::of_user(state.db(), &user.user_id, user.role).await?;
                if user.role == *role && own.source != Source::User {
                    owners.push(user);
                }
            }
            (ceilings::of_role(state.db(), *role).await?, owners)
        }
        Subject::User(user_id) => {
            let user = active_user(state, user_id).await?;
            let effective = ceilings::of_user(state.db(), user_id, user.role).await?;
            (effective, vec![user])
        }
    };
    let mut view = CeilingView::of(effective);
    view.keys_above = Some(keys_above(state, &owners).await?);
    Ok(Json(view))
}

async fn active_user(state: &AppState, user_id: &str) -> Result<User, ApiError> {
    users::get(state.db(), user_id)
        .await?
        .filter(|user| user.deactivated_at.is_none())
        .ok_or_else(|| ApiError::not_found("user"))
}

/// A role's ceiling: the one an admin set, or the built-in default.
#[utoipa::path(
    get, path = "/v1/roles/{role}/ceiling", tag = "ceilings", security(("bearer" = [])),
    params(("role" = inline(BoundedRole), Path, description = "`member` or `key_manager` (`admin` has none)")),
    responses(
        (status = 200, description = "The role's ceiling", body = CeilingView),
        (status = 400, description = "Unknown role", body = ErrorResponse),
        (status = 403, description = "A member", body = ErrorResponse),
    )
)]
async fn get_role_ceiling(
    State(state): State<AppState>,
    caller: Caller,
    Path(role): Path<BoundedRole>,
) -> Result<Json<CeilingView>, ApiError> {
    require_key_manager(&caller)?;
    Ok(Json(CeilingView::of(
        ceilings::of_role(state.db(), role.into()).await?,
    )))
}

/// Set a role's ceiling. Users with a ceiling of their own keep theirs.
#[utoipa::path(
    put, path = "/v1/roles/{role}/ceiling", tag = "ceilings", security(("bearer" = [])),
    params(("role" = inline(BoundedRole), Path, description = "`member` or `key_manager`")),
    request_body = Ceiling,
    extensions(("x-semantic-refusals" = json!(["unknown_permission_set"]))),
    responses(
        (status = 200, description = "The ceiling now in force, and the keys it leaves above", body = CeilingView),
        (status = 400, description = "Unknown role, or malformed JSON", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 422, description = "Invalid ceiling", body = ErrorResponse),
    )
)]
async fn put_role_ceiling(
    State(state): State<AppState>,
    caller: Caller,
    Path(role): Path<BoundedRole>,
    ApiJson(ceiling): ApiJson<Ceiling>,
) -> Result<Json<CeilingView>, ApiError> {
    caller.require_admin()?;
    put(&state, &caller, Subject::Role(role.into()), Some(ceiling)).await
}

/// Put a role back on the built-in default.
#[utoipa::path(
    delete, path = "/v1/roles/{role}/ceiling", tag = "ceilings", security(("bearer" = [])),
    params(("role" = inline(BoundedRole), Path, description = "`member` or `key_manager`")),
    responses(
        (status = 200, description = "The default now in force, and the keys it leaves above", body = CeilingView),
        (status = 400, description = "Unknown role", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
    )
)]
async fn reset_role_ceiling(
    State(state): State<AppState>,
    caller: Caller,
    Path(role): Path<BoundedRole>,
) -> Result<Json<CeilingView>, ApiError> {
    caller.require_admin()?;
    put(&state, &caller, Subject::Role(role.into()), None).await
}

/// The ceiling that binds the caller.
#[utoipa::path(
    get, path = "/v1/users/me/ceiling", tag = "ceilings", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's ceiling and where it comes from", body = CeilingView),
    )
)]
async fn my_ceiling(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<CeilingView>, ApiError> {
    Ok(Json(CeilingView::of(
        ceilings::of_user(state.db(), &caller.user_id, caller.role).await?,
    )))
}

/// The ceiling that binds one user: their own, else their role's.
#[utoipa::path(
    get, path = "/v1/users/{user_id}/ceiling", tag = "ceilings", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user's ceiling and where it comes from", body = CeilingView),
        (status = 403, description = "A member", body = ErrorResponse),
        (status = 404, description = "No such active user", body = ErrorResponse),
    )
)]
pub(super) async fn get_user_ceiling(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<CeilingView>, ApiError> {
    require_key_manager(&caller)?;
    let user = active_user(&state, &user_id).await?;
    Ok(Json(CeilingView::of(
        ceilings::of_user(state.db(), &user_id, user.role).await?,
    )))
}

/// Give one user a ceiling of their own, instead of their role's.
#[utoipa::path(
    put, path = "/v1/users/{user_id}/ceiling", tag = "ceilings", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    request_body = Ceiling,
    extensions(("x-semantic-refusals" = json!(["unknown_permission_set"]))),
    responses(
        (status = 200, description = "The ceiling now in force, and the keys it leaves above", body = CeilingView),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 404, description = "No such active user", body = ErrorResponse),
        (status = 409, description = "The user is an admin: admins have no ceiling", body = ErrorResponse),
        (status = 422, description = "Invalid ceiling", body = ErrorResponse),
    )
)]
async fn put_user_ceiling(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ApiJson(ceiling): ApiJson<Ceiling>,
) -> Result<Json<CeilingView>, ApiError> {
    caller.require_admin()?;
    not_admin(active_user(&state, &user_id).await?.role)?;
    put(&state, &caller, Subject::User(user_id), Some(ceiling)).await
}

/// Put one user back on their role's ceiling.
#[utoipa::path(
    delete, path = "/v1/users/{user_id}/ceiling", tag = "ceilings", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The role's ceiling now in force, and the keys it leaves above", body = CeilingView),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 404, description = "No such active user", body = ErrorResponse),
    )
)]
async fn reset_user_ceiling(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<CeilingView>, ApiError> {
    caller.require_admin()?;
    active_user(&state, &user_id).await?;
    put(&state, &caller, Subject::User(user_id), None).await
}
