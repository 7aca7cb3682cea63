//! The key string: `<prefix>_<env>_<key id>_<secret><checksum>`, e.g.
//! `kg_live_4fJ0tq8HvQmZ2cL9sWbN1e_<43 secret chars><6 checksum chars>`.

use std::fmt;

use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::base62;
use crate::digest::Digest;
use crate::environment::Environment;

/// Base62 characters in a key id: 22 * log2(62) = 131 bits of randomness.
pub const KEY_ID_LEN: usize = 22;
/// Base62 characters in a secret: 43 * log2(62) = 256 bits of randomness.
pub const SECRET_LEN: usize = 43;
pub const CHECKSUM_LEN: usize = base62::U32_WIDTH;
pub const MAX_PREFIX_LEN: usize = 16;
/// No valid key is longer; anything longer is refused before it is looked at.
pub const MAX_KEY_LEN: usize =
    MAX_PREFIX_LEN + 1 + 4 + 1 + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

/// The part of a key a failure was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    KeyId,
    Secret,
    Checksum,
}

/// Every way a string can fail to be a key of this issuer. Plain data, so tests compare it exactly.
/// None of them says anything about the secret's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is longer than any valid key")]
    TooLong,
    #[error("the key does not start with this issuer's prefix")]
    WrongPrefix,
    #[error("the key's environment tag is not live, test or dev")]
    UnknownEnvironment,
    #[error("the key ends inside its {field:?}")]
    Truncated { field: KeyField },
    #[error("the key's {field:?} has a character outside 0-9, A-Z, a-z")]
    InvalidCharacter { field: KeyField },
    #[error("the key lacks the '_' after its {after:?}")]
    MissingSeparator { after: KeyField },
    #[error("the key has data after its checksum")]
    TrailingData,
    #[error("the key's checksum does not match (a typo or a forged key)")]
    ChecksumMismatch,
    #[error("the Basic credential is not base64 of '<key id>:<secret>'")]
    BasicAuth,
}

/// An issuer prefix that is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "issuer prefix must be 2 to {MAX_PREFIX_LEN} characters: a lowercase letter, then lowercase letters or digits"
)]
pub struct PrefixError;

/// The public, random identifier of a key: the KV lookup key and what listings and logs show.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes: [u8; KEY_ID_LEN] =
            text.as_bytes()
                .try_into()
                .map_err(|_| KeyError::Truncated {
                    field: KeyField::KeyId,
                })?;
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> Result<Self, KeyError> {
        if base62::all_base62(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(KeyError::InvalidCharacter {
                field: KeyField::KeyId,
            })
        }
    }

    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; KEY_ID_LEN];
        base62::fill_random(rng, &mut bytes);
        Self(bytes)
    }

    pub fn as_str(&self) -> &str {
        // Only constructed from base62 bytes, which are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

impl std::str::FromStr for KeyId {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        Self::parse(text)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        Self::parse(text).map_err(serde::de::Error::custom)
    }
}

/// The key format of one issuer: its prefix tells secret scanners, humans and edges whose key it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
}

impl KeyFormat {
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        let bytes = prefix.as_bytes();
        let valid = (2..=MAX_PREFIX_LEN).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(PrefixError)
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A new key with a new key id.
    pub fn generate<R: CryptoRng + ?Sized>(&self, environment: Environment, rng: &mut R) -> ApiKey {
        self.regenerate(environment, KeyId::generate(rng), rng)
    }

