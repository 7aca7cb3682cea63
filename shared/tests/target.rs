//! The canonical path and the method set: the rules written out case by case, and the properties
//! stated with proptest.
#![cfg(not(target_arch = "wasm32"))]

use keygate_shared::{MAX_PATH_LEN, Method, PathError, canonical_path};
use proptest::prelude::*;

#[test]
fn equivalent_spellings_become_one() {
    let cases = [
        ("/v1/customers/cus_1/profile", "/v1/customers/cus_1/profile"),
        (
            "/v1/%63ustomers/cus_2/profile",
            "/v1/customers/cus_2/profile",
        ),
        ("/v1/%63%75stomers/%63us_2", "/v1/customers/cus_2"),
        ("/v1//customers///cus_1", "/v1/customers/cus_1"),
        ("/v1/./customers/x/../cus_1", "/v1/customers/cus_1"),
        ("/v1/customers/cus_1/", "/v1/customers/cus_1/"),
        ("/v1/customers/cus_1//", "/v1/customers/cus_1/"),
        ("/v1/customers/cus_1/.", "/v1/customers/cus_1/"),
        ("/v1/a/..", "/v1/"),
        ("/../../v1", "/v1"),
        ("/", "/"),
        ("//", "/"),
        ("/a%7cb", "/a%7Cb"),
        ("/a|b", "/a%7Cb"),
        ("/a%20b", "/a%20b"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/a%2eb", "/a.b"),
        ("/%41%5a%7E%2D%5F", "/AZ~-_"),
        ("/a%25b", "/a%25b"),
        ("/a%3Bb", "/a%3Bb"),
        ("/users/@me:x,y=1", "/users/@me:x,y=1"),
    ];
    for (raw, canonical) in cases {
        assert_eq!(canonical_path(raw).as_deref(), Ok(canonical), "{raw}");
    }
}

#[test]
fn what_cannot_be_made_canonical_safely_is_refused() {
    let cases = [
        ("v1/x", PathError::NotAbsolute),
        ("", PathError::NotAbsolute),
        ("/v1/a%2Fb", PathError::EncodedSeparator),
        ("/v1/a%2fb", PathError::EncodedSeparator),
        ("/v1/a%5Cb", PathError::EncodedSeparator),
        ("/v1\\..\\x", PathError::Backslash),
        ("/v1/%2e%2e/admin", PathError::EncodedDotSegment),
        ("/v1/.%2E/admin", PathError::EncodedDotSegment),
        ("/v1/%2E/admin", PathError::EncodedDotSegment),
        ("/v1/a%00b", PathError::ControlCharacter),
        ("/v1/a%0Ab", PathError::ControlCharacter),
        ("/v1/a\tb", PathError::ControlCharacter),
        ("/v1/a%7Fb", PathError::ControlCharacter),
        ("/v1/caf\u{e9}", PathError::NonAscii),
        ("/v1/%FF", PathError::InvalidUtf8),
        ("/v1/%C3", PathError::InvalidUtf8),
        ("/v1/a;jsessionid=1", PathError::PathParameter),
        ("/v1/a%", PathError::BadEscape),
        ("/v1/a%4", PathError::BadEscape),
        ("/v1/a%zz", PathError::BadEscape),
    ];
    for (raw, error) in cases {
        assert_eq!(canonical_path(raw), Err(error), "{raw:?}");
        assert_eq!(error.code(), "invalid_path");
    }
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert_eq!(canonical_path(&long), Err(PathError::TooLong));
    assert!(canonical_path(&long[..MAX_PATH_LEN]).is_ok());
}

#[test]
fn only_the_fixed_methods_exist_and_head_is_authorised_as_get() {
    for method in Method::ALL {
        assert_eq!(Method::parse(method.as_str()), Some(method));
    }
    for name in ["PURGE", "TRACE", "CONNECT", "patch", "get", "", "GET "] {
        assert_eq!(Method::parse(name), None, "{name:?}");
    }
    assert_eq!(Method::Head.authorised_as(), Method::Get);
    assert_eq!(Method::Post.authorised_as(), Method::Post);
}

/// A path segment from a small alphabet that reaches every rule: unreserved characters, dots,
/// sub-delimiters, characters that must be escaped, escapes in both cases.
fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9._~-]",
            Just(".".to_owned()),
            Just("..".to_owned()),
            "[!$&'()*+,=:@]",
            "[|^ `{}\"<>]",
            "%[0-9a-fA-F]{2}",
        ],
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..8).prop_map(|segments| format!("/{}", segments.join("/")))
}

/// Another spelling of a canonical path that RFC 3986 calls equivalent: some unreserved
/// characters percent-encoded (in either case of hex digit), some escapes' hex in lower case.
fn respell(canonical: &str, choices: &[u8]) -> String {
    let mut out = String::new();
    let bytes = canonical.as_bytes();
    let mut at = 0;
    let mut choice = choices.iter().cycle();
    while at < bytes.len() {
        let pick = *choice.next().unwrap_or(&0);
        if bytes[at] == b'%' {
            let escape = &canonical[at..at + 3];
            out.push_str(&if pick.is_multiple_of(2) {
                escape.to_ascii_lowercase()
            } else {
                escape.to_owned()
            });
            at += 3;
            continue;
        }
        let byte = bytes[at];
        let unreserved = byte.is_ascii_alphanumeric() || b"-_~".contains(&byte);
        match pick % 3 {
            1 if unreserved => out.push_str(&format!("%{byte:02X}")),
            2 if unreserved => out.push_str(&format!("%{byte:02x}")),
            _ => out.push(char::from(byte)),
        }
        at += 1;
    }
    out
}

fn is_dot_or_empty(segment: &str) -> bool {
    segment.is_empty() || segment == "." || segment == ".."
}

proptest! {
    #[test]
    fn normalising_twice_is_normalising_once(raw in path()) {
        if let Ok(once) = canonical_path(&raw) {
            prop_assert_eq!(canonical_path(&once), Ok(once.clone()));
        }
    }

    #[test]
    fn outputs_hold_no_dot_segment_empty_segment_or_needless_escape(raw in path()) {
        if let Ok(canonical) = canonical_path(&raw) {
            let inner = canonical.trim_start_matches('/').trim_end_matches('/');
            if !inner.is_empty() {
                prop_assert!(!inner.split('/').any(is_dot_or_empty), "{}", canonical);
            }
            let bytes = canonical.as_bytes();
            for (at, _) in canonical.match_indices('%') {
                let pair = &canonical[at + 1..at + 3];
                prop_assert_eq!(pair, pair.to_ascii_uppercase());
                let value = u8::from_str_radix(pair, 16).unwrap();
                let unreserved = value.is_ascii_alphanumeric() || b"-._~".contains(&value);
                prop_assert!(!unreserved, "{} escapes an unreserved character", canonical);
            }
            prop_assert!(bytes.iter().all(|b| b.is_ascii_graphic()));
        }
    }

    #[test]
    fn equivalent_spellings_route_the_same(raw in path(), choices in prop::collection::vec(any::<u8>(), 1..16)) {
        if let Ok(canonical) = canonical_path(&raw) {
            let other = respell(&canonical, &choices);
            prop_assert_eq!(canonical_path(&other), Ok(canonical));
        }
    }
}
