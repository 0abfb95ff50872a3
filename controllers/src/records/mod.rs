//! The records controller: one DNSRecord per Service, rendered by
//! [`signpost_core::records`] (re-exported here).

pub mod controller;

pub use signpost_core::records::*;