    /// A new secret for an existing key id (regeneration keeps the id, so listings stay stable).
    pub fn regenerate<R: CryptoRng + ?Sized>(
        &self,
        environment: Environment,
        key_id: KeyId,
        rng: &mut R,
    ) -> ApiKey {
        let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_LEN));
        text.push_str(&self.prefix);
        text.push('_');
        text.push_str(environment.tag());
        text.push('_');
        text.push_str(key_id.as_str());
        text.push('_');
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        base62::fill_random(rng, secret.as_mut_slice());
        secret.iter().for_each(|&b| text.push(char::from(b)));
        let checksum = base62::encode_u32(crc32fast::hash(text.as_bytes()));
        checksum.iter().for_each(|&b| text.push(char::from(b)));
        ApiKey {
            text,
            key_id,
            environment,
        }
    }

    /// Parses `input` as a key of this issuer, checking its checksum. Touches no storage.
    pub fn parse<'a>(&self, input: &'a str) -> Result<ParsedKey<'a>, KeyError> {
        let bytes = input.as_bytes();
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        let mut cursor = Cursor { rest: bytes };
        if !cursor.eat(self.prefix.as_bytes()) || !cursor.eat(b"_") {
            return Err(KeyError::WrongPrefix);
        }
        let environment = match cursor.take_until(b'_') {
            Some(b"live") => Environment::Production,
            Some(b"test") => Environment::Staging,
            Some(b"dev") => Environment::Development,
            _ => return Err(KeyError::UnknownEnvironment),
        };
        let key_id = KeyId::from_bytes(cursor.take_array(KeyField::KeyId)?)?;
        if !cursor.eat(b"_") {
            return Err(KeyError::MissingSeparator {
                after: KeyField::KeyId,
            });
        }
        let secret: [u8; SECRET_LEN] = cursor.take_array(KeyField::Secret)?;
        if !base62::all_base62(&secret) {
            return Err(KeyError::InvalidCharacter {
                field: KeyField::Secret,
            });
        }
        let checksum: [u8; CHECKSUM_LEN] = cursor.take_array(KeyField::Checksum)?;
        if !cursor.rest.is_empty() {
            return Err(KeyError::TrailingData);
        }
        let expected = crc32fast::hash(&bytes[..bytes.len() - CHECKSUM_LEN]);
        match base62::decode_u32(&checksum) {
            Some(found) if found == expected => Ok(ParsedKey {
                text: input,
                key_id,
                environment,
            }),
            Some(_) => Err(KeyError::ChecksumMismatch),
            None => Err(KeyError::InvalidCharacter {
                field: KeyField::Checksum,
            }),
        }
    }
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, expected: &[u8]) -> bool {
        match self.rest.strip_prefix(expected) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// The bytes before the next `separator`, consuming both; `None` if there is no separator.
    fn take_until(&mut self, separator: u8) -> Option<&'a [u8]> {
        let at = self.rest.iter().position(|&b| b == separator)?;
        let (head, tail) = self.rest.split_at(at);
        self.rest = &tail[1..];
        Some(head)
    }

    fn take_array<const N: usize>(&mut self, field: KeyField) -> Result<[u8; N], KeyError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(KeyError::Truncated { field })?;
        self.rest = tail;
        Ok(*head)
    }
}

/// A freshly generated key. The full string exists only here, to be shown once; it is wiped on drop
/// and never printed by `Debug`.
pub struct ApiKey {
    text: Zeroizing<String>,
    key_id: KeyId,
    environment: Environment,
}

impl ApiKey {
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn digest(&self) -> Digest {
        Digest::of_key(&self.text)
    }

    /// The whole key, for the single response or file that hands it to its owner.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key_id", &self.key_id)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

/// A syntactically valid key with a correct checksum, borrowed from the request. Whether it is a
/// real key is only known after its digest is compared with a record.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    text: &'a str,
    key_id: KeyId,
    environment: Environment,
}

