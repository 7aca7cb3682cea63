//! The one OpenAPI schema written by hand (`openapi` feature): a verify response carries its
//! identity fields only when `valid` is true, a flattened `Option` that derived schemas describe
//! as "null or an identity" and so reject every refusal. The other contract types derive theirs.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Ref, Schema, SchemaFormat, SchemaType,
    Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::{Environment, RateLimitFields, VerifyResponse};

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
