//! What the mirroring controller knows between events: its mirrored slices by Service (their
//! Services and Endpoints are read from the shared caches, and every change of those syncs
//! the Service of the same name).

use std::collections::HashMap;

use signpost_core::keys::ServiceKey;

use crate::own_slices::OwnSlices;

/// The mirroring controller's state between events.
#[derive(Debug, Default)]
pub struct MirroringIndex {
    /// The mirrored slices by Service, and the writes the watch has not shown yet.
    pub slices: OwnSlices,
    /// Endpoints versions whose skipped entries were already reported, so each is reported
    /// once.
    pub reported: HashMap<ServiceKey, String>,
}

impl AsMut<OwnSlices> for MirroringIndex {
    fn as_mut(&mut self) -> &mut OwnSlices {
        &mut self.slices
    }
}
