//! Signing in and out of the dashboard. Signing in takes a control-plane token once, checks it as
//! the API does, and starts a server-side session ([`crate::store::sessions`]); the browser keeps
//! only the session's random secret, in an `HttpOnly`, `SameSite=Strict` cookie. The token itself
//! is never stored, in the browser or here.

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::page::{self, Layout};
use super::{AppState, Caller};
use crate::http::auth;
use crate::store::sessions;

/// A token is about 80 characters; anything much longer is not one.
const MAX_TOKEN_CHARS: usize = 512;

/// The cookie's name: `__Host-` binds it to this host, over HTTPS only, with `Path=/`.
fn cookie_name(state: &AppState) -> &'static str {
    if state.settings().ui.secure_cookie {
        "__Host-keygate_session"
    } else {
        "keygate_session"
    }
}

fn set_cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.settings().ui.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
        cookie_name(state)
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session secret the request's cookie holds, if any.
fn secret<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    let name = cookie_name(state);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty() && value.len() <= 64)
}

/// A request from a signed-in session, and who it acts as.
#[derive(Debug)]
pub(super) struct Signed {
    pub caller: Caller,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(secret) = secret(state, &parts.headers) else {
            return Err(to_sign_in(parts, state));
        };
        let now = state.now();
        let lifetimes = state.settings().ui.lifetimes;
        let session = sessions::find(state.db(), secret, lifetimes, now)
            .await
            .map_err(|error| page::failure(&error.into()))?;
        let Some(session) = session else {
            return Err(to_sign_in(parts, state));
        };
        let (request_id, client_ip) = auth::origin_of(&parts.extensions);
        let last_seen_at = session.last_seen_at;
        let Ok(caller) = Caller::of_session(session.holder, now, request_id, client_ip) else {
            // The token was revoked, expired or its user deactivated: the session ends with it.
            sessions::end(state.db(), secret)
                .await
                .map_err(|error| page::failure(&error.into()))?;
            return Err(to_sign_in(parts, state));
        };
        // The idle lifetime restarts with each request; noting it every tenth of that lifetime
        // keeps a write off most requests and the idle end within 10 % of its setting.
        if now - last_seen_at >= (lifetimes.idle_seconds / 10).max(1) {
            sessions::touch(state.db(), secret, now)
                .await
                .map_err(|error| page::failure(&error.into()))?;
        }
        Ok(Self { caller })
    }
}

/// Back to the sign-in page, forgetting the cookie: a full redirect, or for an htmx request
/// (which would swap the sign-in page into a table) an `HX-Redirect`.
fn to_sign_in(parts: &Parts, state: &AppState) -> Response {
    let forget = set_cookie(state, "", 0);
    if parts.headers.contains_key("hx-request") {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response
            .headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/ui/sign-in"));
        response.headers_mut().insert(header::SET_COOKIE, forget);
        return response;
    }
    ([(header::SET_COOKIE, forget)], Redirect::to("/ui/sign-in")).into_response()
}

#[derive(askama::Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    problem: Option<&'static str>,
}

/// `GET /ui/sign-in`.
pub(super) async fn form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = secret(&state, &headers) {
        let lifetimes = state.settings().ui.lifetimes;
        if let Ok(Some(_)) = sessions::find(state.db(), secret, lifetimes, state.now()).await {
            return Redirect::to("/ui/keys").into_response();
        }
    }
    page::render(
        StatusCode::OK,
        &SignInPage {
            layout: Layout::signed_out("Sign in"),
            problem: None,
        },
    )
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    token: String,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignIn { token: <redacted> }")
    }
}

/// `POST /ui/sign-in`: the token is checked exactly as `Authorization: Bearer` is on `/v1`.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    extensions: Extensions,
    Form(form): Form<SignIn>,
) -> Response {
    let refused = |problem| {
        page::render(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                layout: Layout::signed_out("Sign in"),
                problem: Some(problem),
            },
        )
    };
    let token = form.token.trim();
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
        return refused(
            "Paste a control-plane token (it starts with the token prefix, such as kgcp_live_).",
        );
    }
    let (request_id, client_ip) = auth::origin_of(&extensions);
    let bearer = format!("Bearer {token}");
    let caller = match auth::authenticate(&state, Some(&bearer), request_id, client_ip).await {
        Ok(caller) => caller,
        Err(error) if error.status == StatusCode::UNAUTHORIZED => {
            return refused(
                "That token is not valid: it may be mistyped, revoked or expired, or its user deactivated.",
            );
        }
        Err(error) => return page::failure(&error),
    };
    let now = state.now();
    let lifetimes = state.settings().ui.lifetimes;
    match sessions::start(state.db(), &caller.token_id, lifetimes, now).await {
        Ok(secret) => {
            let lifetime = lifetimes.absolute_seconds;
            (
                [(header::SET_COOKIE, set_cookie(&state, &secret, lifetime))],
                Redirect::to("/ui/keys"),
            )
                .into_response()
        }
        Err(error) => page::failure(&error.into()),
    }
}

/// `POST /ui/sign-out`: ends the session here (not just in this browser) and forgets the cookie.
pub(super) async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = secret(&state, &headers)
        && let Err(error) = sessions::end(state.db(), secret).await
    {
        return page::failure(&error.into());
    }
    (
        [(header::SET_COOKIE, set_cookie(&state, "", 0))],
        Redirect::to("/ui/sign-in"),
    )
        .into_response()
}
