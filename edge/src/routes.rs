//! The route table: which requests need which permissions. Configured as JSON in `KEYGATE_ROUTES`:
//!
//! ```json
//! [
//!   {"method": "GET",  "path": "/v1/customers/{customer}/licenses", "permissions": ["license:read"], "customer": "customer"},
//!   {"method": "POST", "path": "/v1/telemetry", "permissions": ["telemetry:write"]},
//!   {"method": "*",    "path": "/status/*", "public": true}
//! ]
//! ```
//!
//! `{name}` captures one path segment, a final `*` matches any rest (including nothing). The first
//! matching route wins; a request no route matches is refused (404), so nothing is exposed by
//! omission.

use keygate_shared::Permission;
use serde::Deserialize;

pub(crate) const MAX_ROUTES: usize = 256;

#[derive(Debug)]
pub(crate) struct Route {
    method: Option<String>,
    segments: Vec<Segment>,
    rest: bool,
    pub(crate) permissions: Vec<Permission>,
    customer: Option<usize>,
    pub(crate) public: bool,
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
}

#[derive(Debug)]
pub(crate) struct RouteTable(Vec<Route>);

/// A matched route, with the customer its path names (if the route is customer-scoped).
#[derive(Debug)]
pub(crate) struct RouteMatch<'a> {
    pub(crate) route: &'a Route,
    pub(crate) customer: Option<&'a str>,
}

impl RouteTable {
    pub(crate) fn parse(json: &str) -> Result<Self, String> {
        let specs: Vec<RouteSpec> = serde_json::from_str(json)
            .map_err(|error| format!("not a JSON list of routes: {error}"))?;
        if specs.len() > MAX_ROUTES {
            return Err(format!("at most {MAX_ROUTES} routes"));
        }
        specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                Route::from_spec(spec).map_err(|error| format!("route {index}: {error}"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub(crate) fn find<'a>(&'a self, method: &str, path: &'a str) -> Option<RouteMatch<'a>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        self.0
            .iter()
            .find_map(|route| route.matches(method, &parts))
    }
}

impl Route {
    fn from_spec(spec: RouteSpec) -> Result<Self, String> {
        let method = match spec.method.as_str() {
            "*" => None,
            name if !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase()) => {
                Some(spec.method)
            }
            _ => {
                return Err(format!(
                    "method {:?} must be an uppercase HTTP method or \"*\"",
                    spec.method
                ));
            }
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
                    _ => Ok(Segment::Literal(part.to_owned())),
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        let permissions = spec
            .permissions
            .iter()
            .map(|text| Permission::parse(text).map_err(|error| error.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if spec.public && (!permissions.is_empty() || spec.customer.is_some()) {
            return Err("a public route cannot require permissions or a customer".into());
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
        })
    }

    fn matches<'a>(&'a self, method: &str, parts: &[&'a str]) -> Option<RouteMatch<'a>> {
        if self.method.as_deref().is_some_and(|own| own != method) {
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

    fn table() -> RouteTable {
        RouteTable::parse(
            r#"[
                {"method": "GET", "path": "/v1/customers/{customer}/licenses", "permissions": ["license:read"], "customer": "customer"},
                {"method": "POST", "path": "/v1/telemetry", "permissions": ["telemetry:write", "customer:read"]},
                {"method": "*", "path": "/status/*", "public": true},
                {"method": "*", "path": "/v1/*", "permissions": ["api:use"]}
            ]"#,
        )
        .unwrap()
    }

    fn permissions<'a>(found: &RouteMatch<'a>) -> Vec<&'a str> {
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
        let found = table.find("GET", "/v1/customers/cus_1/licenses").unwrap();
        assert_eq!(permissions(&found), ["license:read"]);
        assert_eq!(found.customer, Some("cus_1"));
        let post = table.find("POST", "/v1/telemetry").unwrap();
        assert_eq!(permissions(&post), ["telemetry:write", "customer:read"]);
        assert_eq!(post.customer, None);
        // Same path, other method: falls through to the /v1/* catch-all.
        assert_eq!(
            permissions(
                &table
                    .find("DELETE", "/v1/customers/cus_1/licenses")
                    .unwrap()
            ),
            ["api:use"]
        );
    }

    #[test]
    fn rest_wildcard_and_exact_lengths() {
        let table = table();
        assert!(table.find("GET", "/status").unwrap().route.public);
        assert!(table.find("HEAD", "/status/deep/er").unwrap().route.public);
        assert!(table.find("GET", "/statusx").is_none());
        assert!(
            table
                .find("GET", "/v1/customers/cus_1/licenses/extra")
                .is_some_and(|m| m.customer.is_none())
        );
        assert!(table.find("GET", "/").is_none());
        assert!(table.find("GET", "/v2/x").is_none());
        assert!(
            table
                .find("GET", "/v1/customers//licenses")
                .is_some_and(|m| permissions(&m) == ["api:use"])
        );
    }

    #[test]
    fn bad_tables_are_refused_with_the_route_named() {
        let cases = [
            ("{}", "not a JSON list"),
            (r#"[{"method": "get", "path": "/x"}]"#, "route 0: method"),
            (r#"[{"method": "GET", "path": "x"}]"#, "must start with '/'"),
            (
                r#"[{"method": "GET", "path": "/a/*/b"}]"#,
                "is not a literal",
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
                r#"[{"method": "GET", "path": "/a/{id}", "customer": "cus"}]"#,
                "{cus} is not in the path",
            ),
            (
                r#"[{"method": "GET", "path": "/a", "extra": 1}]"#,
                "unknown field",
            ),
        ];
        for (json, expected) in cases {
            let error = RouteTable::parse(json).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
        let many = format!(
            "[{}]",
            vec![r#"{"method":"GET","path":"/a"}"#; MAX_ROUTES + 1].join(",")
        );
        assert!(RouteTable::parse(&many).unwrap_err().contains("at most"));
    }
}
