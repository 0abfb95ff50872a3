//! In-memory indexes the records reconciler keeps instead of scanning caches on every
//! reconcile.
//!
//! - [`VipIndex`]: a Service's virtual IPs, from the `ServiceIP` claims. Claims are
//!   cluster-wide and there is one per allocated address, so finding a Service's few addresses
//!   by scanning them all would cost O(claims) per reconcile.
//! - [`SliceNames`]: the names of a Service's EndpointSlices (by their
//!   `kubernetes.io/service-name` label), so a headless Service reads only its own slices.
//! - [`RecordsIndex`]: both, and the controller's notes about its own writes, fed by every
//!   watch handler of the records controller.
//!
//! Both are fed from informer handlers and report which Services a change concerns, so the
//! handlers queue exactly those and nothing when a relist repeats what was known.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use signpost_core::ipam::Claim;
use signpost_core::keys::ServiceKey;
use signpost_crds::{DNSRecord, ServiceIP};

pub use crate::lookups::SliceNames;

/// What the index keeps of one claim: the Service UID it was made for, and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vip {
    service_uid: String,
    address: IpAddr,
}

/// Virtual IPs by Service, fed from the claims informer.
#[derive(Debug, Default)]
pub struct VipIndex {
    /// Service → claim name → what the claim holds.
    by_service: HashMap<ServiceKey, BTreeMap<String, Vip>>,
    /// Claim name → the Service it is filed under (a claim's `serviceRef` could in principle
    /// be edited; the old filing must go).
    service_of: HashMap<String, ServiceKey>,
}

impl VipIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Files claim `name` (address `address`, made for Service `service` with UID
    /// `service_uid`). Returns the Services whose addresses changed (none when the claim was
    /// already filed exactly so).
    pub fn apply(
        &mut self,
        name: &str,
        service: ServiceKey,
        service_uid: &str,
        address: IpAddr,
    ) -> Vec<ServiceKey> {
        let vip = Vip {
            service_uid: service_uid.to_owned(),
            address,
        };
        if self.service_of.get(name) == Some(&service)
            && self
                .by_service
                .get(&service)
                .and_then(|claims| claims.get(name))
                == Some(&vip)
        {
            return Vec::new();
        }
        let mut affected = Vec::with_capacity(2);
        if let Some(previous) = self.remove(name)
            && previous != service
        {
            affected.push(previous);
        }
        self.by_service
            .entry(service.clone())
            .or_default()
            .insert(name.to_owned(), vip);
        self.service_of.insert(name.to_owned(), service.clone());
        affected.push(service);
        affected
    }

    /// Forgets claim `name`; returns the Service it was filed under.
    pub fn remove(&mut self, name: &str) -> Option<ServiceKey> {
        let service = self.service_of.remove(name)?;
        if let Some(claims) = self.by_service.get_mut(&service) {
            claims.remove(name);
            if claims.is_empty() {
                self.by_service.remove(&service);
            }
        }
        Some(service)
    }

    /// Replaces the whole index with `claims` (name, Service, Service UID, address), as after a
    /// relist. Returns the Services whose addresses changed.
    pub fn rebuild(
        &mut self,
        claims: impl IntoIterator<Item = (String, ServiceKey, String, IpAddr)>,
    ) -> HashSet<ServiceKey> {
        let mut fresh = VipIndex::new();
        for (name, service, uid, address) in claims {
            fresh.apply(&name, service, &uid, address);
        }
        let mut affected = HashSet::new();
        for (service, claims) in &self.by_service {
            if fresh.by_service.get(service) != Some(claims) {
                affected.insert(service.clone());
            }
        }
        for service in fresh.by_service.keys() {
            if !self.by_service.contains_key(service) {
                affected.insert(service.clone());
            }
        }
        *self = fresh;
        affected
    }

    /// The addresses claimed for `service` while it had UID `service_uid`, lowest first.
    /// Claims made for an earlier Service of the same name do not count: IPAM is about to
    /// release them, and publishing them would point the new Service's name at a stale
    /// address.
    pub fn vips_of(&self, service: &ServiceKey, service_uid: &str) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .by_service
            .get(service)
            .into_iter()
            .flat_map(|claims| claims.values())
            .filter(|vip| vip.service_uid == service_uid)
            .map(|vip| vip.address)
            .collect();
        out.sort();
        out
    }

    /// Number of claims filed.
    pub fn len(&self) -> usize {
        self.service_of.len()
    }

    /// Whether no claim is filed.
    pub fn is_empty(&self) -> bool {
        self.service_of.is_empty()
    }
}

