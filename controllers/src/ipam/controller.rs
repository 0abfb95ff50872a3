//! The IPAM reconciler: Services in, `ServiceIP` claims out.
//!
//! Keyed by Service namespace/name so a deleted Service is handled like any other change (its
//! key has claims but no Service). Claims are created by name (the address), so the API
//! server arbitrates every race; the [`ClaimBook`] only makes the next free address a good
//! guess.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::IPAddress;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use signpost_crds::ServiceIP;
use tokio::sync::watch;

use signpost_index::claims::ClaimsIndex;

use super::admission::{AddressRefused, Admission, admit, request_from_cluster_ips};
use super::book::{Claim, ServiceKey};
use super::repair::Repair;
use super::request::{Request, request_of};
use super::{Allocator, IpFamily};
use crate::runtime::metrics::{CidrLabels, ErrorLabels};
use crate::runtime::{
    Change, ControlLoop, EventSink, Informer, Next, SharedMetrics, SyncError, WorkQueue, keys_of,
    on_change,
};

/// The Service an `IPAddress` object was made for, if it names one.
fn ip_address_parent(object: &IPAddress) -> Option<ServiceKey> {
    let parent = &object.spec.parent_ref;
    (parent.resource == "services" && parent.group.as_deref().unwrap_or("").is_empty())
        .then(|| ServiceKey::new(parent.namespace.as_deref().unwrap_or(""), &parent.name))
}

/// Name of this controller in metrics, logs and Events.
pub const CONTROLLER: &str = "ipam";
/// Field manager of the claims this controller writes.
pub const FIELD_MANAGER: &str = "signpost-ipam";
/// Labels on every claim, so `kubectl get sip -l` can find a Service's addresses.
pub const SERVICE_NAMESPACE_LABEL: &str = "signpost.dev/service-namespace";
/// See [`SERVICE_NAMESPACE_LABEL`].
pub const SERVICE_NAME_LABEL: &str = "signpost.dev/service-name";
/// How many taken addresses allocate-next skips before giving up for this round.
pub(super) const MAX_CREATE_ATTEMPTS: usize = 16;

/// Settings of the IPAM controller.
#[derive(Clone, Debug)]
pub struct IpamConfig {
    /// The allocator over the service CIDRs.
    pub allocator: Allocator,
    /// How often the repair pass runs.
    pub repair_interval: Duration,
    /// Only Services of this namespace (tests); claims of others are respected, not managed.
    pub namespace: Option<String>,
    /// Concurrent reconciles.
    pub workers: usize,
    /// ClusterIP mode: the addresses are the Services' own `spec.clusterIPs`, given at
    /// creation by the admission webhook ([`super::cluster_ip`]); this controller claims the
    /// ones in its CIDRs rather than choosing addresses itself.
    pub cluster_ip_mode: bool,
}

/// Shared state of the controller.
pub struct Ipam {
    pub(super) client: Client,
    pub(super) services: Store<Service>,
    claims: Store<ServiceIP>,
    /// ClusterIP mode: the API server's `IPAddress` objects.
    ip_addresses: Option<Store<IPAddress>>,
    pub(super) index: Mutex<ClaimsIndex>,
    control: ControlLoop<ServiceKey>,
    events: EventSink,
    pub(super) metrics: SharedMetrics,
    config: IpamConfig,
    /// Last problems reported per Service (by resourceVersion), so Events are not repeated on
    /// every reconcile of an unchanged Service.
    pub(super) reported: Mutex<HashMap<ServiceKey, (String, Vec<String>)>>,
    repair: Mutex<Repair>,
}

