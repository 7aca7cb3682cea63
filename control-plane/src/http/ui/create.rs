//! Create API Key: the dialog's form (`GET /ui/keys/new`) and its submission (`POST /ui/keys`),
//! which is `POST /v1/keys`'s own code ([`keys::create`]) with the session's caller. The new key
//! is shown once, in the answer to the submission, and nowhere else.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keygate_shared::Grants;
use serde_json::{Map, Value, json};

use super::page::{self, Layout};
use super::session::Signed;
use super::{AppState, Caller};
use crate::http::ApiError;
use crate::http::keys::{self, CreateKeyRequest};
use crate::http::views::KeyView;
use crate::policy;
use crate::store::catalog;
use crate::store::users;

/// A permission or set the form offers, and whether it is ticked.
#[derive(Debug)]
struct Choice {
    name: String,
    description: String,
    checked: bool,
}

/// What was typed, to put back into the form after a refusal.
#[derive(Debug, Default)]
struct Typed {
    name: String,
    description: String,
    environment: String,
    permissions: Vec<String>,
    permission_sets: Vec<String>,
    customer_id: String,
    expires: bool,
    expires_in_days: String,
    rate_requests: String,
    rate_window_seconds: String,
    ip_allowlist: String,
    owner_id: String,
}

/// A refusal's message next to the field it is about.
#[derive(Debug, Default)]
struct Problems {
    name: Option<String>,
    description: Option<String>,
    permissions: Option<String>,
    customer_id: Option<String>,
    expiry: Option<String>,
    rate_limit: Option<String>,
    ip_allowlist: Option<String>,
    owner_id: Option<String>,
    /// One that belongs to no single field.
    form: Option<String>,
}

impl Problems {
    /// Files the API's refusal under the field it names (by its code).
    fn of(error: ApiError) -> Self {
        let mut problems = Self::default();
        let slot = match error.code {
            "invalid_name" => &mut problems.name,
            "invalid_description" => &mut problems.description,
            "invalid_permission"
            | "duplicate_permission"
            | "unknown_permission"
            | "unknown_permission_set"
            | "invalid_permission_set"
            | "duplicate_permission_set"
            | "too_many_permissions" => &mut problems.permissions,
            "invalid_customer_id" => &mut problems.customer_id,
            "invalid_expiry" | "expiry_in_past" | "conflicting_expiry" => &mut problems.expiry,
            "invalid_rate_limit" => &mut problems.rate_limit,
            "invalid_ip_allowlist" => &mut problems.ip_allowlist,
            "unknown_owner" => &mut problems.owner_id,
            // A ceiling names what is above it; it may be any of the bounded fields.
            _ => &mut problems.form,
        };
        *slot = Some(error.message);
        problems
    }
}

#[derive(askama::Template)]
#[template(path = "create.html")]
struct CreatePage {
    layout: Layout,
    typed: Typed,
    permissions: Vec<Choice>,
    sets: Vec<Choice>,
    /// Active users a key may be made for; `None` for members (their own only).
    owners: Option<Vec<(String, String)>>,
    problems: Problems,
}

#[derive(askama::Template)]
#[template(path = "show_once.html")]
struct ShowOnce {
    layout: Layout,
    name: String,
    key_id: String,
    key: String,
    file_name: String,
}

/// `GET /ui/keys/new`.
pub(super) async fn form(State(state): State<AppState>, Signed { caller }: Signed) -> Response {
    match page_for(&state, &caller, Typed::default(), Problems::default()).await {
        Ok(page) => page::render(StatusCode::OK, &page),
        Err(error) => page::failure(&error),
    }
}

/// The form with only what the caller's ceiling lets them put on their own key.
async fn page_for(
    state: &AppState,
    caller: &Caller,
    typed: Typed,
    problems: Problems,
) -> Result<CreatePage, ApiError> {
    let bounds = policy::bounds(state.db(), &caller.user_id, caller.role, &caller.user_id).await?;
    let catalogue = catalog::load(state.db()).await?;
    let allowed = |grants: &[String]| {
        Grants::parse(grants).is_ok_and(|grants| policy::allows(&bounds, &catalogue, &grants))
    };
    let permissions = catalogue
        .permissions
        .iter()
        .filter(|permission| allowed(std::slice::from_ref(&permission.name)))
        .map(|permission| Choice {
            checked: typed.permissions.contains(&permission.name),
            name: permission.name.clone(),
            description: permission.description.clone(),
        })
        .collect();
    let sets = catalogue
        .sets
        .iter()
        .filter(|set| allowed(&set.permissions))
        .map(|set| Choice {
            checked: typed.permission_sets.contains(&set.name),
            name: set.name.clone(),
            description: set.description.clone(),
        })
        .collect();
    let owners = if caller.role.manages_all_keys() {
        let users = users::list(state.db()).await?;
        Some(
            users
                .into_iter()
                .filter(|user| user.deactivated_at.is_none())
                .map(|user| (user.user_id, user.email))
                .collect(),
        )
    } else {
        None
    };
    Ok(CreatePage {
        layout: Layout::signed_in("Create API Key", caller),
        typed,
        permissions,
        sets,
        owners,
        problems,
    })
}

