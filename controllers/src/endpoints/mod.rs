//! The endpoints controller: Endpoints and EndpointSlices of every Service with a selector,
//! over the pure model of [`signpost_core::endpoints`] (re-exported here).
//!
//! - [`slim_pod`]: [`SlimPod`], the Pod decoded with only the fields a record reads;
//!   [`pod_protobuf`] reads the same fields from the API server's protobuf encoding.
//! - what the controller knows between events: `signpost_index::endpoints`.
//! - [`controller`]: the reconciler.

pub mod controller;
pub mod pod_protobuf;
pub mod slim_pod;

pub use pod_protobuf::decode_slim_pod;
pub use signpost_core::endpoints::*;
pub use slim_pod::SlimPod;