impl ParsedKey<'_> {
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn digest(&self) -> Digest {
        Digest::of_key(self.text)
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("key_id", &self.key_id)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn format() -> KeyFormat {
        KeyFormat::new("kg").unwrap()
    }

    fn sample() -> ApiKey {
        format().generate(Environment::Production, &mut ChaCha20Rng::seed_from_u64(1))
    }

    /// Rebuilds a key around a changed part, with a correct checksum, so a test reaches the check
    /// it is aimed at instead of failing on the checksum.
    fn with_valid_checksum(body: &str) -> String {
        let checksum = base62::encode_u32(crc32fast::hash(body.as_bytes()));
        format!("{body}{}", std::str::from_utf8(&checksum).unwrap())
    }

    #[test]
    fn generated_key_has_the_documented_shape() {
        let key = sample();
        let text = key.expose_secret();
        assert_eq!(
            text.len(),
            2 + 1 + 4 + 1 + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
        );
        assert!(text.starts_with(&format!("kg_live_{}_", key.key_id())));
        let parsed = format().parse(text).unwrap();
        assert_eq!(parsed.key_id(), key.key_id());
        assert_eq!(parsed.environment(), Environment::Production);
        assert_eq!(parsed.digest(), key.digest());
    }

    #[test]
    fn regenerate_keeps_the_id_and_changes_the_secret() {
        let key = sample();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let again = format().regenerate(Environment::Production, key.key_id(), &mut rng);
        assert_eq!(again.key_id(), key.key_id());
        assert_ne!(again.expose_secret(), key.expose_secret());
        assert_ne!(again.digest(), key.digest());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = sample();
        let secret_part = &key.expose_secret()[key.expose_secret().len() - 49..];
        for shown in [
            format!("{key:?}"),
            format!("{:?}", format().parse(key.expose_secret()).unwrap()),
        ] {
            assert!(!shown.contains(secret_part), "{shown}");
            assert!(shown.contains(key.key_id().as_str()), "{shown}");
        }
    }

    #[test]
    fn every_parse_error_is_named() {
        let key = sample();
        let text = key.expose_secret();
        let id = key.key_id();
        let secret_and_sum = &text[text.len() - SECRET_LEN - CHECKSUM_LEN..];
        let secret = &secret_and_sum[..SECRET_LEN];
        let cases: Vec<(String, KeyError)> = vec![
            (String::new(), KeyError::Empty),
            ("k".repeat(MAX_KEY_LEN + 1), KeyError::TooLong),
            (text.replacen("kg_", "kx_", 1), KeyError::WrongPrefix),
            (text.replacen("kg_", "kgg", 1), KeyError::WrongPrefix),
            (format!("x{}", &text[1..]), KeyError::WrongPrefix),
            (
                text.replacen("_live_", "_prod_", 1),
                KeyError::UnknownEnvironment,
            ),
            ("kg_live".to_owned(), KeyError::UnknownEnvironment),
            (
                format!("kg_live_{}", &id.as_str()[..5]),
                KeyError::Truncated {
                    field: KeyField::KeyId,
                },
            ),
            (
                with_valid_checksum(&format!(
                    "kg_live_{}-{}_{secret}",
                    &id.as_str()[..5],
                    &id.as_str()[6..]
                )),
                KeyError::InvalidCharacter {
                    field: KeyField::KeyId,
                },
            ),
            (
                format!("kg_live_{id}x{secret_and_sum}"),
                KeyError::MissingSeparator {
                    after: KeyField::KeyId,
                },
            ),
            (
                format!("kg_live_{id}_{}", &secret[..10]),
                KeyError::Truncated {
                    field: KeyField::Secret,
                },
            ),
            (
                format!("kg_live_{id}_{secret}abc"),
                KeyError::Truncated {
                    field: KeyField::Checksum,
                },
            ),
            (
                with_valid_checksum(&format!("kg_live_{id}_{}+{}", &secret[..5], &secret[6..])),
                KeyError::InvalidCharacter {
                    field: KeyField::Secret,
                },
            ),
            (
                format!("kg_live_{id}_{secret}zzzzzz"),
                KeyError::InvalidCharacter {
                    field: KeyField::Checksum,
                },
            ),
            (format!("{text}0"), KeyError::TrailingData),
            (
                format!("kg_live_{id}_{secret}000000"),
                KeyError::ChecksumMismatch,
            ),
            // A staging key presented as production: the tag is covered by the checksum.
            (
                text.replacen("_live_", "_test_", 1),
                KeyError::ChecksumMismatch,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(format().parse(&input).err(), Some(expected), "{input}");
        }
    }

    #[test]
    fn multibyte_input_is_refused_without_panicking() {
        let key = sample();
        let text = key.expose_secret();
        for at in [0, 3, 8, 30, text.len() - 3] {
            let mut bad = text.to_owned();
            bad.insert(at, 'é');
            assert!(format().parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_are_validated() {
        for good in ["kg", "acme", "x9", "abcdefghijklmnop"] {
            assert!(KeyFormat::new(good).is_ok(), "{good}");
        }
        for bad in ["", "k", "Kg", "9k", "k_g", "kg-", "abcdefghijklmnopq", "ké"] {
            assert_eq!(KeyFormat::new(bad), Err(PrefixError), "{bad}");
        }
    }

    #[test]
    fn key_id_serde_validates() {
        let id = sample().key_id();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<KeyId>("\"short\"").is_err());
        assert!(serde_json::from_str::<KeyId>("\"abcdefghijklmnopqrstu_\"").is_err());
    }
}