/// `POST /ui/keys`: creates the key, then shows it once; a refusal shows the form again with
/// the API's message next to its field (422).
pub(super) async fn submit(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    body: Bytes,
) -> Response {
    let typed = match read(&body) {
        Ok(typed) => typed,
        Err(problem) => {
            let problems = Problems {
                form: Some(problem),
                ..Problems::default()
            };
            return refused(&state, &caller, Typed::default(), problems).await;
        }
    };
    let request = match request_of(&typed) {
        Ok(request) => request,
        Err((field, problem)) => {
            let mut problems = Problems::default();
            *field(&mut problems) = Some(problem);
            return refused(&state, &caller, typed, problems).await;
        }
    };
    match keys::create(&state, &caller, request).await {
        Ok((key, view)) => show_once(&caller, &key, view),
        Err(error) if error.status.is_client_error() => {
            refused(&state, &caller, typed, Problems::of(error)).await
        }
        Err(error) => page::failure(&error),
    }
}

/// The new (or regenerated) key, shown this once.
pub(super) fn show_once(caller: &Caller, key: &keygate_shared::ApiKey, view: KeyView) -> Response {
    page::render(
        StatusCode::CREATED,
        &ShowOnce {
            layout: Layout::signed_in("Your new API key", caller),
            file_name: file_name(&view.name),
            name: view.name,
            key_id: view.key_id,
            key: key.expose_secret().to_owned(),
        },
    )
}

async fn refused(state: &AppState, caller: &Caller, typed: Typed, problems: Problems) -> Response {
    match page_for(state, caller, typed, problems).await {
        Ok(page) => page::render(StatusCode::UNPROCESSABLE_ENTITY, &page),
        Err(error) => page::failure(&error),
    }
}

/// The form's fields; an unknown field or a body that is not a form is refused.
fn read(body: &[u8]) -> Result<Typed, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| "The form could not be read; reload the page and try again.".to_owned())?;
    let mut typed = Typed::default();
    for (field, value) in pairs {
        match field.as_str() {
            "name" => typed.name = value,
            "description" => typed.description = value,
            "environment" => typed.environment = value,
            "permissions" => typed.permissions.push(value),
            "permission_sets" => typed.permission_sets.push(value),
            "customer_id" => typed.customer_id = value,
            "expires" => typed.expires = value == "on",
            "expires_in_days" => typed.expires_in_days = value,
            "rate_requests" => typed.rate_requests = value,
            "rate_window_seconds" => typed.rate_window_seconds = value,
            "ip_allowlist" => typed.ip_allowlist = value,
            "owner_id" => typed.owner_id = value,
            _ => {
                return Err(format!(
                    "The form has a field keygate does not know: {field:?}."
                ));
            }
        }
    }
    Ok(typed)
}

type Field = fn(&mut Problems) -> &mut Option<String>;

/// The API's request for what was typed: empty fields are left out; numbers must be numbers.
fn request_of(typed: &Typed) -> Result<CreateKeyRequest, (Field, String)> {
    let mut request = Map::new();
    request.insert("name".into(), json!(typed.name));
    let optional = [
        ("description", &typed.description),
        ("environment", &typed.environment),
        ("customer_id", &typed.customer_id),
        ("owner_id", &typed.owner_id),
    ];
    for (field, value) in optional {
        if !value.trim().is_empty() {
            request.insert(field.into(), json!(value.trim()));
        }
    }
    request.insert("permissions".into(), json!(typed.permissions));
    request.insert("permission_sets".into(), json!(typed.permission_sets));
    if typed.expires {
        let days = whole(&typed.expires_in_days).ok_or((
            (|problems: &mut Problems| &mut problems.expiry) as Field,
            "The lifetime is a whole number of days, 1 to 3650.".to_owned(),
        ))?;
        request.insert("expires_in_days".into(), json!(days));
    }
    if !typed.rate_requests.trim().is_empty() || !typed.rate_window_seconds.trim().is_empty() {
        let limit = whole(&typed.rate_requests)
            .zip(whole(&typed.rate_window_seconds))
            .ok_or((
                (|problems: &mut Problems| &mut problems.rate_limit) as Field,
                "A rate limit is a whole number of requests per a whole number of seconds."
                    .to_owned(),
            ))?;
        request.insert(
            "rate_limit".into(),
            json!({"requests": limit.0, "window_seconds": limit.1}),
        );
    }
    let networks: Vec<&str> = typed
        .ip_allowlist
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    request.insert("ip_allowlist".into(), json!(networks));
    serde_json::from_value(Value::Object(request)).map_err(|error| {
        (
            (|problems: &mut Problems| &mut problems.form) as Field,
            format!("The form could not be read: {error}"),
        )
    })
}

fn whole(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `<name>.apikey`, with anything but letters, digits, `.`, `_` and `-` made `-`.
fn file_name(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stem = stem.trim_matches(['-', '.']);
    format!("{}.apikey", if stem.is_empty() { "key" } else { stem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_keeps_only_safe_characters() {
        assert_eq!(file_name("billing prod"), "billing-prod.apikey");
        assert_eq!(file_name("../etc/passwd"), "etc-passwd.apikey");
        assert_eq!(file_name("ключ"), "key.apikey");
        assert_eq!(file_name("a_b-c.1"), "a_b-c.1.apikey");
    }

    #[test]
    fn empty_fields_are_left_out_and_numbers_must_be_numbers() {
        let typed = read(b"name=n&description=&rate_requests=10&rate_window_seconds=60&ip_allowlist=10.0.0.0%2F8%0D%0A%0D%0A")
            .expect("a form");
        assert!(request_of(&typed).is_ok());
        let typed = read(b"name=n&expires=on&expires_in_days=ten").expect("a form");
        let Err((field, message)) = request_of(&typed) else {
            panic!("ten is not a number")
        };
        let mut problems = Problems::default();
        *field(&mut problems) = Some(message);
        assert!(problems.expiry.is_some());
        assert!(read(b"name=n&admin=true").is_err());
    }
}
