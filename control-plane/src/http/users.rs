//! `/v1/users`: admins create users, set roles, deactivate them and issue their tokens. Anyone
//! may read `/v1/users/me`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiJson, ErrorResponse, OptionalJson};
use super::views::{Page, UserView, check_name, rfc3339};
use super::{AppState, Caller, actor};
use crate::store::users::{self, Role, UserChange};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(current_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(issue_token))
        .routes(routes!(revoke_token))
        .routes(routes!(my_tokens))
        .routes(routes!(revoke_my_token))
}

const MAX_EMAIL_LEN: usize = 254;
const MAX_TOKEN_NAME_CHARS: usize = 100;
/// A new token's lifetime when the request names none.
const DEFAULT_TOKEN_DAYS: u32 = 90;
const MAX_TOKEN_DAYS: u32 = 3_650;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateUserRequest {
    /// `local@domain`, no white space or control characters.
    #[schema(
        max_length = 254,
        pattern = "^[^\\s@\\x00-\\x1f\\x7f-\\x9f]+@[^\\s\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    email: String,
    role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateUserRequest {
    role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IssueTokenRequest {
    /// What the token is for (1 to 100 characters), e.g. `ci` or `laptop`.
    #[schema(min_length = 1, max_length = 100, pattern = "keygate:name")]
    name: String,
    /// Days until it stops working, 1 to 3650; 90 if absent.
    #[serde(default, deserialize_with = "keygate_shared::whole::option_u32")]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct IssuedTokenView {
    /// The full token. Shown this once: only its digest is stored.
    pub(super) token: String,
    pub(super) token_id: String,
    pub(super) name: String,
    #[schema(format = DateTime)]
    pub(super) expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TokenView {
    pub(super) token_id: String,
    pub(super) name: String,
    #[schema(format = DateTime)]
    pub(super) created_at: String,
    /// Null: it does not expire (the first admin's token).
    #[schema(format = DateTime)]
    pub(super) expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub(super) revoked_at: Option<String>,
}

impl From<users::TokenInfo> for TokenView {
    fn from(token: users::TokenInfo) -> Self {
        Self {
            token_id: token.token_id,
            name: token.name,
            created_at: rfc3339(token.created_at),
            expires_at: token.expires_at.map(rfc3339),
            revoked_at: token.revoked_at.map(rfc3339),
        }
    }
}

/// The caller, and the token it called with.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CurrentUser {
    #[serde(flatten)]
    user: UserView,
    token_id: String,
    /// When the calling token stops working; null: never.
    #[schema(format = DateTime)]
    token_expires_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserDetail {
    #[serde(flatten)]
    pub(super) user: UserView,
    pub(super) tokens: Vec<TokenView>,
}

fn check_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let valid = email.len() <= MAX_EMAIL_LEN
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email.to_owned())
    } else {
        Err(ApiError::invalid(
            "invalid_email",
            format!("email must look like name@example.com (at most {MAX_EMAIL_LEN} bytes)"),
        ))
    }
}

/// Create a user with a role. Issue them a token next.
#[utoipa::path(
    post, path = "/v1/users", tag = "users", security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 409, description = "Email already used", body = ErrorResponse),
        (status = 422, description = "Invalid email or role", body = ErrorResponse),
    )
)]
pub(super) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require_admin()?;
    let email = check_email(&request.email)?;
    let user = users::create(state.db(), &email, request.role, &actor(&state, &caller)).await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

/// Every user, oldest first.
#[utoipa::path(
    get, path = "/v1/users", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "All users", body = Page<UserView>),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
    )
)]
pub(super) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Page<UserView>>, ApiError> {
    caller.require_admin()?;
    let all = users::list(state.db()).await?;
    Ok(Json(Page {
        items: all.iter().map(UserView::from).collect(),
        next_cursor: None,
    }))
}

