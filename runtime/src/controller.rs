//! The scaffold every controller runs on, written once: the sync error, the work loop, and
//! the handler registration.
//!
//! A controller is its informers' handlers (which fold changes into its index and queue the
//! keys it returns), one sync function, and the first pass it queues once its caches are
//! full. Everything around that is here: waiting for the caches, saying ready, running the
//! workers over the queue (retries, panics, metrics: [`run_workers`]), treating a namespace
//! that is being deleted as done, and stopping.
//!
//! Why not kube-runtime's `Controller`: the endpoints controller needs a work queue that
//! spaces the syncs of a Service only while it keeps changing (issue 28's burst allowance);
//! kube-runtime's `debounce` holds every trigger for a fixed time, which is what cost a 5×
//! p99 in `docs/decisions.md` ("Batching"). One scaffold of our own serves all four.

use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Weak};

use tokio::sync::watch;

use crate::informer::{Change, Informer, Synced};
use crate::metrics::SharedMetrics;
use crate::worker::{Next, ReconcileError, run_workers};
use crate::workqueue::WorkQueue;

/// Why a sync failed. The variant is the `reason` label of the failure metric.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A read or write failed.
    #[error("{action} failed: {source}")]
    Api {
        /// What was attempted.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Our cached copy was outdated (409): retried from fresh state.
    #[error("{0} changed since it was cached; retrying from fresh state")]
    Conflict(String),
    /// The Service lacks a field the API server always sets.
    #[error("the Service is malformed: {0}")]
    MalformedService(String),
}

impl SyncError {
    /// A failed write of `action`: a conflict (409) is retried from fresh state, anything else
    /// is an API failure.
    pub fn write(action: impl Into<String>, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if status.code == 409 => Self::Conflict(action.into()),
            source => Self::Api {
                action: action.into(),
                source,
            },
        }
    }

    /// A failed call of `action`, whatever its status.
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Api { action, source }
    }

    /// Whether the API server refused because the object's namespace is being deleted: writes
    /// into it are refused until it is gone (with everything in it), so retrying is pointless.
    pub fn namespace_terminating(&self) -> bool {
        matches!(
            self,
            Self::Api { source: kube::Error::Api(status), .. }
                if crate::is_namespace_terminating(status)
        )
    }
}

impl ReconcileError for SyncError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Api { .. } => "ApiError",
            Self::Conflict(_) => "Conflict",
            Self::MalformedService(_) => "MalformedService",
        }
    }
}

/// The work loop of one controller: its queue, the caches it waits for, its readiness.
pub struct ControlLoop<K> {
    name: &'static str,
    queue: WorkQueue<K>,
    synced: Vec<Synced>,
    ready: watch::Sender<bool>,
    workers: usize,
    metrics: SharedMetrics,
}

impl<K> ControlLoop<K>
where
    K: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static,
{
    /// The loop of controller `name` (its metrics label), over `queue`, once `synced` are.
    pub fn new(
        name: &'static str,
        queue: WorkQueue<K>,
        synced: Vec<Synced>,
        workers: usize,
        metrics: SharedMetrics,
    ) -> Self {
        Self {
            name,
            queue,
            synced,
            ready: watch::channel(false).0,
            workers,
            metrics,
        }
    }

    /// Queues `key` for a sync.
    pub fn add(&self, key: K) {
        self.queue.add(key);
    }

    /// Queues each of `keys` (what a handler's fold of a change returns) for a sync.
    pub fn add_all(&self, keys: impl IntoIterator<Item = K>) {
        keys.into_iter().for_each(|key| self.queue.add(key));
    }

    /// Becomes true once every cache has synced and the first pass was queued.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Whether the first pass was queued: before it, handlers need not work out which keys a
    /// change concerns, since every key is synced once anyway.
    pub fn started(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until every cache the controller reads has synced.
    pub async fn wait_synced(&self) {
        for mut synced in self.synced.clone() {
            synced.wait().await;
        }
    }

    /// Says ready (the caller has queued its first pass), then runs `sync` over the queue
    /// with the configured workers until [`Self::shut_down`]. A sync refused because its
    /// namespace is being deleted is done, not retried.
    pub async fn serve<F, Fut>(&self, sync: F)
    where
        F: Fn(K) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Next, SyncError>> + Send,
    {
        self.ready.send_replace(true);
        run_workers(
            self.name,
            self.queue.clone(),
            self.workers,
            self.metrics.clone(),
            move |key| {
                let sync = sync.clone();
                async move {
                    match sync(key).await {
                        Err(error) if error.namespace_terminating() => Ok(Next::Done),
                        result => result,
                    }
                }
            },
        )
        .await;
    }

    /// Stops taking work.
    pub fn shut_down(&self) {
        self.queue.shut_down();
    }
}

/// The keys a change concerns when each object stands for one key (a Service for itself, an
/// Endpoints object for its Service): the object's, or after a relist every cached object's
/// and every removed one's.
pub fn keys_of<K, Q>(
    change: &Change<'_, K>,
    cached: impl FnOnce() -> Vec<Arc<K>>,
    key: impl Fn(&K) -> Q,
) -> Vec<Q>
where
    K: kube::Resource + Clone,
{
    match change {
        Change::Applied { new, .. } => vec![key(new)],
        Change::Deleted(old) => vec![key(old)],
        Change::Relisting => Vec::new(),
        Change::Resynced { removed } => removed
            .iter()
            .map(|o| key(o))
            .chain(cached().iter().map(|o| key(o)))
            .collect(),
    }
}

/// Registers `handler` on `informer` for `controller`, holding it weakly: an informer never
/// keeps a stopped controller alive.
pub fn on_change<T, K>(
    informer: &mut Informer<K>,
    controller: &Arc<T>,
    handler: fn(&T, &Change<'_, K>),
) where
    T: Send + Sync + 'static,
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Hash + Eq + Clone + Default,
{
    let weak: Weak<T> = Arc::downgrade(controller);
    informer.on_change(move |change| {
        if let Some(controller) = weak.upgrade() {
            handler(&controller, change);
        }
    });
}