/// What the records controller knows between events.
#[derive(Debug, Default)]
pub struct RecordsIndex {
    /// Each Service's virtual IPs, from the claims.
    pub vips: VipIndex,
    /// Each Service's EndpointSlices (headless Services render from them).
    pub slices: SliceNames,
    /// resourceVersion of our last DNSRecord write per Service (and when it was made), until
    /// the cache shows it: working from an older cached copy would only earn a conflict.
    pub written: HashMap<ServiceKey, (String, Instant)>,
    /// The foreign DNSRecord versions already reported, so each is reported once.
    pub reported_foreign: HashMap<ServiceKey, String>,
    /// The Service versions whose record could not be rendered, already reported.
    pub reported_invalid: HashMap<ServiceKey, String>,
    /// Only claims of this namespace count (tests scope a controller to one); `None`: all.
    namespace: Option<String>,
}

impl RecordsIndex {
    /// An empty index that files the claims of `namespace` only (`None`: of every namespace).
    pub fn new(namespace: Option<String>) -> Self {
        Self {
            namespace,
            ..Self::default()
        }
    }

    fn in_scope(&self, claim: &Claim) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| ns == claim.service.namespace)
    }

    /// A claim was created or changed: the Services whose addresses changed. A malformed
    /// claim, or one of another namespace, is filed nowhere.
    pub fn apply_claim(&mut self, object: &ServiceIP) -> Vec<ServiceKey> {
        let name = object.metadata.name.as_deref().unwrap_or_default();
        match Claim::of(object) {
            Some(claim) if self.in_scope(&claim) => {
                self.vips
                    .apply(name, claim.service, &claim.service_uid, claim.address)
            }
            _ => self.vips.remove(name).into_iter().collect(),
        }
    }

    /// A claim was deleted: the Service that lost an address.
    pub fn delete_claim(&mut self, object: &ServiceIP) -> Option<ServiceKey> {
        self.vips
            .remove(object.metadata.name.as_deref().unwrap_or_default())
    }

    /// The claim watch relisted and holds `objects`: the Services whose addresses changed.
    pub fn reset_claims<'a>(
        &mut self,
        objects: impl IntoIterator<Item = &'a ServiceIP>,
    ) -> HashSet<ServiceKey> {
        let claims: Vec<(String, ServiceKey, String, IpAddr)> = objects
            .into_iter()
            .filter_map(|object| {
                let claim = Claim::of(object)?;
                self.in_scope(&claim).then(|| {
                    (
                        object.metadata.name.clone().unwrap_or_default(),
                        claim.service,
                        claim.service_uid,
                        claim.address,
                    )
                })
            })
            .collect();
        self.vips.rebuild(claims)
    }

    /// A slice was created or changed: the Services whose slices changed (its own, and the
    /// one it was filed under before a relabel).
    pub fn apply_slice(&mut self, slice: &EndpointSlice) -> Vec<ServiceKey> {
        let filed = self.slices.insert(slice);
        filed.moved_from.into_iter().chain(filed.service).collect()
    }

    /// A slice was deleted: the Service it belonged to.
    pub fn delete_slice(&mut self, slice: &EndpointSlice) -> Option<ServiceKey> {
        self.slices.remove(slice).map(|(key, _)| key)
    }

    /// The slice watch relisted and holds `slices`: every Service that has slices.
    pub fn reset_slices<'a>(
        &mut self,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Vec<ServiceKey> {
        self.slices.rebuild(slices)
    }

    /// A DNSRecord was created or changed: its Service, to sync. Once the cache shows our
    /// last write, the Service may write again.
    pub fn apply_record(&mut self, record: &DNSRecord) -> ServiceKey {
        let key = record_key(record);
        if self.written.get(&key).map(|(version, _)| version)
            == record.metadata.resource_version.as_ref()
        {
            self.written.remove(&key);
        }
        key
    }

    /// A DNSRecord was deleted: its Service, to sync.
    pub fn delete_record(&mut self, record: &DNSRecord) -> ServiceKey {
        let key = record_key(record);
        self.written.remove(&key);
        key
    }

    /// The DNSRecord watch relisted: whatever we wrote is in the cache now.
    pub fn reset_records(&mut self) {
        self.written.clear();
    }
}

