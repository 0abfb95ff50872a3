//! Signpost's pure domain logic: what every controller decides, apart from how it learns
//! and how it writes.
//!
//! Nothing here talks to the API server or waits on anything: functions take Kubernetes
//! objects (k8s-openapi types) and Signpost's own types in, and return what should exist.
//! So every rule is unit-tested without a cluster, and the controllers around it stay thin
//! (read the index, call this, write the difference).
//!
//! - [`ipam`]: the ClusterIP allocator over the service CIDRs, the claim book it is rebuilt
//!   from, the repair decisions, and what a Service asks for.
//! - [`endpoints`]: a Service + its pods → the desired endpoints, packed into EndpointSlices
//!   with minimal writes and rendered as the v1 Endpoints object.
//! - [`mirroring`]: hand-written Endpoints → the EndpointSlices that mirror them.
//! - [`keys`]: [`keys::ServiceKey`], what every work queue and index is keyed by.
//! - [`records`]: a Service, its addresses and slices → its DNSRecord and status.
//! - [`labels`]: every label and annotation key of the contract, and the one way to check one.

pub mod endpoints;
pub mod ipam;
pub mod keys;
pub mod labels;
pub mod mirroring;
pub mod random;
pub mod records;
