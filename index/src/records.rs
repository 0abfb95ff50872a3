//! In-memory indexes the records reconciler keeps instead of scanning caches on every
//! reconcile.
//!
//! - [`VipIndex`]: a Service's virtual IPs, from the `ServiceIP` claims. Claims are
//!   cluster-wide and there is one per allocated address, so finding a Service's few addresses
//!   by scanning them all would cost O(claims) per reconcile.
//! - [`SliceNames`]: the names of a Service's EndpointSlices (by their
//!   `kubernetes.io/service-name` label), so a headless Service reads only its own slices.
//!
//! Both are fed from informer handlers and report which Services a change concerns, so the
//! handlers queue exactly those and nothing when a relist repeats what was known.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use signpost_core::keys::ServiceKey;

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

/// Names of the EndpointSlices of each Service.
#[derive(Debug, Default)]
pub struct SliceNames {
    by_service: HashMap<ServiceKey, BTreeSet<String>>,
}

impl SliceNames {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes slice `name` of `service`.
    pub fn insert(&mut self, service: ServiceKey, name: &str) {
        self.by_service
            .entry(service)
            .or_default()
            .insert(name.to_owned());
    }

    /// Forgets slice `name` of `service`.
    pub fn remove(&mut self, service: &ServiceKey, name: &str) {
        if let Some(names) = self.by_service.get_mut(service) {
            names.remove(name);
            if names.is_empty() {
                self.by_service.remove(service);
            }
        }
    }

    /// The slice names of `service`.
    pub fn of(&self, service: &ServiceKey) -> impl Iterator<Item = &str> {
        self.by_service
            .get(service)
            .into_iter()
            .flat_map(|names| names.iter().map(String::as_str))
    }

    /// Forgets everything (before refilling after a relist).
    pub fn clear(&mut self) {
        self.by_service.clear();
    }
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

    #[test]
    fn vips_count_only_claims_of_the_current_service_uid() {
        let mut index = VipIndex::new();
        index.apply("10.96.0.9", key("web"), "uid-old", ip("10.96.0.9"));
        index.apply("10.96.0.7", key("web"), "uid-new", ip("10.96.0.7"));
        index.apply("fd00--7", key("web"), "uid-new", ip("fd00::7"));
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
        let mut index = VipIndex::new();
        index.apply("10.96.0.7", key("web"), "u1", ip("10.96.0.7"));
        let affected = index.apply("10.96.0.7", key("db"), "u2", ip("10.96.0.7"));
        assert_eq!(affected, vec![key("web"), key("db")]);
        assert!(index.vips_of(&key("web"), "u1").is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn removing_the_last_claim_leaves_no_empty_entry() {
        let mut index = VipIndex::new();
        index.apply("10.96.0.7", key("web"), "u", ip("10.96.0.7"));
        assert_eq!(index.remove("10.96.0.7"), Some(key("web")));
        assert_eq!(index.remove("10.96.0.7"), None);
        assert!(index.is_empty());
        assert!(index.by_service.is_empty());
    }

    #[test]
    fn rebuild_reports_only_services_whose_addresses_changed() {
        let mut index = VipIndex::new();
        index.apply("10.96.0.1", key("same"), "u", ip("10.96.0.1"));
        index.apply("10.96.0.2", key("gone"), "u", ip("10.96.0.2"));
        index.apply("10.96.0.3", key("moved"), "u", ip("10.96.0.3"));
        let affected = index.rebuild([
            ("10.96.0.1".into(), key("same"), "u".into(), ip("10.96.0.1")),
            (
                "10.96.0.4".into(),
                key("moved"),
                "u".into(),
                ip("10.96.0.4"),
            ),
            ("10.96.0.5".into(), key("new"), "u".into(), ip("10.96.0.5")),
        ]);
        let mut names: Vec<String> = affected.into_iter().map(|k| k.name).collect();
        names.sort();
        assert_eq!(names, vec!["gone", "moved", "new"]);
        assert_eq!(index.vips_of(&key("moved"), "u"), vec![ip("10.96.0.4")]);
    }

    #[test]
    fn slice_names_per_service() {
        let mut slices = SliceNames::new();
        slices.insert(key("web"), "web-b");
        slices.insert(key("web"), "web-a");
        slices.insert(key("db"), "db-a");
        assert_eq!(
            slices.of(&key("web")).collect::<Vec<_>>(),
            ["web-a", "web-b"]
        );
        slices.remove(&key("web"), "web-a");
        slices.remove(&key("web"), "web-b");
        assert_eq!(slices.of(&key("web")).count(), 0);
        assert!(!slices.by_service.contains_key(&key("web")));
        slices.clear();
        assert_eq!(slices.of(&key("db")).count(), 0);
    }
}
