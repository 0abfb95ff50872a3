//! Seeing that nothing is written. A converged controller writes nothing when nothing
//! changes, and the only way to see "nothing" is to watch from a resource version taken
//! before the moment that matters, for a quiet period.

use std::fmt::Debug;
use std::time::Duration;

use futures::TryStreamExt;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// The resource version of a list of `api` narrowed by `params`: a watch from it sees every
/// change made after the list, however long the test takes to start watching.
pub async fn list_version<K>(api: &Api<K>, params: &ListParams) -> anyhow::Result<String>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    Ok(api
        .list(params)
        .await?
        .metadata
        .resource_version
        .unwrap_or_default())
}

/// Watches `api` (narrowed by `params`) from `version` until `quiet` passes without a write,
/// and returns the name of the object of each write (ADDED, MODIFIED, DELETED) in the order
/// seen; bookmarks are not writes. The watch starts from `version`, not from now, so writes
/// made before the call are counted too.
pub async fn writes_until_quiet<K>(
    api: &Api<K>,
    params: &WatchParams,
    version: &str,
    quiet: Duration,
) -> anyhow::Result<Vec<String>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let stream = api.watch(params, version).await?;
    futures::pin_mut!(stream);
    let mut written = Vec::new();
    while let Ok(next) = tokio::time::timeout(quiet, stream.try_next()).await {
        let Some(event) = next? else { break };
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                written.push(o.name_any());
            }
            _ => {}
        }
    }
    Ok(written)
}
