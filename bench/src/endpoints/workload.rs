//! The benchmark's workload: N Services × M pods created before any controller runs, what the
//! slices hold, and the namespace's deletion.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use signpost_e2e::{
    TestNamespace, delete_namespace_and_claims_within, pod_is_ready, ready_pod_ips, wait_until,
};

use super::controller::Controller;
use super::options::Options;

/// Creates N Services × M pods (before any controller runs) and returns the ready pods' IPs.
pub(crate) async fn create_workload(
    ns: &TestNamespace,
    o: &Options,
) -> anyhow::Result<HashMap<String, String>> {
    let services: Api<Service> = ns.api();
    let pods: Api<Pod> = ns.api();
    let total = o.services * o.pods;
    let creates = (0..o.services).flat_map(|s| {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("svc-{s}")},
            "spec": {"selector": {"app": format!("svc-{s}")}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }))
        .unwrap();
        let mut objects: Vec<(Option<Service>, Option<Pod>)> = vec![(Some(svc), None)];
        for p in 0..o.pods {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("svc-{s}-pod-{p}"), "labels": {"app": format!("svc-{s}")}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}
            }))
            .unwrap();
            objects.push((None, Some(pod)));
        }
        objects
    });
    futures::stream::iter(creates)
        .map(|(svc, pod)| {
            let (services, pods) = (services.clone(), pods.clone());
            async move {
                if let Some(svc) = svc {
                    services.create(&PostParams::default(), &svc).await?;
                }
                if let Some(pod) = pod {
                    pods.create(&PostParams::default(), &pod).await?;
                }
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    wait_until(
        &format!("{total} ready pods"),
        Duration::from_secs(900),
        || async {
            let list = pods
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready: HashMap<String, String> = list
                .items
                .iter()
                .filter(|p| pod_is_ready(p))
                .filter_map(|p| Some((p.name_any(), p.status.as_ref()?.pod_ip.clone()?)))
                .collect();
            if ready.len() == total {
                Ok(ready)
            } else {
                Err(format!("{} ready", ready.len()))
            }
        },
    )
    .await
}

/// Ready endpoint IPs of the managed slices of one Service, or of all when `service` is None.
pub(crate) async fn ready_in_slices(
    slices: &Api<EndpointSlice>,
    label: &str,
    service: Option<&str>,
) -> Result<BTreeSet<String>, String> {
    let selector = match service {
        Some(name) => format!("{label},kubernetes.io/service-name={name}"),
        None => label.to_string(),
    };
    let list = slices
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect())
}

/// Deletes the benchmark's namespace and waits until it is gone, so the next run does not see
/// its pods. The Services go first while `controller` still runs, so a Signpost controller
/// releases their addresses (the namespace controller may take minutes over 20,000 pods before
/// it gets to them); then the controller stops.
pub(crate) async fn delete_workload(
    client: &Client,
    ns: TestNamespace,
    controller: Controller,
) -> anyhow::Result<()> {
    let ns_name = ns.name.clone();
    delete_namespace_and_claims_within(client, ns, Duration::from_secs(600)).await?;
    drop(controller);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_until(
        "the benchmark namespace deleted",
        Duration::from_secs(1200),
        || async {
            match namespaces.get_opt(&ns_name).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err(format!("{ns_name} still terminating")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

/// Waits until the slices labelled `label` and the namespace's Endpoints (one per Service)
/// hold exactly the ready pods: a controller started on a changed workload has caught up.
pub(crate) async fn wait_caught_up(
    ns: &TestNamespace,
    controller: &Controller,
    label: &str,
    services: usize,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    let endpoints: Api<Endpoints> = ns.api();
    wait_until(
        "the started controller's slices and Endpoints current",
        Duration::from_secs(900),
        || async {
            controller.alive()?;
            let ready: BTreeSet<String> = ready_pod_ips(&pods, "app")
                .await?
                .values()
                .map(ToString::to_string)
                .collect();
            let sliced = ready_in_slices(&slices, label, None).await?;
            let listed = endpoints
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let in_endpoints: BTreeSet<String> = listed
                .items
                .iter()
                .flat_map(|e| e.subsets.iter().flatten())
                .flat_map(|s| s.addresses.iter().flatten())
                .map(|a| a.ip.clone())
                .collect();
            if sliced == ready && in_endpoints == ready && listed.items.len() == services {
                Ok(())
            } else {
                Err(format!(
                    "{} ready pods; slices hold {} of them, {} Endpoints hold {}",
                    ready.len(),
                    sliced.len(),
                    listed.items.len(),
                    in_endpoints.len()
                ))
            }
        },
    )
    .await
}
