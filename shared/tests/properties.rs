//! Properties over generated inputs: round trips, typo rejection, wildcard laws.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/mod.rs"]
mod support;

use keygate_shared::{
    Environment, Grant, Grants, IpAllowlist, IpNetwork, KeyFormat, Permission, RateLimit,
    TokenBucket,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn environment() -> impl Strategy<Value = Environment> {
    prop::sample::select(Environment::ALL.to_vec())
}

fn prefix() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{1,15}"
}

const ALPHABET: &[u8] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-.:+/= \x00\xc3\xa9";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_keys_parse_back(prefix in prefix(), env in environment(), seed: u64) {
        let format = KeyFormat::new(&prefix).unwrap();
        let key = format.generate(env, &mut ChaCha20Rng::seed_from_u64(seed));
        let parsed = format.parse(key.expose_secret()).unwrap();
        prop_assert_eq!(parsed.key_id(), key.key_id());
        prop_assert_eq!(parsed.environment(), env);
        prop_assert_eq!(parsed.digest(), key.digest());
    }

    /// CRC32 detects every single-byte error, so every one-character change to a valid key (a
    /// substitution, an insertion, a deletion) is refused by `parse`, before any lookup.
    #[test]
    fn every_single_character_change_is_rejected(
        env in environment(),
        seed: u64,
        position: prop::sample::Index,
        replacement in prop::sample::select(ALPHABET.to_vec()),
        edit in 0..3u8,
    ) {
        let format = support::format();
        let key = format.generate(env, &mut ChaCha20Rng::seed_from_u64(seed));
        let mut bytes = key.expose_secret().as_bytes().to_vec();
        let at = position.index(bytes.len());
        match edit {
            0 => {
                prop_assume!(bytes[at] != replacement);
                bytes[at] = replacement;
            }
            1 => bytes.insert(at, replacement),
            _ => { bytes.remove(at); }
        }
        let changed = String::from_utf8_lossy(&bytes);
        prop_assert!(format.parse(&changed).is_err(), "accepted {}", changed);
    }

    #[test]
    fn every_single_character_substitution_is_rejected_exhaustively(seed: u64) {
        let format = support::format();
        let key = format.generate(Environment::Production, &mut ChaCha20Rng::seed_from_u64(seed));
        let original = key.expose_secret().as_bytes();
        for at in 0..original.len() {
            for &replacement in b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_" {
                if replacement == original[at] { continue; }
                let mut bytes = original.to_vec();
                bytes[at] = replacement;
                let changed = std::str::from_utf8(&bytes).unwrap();
                prop_assert!(format.parse(changed).is_err(), "accepted {}", changed);
            }
        }
    }

    /// Arbitrary input never panics the parser and is almost never accepted.
    #[test]
    fn arbitrary_input_is_refused(input in ".{0,200}") {
        prop_assert!(support::format().parse(&input).is_err());
    }

    /// `*` grants everything, `r:*` grants exactly the actions on `r`, `r:a` grants exactly `r:a`.
    #[test]
    fn wildcard_laws(resource in "[a-z]{1,4}", action in "[a-z]{1,4}", other in "[a-z]{1,4}", other_action in "[a-z]{1,4}") {
        let required = Permission::parse(&format!("{other}:{other_action}")).unwrap();
        let all = Grant::parse("*").unwrap();
        let on_resource = Grant::parse(&format!("{resource}:*")).unwrap();
        let exact = Grant::parse(&format!("{resource}:{action}")).unwrap();
        prop_assert!(all.allows(&required));
        prop_assert_eq!(on_resource.allows(&required), other == resource);
        prop_assert_eq!(exact.allows(&required), other == resource && other_action == action);
        // A set of grants allows what any one of them allows.
        let grants = Grants::parse(&[format!("{resource}:*"), format!("{other}:{action}")]).unwrap();
        prop_assert_eq!(
            grants.allows(&required),
            other == resource || other_action == action
        );
    }

    /// CIDR containment agrees with comparing the leading bits as integers.
    #[test]
    fn ipv4_containment_matches_bit_arithmetic(network: u32, prefix in 0u8..=32, candidate: u32) {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let net = IpNetwork::parse(&format!("{}/{prefix}", std::net::Ipv4Addr::from(network & mask))).unwrap();
        let ip = std::net::IpAddr::V4(candidate.into());
        prop_assert_eq!(net.contains(ip), candidate & mask == network & mask);
    }

    #[test]
    fn ipv6_containment_matches_bit_arithmetic(network: u128, prefix in 0u8..=128, candidate: u128) {
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        let text = format!("{}/{prefix}", std::net::Ipv6Addr::from(network & mask));
        let net = IpNetwork::parse(&text).unwrap();
        let ip = std::net::IpAddr::V6(candidate.into());
        let mapped = std::net::Ipv6Addr::from(candidate).to_ipv4_mapped().is_some()
            || std::net::Ipv6Addr::from(network & mask).to_ipv4_mapped().is_some();
        prop_assume!(!mapped); // IPv4-mapped addresses are IPv4 (tested by hand in cidr.rs)
        prop_assert_eq!(net.contains(ip), candidate & mask == network & mask);
    }

    /// `a` covers `b` exactly when every permission `b` allows, `a` allows too (checked over
    /// every permission of a small universe that contains both).
    #[test]
    fn covering_is_allowing_everything(a in grant(), b in grant()) {
        let a = Grant::parse(&a).unwrap();
        let b = Grant::parse(&b).unwrap();
        let universe = ["x", "y", "z"].iter().flat_map(|resource| {
            ["r", "w", "q"].iter().map(move |action| Permission::parse(&format!("{resource}:{action}")).unwrap())
        });
        let implied = universe.clone().all(|p| !b.allows(&p) || a.allows(&p))
            // `x:*` also allows actions outside the universe, which only `*` or `x:*` cover.
            && (!matches!(b, Grant::All) || matches!(a, Grant::All))
            && (!matches!(b, Grant::Resource(_)) || !matches!(a, Grant::Exact(_)));
        prop_assert_eq!(a.covers(&b), implied, "{} covers {}", a, b);
    }

    /// One IPv4 network covers another exactly when it holds both ends of it; an allowlist is
    /// within another when it lets in no address the other keeps out.
    #[test]
    fn ipv4_covering_matches_both_ends(a: u32, a_prefix in 0u8..=32, b: u32, b_prefix in 0u8..=32, probe: u32) {
        let (outer, _) = network(a, a_prefix);
        let (inner, (inner_first, inner_last)) = network(b, b_prefix);
        prop_assert_eq!(
            outer.covers(&inner),
            outer.contains(v4(inner_first)) && outer.contains(v4(inner_last))
        );
        let narrow = IpAllowlist::parse(&[inner.to_string()]).unwrap();
        let wide = IpAllowlist::parse(&[outer.to_string()]).unwrap();
        if narrow.within(&wide) {
            prop_assert!(!narrow.permits(Some(v4(probe))) || wide.permits(Some(v4(probe))));
        }
        prop_assert!(narrow.within(&IpAllowlist::default()));
        prop_assert!(!IpAllowlist::default().within(&narrow));
    }

    /// A limit within another never lets a client through where the other would refuse: the same
    /// requests, at the same times, pass the wider bucket whenever they pass the narrower one.
    #[test]
    fn a_limit_within_another_admits_no_more(
        narrow in limit(), wide in limit(), gaps in prop::collection::vec(0i64..3_000, 1..200)
    ) {
        prop_assume!(narrow.within(&wide));
        let (mut tight, mut loose) = (None, None);
        let mut now_ms = 0;
        let (mut tight_passed, mut loose_passed) = (0u32, 0u32);
        for gap in gaps {
            now_ms += gap;
            let (bucket, admission) = TokenBucket::take(tight, narrow, now_ms);
            tight = Some(bucket);
            tight_passed += u32::from(admission.allowed);
            let (bucket, admission) = TokenBucket::take(loose, wide, now_ms);
            loose = Some(bucket);
            loose_passed += u32::from(admission.allowed);
            prop_assert!(tight_passed <= loose_passed);
        }
    }
}

