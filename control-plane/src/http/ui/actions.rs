//! A key's row actions: enable and disable (a button), and revoke, delete and regenerate (each
//! confirmed in a dialog). Each is the matching `/v1/keys/{key_id}/...` handler called with the
//! session's caller. Success goes back to the list the row was on; a regeneration shows the new
//! key once.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::create::show_once;
use super::keys::{list_query, list_url};
use super::page::{self, Layout};
use super::session::Signed;
use super::{AppState, Caller};
use crate::http::ApiError;
use crate::http::error::ApiJson;
use crate::http::keys;

/// What a dialog asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Revoke,
    Delete,
    Regenerate,
}

impl Action {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "revoke" => Some(Self::Revoke),
            "delete" => Some(Self::Delete),
            "regenerate" => Some(Self::Regenerate),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Delete => "delete",
            Self::Regenerate => "regenerate",
        }
    }
}

/// Grace periods offered for a regeneration: (seconds, words).
const GRACE: [(u32, &str); 5] = [
    (0, "None: the old secret stops now"),
    (900, "15 minutes"),
    (3_600, "1 hour"),
    (86_400, "24 hours"),
    (604_800, "7 days"),
];

#[derive(askama::Template)]
#[template(path = "confirm.html")]
struct Confirm {
    layout: Layout,
    key_id: String,
    name: String,
    action: &'static str,
    /// The list's query string to go back to.
    back: String,
    grace: &'static [(u32, &'static str)],
    problem: Option<String>,
}

/// The form a row's action posts: where to go back, and the dialog's fields.
#[derive(Debug)]
struct Posted {
    back: String,
    reason: String,
    grace: u32,
}

fn read(body: &[u8]) -> Result<Posted, ApiError> {
    let pairs = page::form(body, &["back", "reason", "grace_period_seconds"])?;
    let grace = match page::field(&pairs, "grace_period_seconds") {
        "" => 0,
        seconds => seconds.parse().map_err(|_| {
            ApiError::invalid("invalid_grace_period", "choose one of the grace periods")
        })?,
    };
    Ok(Posted {
        back: page::field(&pairs, "back").to_owned(),
        reason: page::field(&pairs, "reason").to_owned(),
        grace,
    })
}

/// `GET /ui/keys/{key_id}/{action}`: the dialog that asks.
pub(super) async fn ask(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path((id, action)): Path<(String, String)>,
    axum::extract::RawQuery(back): axum::extract::RawQuery,
) -> Response {
    let Some(action) = Action::parse(&action) else {
        return page::failure(&ApiError::not_found("action"));
    };
    confirm(
        &state,
        caller,
        &id,
        action,
        back.unwrap_or_default(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn confirm(
    state: &AppState,
    caller: Caller,
    id: &str,
    action: Action,
    back: String,
    problem: Option<String>,
    status: StatusCode,
) -> Response {
    let key = match keys::get_key(State(state.clone()), caller.clone(), Path(id.to_owned())).await {
        Ok(key) => key.0,
        Err(error) => return page::failure(&error),
    };
    page::render(
        status,
        &Confirm {
            layout: Layout::signed_in("API Keys", &caller),
            key_id: key.key_id,
            name: key.name,
            action: action.path(),
            back: list_query(&back),
            grace: &GRACE,
            problem,
        },
    )
}

/// `POST /ui/keys/{key_id}/{action}`: enable, disable, revoke, delete or regenerate.
pub(super) async fn act(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let posted = match read(&body) {
        Ok(posted) => posted,
        Err(error) => return page::failure(&error),
    };
    let back = list_url(&posted.back);
    let done = match action.as_str() {
        "enable" => keys::enable_key(State(state.clone()), caller.clone(), Path(id.clone()))
            .await
            .map(drop),
        "disable" => keys::disable_key(State(state.clone()), caller.clone(), Path(id.clone()))
            .await
            .map(drop),
        "delete" => keys::delete_key(State(state.clone()), caller.clone(), Path(id.clone()))
            .await
            .map(drop),
        "revoke" => match serde_json::from_value(json!({ "reason": posted.reason })) {
            Ok(request) => keys::revoke_key(
                State(state.clone()),
                caller.clone(),
                Path(id.clone()),
                ApiJson(request),
            )
            .await
            .map(drop),
            Err(error) => Err(ApiError::internal(error)),
        },
        "regenerate" => {
            return match keys::regenerate(&state, &caller, &id, posted.grace).await {
                Ok((key, view)) => show_once(&caller, &key, view),
                Err(error) if error.status.is_client_error() => {
                    refused(&state, caller, &id, "regenerate", posted.back, error).await
                }
                Err(error) => page::failure(&error),
            };
        }
        _ => return page::failure(&ApiError::not_found("action")),
    };
    match done {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(error) if error.status.is_client_error() => {
            refused(&state, caller, &id, &action, posted.back, error).await
        }
        Err(error) => page::failure(&error),
    }
}

/// A refusal: in its dialog again when the action has one, else as a page of its own.
async fn refused(
    state: &AppState,
    caller: Caller,
    id: &str,
    action: &str,
    back: String,
    error: ApiError,
) -> Response {
    match Action::parse(action) {
        Some(action) if error.status != StatusCode::NOT_FOUND => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            confirm(state, caller, id, action, back, Some(error.message), status).await
        }
        _ => page::failure(&error),
    }
}
