//! The periodic repair pass over all claims, as pure logic.
//!
//! The reconciler releases a Service's claims when it sees the Service go, but a claim can
//! outlive its Service when Signpost was down at the time, or when the claim was written by a
//! leader that lost its lease mid-way. Repair finds those, and the inconsistencies a human
//! should look at. A claim whose Service UID is unknown is only deleted when it is still
//! unknown one full interval later, so a Service the watch has not delivered yet is never
//! robbed of its fresh address.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use super::book::{Claim, ClaimBook, ServiceKey};
use super::{IpFamily, book::Placement};

/// What one repair pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Claims whose Service has been gone for at least one interval: delete them.
    pub orphans: Vec<Claim>,
    /// Claims outside every configured CIDR (or on a reserved address): report them.
    pub out_of_range: Vec<Claim>,
    /// Services holding more than one claim of one family: report them.
    pub duplicate_families: Vec<(ServiceKey, IpFamily, Vec<IpAddr>)>,
}

/// Remembers suspected orphans between passes.
#[derive(Debug, Default, Clone)]
pub struct Repair {
    suspects: HashMap<IpAddr, String>,
}

impl Repair {
    /// A repair with no suspects yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass over `book`, given the UIDs of every Service that exists now.
    pub fn pass(&mut self, book: &ClaimBook, live_service_uids: &HashSet<String>) -> Findings {
        let mut findings = Findings::default();
        let mut suspects = HashMap::new();
        let mut by_family: BTreeMap<(ServiceKey, IpFamily), Vec<IpAddr>> = BTreeMap::new();
        for claim in book.claims() {
            if !live_service_uids.contains(&claim.service_uid) {
                if self.suspects.get(&claim.address) == Some(&claim.service_uid) {
                    findings.orphans.push(claim.clone());
                } else {
                    suspects.insert(claim.address, claim.service_uid.clone());
                }
                continue;
            }
            if placement(book, claim.address) != Placement::InRange {
                findings.out_of_range.push(claim.clone());
            }
            by_family
                .entry((claim.service.clone(), IpFamily::of(claim.address)))
                .or_default()
                .push(claim.address);
        }
        self.suspects = suspects;
        for ((service, family), mut addresses) in by_family {
            if addresses.len() > 1 {
                addresses.sort();
                findings
                    .duplicate_families
                    .push((service, family, addresses));
            }
        }
        findings.orphans.sort_by_key(|c| c.address);
        findings.out_of_range.sort_by_key(|c| c.address);
        findings
    }
}

fn placement(book: &ClaimBook, address: IpAddr) -> Placement {
    match book.allocator().cidr_of(address) {
        None => Placement::OutOfRange,
        Some(_) if book.allocator().is_allocated(address) => Placement::InRange,
        Some(_) => Placement::Reserved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::Allocator;

    fn claim(address: &str, svc: &str) -> Claim {
        Claim {
            address: address.parse().unwrap(),
            service: ServiceKey::new("demo", svc),
            service_uid: format!("uid-{svc}"),
            claim_uid: None,
        }
    }

    fn book(claims: &[Claim]) -> ClaimBook {
        let mut book = ClaimBook::new(
            Allocator::new([
                "10.200.0.0/24".parse().unwrap(),
                "fd00::/64".parse().unwrap(),
            ])
            .unwrap(),
        );
        for c in claims {
            book.observe(c.clone());
        }
        book
    }

    fn live(uids: &[&str]) -> HashSet<String> {
        uids.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn an_orphan_is_deleted_only_on_the_second_pass() {
        let book = book(&[claim("10.200.0.1", "gone"), claim("10.200.0.2", "here")]);
        let mut repair = Repair::new();
        assert!(repair.pass(&book, &live(&["uid-here"])).orphans.is_empty());
        let second = repair.pass(&book, &live(&["uid-here"]));
        assert_eq!(second.orphans, vec![claim("10.200.0.1", "gone")]);
    }

    #[test]
    fn a_service_that_appears_in_between_keeps_its_claim() {
        let book = book(&[claim("10.200.0.1", "late")]);
        let mut repair = Repair::new();
        repair.pass(&book, &live(&[]));
        assert!(repair.pass(&book, &live(&["uid-late"])).orphans.is_empty());
        assert!(repair.pass(&book, &live(&["uid-late"])).orphans.is_empty());
    }

    #[test]
    fn out_of_range_claims_and_duplicate_families_are_reported() {
        let book = book(&[
            claim("10.9.9.9", "old"),
            claim("10.200.0.1", "twice"),
            claim("10.200.0.2", "twice"),
            claim("fd00::1", "twice"),
        ]);
        let findings = Repair::new().pass(&book, &live(&["uid-old", "uid-twice"]));
        assert_eq!(findings.out_of_range, vec![claim("10.9.9.9", "old")]);
        assert_eq!(
            findings.duplicate_families,
            vec![(
                ServiceKey::new("demo", "twice"),
                IpFamily::V4,
                vec!["10.200.0.1".parse().unwrap(), "10.200.0.2".parse().unwrap()]
            )]
        );
    }
}
