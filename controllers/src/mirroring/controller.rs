//! The mirroring reconciler: hand-written Endpoints of selector-less Services in, mirrored
//! EndpointSlices out. Signpost never writes such Endpoints; it only mirrors them.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::model::mirror;
use super::plan::{MirrorTemplate, plan_mirror};
use crate::endpoints::controller::SKIP_MIRROR_LABEL;
use crate::endpoints::legacy::is_managed_by_signpost as endpoints_managed_by_signpost;
use crate::endpoints::service_selector;
use crate::runtime::{
    Change, ControlLoop, EventSink, Informer, Next, SharedMetrics, SyncError, WorkQueue, keys_of,
    on_change,
};
use crate::slice_writes::{SliceWriter, current_slices, fold_own_slice};
use signpost_core::keys::ServiceKey;
use signpost_index::mirroring::MirroringIndex;

/// Name of this controller in metrics, logs and Events.
pub const CONTROLLER: &str = "mirroring";
/// Field manager of the slices this controller writes.
pub const FIELD_MANAGER: &str = "signpost-mirroring";

/// Settings of the mirroring controller.
#[derive(Clone, Debug)]
pub struct MirroringConfig {
    /// At most this many endpoints per slice.
    pub max_endpoints_per_slice: usize,
    /// Concurrent reconciles.
    pub workers: usize,
    /// The `managed-by` value of the slices it writes, and only touches.
    pub manager: &'static str,
}

/// Shared state of the controller.
pub struct MirroringController {
    client: Client,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    state: Mutex<MirroringIndex>,
    control: ControlLoop<ServiceKey>,
    events: EventSink,
    metrics: SharedMetrics,
    config: MirroringConfig,
}

impl MirroringController {
    /// Registers the controller's handlers: Services and Endpoints are shared with the
    /// endpoints controller, `slices` must watch only mirrored slices.
    pub fn new(
        client: Client,
        services: &mut Informer<Service>,
        endpoints: &mut Informer<Endpoints>,
        slices: &mut Informer<EndpointSlice>,
        events: EventSink,
        metrics: SharedMetrics,
        config: MirroringConfig,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            client,
            services: services.store(),
            endpoints: endpoints.store(),
            slices: slices.store(),
            state: Mutex::new(MirroringIndex::default()),
            control: ControlLoop::new(
                CONTROLLER,
                WorkQueue::new(),
                vec![services.synced(), endpoints.synced(), slices.synced()],
                config.workers,
                metrics.clone(),
            ),
            events,
            metrics,
            config,
        });
        on_change(services, &this, Self::on_service);
        on_change(endpoints, &this, Self::on_endpoints);
        on_change(slices, &this, Self::on_slice);
        this
    }

    /// Becomes true once every cache has synced.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.control.ready()
    }

    fn on_service(&self, change: &Change<'_, Service>) {
        self.control
            .add_all(keys_of(change, || self.services.state(), ServiceKey::of));
    }

    fn on_endpoints(&self, change: &Change<'_, Endpoints>) {
        self.control
            .add_all(keys_of(change, || self.endpoints.state(), endpoints_key));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MirroringIndex> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_slice(&self, change: &Change<'_, EndpointSlice>) {
        let keys = fold_own_slice(&self.state, &self.slices, change);
        self.control.add_all(keys);
    }

    /// Runs until the queue shuts down.
    pub async fn run(self: Arc<Self>) {
        self.control.wait_synced().await;
        for endpoints in self.endpoints.state() {
            self.control.add(endpoints_key(&endpoints));
        }
        let this = self.clone();
        self.control
            .serve(move |key| {
                let this = this.clone();
                async move { this.reconcile(key).await }
            })
            .await;
    }

    /// Stops taking work.
    pub fn shut_down(&self) {
        self.control.shut_down();
    }

    async fn reconcile(&self, key: ServiceKey) -> Result<Next, SyncError> {
        let service = self
            .services
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        let endpoints = self
            .endpoints
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        let existing: Vec<EndpointSlice> =
            current_slices(&self.state, &self.slices, &key, (&self.metrics, CONTROLLER))
                .iter()
                .map(|s| (**s).clone())
                .collect();
        // Mirror only user-managed Endpoints of an existing selector-less Service.
        let source = match (&service, &endpoints) {
            (Some(svc), Some(ep))
                if service_selector(svc).is_none()
                    && !endpoints_managed_by_signpost(ep)
                    && ep.labels().get(SKIP_MIRROR_LABEL).map(String::as_str) != Some("true") =>
            {
                Some((svc.clone(), ep.clone()))
            }
            _ => None,
        };
        let writer = SliceWriter::new(
            &self.client,
            &key,
            CONTROLLER,
            FIELD_MANAGER,
            &self.metrics,
            &self.state,
        );
        let Some((service, endpoints)) = source else {
            for slice in &existing {
                writer.delete(slice).await?;
            }
            self.lock().reported.remove(&key);
            return Ok(Next::Done);
        };

        let mirrored = mirror(&endpoints);
        self.report_skipped(&key, &endpoints, &mirrored.skipped)
            .await;
        let template = MirrorTemplate::new(
            &endpoints,
            &service.uid().unwrap_or_default(),
            self.config.manager,
        );
        let plan = plan_mirror(
            &existing,
            &mirrored,
            self.config.max_endpoints_per_slice,
            &template,
        );
        writer
            .carry_out(
                plan,
                |name| existing.iter().find(|s| s.name_any() == name),
                |_| {},
            )
            .await?;
        Ok(Next::Done)
    }

    async fn report_skipped(
        &self,
        key: &ServiceKey,
        endpoints: &Endpoints,
        skipped: &[super::model::Skipped],
    ) {
        if skipped.is_empty() {
            return;
        }
        let version = endpoints.resource_version().unwrap_or_default();
        if self.lock().reported.insert(key.clone(), version.clone()) == Some(version) {
            return;
        }
        let note = skipped
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let note = format!("not mirrored into EndpointSlices: {note}");
        self.events
            .warn(
                &endpoints.object_ref(&()),
                "EndpointsNotMirrored",
                "MirrorEndpoints",
                note,
            )
            .await;
    }
}

fn endpoints_key(endpoints: &Endpoints) -> ServiceKey {
    ServiceKey::new(
        endpoints.namespace().unwrap_or_default(),
        endpoints.name_any(),
    )
}
