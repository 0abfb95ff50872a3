//! Runs a reconcile function over a work queue with a fixed number of workers.

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::metrics::SharedMetrics;
use super::workqueue::WorkQueue;

/// An error a reconcile can return: its reason is a stable metric label.
pub trait ReconcileError: Display {
    /// Stable, low-cardinality name of the failure (for metrics and logs).
    fn reason(&self) -> &'static str;
}

/// What to do with a key after a successful reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the next watch event.
    Done,
    /// Look again after this long (e.g. waiting for something no watch reports).
    After(Duration),
}

/// Takes keys from `queue` with `workers` concurrent workers until the queue shuts down.
/// Failures are retried with the queue's per-key backoff; a key is never processed by two
/// workers at once.
pub async fn run_workers<K, F, Fut, E>(
    controller: &'static str,
    queue: WorkQueue<K>,
    workers: usize,
    metrics: SharedMetrics,
    reconcile: F,
) where
    K: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static,
    F: Fn(K) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Next, E>> + Send,
    E: ReconcileError + Send,
{
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let metrics = metrics.clone();
        let reconcile = reconcile.clone();
        tasks.push(tokio::spawn(async move {
            let labels = super::metrics::ControllerLabels { controller: controller.into() };
            while let Some(key) = queue.next().await {
                metrics.queue_depth.get_or_create(&labels).set(queue.len() as i64);
                let start = Instant::now();
                let result = reconcile(key.clone()).await;
                let took = start.elapsed();
                match result {
                    Ok(next) => {
                        metrics.observe_reconcile(controller, took, None);
                        queue.forget(&key);
                        queue.done(&key);
                        if let Next::After(delay) = next {
                            queue.add_after(key, delay);
                        }
                    }
                    Err(error) => {
                        metrics.observe_reconcile(controller, took, Some(error.reason()));
                        let delay = queue.retry(&key);
                        tracing::warn!(controller, ?key, reason = error.reason(), %error, ?delay, "reconcile failed; retrying");
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}
