//! IP allowlists: real CIDR matching for IPv4 and IPv6, not string comparison.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Networks one key's allowlist may hold.
pub const MAX_NETWORKS: usize = 64;
pub const MAX_CIDR_LEN: usize = 49; // longest IPv6 text (45) + "/128"

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or CIDR network (e.g. 203.0.113.0/24, 2001:db8::/32)")]
    Invalid(String),
    #[error("{0:?}: the prefix length is larger than the address has bits")]
    PrefixTooLong(String),
    #[error("{given:?} has host bits set; the network is {network}")]
    HostBitsSet { given: String, network: String },
    #[error("at most {MAX_NETWORKS} networks per allowlist")]
    TooMany,
}

/// One network: an address with its host bits cleared and a prefix length.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

/// Makes IPv4-mapped IPv6 (`::ffff:a.b.c.d`) an IPv4 address, as a dual-stack socket reports it.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn bits(address: IpAddr) -> (u128, u8) {
    match address {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

/// The network bits of a `width`-bit address with `prefix` leading network bits.
fn mask(prefix: u8, width: u8) -> u128 {
    match u32::from(width - prefix) {
        128 => 0,
        host => !((1u128 << host) - 1),
    }
}

impl IpNetwork {
    /// `203.0.113.0/24`, `2001:db8::/32`, or a bare address (a single host). Host bits must be zero,
    /// so `10.0.0.1/8` is refused rather than silently read as `10.0.0.0/8`.
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let invalid = || CidrError::Invalid(text.chars().take(MAX_CIDR_LEN).collect());
        if text.len() > MAX_CIDR_LEN {
            return Err(invalid());
        }
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let (value, width) = bits(address);
        let prefix = match prefix {
            None => width,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse::<u8>().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        if prefix > width {
            return Err(CidrError::PrefixTooLong(text.to_owned()));
        }
        if value & !mask(prefix, width) != 0 {
            let network = match address {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from_bits((value & mask(prefix, 32)) as u32)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(value & mask(prefix, 128))),
            };
            return Err(CidrError::HostBitsSet {
                given: text.to_owned(),
                network: Self {
                    address: network,
                    prefix,
                }
                .to_string(),
            });
        }
        // `::ffff:a.b.c.d/120` is the IPv4 network `a.b.c.d/24`: store it so, to match it the
        // way clients are matched (see `canonical`).
        Ok(match canonical(address) {
            IpAddr::V4(v4) if width == 128 && prefix >= 96 => Self {
                address: IpAddr::V4(v4),
                prefix: prefix - 96,
            },
            _ => Self { address, prefix },
        })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let (network, width) = bits(self.address);
        let (candidate, candidate_width) = bits(canonical(address));
        width == candidate_width && (candidate ^ network) & mask(self.prefix, width) == 0
    }

    /// Whether every address of `other` is in this network.
    pub fn covers(&self, other: &IpNetwork) -> bool {
        other.prefix >= self.prefix && self.contains(other.address)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl fmt::Debug for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The networks a key may be used from. Empty means "from anywhere".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IpAllowlist(Vec<IpNetwork>);

impl IpAllowlist {
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, CidrError> {
        if texts.len() > MAX_NETWORKS {
            return Err(CidrError::TooMany);
        }
        texts
            .iter()
            .map(|text| IpNetwork::parse(text.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &IpNetwork> {
        self.0.iter()
    }

    /// Whether this list lets in nobody that `wider` keeps out: `wider` is empty (anywhere), or
    /// this list is not empty and each of its networks is inside one of `wider`'s.
    pub fn within(&self, wider: &IpAllowlist) -> bool {
        wider.is_empty()
            || (!self.is_empty()
                && self
                    .0
                    .iter()
                    .all(|network| wider.0.iter().any(|outer| outer.covers(network))))
    }

    /// Whether a request from `client` passes: always for an empty list, never for an unknown
    /// client address once the list is not empty (fail closed).
    pub fn permits(&self, client: Option<IpAddr>) -> bool {
        self.0.is_empty() || client.is_some_and(|ip| self.0.iter().any(|net| net.contains(ip)))
    }
}

impl<'de> Deserialize<'de> for IpAllowlist {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&texts).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNetwork {
        IpNetwork::parse(text).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_networks_match_by_prefix() {
        let office = net("203.0.113.0/24");
        assert!(office.contains(ip("203.0.113.0")));
        assert!(office.contains(ip("203.0.113.255")));
        assert!(!office.contains(ip("203.0.114.0")));
        assert!(!office.contains(ip("203.0.112.255")));
        assert!(net("0.0.0.0/0").contains(ip("198.51.100.7")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("198.51.100.7").contains(ip("198.51.100.7")));
        assert!(!net("198.51.100.7").contains(ip("198.51.100.6")));
        assert!(net("10.0.0.0/9").contains(ip("10.127.255.255")));
        assert!(!net("10.0.0.0/9").contains(ip("10.128.0.0")));
    }

    #[test]
    fn ipv6_networks_match_by_prefix() {
        let doc = net("2001:db8::/32");
        assert!(doc.contains(ip("2001:db8::1")));
        assert!(doc.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!doc.contains(ip("2001:db9::")));
        assert!(
            !doc.contains(ip("32.1.13.184")),
            "IPv4 with the same leading bits"
        );
        assert!(net("::/0").contains(ip("::1")));
        assert!(net("2001:db8::1/128").contains(ip("2001:db8::1")));
        assert!(!net("2001:db8::1/128").contains(ip("2001:db8::2")));
        assert!(net("2001:db8:0:8000::/49").contains(ip("2001:db8:0:ffff::")));
        assert!(!net("2001:db8:0:8000::/49").contains(ip("2001:db8:0:7fff::")));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert!(net("203.0.113.0/24").contains(ip("::ffff:203.0.113.9")));
        assert!(net("::ffff:203.0.113.0/120").contains(ip("203.0.113.9")));
        assert!(!net("::ffff:203.0.113.0/120").contains(ip("203.0.114.9")));
        assert_eq!(net("::ffff:203.0.113.0/120").to_string(), "203.0.113.0/24");
        assert!(
            !net("::/64").contains(ip("0.0.0.1")),
            "a mapped client is IPv4, not ::/64"
        );
    }

    #[test]
    fn parse_errors_are_specific() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/a",
            "10.0.0.0/+8",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/8/8",
            "10.0.0.0 /8",
            "10.0.0.0/999",
        ] {
            assert_eq!(
                IpNetwork::parse(bad),
                Err(CidrError::Invalid(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            IpNetwork::parse("10.0.0.0/33"),
            Err(CidrError::PrefixTooLong("10.0.0.0/33".into()))
        );
        assert_eq!(
            IpNetwork::parse("2001:db8::/129"),
            Err(CidrError::PrefixTooLong("2001:db8::/129".into()))
        );
        assert_eq!(
            IpNetwork::parse("10.0.0.1/8"),
            Err(CidrError::HostBitsSet {
                given: "10.0.0.1/8".into(),
                network: "10.0.0.0/8".into()
            })
        );
        assert_eq!(
            IpNetwork::parse("2001:db8::1/64"),
            Err(CidrError::HostBitsSet {
                given: "2001:db8::1/64".into(),
                network: "2001:db8::/64".into()
            })
        );
        assert!(matches!(
            IpNetwork::parse(&"1".repeat(100)),
            Err(CidrError::Invalid(_))
        ));
    }

    #[test]
    fn allowlist_is_open_when_empty_and_closed_without_a_client_ip() {
        let empty = IpAllowlist::default();
        assert!(empty.permits(None));
        assert!(empty.permits(Some(ip("192.0.2.1"))));
        let list = IpAllowlist::parse(&["192.0.2.0/24", "2001:db8::/32"]).unwrap();
        assert!(list.permits(Some(ip("192.0.2.1"))));
        assert!(list.permits(Some(ip("2001:db8::5"))));
        assert!(!list.permits(Some(ip("198.51.100.1"))));
        assert!(!list.permits(None));
        let too_many: Vec<String> = (0..=MAX_NETWORKS)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert_eq!(IpAllowlist::parse(&too_many), Err(CidrError::TooMany));
    }

    #[test]
    fn serde_round_trips() {
        let list = IpAllowlist::parse(&["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]).unwrap();
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(
            json,
            r#"["192.0.2.0/24","2001:db8::/32","198.51.100.7/32"]"#
        );
        assert_eq!(serde_json::from_str::<IpAllowlist>(&json).unwrap(), list);
        assert!(serde_json::from_str::<IpAllowlist>(r#"["10.0.0.1/8"]"#).is_err());
    }
}
