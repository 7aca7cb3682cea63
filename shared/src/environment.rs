use std::fmt;

use serde::{Deserialize, Serialize};

/// The deployment a key belongs to. Its tag is written into the key itself, so an edge refuses a
/// key of another deployment before any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Production,
    Staging,
    Development,
}

impl Environment {
    pub const ALL: [Environment; 3] = [Self::Production, Self::Staging, Self::Development];

    /// The tag inside a key string: `live`, `test` or `dev`.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Production => "live",
            Self::Staging => "test",
            Self::Development => "dev",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|env| env.tag() == tag)
    }

    /// The name used in configuration and APIs: `production`, `staging`, `development`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Development => "development",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|env| env.name() == name)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_names_round_trip_and_are_distinct() {
        for env in Environment::ALL {
            assert_eq!(Environment::from_tag(env.tag()), Some(env));
            assert_eq!(Environment::from_name(env.name()), Some(env));
            assert_eq!(Environment::from_tag(env.name()), None);
        }
        assert_eq!(Environment::from_tag("LIVE"), None);
        assert_eq!(
            serde_json::to_string(&Environment::Staging).unwrap(),
            "\"staging\""
        );
    }
}
