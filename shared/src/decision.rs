//! The verification decision, in the order docs/keys.md ("The decision") gives, split where I/O
//! happens. It is one sequence for every caller (the edge's gateway and verify modes, the control
//! plane's `POST /v1/verify` and its token check, the tests):
//!
//! 1. [`Verifier::identify`] decides everything knowable from the credential alone (steps 1-2, no
//!    lookup) and gives the [`Candidate`] to look up, or an early [`Denial`];
//! 2. the caller fetches the record for [`Candidate::key_id`] (KV, a cache, the database);
//! 3. [`Candidate::decide`] does the rest (steps 3-6) against the record, the [`Request`] and its
//!    `now`.
//!
//! Rate limiting (step 7) is the caller's, since it needs shared state; its denial is
//! [`Denial::RateLimited`] so it answers like every other. [`Verifier::verify`] runs all three for
//! callers whose lookup is synchronous.

use std::borrow::Cow;
use std::net::IpAddr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::digest::Digest;
use crate::environment::Environment;
use crate::key::{KeyError, KeyFormat, KeyId, MAX_KEY_LEN, ParsedKey};
use crate::permission::{Grants, Permission};
use crate::record::{
    CustomerId, KeyRecord, OwnerId, RateLimit, RecordState, SnapshotRecord, Status, UnixSeconds,
};
use crate::usage::Outcome;

/// Why a request is refused. Internally precise; publicly, [`Denial::code`] folds the reasons that
/// must not be told apart (an unknown key and a wrong secret) into one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    MissingCredential,
    Malformed(KeyError),
    WrongEnvironment {
        presented: Environment,
    },
    UnknownKey,
    SecretMismatch,
    Revoked,
    Disabled,
    Expired,
    NotYetValid,
    IpNotAllowed,
    CustomerMismatch,
    /// A customer-scoped key where no customer is named (and the route does not serve such keys).
    CustomerRequired,
    InsufficientPermissions {
        required: Permission,
    },
    RateLimited {
        retry_after_seconds: u32,
    },
}

impl Denial {
    pub fn status(&self) -> u16 {
        match self {
            Self::IpNotAllowed
            | Self::CustomerMismatch
            | Self::CustomerRequired
            | Self::InsufficientPermissions { .. } => 403,
            Self::RateLimited { .. } => 429,
            _ => 401,
        }
    }

    /// The precise reason, for operators' logs and metrics only (never sent to the caller).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredential => "missing_credential",
            Self::Malformed(_) => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::SecretMismatch => "secret_mismatch",
            other => other.code(),
        }
    }

    /// The public, stable error code. A denial after the secret matched answers with the name of
    /// its usage outcome, so the log and the caller always agree.
    pub fn code(&self) -> &'static str {
        match (self, self.usage_outcome()) {
            (Self::WrongEnvironment { .. }, _) => "wrong_environment",
            (_, Some(outcome)) => outcome.as_str(),
            (_, None) => "invalid_key",
        }
    }

    /// The public message. Says nothing a caller without the secret could not already know.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Self::MissingCredential => Cow::Borrowed(
                "An API key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            ),
            Self::Malformed(_) | Self::UnknownKey | Self::SecretMismatch => {
                Cow::Borrowed("The API key is not valid.")
            }
            Self::WrongEnvironment { presented } => Cow::Owned(format!(
                "This API key belongs to the {presented} environment and cannot be used here."
            )),
            Self::Revoked => Cow::Borrowed("This API key has been revoked."),
            Self::Disabled => Cow::Borrowed("This API key is disabled."),
            Self::Expired => Cow::Borrowed("This API key has expired."),
            Self::NotYetValid => Cow::Borrowed("This API key is not valid yet."),
            Self::IpNotAllowed => {
                Cow::Borrowed("This API key may not be used from this IP address.")
            }
            Self::CustomerMismatch => Cow::Borrowed("This API key may not act for this customer."),
            Self::CustomerRequired => Cow::Borrowed(
                "This API key is scoped to a customer and may only be used where one is named.",
            ),
            Self::InsufficientPermissions { required } => {
                Cow::Owned(format!("This API key lacks the permission {required}."))
            }
            Self::RateLimited {
                retry_after_seconds,
            } => Cow::Owned(format!(
                "Rate limit exceeded; retry after {retry_after_seconds} seconds."
            )),
        }
    }

    /// How the usage log records this denial under the key's id, or `None` for denials that come
    /// before the secret matched: an unknown key or a wrong secret is never logged under a key id
    /// someone merely typed.
    pub fn usage_outcome(&self) -> Option<Outcome> {
        Some(match self {
            Self::MissingCredential
            | Self::Malformed(_)
            | Self::WrongEnvironment { .. }
            | Self::UnknownKey
            | Self::SecretMismatch => return None,
            Self::Revoked => Outcome::Revoked,
            Self::Disabled => Outcome::Disabled,
            Self::Expired => Outcome::Expired,
            Self::NotYetValid => Outcome::NotYetValid,
            Self::IpNotAllowed => Outcome::IpNotAllowed,
            Self::CustomerMismatch => Outcome::CustomerMismatch,
            Self::CustomerRequired => Outcome::CustomerRequired,
            Self::InsufficientPermissions { .. } => Outcome::InsufficientPermissions,
            Self::RateLimited { .. } => Outcome::RateLimited,
        })
    }

    /// The permission whose absence caused the denial, if that was the cause.
    pub fn required_permission(&self) -> Option<&Permission> {
        match self {
            Self::InsufficientPermissions { required } => Some(required),
            _ => None,
        }
    }

    /// The JSON error body both the edge and the control plane answer with.
    pub fn to_body<'a>(&'a self, request_id: &'a str) -> ErrorBody<'a> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.message(),
                request_id,
                required_permission: self.required_permission(),
            },
        }
    }
}

