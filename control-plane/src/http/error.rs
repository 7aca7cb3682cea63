//! Every error the API answers: `{"error": {"code", "message", "request_id"}}`. Handlers return
//! [`ApiError`]; it carries the status, a public code and message, and (for 500s) the internal
//! cause, which the request middleware logs and never sends. The request id is filled in by that
//! middleware too, so errors raised anywhere (extractors included) share one shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::store::{Refusal, StoreError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For the log only.
    pub internal: Option<String>,
}

/// The error body, as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_request`, `not_found`, `conflict`, ...
    pub code: String,
    /// For people; never contains a key, token or internal detail.
    pub message: String,
    /// The id of this request, also in the `x-request-id` response header and the server's log.
    pub request_id: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            internal: None,
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn internal(cause: impl ToString) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; the request id identifies it in the server's log".into(),
            internal: Some(cause.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Refused(refusal) => refusal.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound(what) => ApiError::not_found(what),
            Refusal::Forbidden { code, message } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            Refusal::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            Refusal::Invalid { code, message } => ApiError::invalid(code, message),
        }
    }
}

/// The part of an error the middleware renders, carried in the response's extensions.
#[derive(Clone, Debug)]
pub(crate) struct ErrorReport {
    pub code: &'static str,
    pub message: String,
    pub internal: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response.extensions_mut().insert(ErrorReport {
            code: self.code,
            message: self.message,
            internal: self.internal,
        });
        response
    }
}

/// A JSON body, strictly: `application/json`, within the size limit, every field known. Bad JSON
/// is 400, JSON of the wrong shape 422, anything else 415 and too big 413, all in the error shape.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        parse_json(&body_bytes(request, state).await?).map(ApiJson)
    }
}

/// Like [`ApiJson`], but an empty body (with or without a content type) or `null` means
/// `T::default()`: for actions whose options are all optional (`POST .../regenerate`).
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json::<Option<T>>(&bytes).map(|options| OptionalJson(options.unwrap_or_default()))
    }
}

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than this server accepts",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    rejection.body_text(),
                )
            }
        })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => {
                ApiError::invalid("invalid_request", without_values(&error.to_string()))
            }
            Category::Io | Category::Syntax | Category::Eof => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {error}"),
            ),
        }
    })
}

/// serde quotes the offending value (`invalid type: string "...", expected ...`, ``unknown
/// variant `...` ``); a misplaced key must not come back in an error. Strings are left out, and a
/// backquoted name is kept only if it could be one of ours (short snake_case): field and variant
/// names stay, anything else becomes `...`.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("string \"") {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let after = &rest[start + "string \"".len()..];
        rest = after.find('"').map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    let mut parts = out.split('`');
    let mut redacted = parts.next().unwrap_or_default().to_owned();
    for (index, part) in parts.enumerate() {
        redacted.push('`');
        let quoted = index % 2 == 0;
        let ours = part.len() <= 40
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        redacted.push_str(if quoted && !ours { "..." } else { part });
    }
    redacted
}

/// Query parameters, with the same error shape (400 `invalid_query`).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> ApiQuery<T> {
    /// `query` (a query string without its `?`) as `T`, as axum's `Query` reads it.
    pub(crate) fn parse(query: &str) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("Failed to deserialize query string: {error}"),
                )
            })
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Self::parse(parts.uri.query().unwrap_or_default())
    }
}
