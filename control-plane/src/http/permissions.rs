//! `/v1/permissions`: the catalogue of permissions keys may hold, and named sets of them. Anyone
//! may read it; admins extend it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use keygate_shared::{Grants, Permission};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiJson, ErrorResponse};
use super::{AppState, Caller, actor};
use crate::store::catalog::{self, Catalogue, CataloguedPermission, NamedSet};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_catalogue, add_permission))
        .routes(routes!(put_permission_set))
}

const MAX_DESCRIPTION_CHARS: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddPermissionRequest {
    /// `resource:action`, lowercase: `customer:read`.
    #[schema(schema_with = keygate_shared::openapi::permission)]
    name: String,
    /// Up to 500 characters.
    #[serde(default)]
    #[schema(max_length = 500, pattern = "keygate:text")]
    description: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PutPermissionSetRequest {
    /// Up to 500 characters.
    #[serde(default)]
    #[schema(max_length = 500, pattern = "keygate:text")]
    description: String,
    /// Catalogued permissions, or wildcards over them.
    #[schema(schema_with = keygate_shared::openapi::grant_list)]
    permissions: Vec<String>,
}

fn check_description(description: &str) -> Result<String, ApiError> {
    Ok(crate::text::check(
        "description",
        "invalid_description",
        description,
        0..=MAX_DESCRIPTION_CHARS,
        false,
    )?)
}

/// The catalogue: every permission and every named set.
#[utoipa::path(
    get, path = "/v1/permissions", tag = "permissions", security(("bearer" = [])),
    responses(
        (status = 200, description = "The catalogue", body = Catalogue),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
    )
)]
async fn get_catalogue(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Catalogue>, ApiError> {
    Ok(Json(catalog::load(state.db()).await?))
}

/// Add a permission to the catalogue.
#[utoipa::path(
    post, path = "/v1/permissions", tag = "permissions", security(("bearer" = [])),
    request_body = AddPermissionRequest,
    responses(
        (status = 201, description = "Added", body = CataloguedPermission),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 409, description = "Already catalogued", body = ErrorResponse),
        (status = 422, description = "Not a valid permission", body = ErrorResponse),
    )
)]
async fn add_permission(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<AddPermissionRequest>,
) -> Result<(StatusCode, Json<CataloguedPermission>), ApiError> {
    caller.require_admin()?;
    let name = Permission::parse(&request.name)
        .map_err(|error| ApiError::invalid("invalid_permission", error.to_string()))?;
    let permission = CataloguedPermission {
        name: name.to_string(),
        description: check_description(&request.description)?,
    };
    catalog::add_permission(state.db(), &permission, &actor(&state, &caller)).await?;
    Ok((StatusCode::CREATED, Json(permission)))
}

/// Create or replace a named permission set. Keys already holding it keep the grants they were
/// given; the new contents apply to keys created or updated from now on.
#[utoipa::path(
    put, path = "/v1/permission-sets/{name}", tag = "permissions", security(("bearer" = [])),
    params(("name" = String, Path, description = "The set's name: a lowercase letter, then up to 63 of a-z 0-9 _ - .", pattern = "^[a-z][a-z0-9_.-]{0,63}$")),
    request_body = PutPermissionSetRequest,
    extensions(("x-semantic-refusals" = json!(["unknown_permission"]))),
    responses(
        (status = 200, description = "Replaced", body = NamedSet),
        (status = 201, description = "Created", body = NamedSet),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 422, description = "Invalid name, or a permission not in the catalogue", body = ErrorResponse),
    )
)]
async fn put_permission_set(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PutPermissionSetRequest>,
) -> Result<(StatusCode, Json<NamedSet>), ApiError> {
    caller.require_admin()?;
    if !keygate_shared::valid_set_name(&name) {
        return Err(ApiError::invalid(
            "invalid_name",
            format!(
                "a set name is 1 to {} of a-z 0-9 _ - . starting with a letter",
                keygate_shared::MAX_SET_NAME_LEN
            ),
        ));
    }
    let grants = Grants::parse(&request.permissions)
        .map_err(|error| ApiError::invalid("invalid_permission", error.to_string()))?;
    let catalogue = catalog::load(state.db()).await?;
    if let Some(unknown) = grants.iter().find(|grant| !catalogue.covers(grant)) {
        return Err(ApiError::invalid(
            "unknown_permission",
            format!("{unknown} is not in the permission catalogue"),
        ));
    }
    let set = NamedSet {
        name,
        description: check_description(&request.description)?,
        permissions: grants.iter().map(ToString::to_string).collect(),
    };
    let created = catalog::put_set(state.db(), &set, &actor(&state, &caller)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(set)))
}
