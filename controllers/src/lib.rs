//! Signpost's controllers: ClusterIP IPAM, Endpoints/EndpointSlices and DNSRecords.
//!
//! Each controller is split into pure domain logic (no Kubernetes I/O, unit-tested without a
//! cluster) and a thin reconciler that reads watch caches and writes to the API server.

pub mod app;
pub mod endpoints;
pub mod ipam;
pub mod mirroring;
pub mod records;
pub mod slice_writes;

pub use signpost_runtime as runtime;