/// The caller.
#[utoipa::path(
    get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The calling user and its token", body = CurrentUser),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
    )
)]
async fn current_user(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<CurrentUser>, ApiError> {
    let user = users::get(state.db(), &caller.user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(CurrentUser {
        user: UserView::from(&user),
        token_id: caller.token_id,
        token_expires_at: caller.token_expires_at.map(rfc3339),
    }))
}

/// The caller's own tokens (ids, names and times; never the tokens).
#[utoipa::path(
    get, path = "/v1/users/me/tokens", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's tokens, oldest first", body = Vec<TokenView>),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
    )
)]
async fn my_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = users::tokens(state.db(), &caller.user_id).await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Revoke one of the caller's own tokens, at once (the one calling, too).
#[utoipa::path(
    post, path = "/v1/users/me/tokens/{token_id}/revoke", tag = "users", security(("bearer" = [])),
    params(("token_id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 404, description = "No such active token of yours", body = ErrorResponse),
    )
)]
async fn revoke_my_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(token_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = actor(&state, &caller);
    users::revoke_token(state.db(), &caller.user_id, &token_id, &actor).await?;
    state.caller_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// One user and their tokens (ids and names only).
#[utoipa::path(
    get, path = "/v1/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserDetail),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 404, description = "No such user", body = ErrorResponse),
    )
)]
pub(super) async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Json<UserDetail>, ApiError> {
    caller.require_admin()?;
    let user = users::get(state.db(), &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let tokens = users::tokens(state.db(), &user_id).await?;
    Ok(Json(UserDetail {
        user: UserView::from(&user),
        tokens: tokens.into_iter().map(TokenView::from).collect(),
    }))
}

/// Change a user's role. The last active admin cannot be demoted.
#[utoipa::path(
    patch, path = "/v1/users/{user_id}", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 404, description = "No such user", body = ErrorResponse),
        (status = 409, description = "Last admin, or deactivated user", body = ErrorResponse),
        (status = 422, description = "Unknown role", body = ErrorResponse),
    )
)]
pub(super) async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ApiJson(request): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserView>, ApiError> {
    caller.require_admin()?;
    let change = UserChange::Role(request.role);
    let user = users::change(state.db(), &user_id, change, &actor(&state, &caller)).await?;
    state.caller_changed();
    Ok(Json(UserView::from(&user)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeactivateUserRequest {
    /// Also disable every active key the user owns, in the same transaction (the edge stops them,
    /// pushed first). Default: true. `false` leaves them working, for keys a service still needs
    /// until someone else takes them over.
    disable_keys: Option<bool>,
}

/// Deactivate a user: their tokens stop working at once, and (by default) their keys are disabled.
#[utoipa::path(
    post, path = "/v1/users/{user_id}/deactivate", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    request_body(content = Option<DeactivateUserRequest>, description = "Optional; an empty body disables the user's keys"),
    responses(
        (status = 200, description = "The user, deactivated", body = UserView),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 404, description = "No such user", body = ErrorResponse),
        (status = 409, description = "Last admin, or already deactivated", body = ErrorResponse),
    )
)]
pub(super) async fn deactivate_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    OptionalJson(request): OptionalJson<DeactivateUserRequest>,
) -> Result<Json<UserView>, ApiError> {
    caller.require_admin()?;
    let actor = actor(&state, &caller);
    let change = UserChange::Deactivate {
        disable_keys: request.disable_keys.unwrap_or(true),
    };
    let user = users::change(state.db(), &user_id, change, &actor).await?;
    state.key_changed();
    Ok(Json(UserView::from(&user)))
}

/// Issue a control-plane token for a user. The response holds the token, once.
#[utoipa::path(
    post, path = "/v1/users/{user_id}/tokens", tag = "users", security(("bearer" = [])),
    params(("user_id" = String, Path, description = "The user's id")),
    request_body = IssueTokenRequest,
    responses(
        (status = 201, description = "Issued; `token` is shown only now", body = IssuedTokenView),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 404, description = "No such user", body = ErrorResponse),
        (status = 409, description = "The user is deactivated", body = ErrorResponse),
        (status = 422, description = "Invalid name or lifetime", body = ErrorResponse),
    )
)]
async fn issue_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    ApiJson(request): ApiJson<IssueTokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let body = issue(&state, &caller, &user_id, request).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    ))
}

/// Issues the token `request` asks for, for `user_id`, as `caller`: the token itself, to be
/// shown once. The API and the dashboard both issue tokens through this.
pub(super) async fn issue(
    state: &AppState,
    caller: &Caller,
    user_id: &str,
    request: IssueTokenRequest,
) -> Result<IssuedTokenView, ApiError> {
    caller.require_admin()?;
    let name = check_name(&request.name, MAX_TOKEN_NAME_CHARS)?;
    let days = request.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::invalid(
            "invalid_expiry",
            format!("expires_in_days must be 1 to {MAX_TOKEN_DAYS}"),
        ));
    }
    let spec = users::TokenSpec {
        name: &name,
        expires_at: Some(state.now() + i64::from(days) * 86_400),
    };
    let settings = state.settings();
    let issued = users::issue_token(
        state.db(),
        user_id,
        spec,
        &settings.token_format,
        settings.environment,
        &actor(state, caller),
    )
    .await?;
    Ok(IssuedTokenView {
        token: issued.token.expose_secret().to_owned(),
        token_id: issued.token.key_id().to_string(),
        name: issued.name,
        expires_at: issued.expires_at.map(rfc3339),
    })
}

/// Revoke one of a user's tokens, at once.
#[utoipa::path(
    post, path = "/v1/users/{user_id}/tokens/{token_id}/revoke", tag = "users", security(("bearer" = [])),
    params(
        ("user_id" = String, Path, description = "The user's id"),
        ("token_id" = String, Path, description = "The token's id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 403, description = "Not an admin", body = ErrorResponse),
        (status = 404, description = "No such active token", body = ErrorResponse),
    )
)]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((user_id, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    users::revoke_token(state.db(), &user_id, &token_id, &actor(&state, &caller)).await?;
    state.caller_changed();
    Ok(StatusCode::NO_CONTENT)
}
