//! The IPAM controller: gives every Service its addresses from the allocator of
//! [`signpost_core::ipam`] (re-exported here) and keeps the `ServiceIP` claims in step.

mod claim_writes;
pub mod cluster_ip;
pub mod controller;

pub use controller::{CONTROLLER, Ipam, IpamConfig};
pub use signpost_core::ipam::*;
