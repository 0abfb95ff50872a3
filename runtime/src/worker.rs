//! Runs a reconcile function over a work queue with a fixed number of workers.

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt as _;

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

/// The metric reason of a reconcile that panicked.
pub const PANIC_REASON: &str = "panic";

/// Takes keys from `queue` with `workers` concurrent workers until the queue shuts down.
/// Failures are retried with the queue's per-key backoff; a key is never processed by two
/// workers at once. A reconcile that panics is a failure like any other (logged, counted with
/// reason `panic`, retried with backoff): the worker lives on and the key is not left marked
/// as in progress, where it would never be processed again.
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
            while let Some((key, waited)) = queue.next_timed().await {
                metrics.queue_depth.get_or_create(&labels).set(queue.len() as i64);
                metrics.observe_queue(controller, Some(waited), false);
                let start = Instant::now();
                let result = AssertUnwindSafe(reconcile(key.clone())).catch_unwind().await;
                let took = start.elapsed();
                let result = match result {
                    Ok(result) => result,
                    Err(panic) => {
                        metrics.observe_reconcile(controller, took, Some(PANIC_REASON));
                        metrics.observe_queue(controller, None, true);
                        let delay = queue.retry(&key);
                        tracing::error!(controller, ?key, panic = panic_message(panic.as_ref()), ?delay, "reconcile panicked; retrying");
                        continue;
                    }
                };
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
                        metrics.observe_queue(controller, None, true);
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

/// The message a panic carried (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::metrics::Metrics;

    struct Never;
    impl Display for Never {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("never")
        }
    }
    impl ReconcileError for Never {
        fn reason(&self) -> &'static str {
            "never"
        }
    }

    /// A key whose first reconcile panics is retried and then succeeds, and the single worker
    /// goes on with the other keys.
    #[tokio::test]
    async fn a_panicking_reconcile_is_retried_and_the_worker_lives_on() {
        let queue: WorkQueue<&'static str> = WorkQueue::new();
        let metrics = Arc::new(Metrics::new());
        let attempts: Arc<Mutex<HashMap<&'static str, u32>>> = Arc::default();
        let workers = tokio::spawn(run_workers("test", queue.clone(), 1, metrics.clone(), {
            let attempts = attempts.clone();
            move |key: &'static str| {
                let attempts = attempts.clone();
                async move {
                    let n = {
                        let mut attempts = attempts.lock().unwrap();
                        let n = attempts.entry(key).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if key == "boom" && n == 1 {
                        panic!("reconcile of {key} panicked on purpose");
                    }
                    Ok::<_, Never>(Next::Done)
                }
            }
        }));
        queue.add("boom");
        queue.add("fine");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = attempts.lock().unwrap().clone();
            if seen.get("boom") == Some(&2) && seen.get("fine") == Some(&1) {
                break;
            }
            assert!(Instant::now() < deadline, "attempts so far: {seen:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Added again after its retry succeeded, the key is processed again: not stuck.
        queue.add("boom");
        let deadline = Instant::now() + Duration::from_secs(5);
        while attempts.lock().unwrap().get("boom") != Some(&3) {
            assert!(Instant::now() < deadline, "boom was not processed again");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            metrics.encode().contains("panic"),
            "the panic is counted in the metrics"
        );
        queue.shut_down();
        workers
            .await
            .expect("the workers end when the queue shuts down");
    }
}
