//! The Worker's configuration, read from its vars (see wrangler.toml). Parsed once per isolate.
//! A bad or missing value is an error naming the setting, answered as a 500, never a panic.

use std::fmt;

use keygate_shared::{Digest, Environment, Jwks, KeyFormat, SigningJwk, Verifier};

use crate::routes::{PathCase, RouteTable};

/// KV's smallest allowed cacheTtl.
const MIN_KV_CACHE_TTL: u64 = 30;

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) verifier: Verifier,
    /// The origin URL without a trailing `/`: a request's path and query are appended to it as is.
    pub(crate) origin: String,
    pub(crate) routes: RouteTable,
    pub(crate) verify_path: String,
    pub(crate) kv_cache_ttl: u64,
    pub(crate) cache_ttl_ms: u64,
    pub(crate) cache_capacity: usize,
    /// What a limited key's request gets when its rate limiter cannot be reached.
    pub(crate) rate_limit_unavailable: LimiterUnavailable,
    pub(crate) rate_limit_mode: LimitMode,
    /// `KEYGATE_VERIFY_SECRET` (a Worker secret, at least 32 characters), as a digest: when set,
    /// verify mode answers only callers that present it as `Authorization: Bearer <secret>`.
    pub(crate) verify_secret: Option<Digest>,
    /// The identity assertion's signing settings; `None` only under `KEYGATE_ASSERTION=off`.
    pub(crate) assertion: Option<AssertionConfig>,
    /// Which records from KV are trusted.
    pub(crate) records: RecordTrust,
    /// How this isolate follows the change feed (`KEYGATE_FEED=on`); `None`: KV alone.
    pub(crate) feed: Option<FeedSettings>,
    /// `KEYGATE_FEED_TOKEN` (a secret), as a digest: what the control plane appends with.
    pub(crate) feed_token: Option<Digest>,
}

/// `KEYGATE_RECORD_SIGNATURES`: `required` (the default) trusts only records signed by a key of
/// `KEYGATE_RECORD_KEYS`; `log`, for moving a deployment of unsigned records to signed ones, also
/// accepts an unsigned record and logs it. A record signed wrongly is refused in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signatures {
    Required,
    Log,
}

/// The public keys records may be signed with: `KEYGATE_RECORD_KEYS`, a JWKS of Ed25519 keys
/// (two during a rotation, at most 4), each kept as the JWK text WebCrypto imports.
#[derive(Clone, Debug)]
pub(crate) struct RecordTrust {
    pub(crate) signatures: Signatures,
    pub(crate) keys: std::collections::HashMap<String, String>,
}

/// The most record keys the edge takes at once: the current one, the next, and room to spare.
const MAX_RECORD_KEYS: usize = 4;

fn record_trust(signatures: Signatures, jwks: Option<&str>) -> Result<RecordTrust, ConfigError> {
    let bad = |problem: &str| ConfigError {
        setting: "KEYGATE_RECORD_KEYS",
        problem: problem.to_owned(),
    };
    let keys = match jwks {
        None if signatures == Signatures::Required => {
            return Err(bad(
                "is required (the public keys the control plane signs records with); \
                 KEYGATE_RECORD_SIGNATURES=log accepts unsigned records while a deployment moves",
            ));
        }
        None => Vec::new(),
        Some(text) => {
            serde_json::from_str::<Jwks>(text)
                .map_err(|_| bad("is not a JWKS {\"keys\": [...]}"))?
                .keys
        }
    };
    if keys.len() > MAX_RECORD_KEYS {
        return Err(bad("lists more than 4 keys"));
    }
    let mut by_kid = std::collections::HashMap::new();
    for key in keys {
        if !key.is_ed25519() {
            return Err(bad(
                "each key must be an Ed25519 JWK (kty OKP, crv Ed25519, x, kid)",
            ));
        }
        // `x` is base64url (checked above), so it needs no escaping; written by hand, because
        // serialising a `serde_json::Value` would cost the Worker 5 KB (float formatting).
        let jwk = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, key.x);
        if by_kid.insert(key.kid, jwk).is_some() {
            return Err(bad("lists a kid twice"));
        }
    }
    Ok(RecordTrust {
        signatures,
        keys: by_kid,
    })
}

