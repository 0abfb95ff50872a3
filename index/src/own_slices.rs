//! The EndpointSlices a controller writes itself (the endpoints and the mirroring
//! controllers each watch only their own), filed by Service, with the writes the watch has not
//! shown yet.

use std::time::Instant;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use signpost_core::keys::ServiceKey;

use crate::lookups::SliceNames;
use crate::writes::WriteTracker;

/// A controller's own slices: their names per Service and its writes still to be seen.
#[derive(Debug, Default)]
pub struct OwnSlices {
    /// Names of the cached slices per Service.
    pub names: SliceNames,
    /// Writes the watch has not shown yet: planning waits for them.
    pub tracker: WriteTracker,
    /// When the slice watch began its current relist.
    relist_began: Option<Instant>,
}

impl OwnSlices {
    /// A slice was created or changed: the Service it is filed under (unless the change is
    /// only the echo of our own last write of it), and the one it was filed under before if a
    /// relabel moved it (for that one the slice is gone).
    pub fn apply(&mut self, slice: &EndpointSlice) -> Vec<ServiceKey> {
        let filed = self.names.insert(slice);
        let mut keys = Vec::new();
        if let Some(old) = filed.moved_from {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            self.tracker.observed_deletion(&old, name);
            keys.push(old);
        }
        keys.extend(
            filed
                .service
                .filter(|key| !self.tracker.observed_echo(key, slice)),
        );
        keys
    }

    /// A slice was deleted: the Service it belonged to.
    pub fn delete(&mut self, slice: &EndpointSlice) -> Option<ServiceKey> {
        let (key, name) = self.names.remove(slice)?;
        self.tracker.observed_deletion(&key, &name);
        Some(key)
    }

    /// The slice watch starts a relist at `now`.
    pub fn begin_relist(&mut self, now: Instant) {
        self.relist_began = Some(now);
    }

    /// The slice watch finished a relist and its cache holds `cached`: every Service that has
    /// slices. Writes finished before the relist began are settled by it (a deletion whose
    /// event was lost while the watch was down no longer holds the Service back).
    pub fn finish_relist<'a>(
        &mut self,
        cached: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Vec<ServiceKey> {
        let keys = self.names.rebuild(cached);
        if let Some(began) = self.relist_began.take() {
            let Self { tracker, names, .. } = self;
            tracker.relisted(began, |key, name| names.contains(key, name));
        }
        keys
    }
}
