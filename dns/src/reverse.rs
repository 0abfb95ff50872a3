//! Reverse names (`in-addr.arpa`, `ip6.arpa`): building the PTR owner name of an address, and
//! reading a queried name back into the address (or address prefix) it stands for.
//!
//! `signpost dns` answers a reverse name only when it lies inside one of the ranges it is told
//! are the cluster's (`--service-cidr`, `--pod-cidr`): there it is authoritative (a PTR, or
//! NXDOMAIN when no record has the address); any other reverse name is someone else's zone and
//! goes upstream (or is REFUSED) like every name outside the cluster domain.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

const V4_SUFFIX: &str = "in-addr.arpa";
const V6_SUFFIX: &str = "ip6.arpa";

/// An address range: the network address (host bits cleared) and the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// The range of `addr/len`, host bits cleared; `None` when `len` is longer than the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let bits = family_bits(addr);
        (len <= bits).then(|| Self {
            net: mask(addr, len),
            len,
        })
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.net
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether every address of `other` lies in this range.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.net.is_ipv4() == other.net.is_ipv4()
            && other.len >= self.len
            && mask(other.net, self.len) == self.net
    }

    /// The first and last address of the range.
    pub fn bounds(&self) -> (IpAddr, IpAddr) {
        let last = match self.net {
            IpAddr::V4(v4) => {
                let host = u32::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) | host))
            }
            IpAddr::V6(v6) => {
                let host = u128::MAX.checked_shr(u32::from(self.len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) | host))
            }
        };
        (self.net, last)
    }

    /// The reverse zone this range is answered under: its reverse name, the prefix rounded
    /// down to a whole label (8 bits for IPv4, 4 for IPv6), e.g. `10.96.0.0/12` →
    /// `10.in-addr.arpa`. It owns the SOA of negative answers.
    pub fn zone(&self) -> String {
        let step = if self.net.is_ipv4() { 8 } else { 4 };
        prefix_name(self.net, self.len - self.len % step)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `10.96.0.0/12`, `fd00::/108`; host bits are cleared.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a CIDR such as 10.96.0.0/12 or fd00::/108");
        let (addr, len) = text.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Cidr::new(addr, len).ok_or_else(bad)
    }
}

/// What a name under `in-addr.arpa` or `ip6.arpa` stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReverseName {
    /// A whole address: the owner name of its PTR records.
    Address(IpAddr),
    /// Fewer labels than an address has: the range of every address below it.
    Prefix(Cidr),
    /// Labels that are not an address label to the left of a valid prefix (or of a whole
    /// address): no record can be there, but the prefix says whose zone it is.
    Below(Cidr),
}

impl ReverseName {
    /// The range the name lies in.
    pub fn range(&self) -> Cidr {
        match *self {
            ReverseName::Address(ip) => Cidr {
                net: ip,
                len: family_bits(ip),
            },
            ReverseName::Prefix(c) | ReverseName::Below(c) => c,
        }
    }
}

/// The PTR owner name of `ip` (lowercase, no trailing dot): `4.0.244.10.in-addr.arpa`, or for
/// IPv6 the 32 nibbles of the full address in reverse order under `ip6.arpa`.
pub fn ptr_name(ip: IpAddr) -> String {
    prefix_name(ip, family_bits(ip))
}

/// The reverse name of the first `len` bits of `ip` (`len` a multiple of 8 or 4).
fn prefix_name(ip: IpAddr, len: u8) -> String {
    let mut labels: Vec<String> = match ip {
        IpAddr::V4(v4) => v4
            .octets()
            .iter()
            .take(usize::from(len / 8))
            .map(u8::to_string)
            .collect(),
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .take(usize::from(len / 4))
            .map(|n| format!("{n:x}"))
            .collect(),
    };
    labels.reverse();
    labels.push(if ip.is_ipv4() { V4_SUFFIX } else { V6_SUFFIX }.to_owned());
    labels.join(".")
}

/// Reads a folded name (lowercase, no trailing dot). `None` when it is not under
/// `in-addr.arpa` or `ip6.arpa`.
pub fn parse(name: &str) -> Option<ReverseName> {
    if let Some(head) = under(name, V4_SUFFIX) {
        Some(parse_labels(head, 4, 8, |l| {
            // Decimal 0–255 without leading zeros: the only spelling an address has.
            let ok = !l.is_empty()
                && l.len() <= 3
                && l.bytes().all(|b| b.is_ascii_digit())
                && (l == "0" || !l.starts_with('0'));
            ok.then(|| l.parse::<u8>().ok()).flatten()
        }))
    } else {
        under(name, V6_SUFFIX).map(|head| {
            parse_labels(head, 32, 4, |l| {
                let mut chars = l.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => c.to_digit(16).and_then(|d| u8::try_from(d).ok()),
                    _ => None,
                }
            })
        })
    }
}

