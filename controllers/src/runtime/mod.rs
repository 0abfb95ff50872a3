//! What every controller shares: watch caches with change handlers, work queues, metrics,
//! Events, and the plumbing that runs reconcilers over them.

pub mod events;
pub mod informer;
pub mod metrics;
pub mod worker;
pub mod workqueue;

pub use events::EventSink;
pub use informer::{Change, Informer, Synced, strip_metadata};
pub use metrics::{Metrics, SharedMetrics};
pub use worker::{Next, ReconcileError, run_workers};
pub use workqueue::WorkQueue;
