//! One watch per kind, shared by every controller that reads it.
//!
//! An [`Informer`] keeps a watch cache ([`Store`]) of one kind and tells registered handlers
//! what changed, so several controllers share one list+watch and one copy of the objects.
//! Handlers only map a change to work-queue keys; they must be cheap and never block.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::InitialListStrategy;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::protobuf_watch::{Decode, ProtobufWatch};

/// What a handler is told about the cache.
pub enum Change<'a, K> {
    /// An object was added or modified; `old` is what the cache held before, if anything.
    Applied {
        /// The previous version in the cache.
        old: Option<Arc<K>>,
        /// The new version, already in the cache.
        new: &'a K,
    },
    /// An object was deleted; it is no longer in the cache.
    Deleted(&'a K),
    /// A full list is starting (at start-up, and after the watch had to be re-established).
    /// Informers without a cache report each listed object as `Applied { old: None, .. }`
    /// until `Resynced`; handlers that keep their own index mark it stale here.
    Relisting,
    /// A full list completed (at start-up, and after the watch had to be re-established):
    /// the cache now holds exactly what was listed. `removed` are the objects that were in the
    /// cache before and are gone now (deleted while the watch was down). Handlers should treat
    /// every cached object as possibly changed.
    Resynced {
        /// Objects that disappeared across the relist.
        removed: Vec<Arc<K>>,
    },
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

/// Tells whether an informer has completed its first list. Any number of tasks may wait on
/// it (kube's `Store::wait_until_ready` wakes only one of several concurrent waiters).
#[derive(Clone, Debug)]
pub struct Synced(tokio::sync::watch::Receiver<bool>);

impl Synced {
    /// Waits until the first list has completed.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|synced| *synced).await;
    }

    /// Whether the first list has completed.
    pub fn is_synced(&self) -> bool {
        *self.0.borrow()
    }

    /// A `Synced` that is always synced, for tests of what reads one.
    #[cfg(any(test, feature = "testing"))]
    pub fn done() -> Self {
        let (_tx, rx) = tokio::sync::watch::channel(true);
        Self(rx)
    }
}

/// A watch cache of one kind plus the handlers fed from it.
pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    store: Store<K>,
    strip: fn(&mut K),
    handlers: Vec<Handler<K>>,
    cache: bool,
    synced: tokio::sync::watch::Sender<bool>,
    protobuf: Option<Decode<K>>,
    /// During a relist: the cache before it began.
    before_relist: Option<Vec<Arc<K>>>,
    /// During a relist: what it has listed so far.
    listed: HashSet<ObjectRef<K>>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default,
{
    /// An informer over `api` (all namespaces, or one) with the given watch configuration.
    /// `strip` removes what no controller reads before an object enters the cache, to keep
    /// memory down (managed fields, last-applied annotations, unused spec).
    pub fn new(api: Api<K>, config: watcher::Config, strip: fn(&mut K)) -> Self {
        let writer = Writer::new(K::DynamicType::default());
        let store = writer.as_reader();
        Self {
            api,
            config,
            writer,
            store,
            strip,
            handlers: Vec::new(),
            cache: true,
            synced: tokio::sync::watch::channel(false).0,
            protobuf: None,
            before_relist: None,
            listed: HashSet::new(),
        }
    }

    /// An informer that keeps no cache of its own: handlers see every object as it arrives
    /// and keep whatever compact index they need (pods are cached this way, as small records
    /// instead of whole objects). [`Informer::store`] stays empty but becomes ready after the
    /// first list.
    pub fn without_cache(api: Api<K>, config: watcher::Config, strip: fn(&mut K)) -> Self {
        Self {
            cache: false,
            ..Self::new(api, config, strip)
        }
    }

    /// A read handle on the cache, ready once the first list completed
    /// ([`Store::wait_until_ready`]).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A handle that tells when the first list has completed (and the handlers have seen it).
    pub fn synced(&self) -> Synced {
        Synced(self.synced.subscribe())
    }

    /// Registers a handler; call before [`Informer::run`].
    pub fn on_change(&mut self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.push(Box::new(handler));
    }

    /// Lists and watches in the API server's protobuf encoding instead of JSON, decoding each
    /// object with `decode` (pods: the endpoints controller's `decode_slim_pod`). Applies to paged
    /// lists; with streaming lists configured the informer stays on kube's JSON watcher.
    pub fn with_protobuf(mut self, decode: Decode<K>) -> Self {
        self.protobuf = Some(decode);
        self
    }

    /// Watches forever, re-listing with backoff after errors.
    pub async fn run(mut self) {
        let strip = self.strip;
        let paged = self.config.initial_list_strategy == InitialListStrategy::ListWatch;
        if let Some(decode) = self.protobuf.filter(|_| paged) {
            let source = ProtobufWatch::new(&self.api, self.config.clone(), decode);
            source.run(|event| self.handle(event.modify(strip))).await;
            return;
        }
        let stream = watcher(self.api.clone(), self.config.clone())
            .default_backoff()
            .modify(strip);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => self.handle(event),
                Err(error) => {
                    let kind = K::kind(&K::DynamicType::default()).into_owned();
                    tracing::warn!(%kind, %error, "watch failed; retrying with backoff");
                }
            }
        }
    }

    /// Applies one watcher event to the cache and tells the handlers.
    fn handle(&mut self, event: watcher::Event<K>) {
        if !self.cache {
            self.pass_through(&event);
            return;
        }
        match &event {
            watcher::Event::Apply(obj) => {
                let old = self.store.get(&ObjectRef::from_obj(obj));
                self.writer.apply_watcher_event(&event);
                self.notify(&Change::Applied { old, new: obj });
            }
            watcher::Event::Delete(obj) => {
                self.writer.apply_watcher_event(&event);
                self.notify(&Change::Deleted(obj));
            }
            watcher::Event::Init => {
                self.before_relist = Some(self.store.state());
                self.listed.clear();
                self.writer.apply_watcher_event(&event);
                self.notify(&Change::Relisting);
            }
            watcher::Event::InitApply(obj) => {
                self.listed.insert(ObjectRef::from_obj(obj));
                self.writer.apply_watcher_event(&event);
            }
            watcher::Event::InitDone => {
                self.writer.apply_watcher_event(&event);
                let listed = std::mem::take(&mut self.listed);
                let removed = self
                    .before_relist
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|obj| !listed.contains(&ObjectRef::from_obj(obj.as_ref())))
                    .collect();
                let kind = K::kind(&K::DynamicType::default()).into_owned();
                tracing::debug!(%kind, objects = self.store.len(), "cache synced");
                self.notify(&Change::Resynced { removed });
                self.synced.send_replace(true);
            }
        }
    }

    fn pass_through(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                self.notify(&Change::Applied {
                    old: None,
                    new: obj,
                })
            }
            watcher::Event::Delete(obj) => self.notify(&Change::Deleted(obj)),
            watcher::Event::Init => self.notify(&Change::Relisting),
            watcher::Event::InitDone => {
                // Marks the (empty) store ready, so waiting on it means "first list done".
                self.writer.apply_watcher_event(&watcher::Event::InitDone);
                self.notify(&Change::Resynced {
                    removed: Vec::new(),
                });
                self.synced.send_replace(true);
            }
        }
    }

    fn notify(&self, change: &Change<'_, K>) {
        for handler in &self.handlers {
            handler(change);
        }
    }
}

/// Removes what no Signpost controller reads from any object's metadata.
pub fn strip_metadata<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}
