//! The IPAM controller's view of who holds which address.
//!
//! A [`ClaimBook`] pairs the allocator's bitmaps with an index of the `ServiceIP` claims by
//! address and by Service. It is fed from the claims' watch and from the controller's own
//! successful writes (so a claim just created counts before its watch event arrives). It stays
//! a cache: the API server's refusal of a second claim of one name is what guarantees that no
//! address is held twice.

pub use crate::keys::ServiceKey;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use signpost_crds::ServiceIP;

use super::{AllocError, Allocation, Allocator, IpFamily};

/// One `ServiceIP` claim as the controller needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The claimed address.
    pub address: IpAddr,
    /// The Service holding it.
    pub service: ServiceKey,
    /// UID of that Service when the claim was made.
    pub service_uid: String,
    /// UID of the claim object itself: deletes are conditional on it, so a claim that was
    /// deleted and made again by someone else is never removed by mistake.
    pub claim_uid: Option<String>,
}

impl Claim {
    /// The claim a `ServiceIP` object stands for, if it is well formed.
    pub fn of(object: &ServiceIP) -> Option<Self> {
        let address: IpAddr = object.spec.address.parse().ok()?;
        let service = &object.spec.service_ref;
        Some(Self {
            address,
            service: ServiceKey::new(&service.namespace, &service.name),
            service_uid: service.uid.clone(),
            claim_uid: object.metadata.uid.clone(),
        })
    }
}

/// How a claim relates to the configured CIDRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Inside a configured CIDR, and now marked in use.
    InRange,
    /// Outside every configured CIDR (left from another configuration): indexed, not in any
    /// bitmap.
    OutOfRange,
    /// On an address the allocator never hands out.
    Reserved,
}

/// Addresses held, by address and by Service, over the allocator's bitmaps.
#[derive(Debug, Clone)]
pub struct ClaimBook {
    allocator: Allocator,
    by_address: HashMap<IpAddr, Claim>,
    by_service: HashMap<ServiceKey, BTreeSet<IpAddr>>,
}

impl ClaimBook {
    /// An empty book over `allocator`'s CIDRs.
    pub fn new(allocator: Allocator) -> Self {
        Self {
            allocator,
            by_address: HashMap::new(),
            by_service: HashMap::new(),
        }
    }

    /// The allocator, for usage figures and the configured families.
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Records a claim seen in the API (or just created). Idempotent; the claim replaces
    /// whatever the book held for its address, since the API is the truth.
    pub fn observe(&mut self, claim: Claim) -> Placement {
        let placement = match self.allocator.mark_in_use(claim.address) {
            Ok(_) => Placement::InRange,
            Err(AllocError::OutOfRange { .. }) => Placement::OutOfRange,
            Err(AllocError::Reserved { .. }) => Placement::Reserved,
            // mark_in_use is idempotent; any other error still means "held".
            Err(_) => Placement::InRange,
        };
        if let Some(previous) = self.by_address.get(&claim.address)
            && previous.service != claim.service
        {
            let key = previous.service.clone();
            self.unindex(&key, claim.address);
        }
        self.by_service
            .entry(claim.service.clone())
            .or_default()
            .insert(claim.address);
        self.by_address.insert(claim.address, claim);
        placement
    }

    /// Marks an address as held by someone the book does not index (another namespace's
    /// claim when the controller is scoped to one namespace).
    pub fn mark_foreign(&mut self, address: IpAddr) {
        let _ = self.allocator.mark_in_use(address);
    }

    /// Forgets the claim on `address` (deleted in the API) and frees the address.
    pub fn forget(&mut self, address: IpAddr) -> Option<Claim> {
        let claim = self.by_address.remove(&address);
        if let Some(claim) = &claim {
            let key = claim.service.clone();
            self.unindex(&key, address);
        }
        self.allocator.release(address);
        claim
    }

    fn unindex(&mut self, key: &ServiceKey, address: IpAddr) {
        if let Some(set) = self.by_service.get_mut(key) {
            set.remove(&address);
            if set.is_empty() {
                self.by_service.remove(key);
            }
        }
    }