/// How the edge signs the identity assertion it attaches for the origin. `Debug` shows the key's
/// id, never the key.
pub(crate) struct AssertionConfig {
    /// `KEYGATE_ASSERTION_KEY`: the private Ed25519 JWK (a Worker secret).
    pub(crate) jwk: SigningJwk,
    /// The same JWK as text, for WebCrypto's import (wiped on drop).
    pub(crate) jwk_json: zeroize::Zeroizing<String>,
    /// `KEYGATE_ASSERTION_ISSUER` (default `keygate`).
    pub(crate) issuer: String,
    /// `KEYGATE_ASSERTION_AUDIENCE` (default: `KEYGATE_ORIGIN`).
    pub(crate) audience: String,
    /// `KEYGATE_ASSERTION_TTL_SECONDS` (default 60).
    pub(crate) lifetime_seconds: i64,
    /// What `/.keygate/jwks.json` serves: `KEYGATE_ASSERTION_JWKS`, which must list the signing
    /// key (and may list the next or previous one during a rotation), or the signing key alone.
    pub(crate) jwks_json: String,
}

/// `KEYGATE_FEED_UNREACHABLE`: what a stale isolate does when the feed does not answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unreachable {
    /// Decide from KV and the isolate cache, as without a feed (the bound is then KV's).
    Kv,
    /// Answer 503 rather than risk a verdict older than the staleness limit.
    Closed,
}

/// How an isolate follows the feed.
#[derive(Clone, Debug)]
pub(crate) struct FeedSettings {
    pub(crate) poll_ms: i64,
    pub(crate) stale_ms: i64,
    pub(crate) timeout_ms: u64,
    pub(crate) retention_ms: i64,
    pub(crate) unreachable: Unreachable,
    /// How long isolates of one location share a read of the feed (0: each reads the object).
    pub(crate) share_ms: u64,
    /// The isolate cache's TTL while the feed cannot be heard.
    pub(crate) degraded_cache_ttl_ms: u64,
}

/// `KEYGATE_RATE_LIMIT_MODE`: `exact` (the default) asks the key's Durable Object for every
/// request; `fast` admits from this isolate's copy of the bucket and reports to the object in the
/// background (at most `fast_slack`, 1 % of the limit and at least 16, uncounted requests per
/// isolate; docs/edge.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitMode {
    Exact,
    Fast,
}

/// `KEYGATE_RATE_LIMIT_UNAVAILABLE`: `local` (the default) falls back to a bucket of the same limit
/// in this isolate (approximate: each isolate counts on its own, so the limit holds per isolate);
/// `closed` answers 503. Never unlimited. Keys without a limit are never affected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimiterUnavailable {
    Local,
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigError {
    pub(crate) setting: &'static str,
    pub(crate) problem: String,
}

impl fmt::Debug for AssertionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionConfig")
            .field("kid", &self.jwk.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetime_seconds", &self.lifetime_seconds)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting {}: {}", self.setting, self.problem)
    }
}