impl Ipam {
    /// Registers the controller's handlers on the shared informers.
    pub fn new(
        client: Client,
        services: &mut Informer<Service>,
        claims: &mut Informer<ServiceIP>,
        mut ip_addresses: Option<&mut Informer<IPAddress>>,
        events: EventSink,
        metrics: SharedMetrics,
        config: IpamConfig,
    ) -> Arc<Self> {
        let mut synced = vec![services.synced(), claims.synced()];
        synced.extend(ip_addresses.as_ref().map(|i| i.synced()));
        let this = Arc::new(Self {
            client,
            services: services.store(),
            claims: claims.store(),
            ip_addresses: ip_addresses.as_ref().map(|i| i.store()),
            index: Mutex::new(ClaimsIndex::new(
                config.allocator.clone(),
                config.namespace.clone(),
            )),
            control: ControlLoop::new(
                CONTROLLER,
                WorkQueue::new(),
                synced,
                config.workers,
                metrics.clone(),
            ),
            events,
            metrics,
            config,
            reported: Mutex::new(HashMap::new()),
            repair: Mutex::new(Repair::new()),
        });
        on_change(services, &this, Self::on_service);
        on_change(claims, &this, Self::on_claim_change);
        if let Some(ip_addresses) = ip_addresses.as_mut() {
            on_change(ip_addresses, &this, Self::on_ip_address);
        }
        this
    }

