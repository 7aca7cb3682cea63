//! Leaked keys revoke themselves.
//! - `POST /v1/secret-scanning/github`: GitHub's secret-scanning partner alerts, signed by
//!   GitHub ([`crate::scanning`]); an unsigned or mis-signed alert is refused before its body is
//!   parsed.
//! - `POST /v1/leaks`: a signed-in user reporting a key string they found somewhere.
//!
//! Each reported string is parsed as a key of this deployment (issuer prefix, environment,
//! checksum); anything else is a false positive. A string that is a live key's current secret
//! revokes the key, through the same outbox as any revocation (the edge hears of it first); one
//! that is the replaced secret of a regeneration still in its grace period ends the grace. The
//! audit log records `key.leaked` with where it was found, and a warning line names the key id
//! (never the key).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use keygate_shared::{Digest, Environment, Status};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiJson, ErrorResponse};
use super::keys::revoke;
use super::{AppState, Caller, ClientIp, RequestId, actor};
use crate::store::keys;
use crate::store::{Actor, Refusal, StoreError};

/// An alert batch's body, at most (1,000 alerts of a few hundred bytes each).
const MAX_ALERT_BYTES: usize = 1024 * 1024;
/// Alerts in one batch, at most.
const MAX_ALERTS: usize = 1_000;
/// A reported string longer than this is no keygate key (they are about 80 characters).
const MAX_TOKEN_BYTES: usize = 512;
/// Where a leak was found, as the revocation's reason keeps it.
const MAX_LOCATION_CHARS: usize = 400;
/// The audit actor of GitHub's alerts.
const SCANNER: &str = "secret-scanning";

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(github_alerts))
        .layer(DefaultBodyLimit::max(MAX_ALERT_BYTES))
        .merge(OpenApiRouter::new().routes(routes!(report_leak)))
}

/// One match GitHub found. Fields GitHub may add later are ignored.
#[derive(Deserialize, ToSchema)]
pub(super) struct Alert {
    /// The string that matched keygate's pattern.
    token: String,
    /// The pattern's name, as registered with GitHub (echoed back).
    #[serde(rename = "type")]
    token_type: String,
    /// Where it was found.
    #[serde(default)]
    url: Option<String>,
    /// `content`, `commit`, `pull_request_description`, ...
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum Label {
    TruePositive,
    FalsePositive,
}

/// GitHub's feedback format: the token by its SHA-256, never as sent.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Verdict {
    /// Hex SHA-256 of `token`.
    token_hash: String,
    token_type: String,
    label: Label,
}

/// A leak: who reports it (for the audit log), and where it was found.
struct Leak {
    actor: Actor,
    /// The revocation's reason: `leaked at <where>`.
    reason: String,
    /// The audit row's summary, to which what was done is added.
    summary: Value,
}

/// What a reported string turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// No key of this deployment: not ours, a wrong secret, or a deleted key.
    Nothing,
    /// A key's current or replaced secret; `changed`: it was revoked, or its grace ended, now.
    Secret { changed: bool },
}