    /// The claims a Service holds, by address.
    pub fn claims_of(&self, key: &ServiceKey) -> Vec<Claim> {
        self.by_service
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|a| self.by_address.get(a).cloned())
            .collect()
    }

    /// The claim on `address`, if any.
    pub fn claim_at(&self, address: IpAddr) -> Option<&Claim> {
        self.by_address.get(&address)
    }

    /// Every Service holding at least one claim.
    pub fn services(&self) -> impl Iterator<Item = &ServiceKey> {
        self.by_service.keys()
    }

    /// Every claim.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.by_address.values()
    }

    /// Reserves the next free address of `family` for a claim about to be created.
    pub fn reserve_next(&mut self, family: IpFamily) -> Result<Allocation, AllocError> {
        self.allocator.allocate_next(family)
    }

    /// Reserves `address` for a claim about to be created.
    pub fn reserve(&mut self, address: IpAddr) -> Result<IpNet, AllocError> {
        self.allocator.allocate(address)
    }

    /// Gives back a reservation whose claim could not be created (and is not held by anyone
    /// the book knows).
    pub fn unreserve(&mut self, address: IpAddr) {
        if !self.by_address.contains_key(&address) {
            self.allocator.release(address);
        }
    }

    /// Empties the book and the bitmaps, before rebuilding them from a full list of claims.
    pub fn reset(&mut self) {
        self.allocator.reset();
        self.by_address.clear();
        self.by_service.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> ClaimBook {
        ClaimBook::new(Allocator::new(["10.200.0.0/29".parse().unwrap()]).unwrap())
    }

    fn claim(address: &str, svc: &str) -> Claim {
        Claim {
            address: address.parse().unwrap(),
            service: ServiceKey::new("demo", svc),
            service_uid: format!("uid-{svc}"),
            claim_uid: Some(format!("claim-{address}")),
        }
    }

    #[test]
    fn observed_claims_are_indexed_and_taken() {
        let mut book = book();
        assert_eq!(book.observe(claim("10.200.0.1", "a")), Placement::InRange);
        assert_eq!(book.claims_of(&ServiceKey::new("demo", "a")).len(), 1);
        assert!(book.allocator().is_allocated("10.200.0.1".parse().unwrap()));
        let next = book.reserve_next(IpFamily::V4).unwrap();
        assert_ne!(next.address, "10.200.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn out_of_range_and_reserved_claims_are_told_apart() {
        let mut book = book();
        assert_eq!(book.observe(claim("10.9.0.1", "a")), Placement::OutOfRange);
        assert_eq!(book.observe(claim("10.200.0.0", "b")), Placement::Reserved);
        assert_eq!(
            book.claims().count(),
            2,
            "still indexed, so they can be reported and cleaned"
        );
    }

    #[test]
    fn forgetting_frees_the_address_and_the_index() {
        let mut book = book();
        book.observe(claim("10.200.0.1", "a"));
        assert!(book.forget("10.200.0.1".parse().unwrap()).is_some());
        assert!(book.claims_of(&ServiceKey::new("demo", "a")).is_empty());
        assert_eq!(book.services().count(), 0);
        assert!(!book.allocator().is_allocated("10.200.0.1".parse().unwrap()));
    }

    #[test]
    fn a_claim_moving_to_another_service_is_reindexed() {
        let mut book = book();
        book.observe(claim("10.200.0.1", "a"));
        book.observe(claim("10.200.0.1", "b"));
        assert!(book.claims_of(&ServiceKey::new("demo", "a")).is_empty());
        assert_eq!(book.claims_of(&ServiceKey::new("demo", "b")).len(), 1);
    }

    #[test]
    fn unreserve_keeps_addresses_someone_claimed_meanwhile() {
        let mut book = book();
        let reserved = book.reserve_next(IpFamily::V4).unwrap().address;
        book.observe(Claim {
            address: reserved,
            ..claim("10.200.0.1", "other")
        });
        book.unreserve(reserved);
        assert!(book.allocator().is_allocated(reserved));
    }

    #[test]
    fn reset_then_observe_rebuilds_the_same_state() {
        let mut book = book();
        book.observe(claim("10.200.0.1", "a"));
        book.observe(claim("10.200.0.2", "b"));
        let claims: Vec<Claim> = book.claims().cloned().collect();
        book.reset();
        assert_eq!(book.claims().count(), 0);
        for c in claims {
            book.observe(c);
        }
        let usage = book.allocator().usage();
        assert_eq!(usage[0].used, 2);
    }
}
