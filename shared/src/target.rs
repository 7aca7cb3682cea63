//! The request target as keygate authorises it: the method from a fixed set, and the path made
//! canonical before anything routes on it, so that the path the origin receives is the path that
//! was authorised.
//!
//! The path follows RFC 3986's normalisation (section 6.2.2), with Envoy's `normalize_path` and
//! `merge_slashes` as the reference:
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other
//!   escape is kept and written in upper case (`%7c` -> `%7C`), and characters a path may not hold
//!   raw (`" < > [ ] ^ ` { | }`, space) are escaped, so equivalent spellings become one;
//! - dot segments are removed (`/a/./b/../c` -> `/a/c`), and empty segments merged (`//` -> `/`),
//!   keeping one trailing `/`;
//! - whatever cannot be made canonical safely is refused ([`PathError`]): an encoded `/` or `\`,
//!   a raw `\`, an encoded dot segment, a control character raw or encoded (`%00`), bytes that are
//!   not UTF-8 once decoded, non-ASCII characters, `;` path parameters, and over-long paths.
//!   Origins disagree about each of those, so none of them reaches one.
//!
//! Properties, tested with proptest: normalising twice equals normalising once; no output holds a
//! dot segment, an empty segment, an escaped unreserved character or a lower-case escape; two
//! spellings RFC 3986 calls equivalent give the same output.

use std::fmt;

/// No path longer than this (in bytes, as received) is routed.
pub const MAX_PATH_LEN: usize = 2048;

/// Why a path is refused, before any routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("the path has a '%' that does not start an escape of two hex digits")]
    BadEscape,
    #[error("the path has an encoded '/' or '\\' (%2F, %5C)")]
    EncodedSeparator,
    #[error("the path has a '\\'")]
    Backslash,
    #[error("the path has an encoded dot segment (%2E)")]
    EncodedDotSegment,
    #[error("the path has a control character, raw or encoded")]
    ControlCharacter,
    #[error("the path has a character outside ASCII; percent-encode it as UTF-8")]
    NonAscii,
    #[error("the path is not UTF-8 once decoded")]
    InvalidUtf8,
    #[error("the path has a ';' (path parameters are not accepted)")]
    PathParameter,
}

impl PathError {
    /// The public error code, the same for every way a path is refused.
    pub fn code(&self) -> &'static str {
        "invalid_path"
    }
}

/// The methods keygate routes. Anything else is refused before routing (405): no unknown method
/// is ever matched as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Self::Get,
        Self::Head,
        Self::Post,
        Self::Put,
        Self::Patch,
        Self::Delete,
        Self::Options,
    ];

    /// The method as sent: exactly one of the upper-case names (HTTP methods are case-sensitive;
    /// `patch` is not `PATCH`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|method| method.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
        }
    }

    /// The method a route is matched and authorised for: HEAD is the GET it mirrors (its answer
    /// is GET's without the body, so it needs exactly what GET needs).
    pub fn authorised_as(self) -> Self {
        match self {
            Self::Head => Self::Get,
            other => other,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Printable ASCII a path may hold raw (RFC 3986 `pchar` without `%` and `;`).
fn raw_pchar(byte: u8) -> bool {
    unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn push_escaped(out: &mut String, byte: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

/// One segment made canonical, and whether it spelled a dot with an escape.
fn segment(raw: &[u8], decoded: &mut Vec<u8>) -> Result<(String, bool), PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped_dot = false;
    let mut at = 0;
    while at < raw.len() {
        let byte = raw[at];
        match byte {
            b'%' => {
                let value = raw
                    .get(at + 1..at + 3)
                    .and_then(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
                    .ok_or(PathError::BadEscape)?;
                match value {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    b'.' => {
                        escaped_dot = true;
                        out.push('.');
                    }
                    _ if unreserved(value) => out.push(char::from(value)),
                    _ => push_escaped(&mut out, value),
                }
                decoded.push(value);
                at += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::PathParameter),
            0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            0x80..=0xff => return Err(PathError::NonAscii),
            _ if raw_pchar(byte) => out.push(char::from(byte)),
            _ => push_escaped(&mut out, byte),
        }
        decoded.push(byte);
        at += 1;
    }
    Ok((out, escaped_dot))
}

/// The canonical form of an absolute path (no query), or why it has none.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    let mut decoded = Vec::with_capacity(raw.len());
    let mut kept: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    let mut parts = rest.split('/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let (text, escaped_dot) = segment(part.as_bytes(), &mut decoded)?;
        decoded.push(b'/');
        let dot = text == "." || text == "..";
        if dot && escaped_dot {
            return Err(PathError::EncodedDotSegment);
        }
        if text == ".." {
            kept.pop();
        }
        if text.is_empty() || dot {
            // A merged `//`, or a removed dot segment: at the end, the path still ends in `/`.
            trailing_slash = last;
            continue;
        }
        trailing_slash = false;
        kept.push(text);
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    let mut path = String::with_capacity(raw.len() + 1);
    for segment in &kept {
        path.push('/');
        path.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        path.push('/');
    }
    Ok(path)
}