/// GitHub's secret-scanning partner alerts: each keygate key among them is revoked at once.
#[utoipa::path(
    post, path = "/v1/secret-scanning/github", tag = "secret scanning",
    request_body(content = Vec<Alert>, description = "Signed by GitHub: `Github-Public-Key-Identifier` and `Github-Public-Key-Signature` (base64 DER ECDSA P-256 SHA-256 over the raw body)"),
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "Which of GitHub's keys signed"),
        ("Github-Public-Key-Signature" = String, Header, description = "base64 DER ECDSA signature of the body"),
    ),
    responses(
        (status = 200, description = "A label for each alert, in order", body = Vec<Verdict>),
        (status = 400, description = "Signed, but not JSON", body = ErrorResponse),
        (status = 401, description = "Unsigned, an unknown key, or a signature that does not verify", body = ErrorResponse),
        (status = 404, description = "Secret scanning is not configured here", body = ErrorResponse),
        (status = 413, description = "Over 1 MiB", body = ErrorResponse),
        (status = 422, description = "Not an array of alerts, or over 1,000", body = ErrorResponse),
    )
)]
async fn github_alerts(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(ClientIp(client_ip)): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<Verdict>>, ApiError> {
    let Some(github) = &state.settings().secret_scanning else {
        return Err(ApiError::not_found("secret scanning configuration"));
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let signed = github.check(
        header("github-public-key-identifier"),
        header("github-public-key-signature"),
        &body,
    );
    if let Err(refused) = signed {
        tracing::warn!(
            request_id,
            reason = refused.as_str(),
            bytes = body.len(),
            "secret_scanning_refused"
        );
        return Err(ApiError::unauthorized(
            "the alert is not signed by a GitHub secret-scanning key",
        ));
    }
    let alerts: Vec<Alert> = serde_json::from_slice(&body).map_err(|error| {
        let status = if error.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            "invalid_alerts",
            "the body is not an array of {token, type, url, source}",
        )
    })?;
    if alerts.len() > MAX_ALERTS {
        return Err(ApiError::invalid(
            "batch_too_large",
            format!("a batch holds at most {MAX_ALERTS} alerts"),
        ));
    }
    let mut verdicts = Vec::with_capacity(alerts.len());
    let mut revoked = 0;
    for alert in &alerts {
        let location = alert.url.as_deref().unwrap_or("an unknown location");
        let leak = Leak {
            actor: Actor {
                user_id: Some(SCANNER.to_owned()),
                request_id: Some(request_id.clone()),
                client_ip: client_ip.map(|ip| ip.to_string()),
                now: state.now(),
            },
            reason: format!("leaked at {}", printable(location)),
            summary: json!({
                "via": "github_secret_scanning",
                "url": alert.url.as_deref().map(printable),
                "source": alert.source.as_deref().map(printable),
            }),
        };
        let found = handle(&state, &alert.token, &leak).await?;
        revoked += usize::from(found == Found::Secret { changed: true });
        verdicts.push(Verdict {
            token_hash: Digest::of_key(&alert.token).to_hex(),
            token_type: alert.token_type.clone(),
            label: match found {
                Found::Nothing => Label::FalsePositive,
                Found::Secret { .. } => Label::TruePositive,
            },
        });
    }
    tracing::info!(
        request_id,
        alerts = alerts.len(),
        revoked,
        "secret_scanning_alerts"
    );
    Ok(Json(verdicts))
}

/// A key string someone found (in a ticket, a chat, a log).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LeakReport {
    /// The key as found. Any string is accepted.
    key: String,
    /// Where it was found (at most 400 characters), for the revocation's reason.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 400, pattern = "keygate:name")]
    location: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Handled {
    /// Always `handled`: whether the string was a key is not told.
    status: &'static str,
}

/// Report a key found where it should not be. If it is a live key of this deployment it is
/// revoked at once (or, if it is a regenerated key's old secret, its grace period ends). Any
/// signed-in user may report any string; the answer is the same whatever it was.
#[utoipa::path(
    post, path = "/v1/leaks", tag = "secret scanning", security(("bearer" = [])),
    request_body = LeakReport,
    responses(
        (status = 202, description = "Handled", body = Handled),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or invalid token", body = ErrorResponse),
        (status = 422, description = "A location over 400 characters", body = ErrorResponse),
    )
)]
async fn report_leak(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(report): ApiJson<LeakReport>,
) -> Result<(StatusCode, Json<Handled>), ApiError> {
    let location = report
        .location
        .map(|location| {
            crate::text::check(
                "location",
                "invalid_location",
                &location,
                1..=MAX_LOCATION_CHARS,
                false,
            )
        })
        .transpose()?;
    let reason = match &location {
        Some(location) => format!("leaked at {location} (reported by {})", caller.user_id),
        None => format!("leaked (reported by {})", caller.user_id),
    };
    let leak = Leak {
        actor: actor(&state, &caller),
        reason,
        summary: json!({ "via": "report", "location": location }),
    };
    handle(&state, &report.key, &leak).await?;
    Ok((StatusCode::ACCEPTED, Json(Handled { status: "handled" })))
}

/// Finds the key `token` is a secret of, and revokes it (its current secret) or ends its grace
/// (its replaced one). Any other string, and a key already dealt with, changes nothing.
async fn handle(state: &AppState, token: &str, leak: &Leak) -> Result<Found, ApiError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Ok(Found::Nothing);
    }
    let Some(candidate) = Environment::ALL
        .iter()
        .find_map(|environment| state.key_verifier(*environment).identify_key(token).ok())
    else {
        return Ok(Found::Nothing);
    };
    let now = leak.actor.now;
    let mut found = Found::Nothing;
    let changed = keys::modify(
        state.db(),
        &candidate.key_id(),
        &leak.actor,
        "key.leaked",
        |key| {
            let digest = candidate.digest();
            let current = key.digest == digest;
            let previous = key.previous.as_ref().filter(|old| old.digest == digest);
            if !current && previous.is_none() {
                return Ok(None);
            }
            let done = if current && key.status != Status::Revoked {
                revoke(key, leak.reason.clone(), now);
                "revoked"
            } else if previous.is_some_and(|old| old.accepted_at(now)) {
                // Its digest stays, expired, so a replayed alert still knows it.
                if let Some(old) = key.previous.as_mut() {
                    old.expires_at = now;
                }
                "grace_ended"
            } else {
                found = Found::Secret { changed: false };
                return Ok(None);
            };
            found = Found::Secret { changed: true };
            let mut summary = leak.summary.clone();
            summary["done"] = json!(done);
            summary["name"] = json!(key.name);
            Ok(Some(summary))
        },
    )
    .await;
    match changed {
        Ok(key) => {
            if found == (Found::Secret { changed: true }) {
                state.key_changed();
                tracing::warn!(key_id = %key.key_id, via = %leak.summary["via"], "leaked_key");
            }
            Ok(found)
        }
        Err(StoreError::Refused(Refusal::NotFound(_))) => Ok(Found::Nothing),
        Err(error) => Err(error.into()),
    }
}

/// `text` without the characters that do not show as themselves, cut to
/// [`MAX_LOCATION_CHARS`]: what a reason or an audit row may keep of an alert's fields.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !crate::text::hidden(*c))
        .take(MAX_LOCATION_CHARS)
        .collect()
}
