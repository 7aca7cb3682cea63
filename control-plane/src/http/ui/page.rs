//! What every page shares: the layout's data, rendering a template, and the error page.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Caller;
use super::assets::{URLS, Urls};
use crate::http::ApiError;

/// The layout's data: the title, the asset URLs, and who is signed in.
#[derive(Debug)]
pub(super) struct Layout {
    pub title: &'static str,
    pub assets: &'static Urls,
    /// The signed-in user and role, for the header; `None` on the sign-in page.
    pub user: Option<(String, &'static str)>,
    /// Whether the header links the pages only admins and key managers may read.
    pub operator: bool,
    /// Whether the header links the Users page (admins only).
    pub admin: bool,
}

impl Layout {
    pub(super) fn signed_out(title: &'static str) -> Self {
        Self {
            title,
            assets: &URLS,
            user: None,
            operator: false,
            admin: false,
        }
    }

    pub(super) fn signed_in(title: &'static str, caller: &Caller) -> Self {
        Self {
            title,
            assets: &URLS,
            user: Some((caller.user_id.clone(), caller.role.as_str())),
            operator: caller.role.manages_all_keys(),
            admin: caller.role == crate::store::users::Role::Admin,
        }
    }
}

/// The page `template` renders, with `status`.
pub(super) fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "a dashboard page failed to render");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page failed to render.",
            )
        }
    }
}

#[derive(Template)]
#[template(path = "failure.html")]
struct Failure<'a> {
    layout: Layout,
    message: &'a str,
}

/// An error the page cannot show in place: the API's message for a refusal, a generic one (and
/// the cause in the log) for a fault.
pub(super) fn failure(error: &ApiError) -> Response {
    if let Some(cause) = &error.internal {
        tracing::error!(cause, "dashboard request failed");
    }
    render(
        error.status,
        &Failure {
            layout: Layout::signed_out("Something went wrong"),
            message: &error.message,
        },
    )
}

/// A posted form's fields; a body that is not a form, or a field not in `known`, is refused.
pub(super) fn form(body: &[u8], known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_form",
            "the form could not be read",
        )
    })?;
    match pairs
        .iter()
        .find(|(field, _)| !known.contains(&field.as_str()))
    {
        Some((field, _)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_form",
            format!("the form has a field keygate does not know: {field:?}"),
        )),
        None => Ok(pairs),
    }
}

/// The value of `name` among a form's `pairs`, trimmed; empty when it is absent.
pub(super) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(field, _)| field == name)
        .map_or("", |(_, value)| value.trim())
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}
