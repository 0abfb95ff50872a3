//! What every controller shares: watch caches with change handlers, work queues, and the
//! plumbing that runs reconcilers over them.

pub mod informer;
pub mod workqueue;

pub use informer::{Change, Informer, strip_metadata};
pub use workqueue::WorkQueue;