fn grant() -> impl Strategy<Value = String> {
    prop_oneof![Just("*".to_owned()), "[xyz]:\\*", "[xyz]:[rwq]",]
}

fn limit() -> impl Strategy<Value = RateLimit> {
    (1u32..20, 1u32..20).prop_map(|(requests, window)| RateLimit::new(requests, window).unwrap())
}

fn v4(bits: u32) -> std::net::IpAddr {
    std::net::IpAddr::V4(bits.into())
}

/// The network of `address/prefix` (host bits cleared), with its first and last address.
fn network(address: u32, prefix: u8) -> (IpNetwork, (u32, u32)) {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    let first = address & mask;
    let text = format!("{}/{prefix}", std::net::Ipv4Addr::from(first));
    (IpNetwork::parse(&text).unwrap(), (first, first | !mask))
}

/// The patterns the OpenAPI document gives for what keygate-shared parses accept exactly what the
/// parsers accept, over strings drawn from the characters that matter.
#[cfg(feature = "openapi")]
mod patterns {
    use keygate_shared::openapi::{
        GRANT_PATTERN, PERMISSION_PATTERN, REFERENCE_PATTERN, SET_NAME_PATTERN,
    };
    use keygate_shared::{CustomerId, Grant, MAX_REFERENCE_LEN, Permission, valid_set_name};
    use proptest::prelude::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn grant_and_permission_patterns_agree_with_the_parsers(text in "[a-zA-Z0-9_.:*@ -]{0,70}") {
            prop_assert_eq!(matches(GRANT_PATTERN, &text), Grant::parse(&text).is_ok(), "{:?}", text);
            prop_assert_eq!(matches(PERMISSION_PATTERN, &text), Permission::parse(&text).is_ok(), "{:?}", text);
        }

        #[test]
        fn near_misses_of_a_permission_agree_too(resource in "[a-z][a-z0-9_.-]{0,33}", action in "[a-z*][a-z0-9_.-]{0,33}") {
            let text = format!("{resource}:{action}");
            prop_assert_eq!(matches(GRANT_PATTERN, &text), Grant::parse(&text).is_ok(), "{:?}", text);
            prop_assert_eq!(matches(PERMISSION_PATTERN, &text), Permission::parse(&text).is_ok(), "{:?}", text);
        }

        #[test]
        fn the_set_name_pattern_agrees_with_the_check(text in "[a-zA-Z0-9_.: -]{0,66}") {
            prop_assert_eq!(matches(SET_NAME_PATTERN, &text), valid_set_name(&text), "{:?}", text);
        }

        #[test]
        fn the_reference_pattern_agrees_with_the_parser(text in "[a-zA-Z0-9_.:@/ +-]{0,130}") {
            let by_schema = matches(REFERENCE_PATTERN, &text) && (1..=MAX_REFERENCE_LEN).contains(&text.chars().count());
            prop_assert_eq!(by_schema, CustomerId::parse(&text).is_ok(), "{:?}", text);
        }
    }
}
