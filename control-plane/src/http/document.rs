//! What every operation of the OpenAPI document says without each handler repeating it:
//!
//! - the statuses the extractors and the middleware answer on their own, all with the one error
//!   body (a handler's `responses(...)` lists what is particular to it);
//! - the patterns of text fields, which a derive cannot compute: a field says
//!   `pattern = "keygate:name"` (at least one visible character, no line break),
//!   `"keygate:text"` (may be empty) or `"keygate:lines"` (may be empty, line breaks allowed),
//!   and gets `crate::text`'s pattern for it.
//!
//! Refusals that no JSON Schema can state (a permission the catalogue lacks, an expiry already
//! past, a cursor this server did not issue) are listed by each operation that makes them, by
//! error code, in its `x-semantic-refusals` extension.

use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// CIDR networks or single addresses, IPv4 or IPv6 (whether each parses, with its host bits
/// zero, no pattern can tell: `invalid_ip_allowlist`).
pub(super) fn networks() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(2))
                .max_length(Some(keygate_shared::MAX_CIDR_LEN))
                .pattern(Some("^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$")),
        )
        .max_items(Some(keygate_shared::MAX_NETWORKS))
}

/// The document as served: the statuses completed, then the text patterns.
pub(super) fn complete(mut openapi: OpenApi) -> Value {
    statuses(&mut openapi);
    let mut value = serde_json::to_value(&openapi).expect("the document serialises");
    text_patterns(&mut value);
    value
}

/// Replaces each `keygate:` pattern marker with the pattern it names.
fn text_patterns(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            if let Some(Value::String(pattern)) = fields.get_mut("pattern") {
                let replaced = match pattern.as_str() {
                    "keygate:name" => Some(crate::text::pattern(false, true)),
                    "keygate:text" => Some(crate::text::pattern(false, false)),
                    "keygate:lines" => Some(crate::text::pattern(true, false)),
                    _ => None,
                };
                if let Some(replaced) = replaced {
                    *pattern = replaced;
                }
            }
            fields.values_mut().for_each(text_patterns);
        }
        Value::Array(items) => items.iter_mut().for_each(text_patterns),
        _ => {}
    }
}

/// Adds the statuses any operation may answer, where its handler did not describe them itself.
fn statuses(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            complete_operation(operation);
        }
    }
}

fn complete_operation(operation: &mut Operation) {
    let mut statuses = vec![(
        "500",
        "Internal error; the request id identifies it in the server's log",
    )];
    if operation.request_body.is_some() {
        statuses.extend([
            ("400", "Malformed JSON"),
            ("413", "Body too large"),
            ("415", "Not application/json"),
            ("422", "A field of the wrong type or content"),
        ]);
    }
    let has_query = operation
        .parameters
        .iter()
        .flatten()
        .any(|parameter| matches!(parameter.parameter_in, ParameterIn::Query));
    if has_query {
        statuses.push(("400", "A query parameter out of range or of the wrong type"));
    }
    let secured = operation
        .security
        .iter()
        .flatten()
        .any(|requirement| *requirement != Default::default());
    if secured {
        statuses.push(("401", "No or invalid token"));
    }
    for (status, description) in statuses {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error(description));
    }
}

fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorResponse")))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build(),
    )
}
