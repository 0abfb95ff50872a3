//! What the endpoints controller knows between watch events, and which Services each event
//! concerns.
//!
//! Every watch handler of the controller is one call here: it folds the object into the
//! index and returns the Services to sync, so the controller's handlers only queue what they
//! are told. Pods are never cached whole: each is kept as its [`PodRecord`] in a [`PodIndex`],
//! and a [`SelectorIndex`] maps a pod change to the Services whose selectors may match it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::jiff::Timestamp;
use signpost_core::endpoints::pod::{NodeZones, PodRecord};
use signpost_core::endpoints::service_selector;
use signpost_core::keys::ServiceKey;

use crate::lookups::{PodIndex, SelectorIndex};
use crate::own_slices::OwnSlices;

/// The endpoints controller's state between events.
#[derive(Default)]
pub struct EndpointsIndex {
    /// Every pod's record, by namespace.
    pub pods: PodIndex,
    /// Each Service's selector, filed so a pod finds the Services that may select it.
    pub selectors: SelectorIndex,
    /// Node → zone, for the endpoints' `zone`.
    pub zones: NodeZones,
    /// Our slices by Service, and our writes the watch has not shown yet; the slice watch's
    /// handler feeds it directly ([`OwnSlices::apply`] and its siblings).
    pub slices: OwnSlices,
    /// When the oldest change not yet written happened, per Service.
    pub triggers: HashMap<ServiceKey, Timestamp>,
    /// The foreign Endpoints versions already reported, so each is reported once.
    pub reported_foreign: HashMap<ServiceKey, String>,
    /// What our last Endpoints write per Service returned, until the cache shows it: the next
    /// write starts from it (writing from an older cached copy would only earn a conflict,
    /// and waiting for the watch would hold a change that follows closely).
    pub endpoints_written: HashMap<ServiceKey, Arc<Endpoints>>,
}

