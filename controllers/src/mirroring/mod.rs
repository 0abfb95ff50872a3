//! The EndpointSlice mirroring controller, over the pure plan of
//! [`signpost_core::mirroring`] (re-exported here).

pub mod controller;

pub use controller::{CONTROLLER, MirroringConfig, MirroringController};
pub use signpost_core::mirroring::*;
