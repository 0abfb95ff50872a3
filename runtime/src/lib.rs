//! What every controller shares: watch caches with change handlers, work queues, metrics,
//! Events, and the plumbing that runs reconcilers over them.

pub mod controller;
pub mod events;
pub mod health;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod protobuf;
pub mod protobuf_watch;
pub mod server;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod worker;
pub mod workqueue;

pub use controller::{ControlLoop, SyncError, keys_of, on_change};
pub use events::{EventSink, FailureStreaks};
pub use informer::{Change, Informer, Synced, strip_metadata};
pub use metrics::{Metrics, SharedMetrics};
pub use worker::{Next, ReconcileError, run_workers};
pub use workqueue::{Spacing, Start, WorkQueue};

/// Whether an API error says the object's namespace is being deleted (writes into it are
/// refused until it is gone, so retrying is pointless).
pub fn is_namespace_terminating(status: &kube::core::Status) -> bool {
    status.code == 403 && status.message.contains("because it is being terminated")
}
