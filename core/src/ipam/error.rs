//! Errors of the allocator.
//!
//! Construction errors ([`CidrError`]) are configuration mistakes an operator must fix, so they
//! name the offending CIDR. Operation errors ([`AllocError`]) end up in Warning Events on a
//! Service and in metric labels (the variant name), so each names the address and the CIDR it
//! was checked against.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::IpFamily;

/// Why a set of service CIDRs was refused when building an [`Allocator`](super::Allocator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No CIDR at all: an allocator that can never hand out an address is a misconfiguration.
    #[error("no service CIDR configured")]
    Empty,
    /// IPv6 ranges are capped at /64 so every offset fits a `u64` bitmap key.
    #[error(
        "IPv6 service CIDR {cidr} is wider than /64; use a prefix length of 64 or more \
         (for example {example})"
    )]
    Ipv6TooWide {
        /// The refused CIDR.
        cidr: IpNet,
        /// The /64 at the start of it, as a suggestion.
        example: IpNet,
    },
    /// Host bits set (`10.0.0.5/24`) usually means a typo; we refuse rather than guess.
    #[error("service CIDR {cidr} has host bits set; did you mean {network}?")]
    HostBitsSet {
        /// The refused CIDR, as written.
        cidr: IpNet,
        /// The same prefix with the host bits cleared.
        network: IpNet,
    },
    /// Two CIDRs sharing addresses would let one address be handed out twice.
    #[error("service CIDRs {first} and {second} overlap")]
    Overlap {
        /// The CIDR configured earlier.
        first: IpNet,
        /// The CIDR configured later.
        second: IpNet,
    },
}

/// Why an address was not allocated, marked or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// The address lies in none of the configured CIDRs.
    #[error("{address} is not in any configured service CIDR")]
    OutOfRange {
        /// The requested address.
        address: IpAddr,
    },
    /// The address is one that is never handed out (network, broadcast, subnet-router anycast).
    #[error("{address} is the {kind} of service CIDR {cidr} and is never allocated")]
    Reserved {
        /// The requested address.
        address: IpAddr,
        /// The CIDR holding it.
        cidr: IpNet,
        /// Which reserved address it is.
        kind: ReservedKind,
    },
    /// The address is already held by another claim.
    #[error("{address} in service CIDR {cidr} is already allocated")]
    AlreadyAllocated {
        /// The requested address.
        address: IpAddr,
        /// The CIDR holding it.
        cidr: IpNet,
    },
    /// Every usable address of the family is allocated.
    #[error("no free {family} address left in service CIDRs {}", CidrList(.cidrs))]
    Exhausted {
        /// The family asked for.
        family: IpFamily,
        /// The CIDRs of that family, all full.
        cidrs: Vec<IpNet>,
    },
    /// The Service asked for a family the cluster was not given a CIDR for.
    #[error("no {family} service CIDR is configured")]
    NoCidrForFamily {
        /// The family asked for.
        family: IpFamily,
    },
}

/// The kind of address a CIDR keeps back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservedKind {
    /// IPv4 first address (prefixes up to /30).
    NetworkAddress,
    /// IPv4 last address (prefixes up to /30).
    BroadcastAddress,
    /// IPv6 first address (prefixes up to /126), RFC 4291 section 2.6.1.
    SubnetRouterAnycast,
}

impl fmt::Display for ReservedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservedKind::NetworkAddress => "network address",
            ReservedKind::BroadcastAddress => "broadcast address",
            ReservedKind::SubnetRouterAnycast => "subnet-router anycast address",
        })
    }
}

struct CidrList<'a>(&'a [IpNet]);

impl fmt::Display for CidrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cidr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{cidr}")?;
        }
        Ok(())
    }
}