/// The labels left of `suffix` (`Some("")` for the suffix itself), `None` when not under it.
fn under<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    if name == suffix {
        return Some("");
    }
    name.strip_suffix(suffix)?.strip_suffix('.')
}

/// `head` holds up to `max` labels of `bits` bits each, most significant rightmost.
fn parse_labels(
    head: &str,
    max: usize,
    bits: u8,
    label: impl Fn(&str) -> Option<u8>,
) -> ReverseName {
    let mut parts: Vec<u8> = Vec::new();
    let mut labels = if head.is_empty() {
        Vec::new()
    } else {
        head.split('.').collect::<Vec<_>>()
    };
    labels.reverse();
    let mut rest = false;
    for l in &labels {
        match label(l) {
            Some(part) if parts.len() < max => parts.push(part),
            _ => {
                rest = true;
                break;
            }
        }
    }
    let ip = if bits == 8 {
        let mut octets = [0u8; 4];
        octets[..parts.len()].copy_from_slice(&parts);
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        let mut value: u128 = 0;
        for (i, nibble) in parts.iter().enumerate() {
            value |= u128::from(*nibble) << (124 - 4 * i);
        }
        IpAddr::V6(Ipv6Addr::from(value))
    };
    let len = u8::try_from(parts.len()).unwrap_or(0) * bits;
    let range = Cidr { net: ip, len };
    if rest {
        ReverseName::Below(range)
    } else if parts.len() == max {
        ReverseName::Address(ip)
    } else {
        ReverseName::Prefix(range)
    }
}

fn family_bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn ptr_names_follow_the_specification() {
        assert_eq!(ptr_name(ip("10.3.0.1")), "1.0.3.10.in-addr.arpa");
        // The specification's IPv6 example.
        assert_eq!(
            ptr_name(ip("2001:db8::1")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn names_parse_back_to_their_address() {
        for a in [
            "10.3.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "fd00::a:b",
        ] {
            assert_eq!(parse(&ptr_name(ip(a))), Some(ReverseName::Address(ip(a))));
        }
        assert_eq!(parse("example.com"), None);
        assert_eq!(parse("xin-addr.arpa"), None);
        assert_eq!(parse("arpa"), None);
    }

    #[test]
    fn partial_and_malformed_names() {
        use ReverseName::{Below, Prefix};
        for (name, parsed) in [
            ("96.10.in-addr.arpa", Prefix(cidr("10.96.0.0/16"))),
            ("in-addr.arpa", Prefix(cidr("0.0.0.0/0"))),
            ("d.f.ip6.arpa", Prefix(cidr("fd00::/8"))),
            // A leading zero, a number above 255, a fifth label, a two-digit nibble.
            ("01.96.10.in-addr.arpa", Below(cidr("10.96.0.0/16"))),
            ("256.96.10.in-addr.arpa", Below(cidr("10.96.0.0/16"))),
            ("x.1.0.96.10.in-addr.arpa", Below(cidr("10.96.0.1/32"))),
            ("10.d.f.ip6.arpa", Below(cidr("fd00::/8"))),
        ] {
            assert_eq!(parse(name), Some(parsed), "{name}");
        }
    }

    #[test]
    fn ranges_cover_and_name_their_zone() {
        let services = cidr("10.96.0.0/12");
        assert_eq!(services, cidr("10.100.1.2/12"));
        assert!(services.covers(&cidr("10.96.0.0/16")));
        assert!(services.covers(&parse("1.0.96.10.in-addr.arpa").unwrap().range()));
        // 10.0.0.0/8 is wider than the services' range: not ours to answer.
        assert!(!services.covers(&parse("10.in-addr.arpa").unwrap().range()));
        assert!(!services.covers(&cidr("10.112.0.0/16")));
        assert!(!services.covers(&cidr("fd00::/8")));
        assert_eq!(services.zone(), "10.in-addr.arpa");
        assert_eq!(cidr("10.244.0.0/16").zone(), "244.10.in-addr.arpa");
        assert_eq!(
            cidr("fd00:10:96::/108").zone(),
            "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa"
        );
        assert_eq!(services.bounds(), (ip("10.96.0.0"), ip("10.111.255.255")));
        assert_eq!(cidr("0.0.0.0/0").bounds().1, ip("255.255.255.255"));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
    }
}
