//! What the IPAM controller knows between events: every address held, by address and by
//! Service (the [`ClaimBook`] over the allocator's bitmaps), and the Services waiting for an
//! address to be freed.
//!
//! The `ServiceIP` claims are the durable truth; the book is rebuilt from them after every
//! relist, and each claim event is folded in here and answers which Services to sync.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

use signpost_core::ipam::{Allocator, Claim, ClaimBook};
use signpost_core::keys::ServiceKey;
use signpost_crds::ServiceIP;

/// The IPAM controller's state between events.
#[derive(Debug, Clone)]
pub struct ClaimsIndex {
    /// Every claimed address, over the allocator's bitmaps.
    pub book: ClaimBook,
    /// Services that found their range full or their requested address held: synced again
    /// as soon as an address is freed.
    waiting: HashSet<ServiceKey>,
    /// Only Services of this namespace are this controller's (tests scope one to a
    /// namespace); other claims only mark their addresses taken. `None`: every namespace.
    namespace: Option<String>,
    /// ClusterIP mode: addresses the admission webhook wrote into Services being created, and
    /// when each was given, until a claim takes it over or it runs out. Held addresses are
    /// marked in the bitmaps, so they are never handed out twice; no Service key is kept, as
    /// a Service may get its name only after admission (`generateName`) and the API server
    /// lets one Service at most hold an address.
    holds: HashMap<IpAddr, Instant>,
    /// ClusterIP mode: addresses in the CIDRs that the API server's `IPAddress` objects hold.
    /// Every Service's ClusterIP has one, and so may an address someone reserved by hand:
    /// those stay marked whatever the claims say, so the webhook never offers an address the
    /// API server would refuse.
    ip_objects: HashMap<IpAddr, Option<ServiceKey>>,
}

impl ClaimsIndex {
    /// An empty index over `allocator`, owning the Services of `namespace` (`None`: all).
    pub fn new(allocator: Allocator, namespace: Option<String>) -> Self {
        Self {
            book: ClaimBook::new(allocator),
            waiting: HashSet::new(),
            namespace,
            holds: HashMap::new(),
            ip_objects: HashMap::new(),
        }
    }

    /// Whether Services of `namespace` are this controller's.
    pub fn in_scope(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }

    /// Files `claim`: ours are booked under their Service, others' only mark the address.
    pub fn observe(&mut self, claim: Claim) {
        if self.in_scope(&claim.service.namespace) {
            self.book.observe(claim);
        } else {
            self.book.mark_foreign(claim.address);
        }
    }

    /// A claim was created or changed: its Service, to sync, when it is ours.
    pub fn apply_claim(&mut self, object: &ServiceIP) -> Option<ServiceKey> {
        let claim = Claim::of(object)?;
        let key = claim.service.clone();
        self.observe(claim);
        self.in_scope(&key.namespace).then_some(key)
    }

    /// A claim was deleted: its Service when it is ours, and every Service waiting for an
    /// address when this freed one. The book forgets the address only if it holds this very
    /// claim (or an address held outside this controller's scope): a claim deleted and made
    /// again by someone else is not forgotten by mistake.
    pub fn delete_claim(&mut self, object: &ServiceIP) -> Vec<ServiceKey> {
        let Some(claim) = Claim::of(object) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        let this_claim = match self.book.claim_at(claim.address) {
            None => true,
            Some(current) => current.claim_uid == claim.claim_uid || current.claim_uid.is_none(),
        };
        if this_claim {
            self.forget_claim(claim.address);
            keys.extend(self.address_freed());
        }
        if self.in_scope(&claim.service.namespace) {
            keys.push(claim.service);
        }
        keys
    }

