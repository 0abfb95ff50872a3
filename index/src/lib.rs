//! What Signpost's controllers know between watch events.
//!
//! Each controller keeps an index fed by its watch handlers: an event folds an object into
//! per-Service state (`apply_*`, `delete_*`, `reset_*` after a relist) and answers which
//! Services to sync. Nothing here talks to the API server or waits, so every handler's logic
//! is unit-tested by feeding objects in.
//!
//! - [`claims`]: [`claims::ClaimsIndex`], the IPAM controller's book of addresses.
//! - [`endpoints`]: [`endpoints::EndpointsIndex`], pods, selectors, zones and our slices.
//! - [`lookups`]: the maps it is made of (Services by selector anchor, pods by namespace,
//!   slice names by Service).
//! - [`own_slices`]: the slices a controller writes, by Service, with its pending writes.
//! - [`mirroring`]: [`mirroring::MirroringIndex`], the mirroring controller's.
//! - [`writes`]: our own writes the watches have not shown yet.
//! - [`records`]: the records controller's VIPs and slice names by Service.

pub mod claims;
pub mod endpoints;
pub mod lookups;
pub mod mirroring;
pub mod own_slices;
pub mod records;
pub mod writes;

#[cfg(test)]
mod tests;