/// `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: Cow<'a, str>,
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_permission: Option<&'a Permission>,
}

impl<'a> ErrorBody<'a> {
    pub fn new(code: &'a str, message: impl Into<Cow<'a, str>>, request_id: &'a str) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
                request_id,
                required_permission: None,
            },
        }
    }
}

/// Who the caller is, once allowed. Borrowed from the record: building it allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity<'r> {
    pub key_id: KeyId,
    pub environment: Environment,
    pub owner_id: &'r OwnerId,
    pub customer_id: Option<&'r CustomerId>,
    /// What the key holds, wildcards included.
    pub permissions: &'r Grants,
    pub expires_at: Option<UnixSeconds>,
    pub rate_limit: Option<RateLimit>,
    /// The key matched the secret a regeneration replaced, still inside its grace period.
    pub previous_secret: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'r> {
    Allowed(Identity<'r>),
    Denied(Denial),
}

impl Decision<'_> {
    /// The answer to a verification request: the same shape from the edge's verify mode and the
    /// control plane's `POST /v1/verify`.
    pub fn to_verify_response(&self) -> VerifyResponse<'_> {
        match self {
            Decision::Allowed(identity) => VerifyResponse {
                valid: true,
                code: "ok",
                message: None,
                required_permission: None,
                identity: Some(identity.clone()),
            },
            Decision::Denied(denial) => VerifyResponse {
                valid: false,
                code: denial.code(),
                message: Some(denial.message()),
                required_permission: denial.required_permission(),
                identity: None,
            },
        }
    }
}

/// A verification request: a key and what the caller wants to do with it.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The key to check, as the client sent it. Wiped from memory when the request is dropped.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: Zeroizing<String>,
    /// Permissions the request needs; all must be granted.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::permission_list))]
    pub permissions: Vec<Permission>,
    /// The customer the request acts for, if it is customer-scoped.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// The client's address, checked against the key's allowlist.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_ip_address))]
    pub client_ip: Option<IpAddr>,
    /// The environment the key must belong to; defaults to the verifier's own.
    #[serde(default)]
    pub environment: Option<Environment>,
}

/// `{"valid": true, "code": "ok", "key_id": ..., "owner_id": ..., "permissions": [...], ...}` or
/// `{"valid": false, "code": "revoked", "message": "..."}`.
#[derive(Debug, Serialize)]
pub struct VerifyResponse<'r> {
    pub valid: bool,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_permission: Option<&'r Permission>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity<'r>>,
}

/// What the request asks for, beyond the key.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub now: UnixSeconds,
    pub client_ip: Option<IpAddr>,
    pub required: &'a [Permission],
    /// The customer the request acts for (e.g. from the path), if the route is customer-scoped.
    pub customer_id: Option<&'a str>,
    /// With no `customer_id`: the route serves customer-scoped keys anyway (it says so). Without
    /// this, a customer-scoped key is refused where no customer is named: its scope fails closed.
    pub customer_keys: bool,
}

