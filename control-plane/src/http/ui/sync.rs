//! The Sync panel: `GET /v1/sync/status` as a page, for admins and key managers. What the edge
//! has not been told yet (the outbox, the change feed), and the pusher's last outcome.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::AppState;
use super::page::{self, Layout};
use super::session::Signed;
use crate::http::sync::{self, SyncStatus};

#[derive(askama::Template)]
#[template(path = "sync.html")]
struct SyncPage {
    layout: Layout,
    status: SyncStatus,
}

/// `GET /ui/sync`.
pub(super) async fn panel(State(state): State<AppState>, Signed { caller }: Signed) -> Response {
    let layout = Layout::signed_in("Sync", &caller);
    match sync::sync_status(State(state), caller).await {
        Ok(status) => page::render(
            StatusCode::OK,
            &SyncPage {
                layout,
                status: status.0,
            },
        ),
        Err(error) => page::failure(&error),
    }
}
