//! The Users pages, for admins: the list with a create form, and a user's page (role, tokens,
//! ceiling, their keys, deactivation). Each is the matching `/v1/users...` handler called with
//! the session's caller, so a non-admin is refused here exactly as by the API.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::create::{Once, show_secret};
use super::keys::per_window;
use super::page::{self, Layout, field, form};
use super::session::Signed;
use super::{AppState, Caller};
use crate::http::ApiError;
use crate::http::ceilings::{self, CeilingView};
use crate::http::error::{ApiJson, OptionalJson};
use crate::http::users::{self, UserDetail};
use crate::http::views::UserView;

/// Roles, for the role pickers: (value, words).
const ROLES: [(&str, &str); 3] = [
    ("member", "Member: manages their own keys"),
    ("key_manager", "Key manager: manages everyone's keys"),
    ("admin", "Admin: everything, users included"),
];

#[derive(askama::Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserView>,
    roles: [(&'static str, &'static str); 3],
    /// What was typed into the create form, and why it was refused.
    email: String,
    role: String,
    problem: Option<String>,
}

/// `GET /ui/users`.
pub(super) async fn list(State(state): State<AppState>, Signed { caller }: Signed) -> Response {
    users_page(
        &state,
        caller,
        String::new(),
        String::new(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn users_page(
    state: &AppState,
    caller: Caller,
    email: String,
    role: String,
    problem: Option<String>,
    status: StatusCode,
) -> Response {
    let layout = Layout::signed_in("Users", &caller);
    match users::list_users(State(state.clone()), caller).await {
        Ok(listed) => page::render(
            status,
            &UsersPage {
                layout,
                users: listed.0.items,
                roles: ROLES,
                email,
                role,
                problem,
            },
        ),
        Err(error) => page::failure(&error),
    }
}

/// The API's request of type `T` from JSON `fields`.
fn request<T: DeserializeOwned>(fields: Value) -> Result<T, ApiError> {
    serde_json::from_value(fields)
        .map_err(|error| ApiError::invalid("invalid_form", error.to_string()))
}

/// `POST /ui/users`: creates the user, then shows their page.
pub(super) async fn create(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    body: Bytes,
) -> Response {
    let pairs = match form(&body, &["email", "role"]) {
        Ok(pairs) => pairs,
        Err(error) => return page::failure(&error),
    };
    let (email, role) = (field(&pairs, "email"), field(&pairs, "role"));
    let created = match request(json!({ "email": email, "role": role })) {
        Ok(asked) => users::create_user(State(state.clone()), caller.clone(), ApiJson(asked))
            .await
            .map(|(_, user)| user.0),
        Err(error) => Err(error),
    };
    match created {
        Ok(user) => Redirect::to(&format!("/ui/users/{}", user.user_id)).into_response(),
        Err(error) if error.status.is_client_error() && error.status != StatusCode::FORBIDDEN => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            let (email, role) = (email.to_owned(), role.to_owned());
            users_page(&state, caller, email, role, Some(error.message), status).await
        }
        Err(error) => page::failure(&error),
    }
}

#[derive(askama::Template)]
#[template(path = "user.html")]
struct UserPage {
    layout: Layout,
    detail: UserDetail,
    roles: [(&'static str, &'static str); 3],
    /// The ceiling as (what, bound) lines; `None` for a deactivated user.
    ceiling: Option<Vec<(&'static str, String)>>,
    problem: Option<String>,
    /// Set while the deactivation dialog is open.
    confirm_deactivate: bool,
}

/// `GET /ui/users/{user_id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path(user_id): Path<String>,
) -> Response {
    user_page(&state, caller, user_id, None, false, StatusCode::OK).await
}

/// `GET /ui/users/{user_id}/deactivate`: the user's page with the dialog that asks.
pub(super) async fn ask(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path((user_id, action)): Path<(String, String)>,
) -> Response {
    if action != "deactivate" {
        return page::failure(&ApiError::not_found("action"));
    }
    user_page(&state, caller, user_id, None, true, StatusCode::OK).await
}

async fn user_page(
    state: &AppState,
    caller: Caller,
    user_id: String,
    problem: Option<String>,
    confirm_deactivate: bool,
    status: StatusCode,
) -> Response {
    let layout = Layout::signed_in("Users", &caller);
    let detail =
        match users::get_user(State(state.clone()), caller.clone(), Path(user_id.clone())).await {
            Ok(detail) => detail.0,
            Err(error) => return page::failure(&error),
        };
    let ceiling = if detail.user.active {
        match ceilings::get_user_ceiling(State(state.clone()), caller, Path(user_id)).await {
            Ok(ceiling) => Some(describe(&ceiling.0)),
            Err(error) => return page::failure(&error),
        }
    } else {
        None
    };
    page::render(
        status,
        &UserPage {
            layout,
            detail,
            roles: ROLES,
            ceiling,
            problem,
            confirm_deactivate,
        },
    )
}

/// A ceiling in words, one line per bound.
fn describe(view: &CeilingView) -> Vec<(&'static str, String)> {
    let ceiling = &view.ceiling;
    let from = match serde_json::to_value(view.source) {
        Ok(Value::String(source)) => source,
        _ => String::new(),
    };
    vec![
        ("Set for", from),
        (
            "Permissions",
            ceiling.permissions.as_ref().map_or_else(
                || "any catalogued permission, no wildcard".to_owned(),
                |grants| grants.join(", "),
            ),
        ),
        (
            "Permission sets",
            if ceiling.permission_sets.is_empty() {
                "only those within the permissions".to_owned()
            } else {
                ceiling.permission_sets.join(", ")
            },
        ),
        (
            "Longest key lifetime",
            ceiling
                .max_lifetime_days
                .map_or_else(|| "unlimited".to_owned(), |days| format!("{days} days")),
        ),
        (
            "Customer scope",
            if ceiling.require_customer {
                "required".to_owned()
            } else {
                "optional".to_owned()
            },
        ),
        (
            "Loosest rate limit",
            ceiling
                .max_rate_limit
                .as_ref()
                .map_or_else(|| "none required".to_owned(), per_window),
        ),
    ]
}

/// `POST /ui/users/{user_id}/{action}`: `role`, `deactivate` or `tokens` (issue one, shown
/// once).
pub(super) async fn act(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path((user_id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let here = format!("/ui/users/{user_id}");
    let done = match action.as_str() {
        "role" => match form(&body, &["role"])
            .and_then(|pairs| request(json!({ "role": field(&pairs, "role") })))
        {
            Ok(asked) => users::update_user(
                State(state.clone()),
                caller.clone(),
                Path(user_id.clone()),
                ApiJson(asked),
            )
            .await
            .map(drop),
            Err(error) => Err(error),
        },
        "deactivate" => match form(&body, &["disable_keys"]).and_then(|pairs| {
            request(json!({ "disable_keys": field(&pairs, "disable_keys") == "on" }))
        }) {
            Ok(asked) => users::deactivate_user(
                State(state.clone()),
                caller.clone(),
                Path(user_id.clone()),
                OptionalJson(asked),
            )
            .await
            .map(drop),
            Err(error) => Err(error),
        },
        "tokens" => {
            let issued = match form(&body, &["name", "expires_in_days"]) {
                Ok(pairs) => {
                    let mut asked = json!({ "name": field(&pairs, "name") });
                    let days = match field(&pairs, "expires_in_days") {
                        "" => Ok(()),
                        days => days.parse::<u32>().map(|days| {
                            asked["expires_in_days"] = json!(days);
                        }),
                    };
                    match days.map_err(|_| {
                        ApiError::invalid(
                            "invalid_expiry",
                            "the lifetime is a whole number of days",
                        )
                    }) {
                        Ok(()) => match request(asked) {
                            Ok(asked) => users::issue(&state, &caller, &user_id, asked).await,
                            Err(error) => Err(error),
                        },
                        Err(error) => Err(error),
                    }
                }
                Err(error) => Err(error),
            };
            return match issued {
                Ok(token) => show_secret(
                    &caller,
                    Once {
                        what: "Token",
                        name: token.name,
                        id: token.token_id,
                        secret: token.token,
                        close: here,
                    },
                ),
                Err(error) => refused(&state, caller, user_id, error).await,
            };
        }
        _ => return page::failure(&ApiError::not_found("action")),
    };
    match done {
        Ok(()) => Redirect::to(&here).into_response(),
        Err(error) => refused(&state, caller, user_id, error).await,
    }
}

/// `POST /ui/users/{user_id}/tokens/{token_id}/revoke`.
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path((user_id, token_id)): Path<(String, String)>,
) -> Response {
    let revoked = users::revoke_token(
        State(state.clone()),
        caller.clone(),
        Path((user_id.clone(), token_id)),
    )
    .await;
    match revoked {
        Ok(_) => Redirect::to(&format!("/ui/users/{user_id}")).into_response(),
        Err(error) => refused(&state, caller, user_id, error).await,
    }
}

/// A refusal on the user's page; a fault, or a user or page the caller may not see, as the error
/// page.
async fn refused(state: &AppState, caller: Caller, user_id: String, error: ApiError) -> Response {
    let shown = error.status.is_client_error()
        && !matches!(error.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN);
    if shown {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        user_page(state, caller, user_id, Some(error.message), false, status).await
    } else {
        page::failure(&error)
    }
}