impl Config {
    /// Reads every setting through `var` (the Worker's vars in production, a map in tests).
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |setting: &'static str| {
            var(setting)
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| ConfigError {
                    setting,
                    problem: "is not set".into(),
                })
        };
        let invalid = |setting: &'static str, problem: String| ConfigError { setting, problem };
        let number = |setting: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
            let Some(text) = var(setting) else {
                return Ok(default);
            };
            text.trim()
                .parse::<u64>()
                .ok()
                .filter(|value| range.contains(value))
                .ok_or_else(|| {
                    invalid(
                        setting,
                        format!(
                            "{text:?} is not a whole number in {}..={}",
                            range.start(),
                            range.end()
                        ),
                    )
                })
        };

        let environment = required("KEYGATE_ENVIRONMENT")?;
        let environment = Environment::from_name(environment.trim()).ok_or_else(|| {
            invalid(
                "KEYGATE_ENVIRONMENT",
                format!("{environment:?} is not production, staging or development"),
            )
        })?;
        let prefix = required("KEYGATE_ISSUER_PREFIX")?;
        let format = KeyFormat::new(prefix.trim())
            .map_err(|error| invalid("KEYGATE_ISSUER_PREFIX", error.to_string()))?;
        let origin_text = required("KEYGATE_ORIGIN")?;
        let origin = origin_url(origin_text.trim()).ok_or_else(|| {
            invalid(
                "KEYGATE_ORIGIN",
                format!("{origin_text:?} is not an http(s) URL without a query"),
            )
        })?;
        // A shared secret of at least 32 characters, kept only as its digest.
        let secret = |setting: &'static str| match var(setting) {
            None => Ok(None),
            Some(secret) if secret.len() >= 32 => Ok(Some(Digest::of_key(&secret))),
            Some(_) => Err(invalid(setting, "must be at least 32 characters".into())),
        };
        let choice = |setting: &'static str, choices: &[&'static str]| {
            let value = var(setting);
            let value = value.as_deref().map_or(choices[0], str::trim);
            choices
                .iter()
                .position(|choice| *choice == value)
                .ok_or_else(|| {
                    invalid(
                        setting,
                        format!("{value:?} is not {}", choices.join(" or ")),
                    )
                })
        };
        let case = match choice("KEYGATE_PATH_CASE", &["sensitive", "insensitive"])? {
            0 => PathCase::Sensitive,
            _ => PathCase::Insensitive,
        };
        let routes = RouteTable::parse(&required("KEYGATE_ROUTES")?, case)
            .map_err(|problem| invalid("KEYGATE_ROUTES", problem))?;
        let verify_path = var("KEYGATE_VERIFY_PATH").unwrap_or_else(|| "/.keygate/verify".into());
        if !verify_path.starts_with('/') || verify_path.len() < 2 {
            return Err(invalid(
                "KEYGATE_VERIFY_PATH",
                format!("{verify_path:?} must be a path such as /.keygate/verify"),
            ));
        }
        let rate_limit_unavailable =
            match choice("KEYGATE_RATE_LIMIT_UNAVAILABLE", &["local", "closed"])? {
                0 => LimiterUnavailable::Local,
                _ => LimiterUnavailable::Closed,
            };
        let rate_limit_mode = match choice("KEYGATE_RATE_LIMIT_MODE", &["exact", "fast"])? {
            0 => LimitMode::Exact,
            _ => LimitMode::Fast,
        };
        let verify_secret = secret("KEYGATE_VERIFY_SECRET")?;
        let assertion = match choice("KEYGATE_ASSERTION", &["required", "off"])? {
            0 => {
                let jwk_json = required("KEYGATE_ASSERTION_KEY")?;
                let jwk = SigningJwk::parse(&jwk_json)
                    .map_err(|problem| invalid("KEYGATE_ASSERTION_KEY", problem))?;
                let jwks_json = match var("KEYGATE_ASSERTION_JWKS") {
                    None => serde_json::to_string(&Jwks {
                        keys: vec![jwk.public()],
                    })
                    .map_err(|error| invalid("KEYGATE_ASSERTION_KEY", error.to_string()))?,
                    Some(text) => {
                        let jwks: Jwks = serde_json::from_str(&text).map_err(|_| {
                            invalid(
                                "KEYGATE_ASSERTION_JWKS",
                                "is not a JWKS {\"keys\": [...]}".into(),
                            )
                        })?;
                        if !jwks.keys.contains(&jwk.public()) || jwks.keys.len() > 4 {
                            return Err(invalid(
                                "KEYGATE_ASSERTION_JWKS",
                                "must list the signing key's public JWK, and at most 4 keys".into(),
                            ));
                        }
                        text
                    }
                };
                Some(AssertionConfig {
                    jwk,
                    jwk_json: zeroize::Zeroizing::new(jwk_json),
                    issuer: var("KEYGATE_ASSERTION_ISSUER").unwrap_or_else(|| "keygate".into()),
                    audience: var("KEYGATE_ASSERTION_AUDIENCE")
                        .unwrap_or_else(|| origin_text.trim().to_owned()),
                    lifetime_seconds: number("KEYGATE_ASSERTION_TTL_SECONDS", 60, 10..=3_600)?
                        as i64,
                    jwks_json,
                })
            }
            _ => None,
        };
        let signatures = match choice("KEYGATE_RECORD_SIGNATURES", &["required", "log"])? {
            0 => Signatures::Required,
            _ => Signatures::Log,
        };
        let records = record_trust(signatures, var("KEYGATE_RECORD_KEYS").as_deref())?;
        let feed = match choice("KEYGATE_FEED", &["off", "on"])? {
            0 => None,
            _ => Some(FeedSettings {
                poll_ms: number("KEYGATE_FEED_POLL_MS", 1_000, 100..=60_000)? as i64,
                stale_ms: number("KEYGATE_FEED_STALE_MS", 3_000, 200..=600_000)? as i64,
                timeout_ms: number("KEYGATE_FEED_TIMEOUT_MS", 1_000, 50..=10_000)?,
                retention_ms: number(
                    "KEYGATE_FEED_RETENTION_SECONDS",
                    crate::feed::DEFAULT_RETENTION_SECONDS,
                    60..=86_400,
                )? as i64
                    * 1_000,
                unreachable: match choice("KEYGATE_FEED_UNREACHABLE", &["kv", "closed"])? {
                    0 => Unreachable::Kv,
                    _ => Unreachable::Closed,
                },
                share_ms: number("KEYGATE_FEED_SHARE_MS", 500, 0..=10_000)?,
                degraded_cache_ttl_ms: number(
                    "KEYGATE_FEED_DEGRADED_CACHE_TTL_MS",
                    1_000,
                    0..=600_000,
                )?,
            }),
        };
        let feed_token = secret("KEYGATE_FEED_TOKEN")?;
        Ok(Self {
            feed,
            feed_token,
            assertion,
            records,
            verify_secret,
            verifier: Verifier::new(format, environment),
            rate_limit_unavailable,
            rate_limit_mode,
            origin,
            routes,
            verify_path,
            kv_cache_ttl: number(
                "KEYGATE_KV_CACHE_TTL_SECONDS",
                60,
                MIN_KV_CACHE_TTL..=86_400,
            )?,
            cache_ttl_ms: number("KEYGATE_CACHE_TTL_MS", 5_000, 0..=300_000)?,
            cache_capacity: number("KEYGATE_CACHE_CAPACITY", 10_000, 1..=1_000_000)? as usize,
        })
    }
}

