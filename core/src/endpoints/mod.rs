//! The pure model of the endpoints controller: Pods + Service → Endpoints and EndpointSlices.
//!
//! No Kubernetes I/O lives here. The reconciler feeds in what its watches hold and writes
//! what these functions return, following Kubernetes' endpointslice controller: existing
//! slices + desired endpoints → slices to create, update and delete.
//!
//! - [`pod`]: [`PodRecord`], the compact per-pod cache entry (instead of whole Pods), and
//!   [`NodeZones`].
//! - [`desired`]: Service + its pods + zones → [`DesiredEndpoints`], grouped by address type
//!   and resolved port list; computed once per sync, rendered twice:
//! - [`slices`]: [`plan`] packs them into EndpointSlices with minimal writes;
//! - [`legacy`]: [`render_endpoints`] renders the v1 Endpoints object, and
//!   [`endpoints_equivalent`] tells whether the existing one needs a write.
//!
//! A sync of one Service, in the reconciler:
//!
//! ```ignore
//! let Some(_) = service_selector(&svc) else { return /* user-managed */ };
//! let desired = desired_endpoints(&svc, pods_in_namespace, &zones);
//! let template = SliceTemplate::for_service(&svc, manager)?;
//! let ours: Vec<_> = slices_of_svc.into_iter().filter(|s| is_managed_by(s, manager)).collect();
//! let plan = plan(&ours, &desired, max_per_slice, &template); // creates, updates, deletes
//! let want = render_endpoints(&svc, &desired)?;
//! match existing_endpoints {
//!     None => create(want),
//!     Some(e) if !legacy::is_managed_by_signpost(&e) => report_conflict(),
//!     Some(e) if endpoints_equivalent(&e, &want) => {}
//!     Some(e) => update(prepare_update(&e, &want)),
//! }
//! ```

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub mod desired;
pub mod legacy;
pub mod pod;
pub mod slices;

pub use desired::{
    AddressType, DesiredEndpoint, DesiredEndpoints, EndpointGroup, PodRef, ResolvedPort,
    desired_endpoints, selector_matches, service_selector,
};
pub use legacy::{
    ANNOTATION_OVER_CAPACITY, LABEL_APP_MANAGED_BY, MANAGED_BY_SIGNPOST, MAX_ENDPOINTS_ADDRESSES,
    OVER_CAPACITY_TRUNCATED, endpoints_equivalent, prepare_update, render_endpoints,
};
pub use pod::{LABEL_TOPOLOGY_ZONE, NamedPort, NodeZones, PodParts, PodPhase, PodRecord, Protocol};
pub use slices::{
    DEFAULT_MAX_ENDPOINTS_PER_SLICE, LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
    MANAGED_BY, SlicePlan, SliceTemplate, is_managed_by, plan,
};

/// The name and namespace of an object, which every object read from the API server has; an
/// object without them was made by hand and cannot be turned into model input.
pub(crate) fn name_and_namespace(meta: &ObjectMeta) -> Result<(&str, &str), Error> {
    let name = meta
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name"))?;
    let namespace = meta
        .namespace
        .as_deref()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    Ok((name, namespace))
}

/// The uid of an object, which every object read from the API server has (see
/// [`name_and_namespace`]).
pub(crate) fn uid(meta: &ObjectMeta) -> Result<&str, Error> {
    meta.uid
        .as_deref()
        .ok_or(Error::MissingField("metadata.uid"))
}

/// Whether a Service is headless (`clusterIP` unset, empty or `None`), as Kubernetes' endpoint
/// controllers decide it for the headless label and the port-less subsets.
pub(crate) fn is_headless(service: &Service) -> bool {
    let cluster_ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    matches!(cluster_ip, None | Some("") | Some("None"))
}

/// Why a Kubernetes object could not be turned into model input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The object lacks a field the API server always sets (so it was not read from one).
    #[error("object has no {0}")]
    MissingField(&'static str),
}
