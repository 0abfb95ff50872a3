//! ClusterIP address management: a pure allocator over the service CIDRs.
//!
//! No Kubernetes types and no I/O live here, so the reconciler can treat the allocator as a
//! cache it rebuilds from the durable `ServiceIP` claims, and every rule (reserved addresses,
//! next-fit with a quarantine of recent releases, exhaustion across several CIDRs) is tested
//! in plain unit and property tests. `docs/ipam.md` describes the design and its costs.

pub mod admission;
mod allocator;
mod bits;
pub mod book;
mod error;
mod range;
pub mod repair;
pub mod request;

#[cfg(test)]
mod tests;

pub use allocator::{Allocation, Allocator, DEFAULT_QUARANTINE_PER_CIDR, IpFamily};
pub use error::{AllocError, CidrError, ReservedKind};
pub use range::RangeUsage;

pub use book::{Claim, ClaimBook, ServiceKey};