    /// The claim watch relisted and holds `objects`: the book is rebuilt from them. Returns
    /// the Services holding claims and those that were waiting for an address.
    pub fn reset_claims<'a>(
        &mut self,
        objects: impl IntoIterator<Item = &'a ServiceIP>,
    ) -> Vec<ServiceKey> {
        self.book.reset();
        // Holds and IPAddress objects are not claims: they live only here and go on marking
        // their addresses.
        for address in self.holds.keys().chain(self.ip_objects.keys()) {
            self.book.mark_foreign(*address);
        }
        let mut keys = Vec::new();
        for claim in objects.into_iter().filter_map(Claim::of) {
            if self.in_scope(&claim.service.namespace) {
                keys.push(claim.service.clone());
            }
            self.observe(claim);
        }
        keys.extend(self.address_freed());
        keys
    }

    /// `key` waits for the next address to be freed: its range is full, or the address it
    /// requests is held by another Service.
    pub fn wait_for_a_freed_address(&mut self, key: &ServiceKey) {
        self.waiting.insert(key.clone());
    }

    /// An address was freed: the Services that were waiting for one, to sync (each once).
    pub fn address_freed(&mut self) -> Vec<ServiceKey> {
        self.waiting.drain().collect()
    }

    /// The admission webhook gave `addresses` (held in the bitmaps already) at `now`.
    pub fn hold(&mut self, addresses: &[IpAddr], now: Instant) {
        for address in addresses {
            self.holds.insert(*address, now);
        }
    }

    /// Ends the holds given before `deadline` whose Service never claimed them (its create
    /// was refused after admission, or never sent): their addresses are free again. Returns
    /// them.
    pub fn expire_holds(&mut self, deadline: Instant) -> Vec<IpAddr> {
        let expired: Vec<IpAddr> = self
            .holds
            .iter()
            .filter(|(_, given)| **given < deadline)
            .map(|(address, _)| *address)
            .collect();
        for address in &expired {
            self.holds.remove(address);
            if !self.ip_objects.contains_key(address) {
                self.book.unreserve(*address);
            }
        }
        expired
    }

    /// Addresses held for Services being created.
    pub fn held(&self) -> usize {
        self.holds.len()
    }

    /// Forgets the claim on `address` (released, or deleted in the API); the address stays
    /// marked while an `IPAddress` object or a hold still holds it.
    pub fn forget_claim(&mut self, address: IpAddr) {
        self.book.forget(address);
        if self.ip_objects.contains_key(&address) || self.holds.contains_key(&address) {
            self.book.mark_foreign(address);
        }
    }

    /// An `IPAddress` object holds `address` for `parent` (the Service it names, if any):
    /// marked when it lies in the CIDRs.
    pub fn apply_ip_address(&mut self, address: IpAddr, parent: Option<ServiceKey>) {
        if self.book.allocator().cidr_of(address).is_some() {
            self.ip_objects.insert(address, parent);
            self.book.mark_foreign(address);
        }
    }

    /// Whether `key` may claim `address` although its bit is set: the webhook held it for a
    /// Service being created (the hold ends), or the API server's `IPAddress` object gives it
    /// to this very Service and no claim has it (a Service created while Signpost was down,
    /// adopted now).
    pub fn take_for(&mut self, address: IpAddr, key: &ServiceKey) -> bool {
        if self.holds.remove(&address).is_some() {
            return true;
        }
        self.book.claim_at(address).is_none()
            && self.ip_objects.get(&address) == Some(&Some(key.clone()))
    }

    /// The `IPAddress` object of `address` was deleted: the address is free unless a claim or
    /// a hold has it. Returns the Services waiting for a free address when it is.
    pub fn delete_ip_address(&mut self, address: IpAddr) -> Vec<ServiceKey> {
        let held = self.book.claim_at(address).is_some() || self.holds.contains_key(&address);
        if self.ip_objects.remove(&address).is_some() && !held {
            self.book.unreserve(address);
            return self.address_freed();
        }
        Vec::new()
    }

    /// The `IPAddress` watch relisted and holds `addresses`. Returns the Services waiting for
    /// a free address when one was freed.
    pub fn reset_ip_addresses(
        &mut self,
        addresses: impl IntoIterator<Item = (IpAddr, Option<ServiceKey>)>,
    ) -> Vec<ServiceKey> {
        let now: HashMap<IpAddr, Option<ServiceKey>> = addresses.into_iter().collect();
        let gone: Vec<IpAddr> = self
            .ip_objects
            .keys()
            .filter(|a| !now.contains_key(a))
            .copied()
            .collect();
        let mut keys = Vec::new();
        for address in gone {
            keys.extend(self.delete_ip_address(address));
        }
        for (address, parent) in now {
            self.apply_ip_address(address, parent);
        }
        keys
    }
}
