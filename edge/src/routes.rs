//! The route table: which requests need which permissions. Configured as JSON in `KEYGATE_ROUTES`:
//!
//! ```json
//! [
//!   {"method": "GET",  "path": "/v1/customers/{customer}/licenses", "permissions": ["license:read"], "customer": "customer"},
//!   {"method": "POST", "path": "/v1/telemetry", "permissions": ["telemetry:write"]},
//!   {"method": "GET",  "path": "/v1/me", "any_key": true, "customer_keys": true},
//!   {"method": "*",    "path": "/status/*", "public": true}
//! ]
//! ```
//!
//! Routes match the canonical path (keygate-shared's `canonical_path`) and one of the fixed
//! methods; HEAD matches the routes of the GET it mirrors. `{name}` captures one path segment, a
//! final `*` matches any rest (including nothing). The first matching route wins; a request no
//! route matches is refused (404). Nothing is exposed by omission:
//! - a route that is not `public` lists the permissions it needs, or says `"any_key": true` (any
//!   valid key will do): a route that asks for nothing must say so;
//! - a customer-scoped key is refused (403 `customer_required`) on a route that binds no customer
//!   (`"customer": "<capture>"`), unless the route says `"customer_keys": true`.
//!
//! Literals match exactly, or ignoring ASCII case under `KEYGATE_PATH_CASE=insensitive` (for
//! origins that ignore case; the canonical path, as received, is what is forwarded).

use keygate_shared::{Method, Permission};
use serde::Deserialize;

pub(crate) const MAX_ROUTES: usize = 256;

/// How route literals compare: exactly (the default), or ignoring ASCII case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathCase {
    Sensitive,
    Insensitive,
}

#[derive(Debug)]
pub(crate) struct Route {
    /// `None`: any of the fixed methods.
    method: Option<Method>,
    segments: Vec<Segment>,
    rest: bool,
    pub(crate) permissions: Vec<Permission>,
    customer: Option<usize>,
    pub(crate) public: bool,
    /// A customer-scoped key may use this route although it binds no customer.
    pub(crate) customer_keys: bool,
}

#[derive(Debug, PartialEq)]
enum Segment {
    Literal(String),
    Capture(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    method: String,
    path: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    any_key: bool,
    #[serde(default)]
    customer_keys: bool,
}

#[derive(Debug)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    case: PathCase,
}

/// A matched route, with the customer its path names (if the route is customer-scoped).
#[derive(Debug)]
pub(crate) struct RouteMatch<'t, 'p> {
    pub(crate) route: &'t Route,
    pub(crate) customer: Option<&'p str>,
}