/// The origin as requests are appended to it: `http(s)://host[:port][/base]`, with no user info,
/// query or fragment, and no trailing `/`. Checked by hand, not with a URL parser: the Worker
/// would carry a URL crate and its Unicode tables for this one check.
fn origin_url(text: &str) -> Option<String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rfind(']') {
        // An IPv6 literal: its colons are not a port's.
        Some(end) => match authority[end + 1..].strip_prefix(':') {
            Some(port) => (&authority[..=end], port),
            None if end + 1 == authority.len() => (authority, ""),
            None => return None,
        },
        None => authority.rsplit_once(':').unwrap_or((authority, "")),
    };
    let host_ok = !host.is_empty()
        && (host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            || host.starts_with('[') && host.ends_with(']'));
    let port_ok = port.is_empty() && !authority.ends_with(':')
        || (port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty());
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'\\'));
    (host_ok && port_ok && path_ok).then(|| text.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The private JWK of origin/tests/vector.json (a test key, secret bytes all 7).
    const JWK: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw","d":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc","kid":"kg-2026-11"}"#;

    /// Record keys: the public half of JWK, and a second key during a rotation.
    const RECORD_KEYS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw","kid":"rec-1"},{"kty":"OKP","crv":"Ed25519","x":"6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw","kid":"rec-2"}]}"#;

    fn vars(overrides: &[(&str, Option<&str>)]) -> Result<Config, ConfigError> {
        let mut vars: HashMap<&str, Option<&str>> = HashMap::from([
            ("KEYGATE_ASSERTION_KEY", Some(JWK)),
            ("KEYGATE_RECORD_KEYS", Some(RECORD_KEYS)),
            ("KEYGATE_ENVIRONMENT", Some("production")),
            ("KEYGATE_ISSUER_PREFIX", Some("kg")),
            ("KEYGATE_ORIGIN", Some("https://api.example.com/base")),
            (
                "KEYGATE_ROUTES",
                Some(r#"[{"method": "*", "path": "/*", "any_key": true}]"#),
            ),
        ]);
        vars.extend(overrides.iter().copied());
        Config::from_vars(|name| vars.get(name).copied().flatten().map(str::to_owned))
    }

    #[test]
    fn defaults_apply_when_optional_settings_are_absent() {
        let config = vars(&[]).unwrap();
        assert_eq!(config.verifier.environment(), Environment::Production);
        assert_eq!(config.verifier.format().prefix(), "kg");
        assert_eq!(config.origin, "https://api.example.com/base");
        assert_eq!(config.verify_path, "/.keygate/verify");
        assert_eq!(
            (
                config.kv_cache_ttl,
                config.cache_ttl_ms,
                config.cache_capacity
            ),
            (60, 5_000, 10_000)
        );
        assert_eq!(config.rate_limit_unavailable, LimiterUnavailable::Local);
        assert_eq!(config.rate_limit_mode, LimitMode::Exact);
        let assertion = config.assertion.as_ref().expect("required by default");
        assert_eq!(
            (
                assertion.issuer.as_str(),
                assertion.audience.as_str(),
                assertion.lifetime_seconds
            ),
            ("keygate", "https://api.example.com/base", 60)
        );
        assert!(assertion.jwks_json.contains("\"kid\":\"kg-2026-11\""));
        assert!(!assertion.jwks_json.contains("\"d\""), "the JWKS is public");
        assert!(
            !format!("{assertion:?}").contains("BwcHBwcH"),
            "Debug hides the key"
        );
        let off = vars(&[
            ("KEYGATE_ASSERTION", Some("off")),
            ("KEYGATE_ASSERTION_KEY", None),
        ]);
        assert!(off.unwrap().assertion.is_none());
        let closed = vars(&[("KEYGATE_RATE_LIMIT_UNAVAILABLE", Some("closed"))]).unwrap();
        assert_eq!(closed.rate_limit_unavailable, LimiterUnavailable::Closed);
        let fast = vars(&[("KEYGATE_RATE_LIMIT_MODE", Some("fast"))]).unwrap();
        assert_eq!(fast.rate_limit_mode, LimitMode::Fast);
        // Records: signatures required by default, checked against every listed key.
        assert_eq!(config.records.signatures, Signatures::Required);
        let mut kids: Vec<&str> = config.records.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["rec-1", "rec-2"]);
        let rollout = vars(&[
            ("KEYGATE_RECORD_SIGNATURES", Some("log")),
            ("KEYGATE_RECORD_KEYS", None),
        ])
        .unwrap();
        assert_eq!(rollout.records.signatures, Signatures::Log);
        assert!(rollout.records.keys.is_empty());
    }

    #[test]
    fn origins_are_http_urls_without_query_or_user_info() {
        for (text, origin) in [
            ("https://api.example.com", "https://api.example.com"),
            ("https://api.example.com/", "https://api.example.com"),
            ("http://127.0.0.1:8789", "http://127.0.0.1:8789"),
            (
                "https://api.example.com/base/",
                "https://api.example.com/base",
            ),
            ("http://[::1]:8080/x", "http://[::1]:8080/x"),
            ("http://[::1]/x", "http://[::1]/x"),
        ] {
            assert_eq!(origin_url(text).as_deref(), Some(origin), "{text}");
        }
        for text in [
            "ftp://x",
            "https://",
            "https://x/?a=b",
            "https://x#f",
            "https://user@x",
            "https://x:port",
            "https://x:",
            "not a url",
            "https://x y",
        ] {
            assert_eq!(origin_url(text), None, "{text}");
        }
    }

    #[test]
    fn every_bad_setting_is_named() {
        let other_key = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"x"}]}"#;
        let twice = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw","kid":"a"},{"kty":"OKP","crv":"Ed25519","x":"6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw","kid":"a"}]}"#;
        let cases: [(&str, Option<&str>); 28] = [
            ("KEYGATE_ENVIRONMENT", None),
            ("KEYGATE_ENVIRONMENT", Some("prod")),
            ("KEYGATE_ISSUER_PREFIX", Some("K_G")),
            ("KEYGATE_ORIGIN", Some("ftp://x")),
            ("KEYGATE_ORIGIN", Some("https://x/?a=b")),
            ("KEYGATE_ORIGIN", Some("not a url")),
            ("KEYGATE_ROUTES", Some("[")),
            ("KEYGATE_ROUTES", Some("  ")),
            ("KEYGATE_VERIFY_PATH", Some("verify")),
            ("KEYGATE_KV_CACHE_TTL_SECONDS", Some("10")),
            ("KEYGATE_CACHE_TTL_MS", Some("-1")),
            ("KEYGATE_CACHE_CAPACITY", Some("0")),
            ("KEYGATE_RATE_LIMIT_UNAVAILABLE", Some("fail")),
            ("KEYGATE_RATE_LIMIT_UNAVAILABLE", Some("open")),
            ("KEYGATE_RATE_LIMIT_MODE", Some("approximate")),
            ("KEYGATE_PATH_CASE", Some("lower")),
            ("KEYGATE_VERIFY_SECRET", Some("short")),
            ("KEYGATE_ASSERTION_KEY", None),
            ("KEYGATE_ASSERTION_KEY", Some(r#"{"kty":"RSA"}"#)),
            ("KEYGATE_ASSERTION_JWKS", Some(other_key)),
            ("KEYGATE_ASSERTION_TTL_SECONDS", Some("5")),
            ("KEYGATE_ASSERTION", Some("maybe")),
            ("KEYGATE_ROUTES", Some(r#"[{"method": "*", "path": "/*"}]"#)),
            ("KEYGATE_RECORD_KEYS", None),
            ("KEYGATE_RECORD_KEYS", Some("[]")),
            ("KEYGATE_RECORD_KEYS", Some(other_key)),
            ("KEYGATE_RECORD_KEYS", Some(twice)),
            ("KEYGATE_RECORD_SIGNATURES", Some("off")),
        ];
        for (setting, value) in cases {
            let error = vars(&[(setting, value)]).unwrap_err();
            assert_eq!(error.setting, setting, "{value:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("setting {setting}: "))
            );
        }
    }
}
