//! What the benchmark reads from watches: when a pod or an endpoint changed readiness, and how
//! many writes a kind saw. Each watch starts at the collection's current version, so only what
//! happens from then on counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};
use signpost_e2e::{TestNamespace, pod_is_ready};

pub(crate) type Seen = Arc<Mutex<Vec<(Instant, String, bool)>>>;
pub(crate) type Counter = Arc<Mutex<usize>>;
pub(crate) type Watcher = tokio::task::JoinHandle<anyhow::Result<()>>;

/// Records (time, pod name, ready) for every pod watch event.
pub(crate) async fn watch_pods(api: Api<Pod>, seen: Seen) -> anyhow::Result<Watcher> {
    let version = resource_version(&api).await?;
    Ok(tokio::spawn(async move {
        let stream = api.watch(&WatchParams::default(), &version).await?;
        futures::pin_mut!(stream);
        while let Some(event) = stream.try_next().await? {
            if let WatchEvent::Modified(pod) = event {
                let now = Instant::now();
                let ready = pod_is_ready(&pod);
                seen.lock().unwrap().push((now, pod.name_any(), ready));
            }
        }
        Ok(())
    }))
}

/// Records (time, endpoint IP, ready) for every endpoint of every slice write, and counts them.
pub(crate) async fn watch_slices(
    api: Api<EndpointSlice>,
    label: String,
    seen: Seen,
    writes: Counter,
) -> anyhow::Result<Watcher> {
    let version = resource_version(&api).await?;
    Ok(tokio::spawn(async move {
        let stream = api
            .watch(&WatchParams::default().labels(&label), &version)
            .await?;
        futures::pin_mut!(stream);
        while let Some(event) = stream.try_next().await? {
            let slice = match event {
                WatchEvent::Added(s) | WatchEvent::Modified(s) => s,
                WatchEvent::Deleted(_) => {
                    *writes.lock().unwrap() += 1;
                    continue;
                }
                _ => continue,
            };
            let now = Instant::now();
            *writes.lock().unwrap() += 1;
            let mut seen = seen.lock().unwrap();
            for endpoint in slice.endpoints.iter().flatten() {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(false);
                for address in &endpoint.addresses {
                    seen.push((now, address.clone(), ready));
                }
            }
        }
        Ok(())
    }))
}

/// Counts every write (added, modified, deleted) of a kind in the namespace.
pub(crate) async fn count_events<K>(api: Api<K>, writes: Counter) -> anyhow::Result<Watcher>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let version = resource_version(&api).await?;
    Ok(tokio::spawn(async move {
        let stream = api.watch(&WatchParams::default(), &version).await?;
        futures::pin_mut!(stream);
        while let Some(event) = stream.try_next().await? {
            if matches!(
                event,
                WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_)
            ) {
                *writes.lock().unwrap() += 1;
            }
        }
        Ok(())
    }))
}

pub(crate) fn first_after(seen: &Seen, key: &str, ready: bool, after: Instant) -> Option<Instant> {
    seen.lock()
        .unwrap()
        .iter()
        .find(|(t, k, r)| *t >= after && k == key && *r == ready)
        .map(|(t, _, _)| *t)
}

pub(crate) fn read(counter: &Counter) -> usize {
    *counter.lock().unwrap()
}

/// Waits until none of `counters` moved for `quiet`: the end of a burst of writes that trail a
/// workload. A measurement window, not a synchronisation: the counts are what is measured.
pub(crate) async fn wait_quiet(counters: &[&Counter], quiet: Duration) {
    let mut last: Vec<usize> = counters.iter().map(|c| read(c)).collect();
    loop {
        tokio::time::sleep(quiet).await;
        let now: Vec<usize> = counters.iter().map(|c| read(c)).collect();
        if now == last {
            return;
        }
        last = now;
    }
}

async fn resource_version<K>(api: &Api<K>) -> anyhow::Result<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default())
}

/// Slice and Endpoints write counters over one workload (every slice of the namespace: only
/// one controller runs at a time).
pub(crate) struct WriteCounters {
    slices: Counter,
    endpoints: Counter,
    watchers: Vec<Watcher>,
}

impl WriteCounters {
    pub(crate) async fn start(ns: &TestNamespace) -> anyhow::Result<Self> {
        let (slices, endpoints) = (Counter::default(), Counter::default());
        let watchers = vec![
            count_events(ns.api::<EndpointSlice>(), slices.clone()).await?,
            count_events(ns.api::<Endpoints>(), endpoints.clone()).await?,
        ];
        Ok(Self {
            slices,
            endpoints,
            watchers,
        })
    }

    pub(crate) async fn finish(self, quiet: Duration) -> (usize, usize) {
        wait_quiet(&[&self.slices, &self.endpoints], quiet).await;
        for w in self.watchers {
            w.abort();
        }
        (read(&self.slices), read(&self.endpoints))
    }
}
