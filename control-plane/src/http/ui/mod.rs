//! The dashboard: server-rendered pages under `/ui` (askama templates, htmx 2 for partial
//! updates), with their static files under `/assets`. Each page calls the same handlers as `/v1`
//! with the session's caller, so the API's rules (who sees which key, grant ceilings, locked
//! restrictions) hold here without a second copy. docs/dashboard.md describes it.

mod actions;
mod assets;
mod chart;
mod create;
mod detail;
mod guard;
mod history;
mod keys;
mod listing;
mod page;
mod session;
mod sync;
mod users;

use axum::Router;
use axum::middleware;
use axum::response::Redirect;
use axum::routing::{get, post};

use super::{AppState, Caller};
use crate::store::sessions::Lifetimes;

/// How the dashboard's sessions behave.
#[derive(Clone, Copy, Debug)]
pub struct UiSettings {
    pub lifetimes: Lifetimes,
    /// `true`: the cookie is `__Host-keygate_session`, `Secure` (HTTPS only). `false`, for plain
    /// http during development: `keygate_session`, without `Secure`.
    pub secure_cookie: bool,
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            lifetimes: Lifetimes {
                idle_seconds: 30 * 60,
                absolute_seconds: 12 * 3_600,
            },
            secure_cookie: true,
        }
    }
}

/// `/ui/...` and `/assets/...`.
pub(super) fn router() -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/keys") }))
        .route("/ui/sign-in", get(session::form).post(session::sign_in))
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/keys", get(keys::list).post(create::submit))
        .route("/ui/keys/new", get(create::form))
        .route("/ui/sync", get(sync::panel))
        .route("/ui/users", get(users::list).post(users::create))
        .route("/ui/users/{user_id}", get(users::show))
        .route(
            "/ui/users/{user_id}/{action}",
            get(users::ask).post(users::act),
        )
        .route(
            "/ui/users/{user_id}/tokens/{token_id}/revoke",
            post(users::revoke_token),
        )
        .route("/ui/logs", get(history::logs))
        .route("/ui/audit", get(history::audit))
        .route("/ui/keys/{key_id}", get(detail::show))
        .route(
            "/ui/keys/{key_id}/edit",
            get(create::edit_form).post(create::edit),
        )
        .route(
            "/ui/keys/{key_id}/{action}",
            get(actions::ask).post(actions::act),
        )
        .layer(middleware::from_fn(guard::guard));
    pages.route("/assets/{file}", get(assets::serve))
}

/// Whether `path` is the dashboard's (a page or an asset) rather than the API's.
pub(super) fn serves(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/") || path.starts_with("/assets/")
}
