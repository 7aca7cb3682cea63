//! The key form, in two uses.
//! - Create API Key: the dialog (`GET /ui/keys/new`) and its submission (`POST /ui/keys`), which
//!   is `POST /v1/keys`'s own code ([`keys::create`]) with the session's caller. The new key is
//!   shown once, in the answer to the submission, and nowhere else.
//! - Edit: a key's form filled in (`GET /ui/keys/{key_id}/edit`) and its submission (`POST`),
//!   which is `PATCH /v1/keys/{key_id}`'s own handler. Locked restrictions are marked, with who
//!   set them; the handler enforces them.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use keygate_shared::Grants;
use serde_json::{Map, Value, json};

use super::listing::Filters;
use super::page::{self, Layout};
use super::session::Signed;
use super::{AppState, Caller};
use crate::http::ApiError;
use crate::http::error::ApiJson;
use crate::http::keys::{self, UpdateKeyRequest};
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
    /// Held by the key being edited but not within the ceiling (or not in the catalogue): it may
    /// be kept or removed, not chosen again.
    beyond: bool,
}

/// The choices a form offers: the catalogue's entries, each `(name, description, within the
/// ceiling)`, those within it; and when editing, whatever the key holds (`held`) that is not
/// among them, so that saving keeps what the form could not offer.
fn choices<'a>(
    catalogue: impl Iterator<Item = (&'a str, &'a str, bool)>,
    held: &[String],
    editing: bool,
) -> Vec<Choice> {
    let holds = |name: &str| held.iter().any(|held| held == name);
    let mut offered: Vec<Choice> = catalogue
        .filter(|(name, _, within)| *within || (editing && holds(name)))
        .map(|(name, description, within)| Choice {
            checked: holds(name),
            name: name.to_owned(),
            description: description.to_owned(),
            beyond: !within,
        })
        .collect();
    if editing {
        for name in held {
            if !offered.iter().any(|choice| &choice.name == name) {
                offered.push(Choice {
                    name: name.clone(),
                    description: String::new(),
                    checked: true,
                    beyond: true,
                });
            }
        }
    }
    offered
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
    /// `problem`, under `field`.
    fn at(field: Field, problem: String) -> Self {
        let mut problems = Self::default();
        *field(&mut problems) = Some(problem);
        problems
    }

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

/// The key an edit form is about.
#[derive(Debug)]
struct Editing {
    key_id: String,
    name: String,
    environment: String,
    expires_at: Option<String>,
    /// Each locked restriction: (field, who set it, when).
    locks: Vec<(&'static str, String, String)>,
    /// Whether the locks bind the caller (the key is theirs and they manage no one else's).
    bound: bool,
}

impl Editing {
    /// Who locked `field`, and when, if it is locked.
    fn lock(&self, field: &str) -> Option<(&str, &str)> {
        self.locks
            .iter()
            .find(|(what, _, _)| *what == field)
            .map(|(_, by, at)| (by.as_str(), at.as_str()))
    }
}

#[derive(askama::Template)]
#[template(path = "create.html")]
struct KeyForm {
    layout: Layout,
    typed: Typed,
    permissions: Vec<Choice>,
    sets: Vec<Choice>,
    /// Active users a key may be made for; `None` for members (their own only).
    owners: Option<Vec<(String, String)>>,
    problems: Problems,
    /// `None`: a new key.
    editing: Option<Editing>,
}

/// A secret to show once: a new or regenerated key, or a new control-plane token.
#[derive(Debug)]
pub(super) struct Once {
    /// `API key` or `Token`.
    pub what: &'static str,
    pub name: String,
    pub id: String,
    pub secret: String,
    /// Where closing the dialog goes.
    pub close: String,
}

#[derive(askama::Template)]
#[template(path = "show_once.html")]
struct ShowOnce {
    layout: Layout,
    once: Once,
    file_name: String,
}

/// `GET /ui/keys/new`, optionally `?owner_id=` (an admin generating a key for a user).
pub(super) async fn form(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    RawQuery(query): RawQuery,
) -> Response {
    let owner_id = match Filters::parse(&["owner_id"], query.as_deref().unwrap_or("")) {
        Ok((asked, _)) => asked.get("owner_id").to_owned(),
        Err(problem) => {
            let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", problem);
            return page::failure(&error);
        }
    };
    let typed = Typed {
        owner_id,
        ..Typed::default()
    };
    match page_for(&state, &caller, typed, Problems::default(), None).await {
        Ok(page) => page::render(StatusCode::OK, &page),
        Err(error) => page::failure(&error),
    }
}

/// The form with only what the caller's ceiling lets them put on a key of its owner (the one
/// chosen, else the caller).
async fn page_for(
    state: &AppState,
    caller: &Caller,
    typed: Typed,
    problems: Problems,
    editing: Option<Editing>,
) -> Result<KeyForm, ApiError> {
    let owner = match typed.owner_id.trim() {
        "" => caller.user_id.as_str(),
        chosen if caller.role.manages_all_keys() => chosen,
        _ => caller.user_id.as_str(),
    };
    let bounds = policy::bounds(state.db(), &caller.user_id, caller.role, owner).await?;
    let catalogue = catalog::load(state.db()).await?;
    let allowed = |grants: &[String]| {
        Grants::parse(grants).is_ok_and(|grants| policy::allows(&bounds, &catalogue, &grants))
    };
    let editing_key = editing.is_some();
    let permissions = choices(
        catalogue.permissions.iter().map(|permission| {
            let within = allowed(std::slice::from_ref(&permission.name));
            (
                permission.name.as_str(),
                permission.description.as_str(),
                within,
            )
        }),
        &typed.permissions,
        editing_key,
    );
    let sets = choices(
        catalogue.sets.iter().map(|set| {
            let within = allowed(&set.permissions);
            (set.name.as_str(), set.description.as_str(), within)
        }),
        &typed.permission_sets,
        editing_key,
    );
    let owners = if caller.role.manages_all_keys() {
        let users = users::list(state.db()).await?;
        Some(
            users
                .into_iter()
                // An edit keeps its owner on offer even when deactivated: the form must not
                // move the key to whoever comes first.
                .filter(|user| {
                    user.deactivated_at.is_none() || (editing_key && user.user_id == typed.owner_id)
                })
                .map(|user| (user.user_id, user.email))
                .collect(),
        )
    } else {
        None
    };
    let title = if editing.is_some() {
        "Edit API Key"
    } else {
        "Create API Key"
    };
    Ok(KeyForm {
        layout: Layout::signed_in(title, caller),
        typed,
        permissions,
        sets,
        owners,
        problems,
        editing,
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
            let problems = Problems::at(|problems| &mut problems.form, problem);
            return refused(&state, &caller, Typed::default(), problems, None).await;
        }
    };
    let request = match fields_of(&typed, None).and_then(|fields| request(fields)) {
        Ok(request) => request,
        Err((field, problem)) => {
            let problems = Problems::at(field, problem);
            return refused(&state, &caller, typed, problems, None).await;
        }
    };
    match keys::create(&state, &caller, request).await {
        Ok((key, view)) => show_once(&caller, &key, view),
        Err(error) if error.status.is_client_error() => {
            refused(&state, &caller, typed, Problems::of(error), None).await
        }
        Err(error) => page::failure(&error),
    }
}

/// `GET /ui/keys/{key_id}/edit`: the key's form, filled in.
pub(super) async fn edit_form(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path(id): Path<String>,
) -> Response {
    let view = match keys::get_key(State(state.clone()), caller.clone(), Path(id)).await {
        Ok(view) => view.0,
        Err(error) => return page::failure(&error),
    };
    let typed = Typed::of(&view);
    let editing = Editing::of(&caller, view);
    match page_for(&state, &caller, typed, Problems::default(), Some(editing)).await {
        Ok(page) => page::render(StatusCode::OK, &page),
        Err(error) => page::failure(&error),
    }
}

/// `POST /ui/keys/{key_id}/edit`: the change, then the key's page; a refusal shows the form
/// again with the API's message next to its field (422).
pub(super) async fn edit(
    State(state): State<AppState>,
    Signed { caller }: Signed,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let view = match keys::get_key(State(state.clone()), caller.clone(), Path(id.clone())).await {
        Ok(view) => view.0,
        Err(error) => return page::failure(&error),
    };
    let typed = match read(&body) {
        Ok(typed) => typed,
        Err(problem) => {
            let problems = Problems::at(|problems| &mut problems.form, problem);
            let typed = Typed::of(&view);
            let editing = Editing::of(&caller, view);
            return refused(&state, &caller, typed, problems, Some(editing)).await;
        }
    };
    let patch = fields_of(&typed, Some(&view)).and_then(|fields| request(fields));
    let done = match patch {
        Ok(patch) => {
            let patched: Result<_, ApiError> = keys::update_key(
                State(state.clone()),
                caller.clone(),
                Path(id.clone()),
                ApiJson::<UpdateKeyRequest>(patch),
            )
            .await;
            patched.map_err(|error| {
                if error.status.is_client_error() && error.status != StatusCode::NOT_FOUND {
                    Ok(Problems::of(error))
                } else {
                    Err(error)
                }
            })
        }
        Err((field, problem)) => Err(Ok(Problems::at(field, problem))),
    };
    match done {
        Ok(_) => Redirect::to(&format!("/ui/keys/{}", view.key_id)).into_response(),
        Err(Ok(problems)) => {
            let editing = Editing::of(&caller, view);
            refused(&state, &caller, typed, problems, Some(editing)).await
        }
        Err(Err(error)) => page::failure(&error),
    }
}

impl Typed {
    /// A key's fields as its edit form shows them; the expiry's lifetime is left empty: keep.
    fn of(view: &KeyView) -> Self {
        let (rate_requests, rate_window_seconds) = view.rate_limit.map_or_else(
            || (String::new(), String::new()),
            |limit| {
                (
                    limit.requests().to_string(),
                    limit.window_seconds().to_string(),
                )
            },
        );
        Self {
            name: view.name.clone(),
            description: view.description.clone().unwrap_or_default(),
            environment: view.environment.name().to_owned(),
            permissions: view.permissions.clone(),
            permission_sets: view.permission_sets.clone(),
            customer_id: view.customer_id.clone().unwrap_or_default(),
            expires: view.expires_at.is_some(),
            expires_in_days: String::new(),
            rate_requests,
            rate_window_seconds,
            ip_allowlist: view.ip_allowlist.join("\n"),
            owner_id: view.owner_id.clone(),
        }
    }
}

impl Editing {
    fn of(caller: &Caller, view: KeyView) -> Self {
        Self {
            locks: view
                .restrictions
                .iter()
                .map(|(restriction, set)| {
                    (restriction.as_str(), set.set_by.clone(), set.set_at.clone())
                })
                .collect(),
            bound: !caller.role.manages_all_keys(),
            environment: view.environment.name().to_owned(),
            expires_at: view.expires_at,
            key_id: view.key_id,
            name: view.name,
        }
    }
}

/// The new (or regenerated) key, shown this once.
pub(super) fn show_once(caller: &Caller, key: &keygate_shared::ApiKey, view: KeyView) -> Response {
    show_secret(
        caller,
        Once {
            what: "API key",
            name: view.name,
            id: view.key_id,
            secret: key.expose_secret().to_owned(),
            close: "/ui/keys".to_owned(),
        },
    )
}

/// A secret, shown this once, with copy and download (`<name>.apikey`).
pub(super) fn show_secret(caller: &Caller, once: Once) -> Response {
    page::render(
        StatusCode::CREATED,
        &ShowOnce {
            layout: Layout::signed_in("Shown once", caller),
            file_name: file_name(&once.name),
            once,
        },
    )
}

async fn refused(
    state: &AppState,
    caller: &Caller,
    typed: Typed,
    problems: Problems,
    editing: Option<Editing>,
) -> Response {
    match page_for(state, caller, typed, problems, editing).await {
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

/// The API's request for what was typed, as JSON fields. A new key (`editing` is `None`) leaves
/// empty fields out; an edit of `editing` sends them as `null`, which clears them, and keeps the
/// expiry when its lifetime is left empty. Numbers must be numbers.
fn fields_of(
    typed: &Typed,
    editing: Option<&KeyView>,
) -> Result<Map<String, Value>, (Field, String)> {
    let mut fields = Map::new();
    fields.insert("name".into(), json!(typed.name));
    let mut optional = vec![
        ("description", &typed.description),
        ("customer_id", &typed.customer_id),
    ];
    if editing.is_none() {
        optional.push(("environment", &typed.environment));
    }
    for (field, value) in optional {
        if !value.trim().is_empty() {
            fields.insert(field.into(), json!(value.trim()));
        } else if editing.is_some() {
            fields.insert(field.into(), Value::Null);
        }
    }
    let owner = typed.owner_id.trim();
    let current_owner = editing.map(|view| view.owner_id.as_str());
    if !owner.is_empty() && current_owner != Some(owner) {
        fields.insert("owner_id".into(), json!(owner));
    }
    fields.insert("permissions".into(), json!(typed.permissions));
    fields.insert("permission_sets".into(), json!(typed.permission_sets));
    let lifetime = typed.expires_in_days.trim();
    let expiry_problem = (|problems: &mut Problems| &mut problems.expiry) as Field;
    match (typed.expires, lifetime.is_empty(), editing) {
        (false, _, Some(_)) => {
            fields.insert("expires_at".into(), Value::Null);
        }
        (false, _, None) => {}
        (true, true, Some(view)) if view.expires_at.is_some() => {}
        (true, _, _) => {
            let days = whole(lifetime).ok_or((
                expiry_problem,
                "The lifetime is a whole number of days, 1 to 3650.".to_owned(),
            ))?;
            fields.insert("expires_in_days".into(), json!(days));
        }
    }
    if !typed.rate_requests.trim().is_empty() || !typed.rate_window_seconds.trim().is_empty() {
        let limit = whole(&typed.rate_requests)
            .zip(whole(&typed.rate_window_seconds))
            .ok_or((
                (|problems: &mut Problems| &mut problems.rate_limit) as Field,
                "A rate limit is a whole number of requests per a whole number of seconds."
                    .to_owned(),
            ))?;
        fields.insert(
            "rate_limit".into(),
            json!({"requests": limit.0, "window_seconds": limit.1}),
        );
    } else if editing.is_some() {
        fields.insert("rate_limit".into(), Value::Null);
    }
    let networks: Vec<&str> = typed
        .ip_allowlist
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    fields.insert("ip_allowlist".into(), json!(networks));
    Ok(fields)
}

/// The API request (create or update) `fields` make.
fn request<T: serde::de::DeserializeOwned>(
    fields: Map<String, Value>,
) -> Result<T, (Field, String)> {
    serde_json::from_value(Value::Object(fields)).map_err(|error| {
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
    use crate::http::keys::CreateKeyRequest;

    #[test]
    fn an_edit_keeps_what_the_key_holds_beyond_the_ceiling() {
        let catalogue = [
            ("a:read", "", true),
            ("a:write", "", false),
            ("b:read", "", false),
        ];
        let held = vec!["a:write".to_owned(), "legacy:*".to_owned()];
        let names = |offered: &[Choice]| -> Vec<(String, bool, bool)> {
            offered
                .iter()
                .map(|choice| (choice.name.clone(), choice.checked, choice.beyond))
                .collect()
        };
        let creating = choices(catalogue.into_iter(), &held, false);
        assert_eq!(names(&creating), [("a:read".to_owned(), false, false)]);
        let editing = choices(catalogue.into_iter(), &held, true);
        assert_eq!(
            names(&editing),
            [
                ("a:read".to_owned(), false, false),
                ("a:write".to_owned(), true, true),
                ("legacy:*".to_owned(), true, true),
            ]
        );
    }

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
        let fields = fields_of(&typed, None).expect("fields");
        assert!(request::<CreateKeyRequest>(fields).is_ok());
        let typed = read(b"name=n&expires=on&expires_in_days=ten").expect("a form");
        let Err((field, message)) = fields_of(&typed, None) else {
            panic!("ten is not a number")
        };
        assert!(Problems::at(field, message).expiry.is_some());
        assert!(read(b"name=n&admin=true").is_err());
    }
}
