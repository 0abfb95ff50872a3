//! The endpoints reconciler: Services + Pods + Nodes in, EndpointSlices and Endpoints out.
//!
//! Pods are never cached whole: a handler-only watch turns each into a [`super::PodRecord`], and
//! every watch event is folded into the [`EndpointsIndex`], which says which Services to
//! sync. The slice plan and the Endpoints rendering are the pure functions of
//! `signpost_core::endpoints`; this file only reads caches, calls them, and writes what they
//! say.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::legacy::{self, endpoints_equivalent, prepare_update, render_endpoints};
use super::slices::{SliceTemplate, is_managed_by, plan};
use super::{SlimPod, desired_endpoints, service_selector};
use crate::runtime::events::REPORT_AFTER_FAILURES;
use crate::runtime::metrics::ControllerLabels;
use crate::runtime::{
    Change, ControlLoop, EventSink, FailureStreaks, Informer, Next, SharedMetrics, Spacing, Start,
    SyncError, WorkQueue, on_change,
};
use crate::slice_writes::{SliceWriter, current_slices, fold_own_slice};
use signpost_core::keys::ServiceKey;
use signpost_index::endpoints::EndpointsIndex;

/// Name of this controller in metrics, logs and Events.
pub const CONTROLLER: &str = "endpoints";
/// Field manager of the objects this controller writes.
pub const FIELD_MANAGER: &str = "signpost-endpoints";
/// Annotation carrying the time of the change that caused the write, as Kubernetes sets it.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Label that tells an EndpointSlice mirroring controller to leave an Endpoints object alone
/// (its slices are written directly).
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

/// Settings of the endpoints controller.
#[derive(Clone, Debug)]
pub struct EndpointsConfig {
    /// At most this many endpoints per slice.
    pub max_endpoints_per_slice: usize,
    /// Shortest time between two syncs of one Service (see [`WorkQueue::with_spacing`]).
    pub batch_period: Duration,
    /// What the time between two syncs of a Service that keeps changing grows to.
    pub max_batch_period: Duration,
    /// When a Service that keeps changing starts to be batched.
    pub batch_start: Start,
    /// Only this namespace (tests); `None` for the whole cluster.
    pub namespace: Option<String>,
    /// Concurrent reconciles.
    pub workers: usize,
    /// The `managed-by` value of the slices it writes, and only touches.
    pub manager: &'static str,
}

/// Shared state of the controller.
pub struct EndpointsController {
    client: Client,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    endpoints: Store<Endpoints>,
    nodes: Store<Node>,
    state: Mutex<EndpointsIndex>,
    control: ControlLoop<ServiceKey>,
    failures: WriteFailures,
    totals: Mutex<Totals>,
    events: EventSink,
    metrics: SharedMetrics,
    config: EndpointsConfig,
}

/// Each Service's desired endpoints and slices after its last sync, and their sums: the
/// `endpoints_desired` and `endpointslices` gauges.
#[derive(Default)]
struct Totals {
    per_service: HashMap<ServiceKey, (i64, i64)>,
    endpoints: i64,
    slices: i64,
}

impl Totals {
    /// `key` now wants `endpoints` in `slices` slices (`None`: it has none, it is gone).
    fn set(&mut self, key: &ServiceKey, now: Option<(i64, i64)>) -> (i64, i64) {
        let before = match now {
            Some(now) => self.per_service.insert(key.clone(), now),
            None => self.per_service.remove(key),
        };
        let (was_endpoints, was_slices) = before.unwrap_or_default();
        let (endpoints, slices) = now.unwrap_or_default();
        self.endpoints += endpoints - was_endpoints;
        self.slices += slices - was_slices;
        (self.endpoints, self.slices)
    }
}

/// Failed writes in a row per Service, slices and Endpoints apart (each is its own Warning).
struct WriteFailures {
    slices: FailureStreaks<ServiceKey>,
    endpoints: FailureStreaks<ServiceKey>,
}

impl Default for WriteFailures {
    fn default() -> Self {
        Self {
            slices: FailureStreaks::new(REPORT_AFTER_FAILURES),
            endpoints: FailureStreaks::new(REPORT_AFTER_FAILURES),
        }
    }
}

/// The informers this controller reads.
pub struct EndpointsInformers<'a> {
    /// Services (shared).
    pub services: &'a mut Informer<Service>,
    /// Pods, without a cache of their own.
    pub pods: &'a mut Informer<SlimPod>,
    /// EndpointSlices managed by Signpost's endpoints controller.
    pub slices: &'a mut Informer<EndpointSlice>,
    /// Endpoints.
    pub endpoints: &'a mut Informer<Endpoints>,
    /// Nodes (for zones).
    pub nodes: &'a mut Informer<Node>,
}

