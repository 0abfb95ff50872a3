//! EndpointSlice mirroring: selector-less Services with hand-written Endpoints get
//! EndpointSlices too, as Kubernetes' `endpointslicemirroring` controller gives them, so
//! consumers that read only slices (kube-proxy, CoreDNS, meshes) still see them.
//!
//! - [`model`]: Endpoints → what the mirrored slices should hold (pure).
//! - [`plan`]: existing mirrored slices + that → creates, updates, deletes (pure).

pub mod model;
pub mod plan;

pub use model::{MAX_ADDRESSES_PER_SUBSET, Mirror, MirrorGroup, Skipped, mirror};
pub use plan::{MIRRORING_MANAGED_BY, MirrorTemplate, plan_mirror};
