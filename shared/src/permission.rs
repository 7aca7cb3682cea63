//! Permissions are `resource:action` strings. Routes require concrete permissions; keys hold
//! grants, which may also be `resource:*` (every action on a resource) or `*` (everything).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MAX_SEGMENT_LEN: usize = 32;
pub const MAX_PERMISSION_LEN: usize = 2 * MAX_SEGMENT_LEN + 1;
/// Grants one key (or one permission set) may hold, after expansion.
pub const MAX_GRANTS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("permission is empty")]
    Empty,
    #[error("permission {0:?} is longer than {MAX_PERMISSION_LEN} characters")]
    TooLong(String),
    #[error("permission {0:?} must have the form resource:action")]
    NotResourceAction(String),
    #[error(
        "permission {0:?}: each part must start with a lowercase letter and use only a-z, 0-9, '_', '-', '.' (at most {MAX_SEGMENT_LEN} characters)"
    )]
    InvalidCharacter(String),
    #[error("permission {0:?} is a wildcard, which only a key can hold, not a route require")]
    WildcardNotAllowed(String),
    #[error("permission {0:?} is listed twice")]
    Duplicate(String),
    #[error("at most {MAX_GRANTS} permissions per key")]
    TooMany,
}

fn valid_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    (1..=MAX_SEGMENT_LEN).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// Splits and checks `resource:action`, allowing `*` as the action when `wildcard` is set.
fn split(text: &str, wildcard: bool) -> Result<(&str, &str), PermissionError> {
    if text.is_empty() {
        return Err(PermissionError::Empty);
    }
    if text.len() > MAX_PERMISSION_LEN {
        return Err(PermissionError::TooLong(
            text.chars().take(MAX_PERMISSION_LEN).collect(),
        ));
    }
    let (resource, action) = text
        .split_once(':')
        .ok_or_else(|| PermissionError::NotResourceAction(text.to_owned()))?;
    if action == "*" && !wildcard {
        return Err(PermissionError::WildcardNotAllowed(text.to_owned()));
    }
    if !valid_segment(resource) || !(action == "*" || valid_segment(action)) {
        return Err(PermissionError::InvalidCharacter(text.to_owned()));
    }
    Ok((resource, action))
}

/// A concrete permission, as a route requires it: `customer:read`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(String);

impl Permission {
    pub fn parse(text: &str) -> Result<Self, PermissionError> {
        if text == "*" {
            return Err(PermissionError::WildcardNotAllowed(text.to_owned()));
        }
        split(text, false)?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn resource(&self) -> &str {
        self.0.split_once(':').map_or("", |(resource, _)| resource)
    }
}

/// What a key holds: everything, every action on one resource, or one permission.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Grant {
    All,
    Resource(String),
    Exact(Permission),
}

impl Grant {
    pub fn parse(text: &str) -> Result<Self, PermissionError> {
        if text == "*" {
            return Ok(Self::All);
        }
        let (resource, action) = split(text, true)?;
        Ok(if action == "*" {
            Self::Resource(resource.to_owned())
        } else {
            Self::Exact(Permission(text.to_owned()))
        })
    }

    /// (resource, action), so lists sort the way they read: `*`, `a:*`, `a:read`, `b:*`.
    fn sort_key(&self) -> (&str, &str) {
        match self {
            Self::All => ("*", ""),
            Self::Resource(resource) => (resource, "*"),
            Self::Exact(permission) => permission.0.split_once(':').unwrap_or_default(),
        }
    }

    pub fn allows(&self, required: &Permission) -> bool {
        match self {
            Self::All => true,
            Self::Resource(resource) => required.resource() == resource,
            Self::Exact(permission) => permission == required,
        }
    }

    /// Whether holding `self` already gives everything `other` gives: `*` covers every grant,
    /// `a:*` covers `a:*` and every `a:...`, an exact permission covers only itself.
    pub fn covers(&self, other: &Grant) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (Self::Resource(resource), Self::Resource(other)) => resource == other,
            (Self::Resource(_), Self::Exact(permission)) => self.allows(permission),
            (Self::Exact(permission), Self::Exact(other)) => permission == other,
            _ => false,
        }
    }
}

impl Ord for Grant {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for Grant {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Resource(resource) => write!(f, "{resource}:*"),
            Self::Exact(permission) => f.write_str(permission.as_str()),
        }
    }
}

/// The validated, deduplicated, sorted grants of one key (at most [`MAX_GRANTS`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Grants(Vec<Grant>);

impl Grants {
    /// Grants as a caller listed them: a repeated entry is an error, not silently merged.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, PermissionError> {
        let mut seen = BTreeSet::new();
        for text in texts {
            let grant = Grant::parse(text.as_ref())?;
            if !seen.insert(grant) {
                return Err(PermissionError::Duplicate(text.as_ref().to_owned()));
            }
        }
        Self::from_set(seen)
    }

    fn from_set(set: BTreeSet<Grant>) -> Result<Self, PermissionError> {
        if set.len() > MAX_GRANTS {
            return Err(PermissionError::TooMany);
        }
        Ok(Self(set.into_iter().collect()))
    }

    /// These grants plus those of every named set: what a key holds once "API sets" are expanded.
    pub fn expand<'a>(
        &self,
        sets: impl IntoIterator<Item = &'a PermissionSet>,
    ) -> Result<Self, PermissionError> {
        let mut all: BTreeSet<Grant> = self.0.iter().cloned().collect();
        for set in sets {
            all.extend(set.grants.0.iter().cloned());
        }
        Self::from_set(all)
    }

    pub fn allows(&self, required: &Permission) -> bool {
        self.0.iter().any(|grant| grant.allows(required))
    }

    /// Whether one of these grants covers `grant` (see [`Grant::covers`]).
    pub fn covers(&self, grant: &Grant) -> bool {
        self.0.iter().any(|held| held.covers(grant))
    }

    /// The first of `other`'s grants that none of these covers: `None` when `other` gives
    /// nothing these do not.
    pub fn first_uncovered<'o>(&self, other: &'o Grants) -> Option<&'o Grant> {
        other.iter().find(|grant| !self.covers(grant))
    }

    /// The first of `required` these grants do not allow.
    pub fn first_missing<'r>(&self, required: &'r [Permission]) -> Option<&'r Permission> {
        required.iter().find(|permission| !self.allows(permission))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The longest name of a permission set.