impl EndpointsIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// A Service was created or changed: its selector is filed anew; sync it.
    pub fn apply_service(&mut self, service: &Service) -> ServiceKey {
        let key = ServiceKey::of(service);
        self.selectors.set(key.clone(), service_selector(service));
        key
    }

    /// A Service was deleted: its selector goes; sync it (its objects are removed).
    pub fn delete_service(&mut self, service: &Service) -> ServiceKey {
        let key = ServiceKey::of(service);
        self.selectors.remove(&key);
        key
    }

    /// The Service watch relisted: `current` is every Service now, `removed` those that
    /// vanished while it was down. Every one of them is to be synced.
    pub fn reset_services<'a>(
        &mut self,
        current: impl IntoIterator<Item = &'a Service>,
        removed: impl IntoIterator<Item = &'a Service>,
    ) -> Vec<ServiceKey> {
        let mut keys: Vec<ServiceKey> = removed
            .into_iter()
            .map(|svc| self.delete_service(svc))
            .collect();
        keys.extend(current.into_iter().map(|svc| self.apply_service(svc)));
        keys
    }

    /// A pod was created or changed. Returns the Services whose endpoints it may change: those
    /// selecting it before or after, unless nothing an endpoint is made of changed. With
    /// `route` false (the caches are still filling at start-up, and every Service will be
    /// synced once they are full) the record is only kept, which saves working out the
    /// Services of every pod of the cluster.
    pub fn apply_pod(
        &mut self,
        record: PodRecord,
        route: bool,
        now: Timestamp,
    ) -> HashSet<ServiceKey> {
        let mut affected = HashSet::new();
        if !route {
            self.pods.upsert(record);
            return affected;
        }
        let old = self.pods.get(&record.namespace, &record.name).cloned();
        if old
            .as_ref()
            .is_some_and(|old| old.same_endpoint_inputs(&record))
        {
            self.pods.upsert(record);
            return affected;
        }
        services_of(&self.selectors, &record, &mut affected);
        if let Some(old) = &old {
            services_of(&self.selectors, old, &mut affected);
        }
        self.pods.upsert(record);
        self.triggered(&affected, now);
        affected
    }

    /// A pod was deleted: the Services that selected it.
    pub fn delete_pod(
        &mut self,
        namespace: &str,
        name: &str,
        now: Timestamp,
    ) -> HashSet<ServiceKey> {
        let mut affected = HashSet::new();
        if let Some(old) = self.pods.remove(namespace, name) {
            services_of(&self.selectors, &old, &mut affected);
        }
        self.triggered(&affected, now);
        affected
    }

    /// The pod watch starts a relist: pods not seen again before [`Self::finish_pod_relist`]
    /// are gone.
    pub fn begin_pod_relist(&mut self) {
        self.pods.begin_relist();
    }

    /// The pod watch finished a relist: the Services that selected the pods that vanished.
    pub fn finish_pod_relist(&mut self, now: Timestamp) -> HashSet<ServiceKey> {
        let mut affected = HashSet::new();
        for gone in self.pods.finish_relist() {
            services_of(&self.selectors, &gone, &mut affected);
        }
        self.triggered(&affected, now);
        affected
    }

    /// Notes `now` as the trigger time of each Service that has none pending.
    fn triggered(&mut self, keys: &HashSet<ServiceKey>, now: Timestamp) {
        for key in keys {
            self.triggers.entry(key.clone()).or_insert(now);
        }
    }

    /// An Endpoints object was created or changed: its Service, to sync, unless the change is
    /// only the echo of our own last write (the sync planned from that write already). Once
    /// the cache shows our last write, the Service's next write starts from the cache again.
    pub fn apply_endpoints(&mut self, endpoints: &Endpoints) -> Option<ServiceKey> {
        let key = endpoints_key(endpoints);
        let ours = self.endpoints_written.get(&key);
        let echo = ours.is_some_and(|e| {
            e.metadata.resource_version.is_some()
                && e.metadata.resource_version == endpoints.metadata.resource_version
        });
        if echo {
            self.endpoints_written.remove(&key);
            return None;
        }
        Some(key)
    }

    /// An Endpoints object was deleted: its Service, to sync.
    pub fn delete_endpoints(&mut self, endpoints: &Endpoints) -> ServiceKey {
        let key = endpoints_key(endpoints);
        self.endpoints_written.remove(&key);
        key
    }

    /// The Endpoints watch relisted: whatever we wrote is in the cache now. Every Service is
    /// to be synced.
    pub fn reset_endpoints(&mut self) {
        self.endpoints_written.clear();
    }

    /// A Node was created or changed: whether its zone changed (then every Service is to be
    /// synced: zones change rarely, when a node joins or is relabelled).
    pub fn apply_node(&mut self, node: &Node) -> bool {
        self.zones.apply_node(node)
    }

    /// A Node was deleted: whether a zone went with it.
    pub fn delete_node(&mut self, name: &str) -> bool {
        self.zones.remove(name)
    }

    /// The Node watch relisted and holds `nodes`; every Service is to be synced.
    pub fn reset_nodes<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Node>) {
        let mut zones = NodeZones::new();
        for node in nodes {
            zones.apply_node(node);
        }
        self.zones = zones;
    }
}

fn services_of(selectors: &SelectorIndex, pod: &PodRecord, out: &mut HashSet<ServiceKey>) {
    selectors.services_selecting(
        &pod.namespace,
        pod.labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref())),
        out,
    );
}

/// The Service an Endpoints object belongs to: the one of the same name.
pub fn endpoints_key(endpoints: &Endpoints) -> ServiceKey {
    ServiceKey::new(
        endpoints.metadata.namespace.clone().unwrap_or_default(),
        endpoints.metadata.name.clone().unwrap_or_default(),
    )
}

impl AsMut<OwnSlices> for EndpointsIndex {
    fn as_mut(&mut self) -> &mut OwnSlices {
        &mut self.slices
    }
}