impl EndpointsController {
    /// Registers the controller's handlers on the informers.
    pub fn new(
        client: Client,
        informers: EndpointsInformers<'_>,
        events: EventSink,
        metrics: SharedMetrics,
        config: EndpointsConfig,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            client,
            services: informers.services.store(),
            slices: informers.slices.store(),
            endpoints: informers.endpoints.store(),
            nodes: informers.nodes.store(),
            state: Mutex::new(EndpointsIndex::new()),
            control: ControlLoop::new(
                CONTROLLER,
                WorkQueue::with_spacing(Spacing {
                    shortest: config.batch_period,
                    longest: config.max_batch_period,
                    start: config.batch_start,
                }),
                vec![
                    informers.services.synced(),
                    informers.slices.synced(),
                    informers.endpoints.synced(),
                    informers.nodes.synced(),
                    informers.pods.synced(),
                ],
                config.workers,
                metrics.clone(),
            ),
            failures: WriteFailures::default(),
            totals: Mutex::default(),
            events,
            metrics,
            config,
        });
        on_change(informers.services, &this, Self::on_service);
        on_change(informers.pods, &this, Self::on_pod);
        on_change(informers.slices, &this, Self::on_slice);
        on_change(informers.endpoints, &this, Self::on_endpoints);
        on_change(informers.nodes, &this, Self::on_node);
        this
    }

    /// Becomes true once every cache has synced and the first pass was queued.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.control.ready()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EndpointsIndex> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_service(&self, change: &Change<'_, Service>) {
        let keys = match change {
            Change::Applied { new, .. } => vec![self.lock().apply_service(new)],
            Change::Deleted(old) => vec![self.lock().delete_service(old)],
            Change::Relisting => return,
            Change::Resynced { removed } => {
                let services = self.services.state();
                self.lock().reset_services(
                    services.iter().map(|s| s.as_ref()),
                    removed.iter().map(|s| s.as_ref()),
                )
            }
        };
        self.control.add_all(keys);
    }

    fn on_pod(&self, change: &Change<'_, SlimPod>) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let affected = match change {
            Change::Applied { new, .. } => {
                let Some(record) = new.record.clone() else {
                    return;
                };
                // Before the first pass every Service is synced anyway (see apply_pod).
                let route = self.control.started();
                self.lock().apply_pod(record, route, now)
            }
            Change::Deleted(old) => {
                let namespace = old.namespace().unwrap_or_default();
                self.lock().delete_pod(&namespace, &old.name_any(), now)
            }
            Change::Relisting => return self.lock().begin_pod_relist(),
            Change::Resynced { .. } => self.lock().finish_pod_relist(now),
        };
        self.control.add_all(affected);
    }

    fn on_slice(&self, change: &Change<'_, EndpointSlice>) {
        let keys = fold_own_slice(&self.state, &self.slices, change);
        self.control.add_all(keys);
    }

    fn on_endpoints(&self, change: &Change<'_, Endpoints>) {
        let key = match change {
            Change::Applied { new, .. } => match self.lock().apply_endpoints(new) {
                Some(key) => key,
                None => return,
            },
            Change::Deleted(old) => self.lock().delete_endpoints(old),
            Change::Relisting => return,
            Change::Resynced { .. } => {
                self.lock().reset_endpoints();
                return self.queue_every_service();
            }
        };
        self.control.add(key);
    }

    fn on_node(&self, change: &Change<'_, Node>) {
        let changed = match change {
            Change::Applied { new, .. } => self.lock().apply_node(new),
            Change::Deleted(old) => self.lock().delete_node(&old.name_any()),
            Change::Relisting => false,
            Change::Resynced { .. } => {
                let nodes = self.nodes.state();
                self.lock().reset_nodes(nodes.iter().map(|n| n.as_ref()));
                true
            }
        };
        if changed {
            self.queue_every_service();
        }
    }

    fn queue_every_service(&self) {
        for svc in self.services.state() {
            self.control.add(ServiceKey::of(&svc));
        }
    }

    /// Runs until the queue shuts down: waits for every cache, then reconciles.
    pub async fn run(self: Arc<Self>) {
        self.control.wait_synced().await;
        tracing::debug!("endpoints: caches synced");
        for svc in self.services.state() {
            self.control.add(ServiceKey::of(&svc));
        }
        let this = self.clone();
        self.control
            .serve(move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            })
            .await;
    }

    /// Stops taking work.
    pub fn shut_down(&self) {
        self.control.shut_down();
    }

    /// One Service's sync: plan from the caches and our own last writes, then write the slices
    /// and the Endpoints together. Kept as one function (a little over 80 lines): every step
    /// is already a call, and they share the cached slices, the plan and the trigger time.
    async fn sync(&self, key: &ServiceKey) -> Result<Next, SyncError> {
        let key = key.clone();
        let service = self
            .services
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        let cached = current_slices(&self.state, &self.slices, &key, (&self.metrics, CONTROLLER));
        let Some(service) = service.filter(|s| service_selector(s).is_some()) else {
            // Gone, or user-managed (no selector): remove what we wrote. Slices of a deleted
            // Service also go by garbage collection; deleting them here is just faster.
            let ours = cached
                .iter()
                .filter(|s| is_managed_by(s, self.config.manager));
            for slice in ours {
                self.slice_writer(&key).delete(slice).await?;
            }
            self.delete_our_endpoints(&key).await?;
            let mut state = self.lock();
            state.triggers.remove(&key);
            state.reported_foreign.remove(&key);
            self.failures.slices.ended(&key);
            self.failures.endpoints.ended(&key);
            self.set_totals(&key, None);
            return Ok(Next::Done);
        };

        let desired = {
            let state = self.lock();
            let no_selector = BTreeMap::new();
            let selector = service_selector(&service).unwrap_or(&no_selector);
            desired_endpoints(
                &service,
                state
                    .pods
                    .candidates(&key.namespace, selector)
                    .map(|p| p.as_ref()),
                &state.zones,
            )
        };
        let template =
            SliceTemplate::for_service(&service, self.config.manager).map_err(malformed)?;
        let ours: Vec<EndpointSlice> = cached
            .iter()
            .filter(|s| is_managed_by(s, self.config.manager))
            .map(|s| (**s).clone())
            .collect();
        let slice_plan = plan(
            &ours,
            &desired,
            self.config.max_endpoints_per_slice,
            &template,
        );
        let trigger = self.lock().triggers.remove(&key).map(|t| t.to_string());
        let changes = [&slice_plan.creates, &slice_plan.updates].map(Vec::len);
        let sizes = (
            desired.endpoint_count(),
            (ours.len() + changes[0]).saturating_sub(slice_plan.deletes.len()),
            changes[0] + changes[1] + slice_plan.deletes.len(),
        );

        let mut want = render_endpoints(&service, &desired).map_err(malformed)?;
        want.metadata
            .labels
            .get_or_insert_default()
            .insert(SKIP_MIRROR_LABEL.into(), "true".into());
        // The slices and the Endpoints object are independent writes: send them together, so
        // a sync holds a worker for one API round trip instead of two. Both run to the end
        // (no cancelling one because the other failed); the first error is reported.
        let writer = self.slice_writer(&key);
        let (slices, endpoints) = tokio::join!(
            writer.carry_out(
                slice_plan,
                |name| cached
                    .iter()
                    .find(|s| s.name_any() == name)
                    .map(|s| s.as_ref()),
                |slice| annotate(&mut slice.metadata, trigger.as_deref()),
            ),
            self.write_endpoints(&key, &service, want, trigger.as_deref()),
        );
        self.report_failed_writes(&key, &service, &slices, &endpoints)
            .await;
        slices.and(endpoints)?;
        self.count_sync(&key, sizes);
        Ok(Next::Done)
    }

    /// Metrics of a successful sync of `key`: (its desired endpoints, its slices now, the
    /// slices it changed).
    fn count_sync(&self, key: &ServiceKey, (endpoints, slices, changed): (usize, usize, usize)) {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let now = Some((as_i64(endpoints), as_i64(slices)));
        self.set_totals(key, now);
        self.metrics
            .slices_changed_per_sync
            .get_or_create(&ControllerLabels {
                controller: CONTROLLER.into(),
            })
            .observe(changed as f64);
    }

    fn set_totals(&self, key: &ServiceKey, now: Option<(i64, i64)>) {
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        let (endpoints, slices) = totals.set(key, now);
        self.metrics.endpoints_desired.set(endpoints);
        self.metrics.endpoint_slices.set(slices);
    }

    /// A Warning on the Service once per failure streak of its slice writes and of its
    /// Endpoints write, with the reasons kube-controller-manager uses, so alerts and runbooks
    /// written for it keep working.
    async fn report_failed_writes(
        &self,
        key: &ServiceKey,
        service: &Service,
        slices: &Result<(), SyncError>,
        endpoints: &Result<(), SyncError>,
    ) {
        let reports = [
            (
                &self.failures.slices,
                slices,
                "FailedToUpdateEndpointSlices",
                "EndpointSlices",
            ),
            (
                &self.failures.endpoints,
                endpoints,
                "FailedToUpdateEndpoint",
                "Endpoints",
            ),
        ];
        for (streaks, outcome, reason, what) in reports {
            let Err(error) = outcome else {
                streaks.ended(key);
                continue;
            };
            if error.namespace_terminating() || !streaks.failed(key) {
                continue;
            }
            let note = format!(
                "failed to update the {what} of Service {key} {REPORT_AFTER_FAILURES} times in a row (retrying with backoff): {error}"
            );
            self.events
                .warn(&service.object_ref(&()), reason, "SyncEndpoints", note)
                .await;
        }
    }

    async fn write_endpoints(
        &self,
        key: &ServiceKey,
        service: &Service,
        mut want: Endpoints,
        trigger: Option<&str>,
    ) -> Result<(), SyncError> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        // Our last write, until the watch shows it; then the cache.
        let ours = self.lock().endpoints_written.get(key).cloned();
        let existing = ours.or_else(|| {
            self.endpoints
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
        });
        let written = match existing {
            None => {
                annotate(&mut want.metadata, trigger);
                self.metrics.wrote(CONTROLLER);
                api.create(&params, &want)
                    .await
                    .map_err(|e| SyncError::write(format!("creating Endpoints {key}"), e))?
            }
            Some(existing) if !legacy::is_managed_by_signpost(&existing) => {
                let version = existing.resource_version().unwrap_or_default();
                let first_time = self
                    .lock()
                    .reported_foreign
                    .insert(key.clone(), version.clone())
                    != Some(version);
                if first_time {
                    let note = format!(
                        "Endpoints {key} was written by another controller (no label app.kubernetes.io/managed-by=signpost); Signpost leaves it alone. Delete it to let Signpost manage it, or turn off kube-controller-manager's endpoints controller."
                    );
                    self.events
                        .warn(
                            &service.object_ref(&()),
                            "EndpointsManagedElsewhere",
                            "SyncEndpoints",
                            note,
                        )
                        .await;
                }
                return Ok(());
            }
            Some(existing) if endpoints_equivalent(&existing, &want) => return Ok(()),
            Some(existing) => {
                let mut update = prepare_update(&existing, &want);
                annotate(&mut update.metadata, trigger);
                self.metrics.wrote(CONTROLLER);
                api.replace(&key.name, &params, &update)
                    .await
                    .map_err(|e| SyncError::write(format!("updating Endpoints {key}"), e))?
            }
        };
        // Checked under the state lock, which the watch handler also takes after updating the
        // cache: either the cache shows our write already, or the handler will drop the note
        // when it does.
        let mut state = self.lock();
        let cached = self
            .endpoints
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        let version = |e: &Endpoints| e.metadata.resource_version.clone();
        if cached.as_deref().and_then(version) != version(&written) {
            state
                .endpoints_written
                .insert(key.clone(), Arc::new(written));
        }
        Ok(())
    }

    fn slice_writer<'a>(&'a self, key: &'a ServiceKey) -> SliceWriter<'a, EndpointsIndex> {
        SliceWriter::new(
            &self.client,
            key,
            CONTROLLER,
            FIELD_MANAGER,
            &self.metrics,
            &self.state,
        )
    }

    async fn delete_our_endpoints(&self, key: &ServiceKey) -> Result<(), SyncError> {
        let Some(existing) = self
            .endpoints
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(());
        };
        if !legacy::is_managed_by_signpost(&existing) {
            return Ok(());
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let params = DeleteParams {
            preconditions: existing.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        self.metrics.wrote(CONTROLLER);
        match api.delete(&key.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(e) => Err(SyncError::write(format!("deleting Endpoints {key}"), e)),
        }
    }
}

fn malformed(error: super::Error) -> SyncError {
    SyncError::MalformedService(error.to_string())
}

fn annotate(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    trigger: Option<&str>,
) {
    if let Some(trigger) = trigger {
        meta.annotations
            .get_or_insert_default()
            .insert(LAST_CHANGE_TRIGGER_TIME.into(), trigger.into());
    }
}

/// Removes what the endpoints controller never reads from a Node: all but its name and labels.
pub fn strip_node(node: &mut Node) {
    crate::runtime::strip_metadata(node);
    node.metadata.annotations = None;
    node.spec = None;
    node.status = None;
}