impl RouteTable {
    pub(crate) fn parse(json: &str, case: PathCase) -> Result<Self, String> {
        let specs: Vec<RouteSpec> = serde_json::from_str(json)
            .map_err(|error| format!("not a JSON list of routes: {error}"))?;
        if specs.len() > MAX_ROUTES {
            return Err(format!("at most {MAX_ROUTES} routes"));
        }
        let routes = specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                Route::from_spec(spec).map_err(|error| format!("route {index}: {error}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { routes, case })
    }

    /// The first route for `method` and the canonical `path`.
    pub(crate) fn find<'t, 'p>(
        &'t self,
        method: Method,
        path: &'p str,
    ) -> Option<RouteMatch<'t, 'p>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = method.authorised_as();
        self.routes
            .iter()
            .find_map(|route| route.matches(method, &parts, self.case))
    }
}

impl Route {
    fn from_spec(spec: RouteSpec) -> Result<Self, String> {
        let method = match spec.method.as_str() {
            "*" => None,
            name => Some(Method::parse(name).ok_or_else(|| {
                format!(
                    "method {name:?} must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or \"*\""
                )
            })?),
        };
        let Some(path) = spec.path.strip_prefix('/') else {
            return Err(format!("path {:?} must start with '/'", spec.path));
        };
        let mut parts: Vec<&str> = path.split('/').collect();
        let rest = parts.last() == Some(&"*");
        if rest {
            parts.pop();
        }
        let segments = parts
            .into_iter()
            .map(
                |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !name.is_empty() => Ok(Segment::Capture(name.to_owned())),
                    _ if part.contains(['{', '}', '*']) => Err(format!(
                        "path segment {part:?} is not a literal, {{name}} or a final *"
                    )),
                    // A literal is matched against canonical paths: it must be one itself.
                    _ => match keygate_shared::canonical_path(&format!("/{part}")) {
                        Ok(canonical) if canonical[1..] == *part && !part.is_empty() => {
                            Ok(Segment::Literal(part.to_owned()))
                        }
                        _ => Err(format!(
                            "path segment {part:?} is not in canonical form (no empty or dot segments, no needless escapes)"
                        )),
                    },
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        let permissions = spec
            .permissions
            .iter()
            .map(|text| Permission::parse(text).map_err(|error| error.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if spec.public
            && (!permissions.is_empty()
                || spec.customer.is_some()
                || spec.any_key
                || spec.customer_keys)
        {
            return Err("a public route cannot require permissions, a key or a customer".into());
        }
        if !spec.public && permissions.is_empty() != spec.any_key {
            return Err(if spec.any_key {
                "a route cannot list permissions and say \"any_key\"".into()
            } else {
                "a route that is not public must list its permissions, or say \"any_key\": true"
                    .into()
            });
        }
        if spec.customer.is_some() && spec.customer_keys {
            return Err("a route that binds a customer serves customer-scoped keys already: drop \"customer_keys\"".into());
        }
        let customer = match spec.customer {
            None => None,
            Some(name) => Some(
                segments
                    .iter()
                    .position(|segment| *segment == Segment::Capture(name.clone()))
                    .ok_or_else(|| format!("customer parameter {{{name}}} is not in the path"))?,
            ),
        };
        Ok(Self {
            method,
            segments,
            rest,
            permissions,
            customer,
            public: spec.public,
            customer_keys: spec.customer_keys,
        })
    }

    fn matches<'p>(
        &self,
        method: Method,
        parts: &[&'p str],
        case: PathCase,
    ) -> Option<RouteMatch<'_, 'p>> {
        if self.method.is_some_and(|own| own != method) {
            return None;
        }
        let fits = if self.rest {
            parts.len() >= self.segments.len()
        } else {
            parts.len() == self.segments.len()
        };
        let all = self
            .segments
            .iter()
            .zip(parts)
            .all(|(segment, part)| match segment {
                Segment::Literal(literal) if case == PathCase::Insensitive => {
                    literal.eq_ignore_ascii_case(part)
                }
                Segment::Literal(literal) => literal == part,
                Segment::Capture(_) => !part.is_empty(),
            });
        (fits && all).then(|| RouteMatch {
            route: self,
            customer: self.customer.map(|at| parts[at]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"[
        {"method": "GET", "path": "/v1/customers/{customer}/licenses", "permissions": ["license:read"], "customer": "customer"},
        {"method": "POST", "path": "/v1/telemetry", "permissions": ["telemetry:write", "customer:read"]},
        {"method": "GET", "path": "/v1/me", "any_key": true, "customer_keys": true},
        {"method": "*", "path": "/status/*", "public": true},
        {"method": "*", "path": "/v1/*", "permissions": ["api:use"]}
    ]"#;

    fn table() -> RouteTable {
        RouteTable::parse(TABLE, PathCase::Sensitive).unwrap()
    }

    fn permissions<'a>(found: &RouteMatch<'a, '_>) -> Vec<&'a str> {
        found
            .route
            .permissions
            .iter()
            .map(Permission::as_str)
            .collect()
    }

    #[test]
    fn first_matching_route_wins_with_its_customer() {
        let table = table();
        let found = table
            .find(Method::Get, "/v1/customers/cus_1/licenses")
            .unwrap();
        assert_eq!(permissions(&found), ["license:read"]);
        assert_eq!(found.customer, Some("cus_1"));
        let post = table.find(Method::Post, "/v1/telemetry").unwrap();
        assert_eq!(permissions(&post), ["telemetry:write", "customer:read"]);
        assert_eq!(post.customer, None);
        // Same path, other method: falls through to the /v1/* route, which needs its own.
        assert_eq!(
            permissions(
                &table
                    .find(Method::Delete, "/v1/customers/cus_1/licenses")
                    .unwrap()
            ),
            ["api:use"]
        );
    }

    #[test]
    fn head_is_authorised_as_the_get_it_mirrors() {
        let table = table();
        let head = table
            .find(Method::Head, "/v1/customers/cus_2/licenses")
            .unwrap();
        assert_eq!(permissions(&head), ["license:read"]);
        assert_eq!(head.customer, Some("cus_2"));
        // OPTIONS is a method like any other: here only the /v1/* route takes it.
        let options = table
            .find(Method::Options, "/v1/customers/cus_2/licenses")
            .unwrap();
        assert_eq!(permissions(&options), ["api:use"]);
    }

    #[test]
    fn rest_wildcard_and_exact_lengths() {
        let table = table();
        assert!(table.find(Method::Get, "/status").unwrap().route.public);
        assert!(
            table
                .find(Method::Head, "/status/deep/er")
                .unwrap()
                .route
                .public
        );
        assert!(table.find(Method::Get, "/statusx").is_none());
        assert!(
            table
                .find(Method::Get, "/v1/customers/cus_1/licenses/extra")
                .is_some_and(|m| m.customer.is_none())
        );
        assert!(table.find(Method::Get, "/").is_none());
        assert!(table.find(Method::Get, "/v2/x").is_none());
    }

    #[test]
    fn literals_ignore_case_only_when_the_deployment_says_so() {
        let sensitive = table();
        let mixed = "/v1/Customers/cus_2/licenses";
        assert_eq!(
            permissions(&sensitive.find(Method::Get, mixed).unwrap()),
            ["api:use"],
            "not the customer route"
        );
        let insensitive = RouteTable::parse(TABLE, PathCase::Insensitive).unwrap();
        let found = insensitive.find(Method::Get, mixed).unwrap();
        assert_eq!(permissions(&found), ["license:read"]);
        assert_eq!(found.customer, Some("cus_2"), "captures keep their case");
    }

    #[test]
    fn routes_say_what_they_serve() {
        let table = table();
        let me = table.find(Method::Get, "/v1/me").unwrap();
        assert!(me.route.permissions.is_empty() && me.route.customer_keys && !me.route.public);
        let bound = table.find(Method::Get, "/v1/customers/c/licenses").unwrap();
        assert!(!bound.route.customer_keys);
    }

    #[test]
    fn bad_tables_are_refused_with_the_route_named() {
        let cases = [
            ("{}", "not a JSON list"),
            (
                r#"[{"method": "get", "path": "/x", "any_key": true}]"#,
                "route 0: method",
            ),
            (
                r#"[{"method": "PURGE", "path": "/x", "any_key": true}]"#,
                "route 0: method",
            ),
            (
                r#"[{"method": "GET", "path": "x", "any_key": true}]"#,
                "must start with '/'",
            ),
            (
                r#"[{"method": "GET", "path": "/a/*/b", "any_key": true}]"#,
                "is not a literal",
            ),
            (
                r#"[{"method": "GET", "path": "/%61", "any_key": true}]"#,
                "canonical form",
            ),
            (
                r#"[{"method": "GET", "path": "/a//b", "any_key": true}]"#,
                "canonical form",
            ),
            (
                r#"[{"method": "GET", "path": "/a", "permissions": ["a:*"]}]"#,
                "wildcard",
            ),
            (
                r#"[{"method": "GET", "path": "/a", "public": true, "permissions": ["a:b"]}]"#,
                "public route",
            ),
            (
                r#"[{"method": "*", "path": "/*"}]"#,
                "must list its permissions",
            ),
            (
                r#"[{"method": "GET", "path": "/a", "any_key": true, "permissions": ["a:b"]}]"#,
                "cannot list permissions",
            ),
            (
                r#"[{"method": "GET", "path": "/a/{c}", "customer": "c", "customer_keys": true, "any_key": true}]"#,
                "drop",
            ),
            (
                r#"[{"method": "GET", "path": "/a/{id}", "customer": "cus", "any_key": true}]"#,
                "{cus} is not in the path",
            ),
            (
                r#"[{"method": "GET", "path": "/a", "any_key": true, "extra": 1}]"#,
                "unknown field",
            ),
        ];
        for (json, expected) in cases {
            let error = RouteTable::parse(json, PathCase::Sensitive).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
        let many = format!(
            "[{}]",
            vec![r#"{"method":"GET","path":"/a","any_key":true}"#; MAX_ROUTES + 1].join(",")
        );
        assert!(
            RouteTable::parse(&many, PathCase::Sensitive)
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn the_shipped_route_tables_expose_nothing_by_omission() {
        let config = include_str!("../../wrangler.toml");
        let tables: Vec<&str> = config
            .split("KEYGATE_ROUTES = '''")
            .skip(1)
            .filter_map(|rest| rest.split("'''").next())
            .collect();
        assert_eq!(tables.len(), 3, "development, staging, production");
        for json in tables {
            let table = RouteTable::parse(json, PathCase::Sensitive).unwrap();
            for route in &table.routes {
                assert!(route.public || !route.permissions.is_empty(), "{route:?}");
            }
            for (method, path) in [
                (Method::Get, "/admin"),
                (Method::Get, "/"),
                (Method::Post, "/v1/customers/cus_2/profile"),
                (Method::Delete, "/v1/customers/cus_2/profile"),
                (Method::Get, "/v1/Customers/cus_2/profile"),
                (Method::Get, "/v1/telemetry"),
            ] {
                assert!(table.find(method, path).is_none(), "{method} {path}");
            }
            let head = table
                .find(Method::Head, "/v1/customers/cus_2/profile")
                .unwrap();
            assert_eq!(head.customer, Some("cus_2"));
        }
    }
}