pub const MAX_SET_NAME_LEN: usize = 64;

/// Whether `name` may name a permission set: a lowercase letter, then up to 63 of
/// `a-z 0-9 _ - .`.
pub fn valid_set_name(name: &str) -> bool {
    (1..=MAX_SET_NAME_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// A named bundle of grants (an "API set"), expanded into a key's grants when the key is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionSet {
    pub name: String,
    pub grants: Grants,
}

macro_rules! string_serde {
    ($type:ty, $parse:path) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.to_string())
            }
        }
    };
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(Permission, Permission::parse);
string_serde!(Grant, Grant::parse);

impl Serialize for Grants {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Grants {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&texts).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(text: &str) -> Permission {
        Permission::parse(text).unwrap()
    }

    fn grants(texts: &[&str]) -> Grants {
        Grants::parse(texts).unwrap()
    }

    #[test]
    fn wildcards_grant_exactly_what_they_should() {
        let read = permission("customer:read");
        let write = permission("customer:write");
        let license = permission("license:read");
        assert!(grants(&["*"]).allows(&license));
        assert!(grants(&["customer:*"]).allows(&read));
        assert!(grants(&["customer:*"]).allows(&write));
        assert!(!grants(&["customer:*"]).allows(&license));
        assert!(!grants(&["customer:*"]).allows(&permission("customers:read")));
        assert!(grants(&["customer:read"]).allows(&read));
        assert!(!grants(&["customer:read"]).allows(&write));
        assert!(!grants(&[]).allows(&read));
    }

    #[test]
    fn first_missing_names_the_permission() {
        let required = [permission("customer:read"), permission("license:manage")];
        assert_eq!(
            grants(&["customer:read"]).first_missing(&required),
            Some(&required[1])
        );
        assert_eq!(
            grants(&["customer:read", "license:*"]).first_missing(&required),
            None
        );
    }

    #[test]
    fn validation_names_each_problem() {
        let long = format!("{}:read", "a".repeat(MAX_PERMISSION_LEN));
        let cases = [
            ("", PermissionError::Empty),
            (
                "customer",
                PermissionError::NotResourceAction("customer".into()),
            ),
            (
                "Customer:read",
                PermissionError::InvalidCharacter("Customer:read".into()),
            ),
            (
                "customer:",
                PermissionError::InvalidCharacter("customer:".into()),
            ),
            (":read", PermissionError::InvalidCharacter(":read".into())),
            ("a:b:c", PermissionError::InvalidCharacter("a:b:c".into())),
            (
                "cust omer:read",
                PermissionError::InvalidCharacter("cust omer:read".into()),
            ),
            ("*:read", PermissionError::InvalidCharacter("*:read".into())),
            (
                "customer:re*",
                PermissionError::InvalidCharacter("customer:re*".into()),
            ),
            (
                "1customer:read",
                PermissionError::InvalidCharacter("1customer:read".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Grant::parse(text).err(), Some(expected.clone()), "{text}");
            assert_eq!(Permission::parse(text).err(), Some(expected), "{text}");
        }
        assert!(matches!(
            Grant::parse(&long),
            Err(PermissionError::TooLong(_))
        ));
        assert_eq!(
            Permission::parse("customer:*"),
            Err(PermissionError::WildcardNotAllowed("customer:*".into()))
        );
        assert_eq!(
            Permission::parse("*"),
            Err(PermissionError::WildcardNotAllowed("*".into()))
        );
        assert!(Grant::parse("billing.invoice:read-all").is_ok());
    }

    #[test]
    fn lists_reject_duplicates_and_excess() {
        assert_eq!(
            Grants::parse(&["a:b", "a:b"]),
            Err(PermissionError::Duplicate("a:b".into()))
        );
        let many: Vec<String> = (0..=MAX_GRANTS).map(|i| format!("r{i}:read")).collect();
        assert_eq!(Grants::parse(&many), Err(PermissionError::TooMany));
        assert_eq!(
            Grants::parse(&many[..MAX_GRANTS]).map(|g| g.len()),
            Ok(MAX_GRANTS)
        );
    }

    #[test]
    fn sets_expand_into_a_deduplicated_union() {
        let support = PermissionSet {
            name: "support".into(),
            grants: grants(&["customer:read", "ticket:*"]),
        };
        let billing = PermissionSet {
            name: "billing".into(),
            grants: grants(&["invoice:read", "customer:read"]),
        };
        let expanded = grants(&["license:read"])
            .expand([&support, &billing])
            .unwrap();
        let shown: Vec<String> = expanded.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["customer:read", "invoice:read", "license:read", "ticket:*"]
        );
    }

    #[test]
    fn serde_uses_the_string_form_and_validates() {
        let list = grants(&["*", "customer:*", "license:read"]);
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, r#"["*","customer:*","license:read"]"#);
        assert_eq!(serde_json::from_str::<Grants>(&json).unwrap(), list);
        assert!(serde_json::from_str::<Grants>(r#"["nope"]"#).is_err());
        assert!(serde_json::from_str::<Grants>(r#"["a:b","a:b"]"#).is_err());
        assert!(serde_json::from_str::<Permission>(r#""a:*""#).is_err());
    }
}
