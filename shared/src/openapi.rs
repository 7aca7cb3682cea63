//! OpenAPI schemas (`openapi` feature) that derives cannot state. A verify response carries its
//! identity fields only when `valid` is true, a flattened `Option` that derived schemas describe
//! as "null or an identity" and so reject every refusal; so it is written by hand. And the
//! formats keygate-shared parses (permissions, grants, references, addresses) are given as
//! patterns here, next to the parsers, so the document refuses what they refuse
//! (`shared/tests/properties.rs` holds each pattern to its parser).

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Ref, Schema, SchemaFormat, SchemaType,
    Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::{Environment, MAX_GRANTS, MAX_REFERENCE_LEN, RateLimitFields, VerifyResponse};

/// A permission as the catalogue and routes name it: `resource:action`, each part a lowercase
/// letter and then up to 31 of `a-z 0-9 _ - .` ([`crate::Permission::parse`]).
pub const PERMISSION_PATTERN: &str = "^[a-z][a-z0-9_.-]{0,31}:[a-z][a-z0-9_.-]{0,31}$";
/// What a key may hold: `*`, `resource:*`, or a permission ([`crate::Grant::parse`]).
pub const GRANT_PATTERN: &str = "^(\\*|[a-z][a-z0-9_.-]{0,31}:(\\*|[a-z][a-z0-9_.-]{0,31}))$";
/// A permission set's name ([`crate::valid_set_name`]).
pub const SET_NAME_PATTERN: &str = "^[a-z][a-z0-9_.-]{0,63}$";
/// A customer or owner id: 1 to 128 of `A-Z a-z 0-9 _ - . : @` ([`crate::CustomerId::parse`]).
pub const REFERENCE_PATTERN: &str = "^[A-Za-z0-9_.:@-]+$";

fn string_matching(pattern: &str) -> ObjectBuilder {
    typed(Type::String).pattern(Some(pattern))
}

/// One permission.
pub fn permission() -> ObjectBuilder {
    string_matching(PERMISSION_PATTERN)
}

/// A list of permissions, as a request that needs them gives it.
pub fn permission_list() -> ArrayBuilder {
    ArrayBuilder::new().items(string_matching(PERMISSION_PATTERN))
}

/// A key's grants as requested: distinct, at most [`MAX_GRANTS`].
pub fn grant_list() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(string_matching(GRANT_PATTERN))
        .max_items(Some(MAX_GRANTS))
        .unique_items(true)
}

/// A key's grants as a ceiling allows them, or null.
pub fn optional_grant_list() -> ArrayBuilder {
    grant_list().schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
}

/// Names of permission sets, each at most once.
pub fn set_name_list() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(string_matching(SET_NAME_PATTERN))
        .max_items(Some(MAX_GRANTS))
        .unique_items(true)
}

/// A customer or owner id, or null.
pub fn optional_reference() -> ObjectBuilder {
    nullable(Type::String)
        .pattern(Some(REFERENCE_PATTERN))
        .min_length(Some(1))
        .max_length(Some(MAX_REFERENCE_LEN))
}

/// An IPv4 or IPv6 address, or null.
pub fn optional_ip_address() -> OneOfBuilder {
    let address = |format| typed(Type::String).format(Some(SchemaFormat::KnownFormat(format)));
    OneOfBuilder::new()
        .item(typed(Type::Null))
        .item(address(KnownFormat::Ipv4))
        .item(address(KnownFormat::Ipv6))
}

fn typed(kind: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(kind)
}

fn nullable(kind: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([kind, Type::Null]))
}

impl PartialSchema for VerifyResponse<'_> {
    fn schema() -> RefOr<Schema> {
        let no_limit = OneOfBuilder::new()
            .item(typed(Type::Null))
            .item(Ref::from_schema_name(<RateLimitFields as ToSchema>::name()));
        ObjectBuilder::new()
            .description(Some(
                "The decision. When `valid` is true it carries the key's identity (`key_id` \
                 through `previous_secret`); otherwise `message`, and `required_permission` when \
                 a permission was missing.",
            ))
            .property("valid", typed(Type::Boolean))
            .required("valid")
            .property(
                "code",
                typed(Type::String).description(Some(
                    "`ok`, or why not: `invalid_key`, `wrong_environment`, `revoked`, \
                     `disabled`, `expired`, `not_yet_valid`, `ip_not_allowed`, \
                     `customer_mismatch`, `insufficient_permissions`.",
                )),
            )
            .required("code")
            .property("message", typed(Type::String))
            .property("required_permission", typed(Type::String))
            .property("key_id", typed(Type::String))
            .property(
                "environment",
                Ref::from_schema_name(<Environment as ToSchema>::name()),
            )
            .property("owner_id", typed(Type::String))
            .property("customer_id", nullable(Type::String))
            .property(
                "permissions",
                ArrayBuilder::new()
                    .items(typed(Type::String))
                    .description(Some("What the key holds, wildcards included.")),
            )
            .property(
                "expires_at",
                nullable(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .description(Some("Unix seconds.")),
            )
            .property("rate_limit", no_limit)
            .property(
                "previous_secret",
                typed(Type::Boolean).description(Some(
                    "The key matched the secret a regeneration replaced, inside its grace period.",
                )),
            )
            .into()
    }
}

impl ToSchema for VerifyResponse<'_> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("VerifyResponse")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            <Environment as ToSchema>::name().into(),
            Environment::schema(),
        ));
        schemas.push((
            <RateLimitFields as ToSchema>::name().into(),
            RateLimitFields::schema(),
        ));
    }
}