    /// Becomes true once the bitmaps were rebuilt and the first repair ran.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.control.ready()
    }

    fn on_service(&self, change: &Change<'_, Service>) {
        self.control
            .add_all(keys_of(change, || self.services.state(), ServiceKey::of));
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ClaimsIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_claim_change(&self, change: &Change<'_, ServiceIP>) {
        let keys = match change {
            Change::Applied { new, .. } => self.lock().apply_claim(new).into_iter().collect(),
            Change::Deleted(old) => self.lock().delete_claim(old),
            Change::Relisting => return,
            Change::Resynced { .. } => self.rebuild(),
        };
        self.control.add_all(keys);
    }

    /// ClusterIP mode: an `IPAddress` object (named after its address) came or went.
    fn on_ip_address(&self, change: &Change<'_, IPAddress>) {
        let address = |object: &IPAddress| object.metadata.name.as_deref()?.parse().ok();
        let keys = match change {
            Change::Applied { new, .. } => {
                if let Some(a) = address(new) {
                    self.lock().apply_ip_address(a, ip_address_parent(new));
                }
                Vec::new()
            }
            Change::Deleted(old) => match address(old) {
                Some(a) => self.lock().delete_ip_address(a),
                None => Vec::new(),
            },
            Change::Relisting => return,
            Change::Resynced { .. } => {
                let objects = self
                    .ip_addresses
                    .as_ref()
                    .map(|s| s.state())
                    .unwrap_or_default();
                let addresses: Vec<(IpAddr, Option<ServiceKey>)> = objects
                    .iter()
                    .filter_map(|o| Some((address(o)?, ip_address_parent(o))))
                    .collect();
                self.lock().reset_ip_addresses(addresses)
            }
        };
        self.control.add_all(keys);
    }

    /// Rebuilds the book and the bitmaps from the claims cache; returns the Services involved.
    fn rebuild(&self) -> Vec<ServiceKey> {
        let claims = self.claims.state();
        self.lock().reset_claims(claims.iter().map(|c| c.as_ref()))
    }

    pub(super) fn address_freed(&self) {
        let waiting = self.lock().address_freed();
        self.control.add_all(waiting);
    }

    /// Runs the controller until the queue shuts down: waits for both caches, rebuilds the
    /// bitmaps from the claims, repairs once, then reconciles.
    pub async fn run(self: Arc<Self>) {
        self.control.wait_synced().await;
        tracing::debug!("ipam: caches synced");
        self.rebuild();
        self.repair_pass().await;
        tracing::debug!("ipam: first repair done");
        for svc in self.services.state() {
            self.control.add(ServiceKey::of(svc.as_ref()));
        }
        let keys: Vec<ServiceKey> = self.lock().book.services().cloned().collect();
        for key in keys {
            self.control.add(key);
        }
        self.publish_usage();
        let repairer = tokio::spawn({
            let this = self.clone();
            async move {
                let mut interval = tokio::time::interval(this.config.repair_interval);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    this.repair_pass().await;
                }
            }
        });
        let this = self.clone();
        self.control
            .serve(move |key| {
                let this = this.clone();
                async move { this.reconcile(key).await }
            })
            .await;
        repairer.abort();
    }

    /// ClusterIP mode: the addresses to write into `service` as it is created, held in the
    /// book until its claim takes them over (or a repair period passes). Before the first
    /// repair pass the book may not know every address in use, so nothing is chosen then:
    /// the API server allocates, and the Service is adopted like one created while Signpost
    /// was down. Dry runs never get here (the webhook leaves them to the API server).
    pub fn admit(&self, service: &Service) -> Result<Admission, AddressRefused> {
        if !self.control.started() {
            return Ok(Admission::default());
        }
        let mut index = self.lock();
        let admission = admit(service, &mut index.book)?;
        index.hold(&admission.held, Instant::now());
        drop(index);
        self.publish_usage();
        Ok(admission)
    }

    /// Stops taking work.
    pub fn shut_down(&self) {
        self.control.shut_down();
    }

    /// What `service` should hold: what it asks for, or in ClusterIP mode its own
    /// `spec.clusterIPs` in the CIDRs.
    fn request_of(&self, service: &Service) -> Request {
        let index = self.lock();
        if self.config.cluster_ip_mode {
            let ours = |address| index.book.allocator().cidr_of(address).is_some();
            request_from_cluster_ips(service, ours)
        } else {
            request_of(service, index.book.allocator().families())
        }
    }

    async fn reconcile(&self, key: ServiceKey) -> Result<Next, SyncError> {
        let service = self
            .services
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        let existing = self.lock().book.claims_of(&key);
        let Some(service) = service else {
            self.release_all_of_gone_service(&key, existing).await?;
            return Ok(Next::Done);
        };
        let uid = service.uid().unwrap_or_default();
        let request = self.request_of(&service);
        let mut problems: Vec<(&'static str, String)> = request
            .problems
            .iter()
            .map(|p| (p.reason(), p.to_string()))
            .collect();

        // Claims of another Service of the same name: released only once a live read agrees
        // that the cached Service is the current one. After a failover the cache may still
        // hold an older Service while the claim belongs to one re-created a moment ago.
        let (existing, other_uid): (Vec<Claim>, Vec<Claim>) =
            existing.into_iter().partition(|c| c.service_uid == uid);
        if !other_uid.is_empty() {
            let live_uid = self.live_uid(&key).await?;
            match release_other_uid_claims(&uid, live_uid.as_deref()) {
                true => {
                    for claim in &other_uid {
                        self.delete_claim(claim).await?;
                    }
                }
                // The Service's watch event brings it as it is now, and another reconcile.
                false => return Ok(Next::Done),
            }
        }

        // Claims of families no longer wanted; in ClusterIP mode, of addresses the Service
        // does not have (its spec is the record).
        let wanted: Vec<IpFamily> = request.families.iter().map(|f| f.family).collect();
        let not_in_spec = |claim: &Claim| {
            self.config.cluster_ip_mode
                && !request
                    .families
                    .iter()
                    .any(|f| f.requested == Some(claim.address))
        };
        let mut by_family: BTreeMap<IpFamily, Vec<Claim>> = BTreeMap::new();
        for claim in existing {
            if !wanted.contains(&IpFamily::of(claim.address)) || not_in_spec(&claim) {
                self.delete_claim(&claim).await?;
            } else {
                by_family
                    .entry(IpFamily::of(claim.address))
                    .or_default()
                    .push(claim);
            }
        }

        for want in &request.families {
            let held = by_family.remove(&want.family).unwrap_or_default();
            if !held.is_empty() {
                problems.extend(self.keep_one_claim(want, held).await?);
                continue;
            }
            if request.hold_only {
                continue;
            }
            if let Some(problem) = self.allocate(&key, &uid, *want).await? {
                problems.push(problem);
            }
        }
        self.report(&service, &key, problems).await;
        self.publish_usage();
        Ok(Next::Done)
    }

    pub(super) fn failure(&self, reason: &str) {
        self.metrics
            .ipam_allocation_failures
            .get_or_create(&ErrorLabels {
                controller: CONTROLLER.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Publishes the problems of this reconcile as Warning Events, once per Service version.
    async fn report(
        &self,
        service: &Service,
        key: &ServiceKey,
        problems: Vec<(&'static str, String)>,
    ) {
        let version = service.resource_version().unwrap_or_default();
        let messages: Vec<String> = problems.iter().map(|(r, m)| format!("{r}: {m}")).collect();
        {
            let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            if reported.get(key) == Some(&(version.clone(), messages.clone())) {
                return;
            }
            reported.insert(key.clone(), (version, messages));
        }
        let reference = service.object_ref(&());
        for (reason, message) in problems {
            self.events
                .warn(&reference, reason, "AllocateClusterIP", message)
                .await;
        }
    }

    /// How full each CIDR is now (what the usage metrics say).
    pub fn usage(&self) -> Vec<super::RangeUsage> {
        self.lock().book.allocator().usage()
    }

    pub(super) fn publish_usage(&self) {
        let usage = self.lock().book.allocator().usage();
        for range in usage {
            let labels = CidrLabels {
                cidr: range.cidr.to_string(),
            };
            self.metrics
                .ipam_used
                .get_or_create(&labels)
                .set(range.used.min(i64::MAX as u64) as i64);
            self.metrics
                .ipam_free
                .get_or_create(&labels)
                .set(range.free.min(i64::MAX as u64) as i64);
        }
    }

    /// One repair pass: deletes orphaned claims, reports the rest.
    async fn repair_pass(&self) {
        // ClusterIP mode: an address the webhook gave to a Service whose create never
        // happened (refused after admission, or a dry run that was not ours to tell) is
        // free again after a repair period.
        if let Some(deadline) = Instant::now().checked_sub(self.config.repair_interval) {
            for address in self.lock().expire_holds(deadline) {
                tracing::info!(%address, "repair: an address held at admission was never claimed; free again");
            }
        }
        let live: HashSet<String> = self
            .services
            .state()
            .iter()
            .filter_map(|s| s.uid())
            .collect();
        let findings = {
            let index = self.lock();
            self.repair
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pass(&index.book, &live)
        };
        for orphan in &findings.orphans {
            tracing::info!(address = %orphan.address, service = %orphan.service, "repair: releasing claim of a Service that is gone");
            if let Err(error) = self.delete_claim(orphan).await {
                tracing::warn!(%error, "repair: could not release claim");
            }
        }
        for claim in &findings.out_of_range {
            tracing::warn!(address = %claim.address, service = %claim.service, "repair: claim outside every configured service CIDR");
            if let Some(service) = self
                .services
                .get(&ObjectRef::new(&claim.service.name).within(&claim.service.namespace))
            {
                let note = format!(
                    "ServiceIP {} lies outside every configured service CIDR",
                    claim.address
                );
                // Sent in the background: the first pass runs before the controller reports
                // ready, and a report must not hold that up by an API round trip per claim.
                let events = self.events.clone();
                let regarding = service.object_ref(&());
                tokio::spawn(async move {
                    events
                        .warn(&regarding, "ClusterIPOutOfRange", "Repair", note)
                        .await;
                });
            } else {
                // No Service to put the Event on; `warn` counts the problem otherwise.
                self.metrics.problem(CONTROLLER, "ClusterIPOutOfRange");
            }
        }
        for (key, family, addresses) in &findings.duplicate_families {
            self.metrics.problem(CONTROLLER, "DuplicateClusterIP");
            tracing::warn!(service = %key, %family, ?addresses, "repair: Service holds two claims of one family");
            self.control.add(key.clone());
        }
    }
}

/// Whether claims naming another UID than the cached Service's may be released: only when the
/// live Service is the cached one (so the claims belong to an older Service of that name).
/// A live Service with another UID, or none, means the cache lags behind and the claims may
/// belong to the Service as it is now.
fn release_other_uid_claims(cached_uid: &str, live_uid: Option<&str>) -> bool {
    live_uid == Some(cached_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_of_another_uid_are_released_only_when_the_live_service_is_the_cached_one() {
        // An older Service of the same name left a claim: released.
        assert!(release_other_uid_claims("new", Some("new")));
        // The cache lags: the live Service is the claim's (or another newer one): kept.
        assert!(!release_other_uid_claims("old", Some("new")));
        // The live Service is gone: its deletion brings the gone-Service path instead.
        assert!(!release_other_uid_claims("old", None));
    }
}
