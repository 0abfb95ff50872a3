//! Writing a controller's own EndpointSlices (the endpoints and the mirroring controllers):
//! a plan carried out in the order that never publishes fewer endpoints than the plan ends
//! with, each write noted in the controller's [`OwnSlices`] so that the next plan starts from
//! it even before the watch shows it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use signpost_core::endpoints::slices::SlicePlan;
use signpost_core::keys::ServiceKey;
use signpost_index::own_slices::OwnSlices;

use crate::runtime::metrics::ControllerLabels;
use crate::runtime::{Change, SharedMetrics, SyncError};

/// `key`'s own slices to plan from: those `cached` holds, overlaid with what our writes
/// returned that the watch has not shown yet ([`signpost_index::writes::WriteTracker::current`]),
/// so a change that follows a write goes out as soon as that write returned.
/// Such a sync is counted in `syncs_from_own_writes` for `controller`.
pub fn current_slices<I: AsMut<OwnSlices>>(
    index: &Mutex<I>,
    cached: &Store<EndpointSlice>,
    key: &ServiceKey,
    (metrics, controller): (&SharedMetrics, &str),
) -> Vec<Arc<EndpointSlice>> {
    let lock = || index.lock().unwrap_or_else(|p| p.into_inner());
    // The store is read without the index's lock held: informers update their store before
    // they call the handlers that take it.
    let names: Vec<String> = lock().as_mut().names.names(key);
    let slices = names
        .iter()
        .filter_map(|name| cached.get(&ObjectRef::new(name).within(&key.namespace)))
        .collect();
    let mut index = lock();
    let tracker = &mut index.as_mut().tracker;
    let current = tracker.current(key, slices);
    if tracker.is_pending(key) {
        metrics
            .syncs_from_own_writes
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .inc();
    }
    current
}

/// Folds a change of the controller's own slices (`cached` is their store) into the
/// [`OwnSlices`] of `index`: the Services to sync.
pub fn fold_own_slice<I: AsMut<OwnSlices>>(
    index: &Mutex<I>,
    cached: &Store<EndpointSlice>,
    change: &Change<'_, EndpointSlice>,
) -> Vec<ServiceKey> {
    let lock = || index.lock().unwrap_or_else(|p| p.into_inner());
    match change {
        Change::Applied { new, .. } => lock().as_mut().apply(new),
        Change::Deleted(old) => lock().as_mut().delete(old).into_iter().collect(),
        Change::Relisting => {
            lock().as_mut().begin_relist(Instant::now());
            Vec::new()
        }
        Change::Resynced { .. } => {
            let slices = cached.state();
            lock()
                .as_mut()
                .finish_relist(slices.iter().map(|s| s.as_ref()))
        }
    }
}

/// The slice writes of one sync of one Service.
pub struct SliceWriter<'a, I> {
    api: Api<EndpointSlice>,
    key: &'a ServiceKey,
    controller: &'static str,
    field_manager: &'static str,
    metrics: &'a SharedMetrics,
    index: &'a Mutex<I>,
}

impl<'a, I: AsMut<OwnSlices>> SliceWriter<'a, I> {
    /// Writes `key`'s slices as `controller` (its metrics label) with `field_manager`,
    /// noting every write in the [`OwnSlices`] of `index`.
    pub fn new(
        client: &Client,
        key: &'a ServiceKey,
        controller: &'static str,
        field_manager: &'static str,
        metrics: &'a SharedMetrics,
        index: &'a Mutex<I>,
    ) -> Self {
        Self {
            api: Api::namespaced(client.clone(), &key.namespace),
            key,
            controller,
            field_manager,
            metrics,
            index,
        }
    }

    fn note(&self, write: impl FnOnce(&mut OwnSlices)) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        write(index.as_mut());
    }

    /// Carries out `plan`: creates, then updates, then deletes (of the slices `cached` finds
    /// by name), each created or updated slice first given `annotate`.
    pub async fn carry_out<'c>(
        &self,
        plan: SlicePlan,
        cached: impl Fn(&str) -> Option<&'c EndpointSlice>,
        annotate: impl Fn(&mut EndpointSlice),
    ) -> Result<(), SyncError> {
        let key = self.key;
        let params = PostParams {
            field_manager: Some(self.field_manager.into()),
            ..Default::default()
        };
        for mut slice in plan.creates {
            annotate(&mut slice);
            self.metrics.wrote(self.controller);
            self.metrics.slice_changed(self.controller, "create");
            let created =
                self.api.create(&params, &slice).await.map_err(|e| {
                    SyncError::write(format!("creating an EndpointSlice for {key}"), e)
                })?;
            self.note(|own| own.tracker.wrote(key, created));
        }
        for mut slice in plan.updates {
            annotate(&mut slice);
            let name = slice.name_any();
            self.metrics.wrote(self.controller);
            self.metrics.slice_changed(self.controller, "update");
            let updated = self
                .api
                .replace(&name, &params, &slice)
                .await
                .map_err(|e| {
                    SyncError::write(
                        format!("updating EndpointSlice {}/{name}", key.namespace),
                        e,
                    )
                })?;
            self.note(|own| own.tracker.wrote(key, updated));
        }
        for name in plan.deletes {
            if let Some(slice) = cached(&name) {
                self.delete(slice).await?;
            }
        }
        Ok(())
    }

    /// Deletes `slice`, on the condition that it is still the object of that UID; one that is
    /// already gone is fine.
    pub async fn delete(&self, slice: &EndpointSlice) -> Result<(), SyncError> {
        let name = slice.name_any();
        let params = DeleteParams {
            preconditions: slice.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        self.metrics.wrote(self.controller);
        self.metrics.slice_changed(self.controller, "delete");
        match self.api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => {
                let action = format!("deleting EndpointSlice {}/{name}", self.key.namespace);
                return Err(SyncError::write(action, e));
            }
        }
        self.note(|own| own.tracker.deleted(self.key, &name));
        Ok(())
    }
}