/// The Service a DNSRecord is for: the one of the same name.
pub fn record_key(record: &DNSRecord) -> ServiceKey {
    ServiceKey::new(
        record.metadata.namespace.clone().unwrap_or_default(),
        record.metadata.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("demo", name)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A claim as the index files it (name, Service, Service UID, address), named as ServiceIPs
    /// are: the address, ':' written as '-'.
    fn claim(address: &str, service: &str, uid: &str) -> (String, ServiceKey, String, IpAddr) {
        (
            address.replace(':', "-"),
            key(service),
            uid.into(),
            ip(address),
        )
    }

    /// An index that was given `claims`, one after the other.
    fn index_of<const N: usize>(claims: [(String, ServiceKey, String, IpAddr); N]) -> VipIndex {
        let mut index = VipIndex::new();
        for (name, service, uid, address) in claims {
            index.apply(&name, service, &uid, address);
        }
        index
    }

    #[test]
    fn vips_count_only_claims_of_the_current_service_uid() {
        let index = index_of([
            claim("10.96.0.9", "web", "uid-old"),
            claim("10.96.0.7", "web", "uid-new"),
            claim("fd00::7", "web", "uid-new"),
        ]);
        assert_eq!(
            index.vips_of(&key("web"), "uid-new"),
            vec![ip("10.96.0.7"), ip("fd00::7")]
        );
        assert_eq!(index.vips_of(&key("web"), "uid-old"), vec![ip("10.96.0.9")]);
        assert!(index.vips_of(&key("db"), "uid-new").is_empty());
    }

    #[test]
    fn reapplying_an_unchanged_claim_concerns_nobody() {
        let mut index = VipIndex::new();
        assert_eq!(
            index.apply("10.96.0.7", key("web"), "u", ip("10.96.0.7")),
            vec![key("web")]
        );
        assert!(
            index
                .apply("10.96.0.7", key("web"), "u", ip("10.96.0.7"))
                .is_empty()
        );
    }

    #[test]
    fn a_claim_refiled_under_another_service_concerns_both() {
        let mut index = index_of([claim("10.96.0.7", "web", "u1")]);
        let affected = index.apply("10.96.0.7", key("db"), "u2", ip("10.96.0.7"));
        assert_eq!(affected, vec![key("web"), key("db")]);
        assert!(index.vips_of(&key("web"), "u1").is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn removing_the_last_claim_leaves_no_empty_entry() {
        let mut index = index_of([claim("10.96.0.7", "web", "u")]);
        assert_eq!(index.remove("10.96.0.7"), Some(key("web")));
        assert_eq!(index.remove("10.96.0.7"), None);
        assert!(index.is_empty());
        assert!(index.by_service.is_empty());
    }

    #[test]
    fn rebuild_reports_only_services_whose_addresses_changed() {
        let mut index = index_of([
            claim("10.96.0.1", "same", "u"),
            claim("10.96.0.2", "gone", "u"),
            claim("10.96.0.3", "moved", "u"),
        ]);
        let affected = index.rebuild([
            claim("10.96.0.1", "same", "u"),
            claim("10.96.0.4", "moved", "u"),
            claim("10.96.0.5", "new", "u"),
        ]);
        let mut names: Vec<String> = affected.into_iter().map(|k| k.name).collect();
        names.sort();
        assert_eq!(names, vec!["gone", "moved", "new"]);
        assert_eq!(index.vips_of(&key("moved"), "u"), vec![ip("10.96.0.4")]);
    }
}
