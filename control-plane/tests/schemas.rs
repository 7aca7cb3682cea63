//! The OpenAPI document is derived from the very types the API serves (keygate-shared's, with its
//! `openapi` feature). These tests hold real responses and the edge's real usage events against
//! the schemas the served document gives them, so a change to a type that its schema does not
//! follow fails here.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use keygate_shared::{Environment, KeyFormat, Outcome, UsageEvent};
use serde_json::{Value, json};

both!(
    every_reference_in_the_document_resolves,
    verify_answers_match_their_schema,
    keys_match_their_schema,
    usage_events_match_their_schema,
);

/// Checks `value` against `schema` for what this API's schemas use: `$ref`, `type` (one or a
/// list), `enum`, `required`, `properties`, `additionalProperties: false`, `items`, `oneOf`,
/// `allOf`, `minimum`/`maximum`. Returns every violation, with its JSON path.
fn violations(document: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &document["components"]["schemas"][name];
        if target.is_null() {
            return vec![format!("{path}: dangling {reference}")];
        }
        return violations(document, target, value, path);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|option| violations(document, option, value, path).is_empty())
            .count();
        if matching != 1 {
            found.push(format!("{path}: matches {matching} of oneOf, not 1"));
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        found.extend(violations(document, part, value, path));
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let kind_of = |value: &Value| match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let kind = kind_of(value);
    let allowed = kinds.is_empty()
        || kinds.contains(&kind)
        || (kind == "integer" && kinds.contains(&"number"));
    if !allowed {
        found.push(format!("{path}: a {kind}, the schema says {kinds:?}"));
        return found;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        found.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let Some(number) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| number < min) {
            found.push(format!("{path}: {number} below the minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| number > max) {
            found.push(format!("{path}: {number} above the maximum"));
        }
    }
    if let Value::Object(fields) = value {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !fields.contains_key(name) {
                found.push(format!("{path}: lacks required {name}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, field) in fields {
            match properties.and_then(|properties| properties.get(name)) {
                Some(property) => {
                    found.extend(violations(
                        document,
                        property,
                        field,
                        &format!("{path}.{name}"),
                    ));
                }
                // Without `properties`, the object is free-form (metadata).
                None if properties.is_some() => {
                    found.push(format!("{path}: {name} is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for (index, element) in items.iter().enumerate() {
            found.extend(violations(
                document,
                item,
                element,
                &format!("{path}[{index}]"),
            ));
        }
    }
    found
}

async fn document(app: &TestApp) -> Value {
    app.send("GET", "/openapi.json", None, None)
        .await
        .expect(StatusCode::OK)
}

#[track_caller]
fn assert_matches(document: &Value, schema: &Value, value: &Value) {
    let found = violations(document, schema, value, "$");
    assert!(found.is_empty(), "{found:#?}\nin {value:#}");
}

/// The schema of `status` answered by `method path`.
fn response_schema<'a>(document: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let schema = &document["paths"][path][method]["responses"][status]["content"]["application/json"]
        ["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} documents no {status} body"
    );
    schema
}

fn component<'a>(document: &'a Value, name: &str) -> &'a Value {
    let schema = &document["components"]["schemas"][name];
    assert!(!schema.is_null(), "no schema {name}");
    schema
}

async fn every_reference_in_the_document_resolves(app: &TestApp) {
    fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(reference)) = fields.get("$ref") {
                    found.push(reference);
                }
                fields.values().for_each(|field| references(field, found));
            }
            Value::Array(items) => items.iter().for_each(|item| references(item, found)),
            _ => {}
        }
    }
    let document = document(app).await;
    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(found.len() > 20, "{}", found.len());
    for reference in found {
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "{reference} does not resolve"
        );
    }
}

async fn verify_answers_match_their_schema(app: &TestApp) {
    let document = document(app).await;
    let schema = response_schema(&document, "post", "/v1/verify", "200");
    app.catalogue(&["customer:read"]).await;
    let (key, _, _) = app
        .create_key(
            &app.admin,
            json!({
                "name": "verified",
                "permissions": ["customer:read"],
                "customer_id": "cus_1",
                "expires_in_days": 3,
                "rate_limit": { "requests": 10, "window_seconds": 60 }
            }),
        )
        .await;
    let (plain, _, _) = app.create_key(&app.admin, json!({ "name": "plain" })).await;
    let asks = [
        json!({ "key": key, "permissions": ["customer:read"], "customer_id": "cus_1" }),
        json!({ "key": plain }),
        json!({ "key": key, "permissions": ["invoice:read"], "customer_id": "cus_1" }),
        json!({ "key": key }),
        json!({ "key": "kg_live_nothing" }),
    ];
    let mut codes = Vec::new();
    for ask in asks {
        let answer = app
            .post("/v1/verify", &app.admin, ask)
            .await
            .expect(StatusCode::OK);
        assert_matches(&document, schema, &answer);
        codes.push(answer["code"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        codes,
        [
            "ok",
            "ok",
            "insufficient_permissions",
            "customer_required",
            "invalid_key"
        ]
    );
}

async fn keys_match_their_schema(app: &TestApp) {
    let document = document(app).await;
    let created = app
        .post(
            "/v1/keys",
            &app.admin,
            json!({
                "name": "full",
                "environment": "staging",
                "customer_id": "cus_9",
                "expires_in_days": 30,
                "rate_limit": { "requests": 100, "window_seconds": 60 },
                "ip_allowlist": ["203.0.113.0/24"],
                "metadata": { "team": "billing" }
            }),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_matches(
        &document,
        response_schema(&document, "post", "/v1/keys", "201"),
        &created,
    );
    let key_id = created["key_id"].as_str().unwrap();
    let shown = app
        .get(&format!("/v1/keys/{key_id}"), &app.admin)
        .await
        .expect(StatusCode::OK);
    assert_matches(&document, component(&document, "KeyView"), &shown);
    // The schema's bounds are the server's: one past them is refused.
    let limit = &component(&document, "RateLimit")["properties"]["requests"];
    let too_many = limit["maximum"].as_u64().unwrap() + 1;
    app.post(
        "/v1/keys",
        &app.admin,
        json!({ "name": "x", "rate_limit": { "requests": too_many, "window_seconds": 60 } }),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY);
}

async fn usage_events_match_their_schema(app: &TestApp) {
    let document = document(app).await;
    let schema = component(&document, "UsageEvent");
    let key_id = KeyFormat::new("kg")
        .unwrap()
        .generate(Environment::Production, &mut rand::rng())
        .key_id()
        .to_string();
    for outcome in Outcome::ALL {
        let event = UsageEvent {
            event_id: "evt-1".into(),
            key_id: key_id.clone(),
            occurred_at_ms: common::START * 1000,
            method: "GET".into(),
            route: "/v1/x".into(),
            outcome: outcome.into(),
            status: 200,
            colo: "AMS".into(),
            latency_ms: 1,
        };
        let wire: Value = serde_json::from_str(&event.to_json()).expect("JSON");
        assert_matches(&document, schema, &wire);
    }
}