impl Request<'_> {
    /// A request at `now` that needs no permission, customer or address: only a live key.
    pub fn at(now: UnixSeconds) -> Self {
        Self {
            now,
            client_ip: None,
            required: &[],
            customer_id: None,
            customer_keys: false,
        }
    }
}

/// A credential as it came off the wire: borrowed from a header, or rebuilt from Basic auth (then
/// owned, and wiped when dropped).
#[derive(Clone)]
struct Presented<'a>(Cow<'a, str>);

impl Presented<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for Presented<'_> {
    fn drop(&mut self) {
        if let Cow::Owned(text) = &mut self.0 {
            zeroize::Zeroize::zeroize(text);
        }
    }
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presented(..)")
    }
}

enum Scheme {
    Bearer,
    Basic,
}

/// The keygate scheme of an `Authorization` value and its trimmed credential.
fn key_scheme(authorization: &str) -> Option<(Scheme, &str)> {
    let (scheme, credential) = authorization.trim().split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("basic") {
        Scheme::Basic
    } else {
        return None;
    };
    Some((scheme, credential.trim()))
}

/// One deployment's view of keys: whose prefix, which environment.
#[derive(Clone, Debug)]
pub struct Verifier {
    format: KeyFormat,
    environment: Environment,
}

impl Verifier {
    pub fn new(format: KeyFormat, environment: Environment) -> Self {
        Self {
            format,
            environment,
        }
    }

    pub fn format(&self) -> &KeyFormat {
        &self.format
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// Whether an `Authorization` value carries a keygate key (`Bearer` or `Basic`) rather than
    /// a scheme of the origin's own; when it does not, the key is looked for in `X-API-Key`.
    pub fn carries_key(authorization: &str) -> bool {
        key_scheme(authorization).is_some()
    }

    /// Finds the key in the request's headers: `Authorization: Bearer <key>`,
    /// `Authorization: Basic base64(<key id>:<secret>)`, or `X-API-Key: <key>`. Any other
    /// `Authorization` scheme is left to the origin, and `X-API-Key` is used instead.
    fn credential<'a>(
        &self,
        authorization: Option<&'a str>,
        x_api_key: Option<&'a str>,
    ) -> Result<Presented<'a>, Denial> {
        let presented = match authorization.and_then(key_scheme) {
            Some((Scheme::Bearer, token)) => Presented(Cow::Borrowed(token)),
            Some((Scheme::Basic, encoded)) => self.basic_credential(encoded)?,
            None => match x_api_key.map(str::trim) {
                Some(key) => Presented(Cow::Borrowed(key)),
                None => return Err(Denial::MissingCredential),
            },
        };
        if presented.as_str().is_empty() {
            return Err(Denial::MissingCredential);
        }
        Ok(presented)
    }

    /// Basic auth carries `<key id>:<secret>`: the user is the key id (bare, or with its
    /// `prefix_env_` head as listings show it), the password the rest of the key. Rebuilt into the
    /// one key string, so the checksum and digest apply exactly as for a bearer key.
    fn basic_credential<'a>(&self, encoded: &str) -> Result<Presented<'a>, Denial> {
        if encoded.len() > (MAX_KEY_LEN + 1).div_ceil(3) * 4 {
            return Err(Denial::Malformed(KeyError::TooLong));
        }
        let malformed = || Denial::Malformed(KeyError::BasicAuth);
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| malformed())?,
        );
        let text = std::str::from_utf8(&decoded).map_err(|_| malformed())?;
        let (user, secret) = text.split_once(':').ok_or_else(malformed)?;
        let mut key = String::with_capacity(MAX_KEY_LEN + 2);
        if !user.contains('_') {
            key.push_str(self.format.prefix());
            key.push('_');
            key.push_str(self.environment.tag());
            key.push('_');
        }
        key.push_str(user);
        key.push('_');
        key.push_str(secret);
        Ok(Presented(Cow::Owned(key)))
    }

    /// Steps 1-2 of the decision, before any lookup: the request carries a key of this issuer,
    /// intact, for this environment. `authorization` and `x_api_key` are the two headers' values
    /// (see [`Verifier::carries_key`] for which one is used).
    pub fn identify(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
    ) -> Result<Candidate, Denial> {
        let presented = self.credential(authorization, x_api_key)?;
        let key = self
            .format
            .parse(presented.as_str())
            .map_err(Denial::Malformed)?;
        if key.environment() != self.environment {
            return Err(Denial::WrongEnvironment {
                presented: key.environment(),
            });
        }
        Ok(Candidate::from(&key))
    }

    /// [`Verifier::identify`] for a key given on its own (a verify request's `key` field).
    pub fn identify_key(&self, key: &str) -> Result<Candidate, Denial> {
        self.identify(None, Some(key))
    }

    /// The whole sequence, for callers whose lookup does no I/O (tests, benchmarks, vectors).
    pub fn verify<'r>(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
        lookup: impl FnOnce(KeyId) -> Option<&'r SnapshotRecord>,
        request: &Request<'_>,
    ) -> Decision<'r> {
        match self.identify(authorization, x_api_key) {
            Ok(candidate) => candidate.decide(lookup(candidate.key_id()), request),
            Err(denial) => Decision::Denied(denial),
        }
    }
}

