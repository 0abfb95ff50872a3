//! DNSRecords: what DNS servers and proxies need to know about each Service.
//!
//! [`render`] is the pure core: it turns a Service, its virtual IPs and its EndpointSlices into
//! the `DNSRecordSpec` the Kubernetes DNS specification calls for, plus what the status needs
//! (`Ready`, the ADDRESSES summary, what was truncated). The reconciler around it (the
//! records controller) only reads caches, compares and writes; its decisions about ownership
//! and status are the pure functions of [`status`]. A ClusterIP Service's virtual IPs are its
//! ServiceIP claims' addresses, or in ClusterIP mode its own `spec.clusterIPs` ([`cluster_ips`]).

mod cluster_ips;
mod names;
mod render;
mod spec_builder;
pub mod status;
mod summary;
pub mod trigger;

#[cfg(test)]
mod tests;

pub use cluster_ips::cluster_ips;
pub use names::{dashed_address, is_dns_label, normalize_cluster_domain, service_fqdn};
pub use render::{
    MAX_HOST_ADDRESSES, MAX_HOSTS, MAX_PORT_NAME_LEN, MAX_SRV_RECORDS, MAX_SRV_TARGETS, MAX_TTL,
    Omitted, RecordState, RenderError, Rendered, record_type, render,
};
pub use summary::{MAX_SUMMARY_LEN, NONE as SUMMARY_NONE, PENDING as SUMMARY_PENDING};
