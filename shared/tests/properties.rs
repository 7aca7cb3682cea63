//! Properties over generated inputs: round trips, typo rejection, wildcard laws.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/mod.rs"]
mod support;

use keygate_shared::{Environment, Grant, Grants, IpNetwork, KeyFormat, Permission};
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
}