/// A credential this deployment could have issued (steps 1-2 passed): the key id to look up and
/// the digest of the whole key string. The string itself is not kept, so nothing downstream can
/// log or forward it. The digest is computed here, before any lookup, so an unknown key and a
/// wrong secret cost the same.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    key_id: KeyId,
    environment: Environment,
    digest: Digest,
}

impl From<&ParsedKey<'_>> for Candidate {
    fn from(key: &ParsedKey<'_>) -> Self {
        Self {
            key_id: key.key_id(),
            environment: key.environment(),
            digest: key.digest(),
        }
    }
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("key_id", &self.key_id)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

impl Candidate {
    /// The id to look the record up by.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The digest of the whole key string, to compare (in constant time) with a stored one.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Steps 3-6: the record found for [`Candidate::key_id`] (or none) against the request.
    pub fn decide<'r>(
        &self,
        record: Option<&'r SnapshotRecord>,
        request: &Request<'_>,
    ) -> Decision<'r> {
        match self.authenticate(record, request.now) {
            Ok((stored, previous_secret)) => self.authorize(stored, previous_secret, request),
            Err(denial) => Decision::Denied(denial),
        }
    }

    /// Step 3: the record is this key's and the secret matches.
    fn authenticate<'r>(
        &self,
        record: Option<&'r SnapshotRecord>,
        now: UnixSeconds,
    ) -> Result<(&'r KeyRecord, bool), Denial> {
        let digest = self.digest;
        let stored = match record {
            Some(SnapshotRecord {
                key_id,
                state: RecordState::Present(stored),
                ..
            }) if *key_id == self.key_id && stored.environment == self.environment => stored,
            _ => return Err(Denial::UnknownKey),
        };
        let current = stored.digest == digest;
        let previous = stored
            .previous
            .as_ref()
            .is_some_and(|previous| previous.digest == digest && previous.accepted_at(now));
        if current || previous {
            Ok((stored, !current))
        } else {
            Err(Denial::SecretMismatch)
        }
    }

    /// Steps 4-6, only ever reached with a matching secret.
    fn authorize<'r>(
        &self,
        stored: &'r KeyRecord,
        previous_secret: bool,
        request: &Request<'_>,
    ) -> Decision<'r> {
        let denial = match stored.status {
            Status::Revoked => Some(Denial::Revoked),
            Status::Disabled => Some(Denial::Disabled),
            Status::Active if stored.is_expired(request.now) => Some(Denial::Expired),
            Status::Active if stored.not_before.is_some_and(|at| request.now < at) => {
                Some(Denial::NotYetValid)
            }
            Status::Active if !stored.ip_allowlist.permits(request.client_ip) => {
                Some(Denial::IpNotAllowed)
            }
            Status::Active => match (&stored.customer_id, request.customer_id) {
                (Some(own), Some(asked)) if own.as_str() != asked => Some(Denial::CustomerMismatch),
                (Some(_), None) if !request.customer_keys => Some(Denial::CustomerRequired),
                _ => stored
                    .permissions
                    .first_missing(request.required)
                    .map(|required| Denial::InsufficientPermissions {
                        required: required.clone(),
                    }),
            },
        };
        match denial {
            Some(denial) => Decision::Denied(denial),
            None => Decision::Allowed(Identity {
                key_id: self.key_id,
                environment: stored.environment,
                owner_id: &stored.owner_id,
                customer_id: stored.customer_id.as_ref(),
                permissions: &stored.permissions,
                expires_at: stored.expires_at,
                rate_limit: stored.rate_limit,
                previous_secret,
            }),
        }
    }
}
