//! Topology hints against the local control plane: a Service's `spec.trafficDistribution`
//! gives its ready endpoints the hints Kubernetes' endpointslice controller writes, each change
//! of them one write per slice.
#![cfg(feature = "integration")]

mod common;

use common::{POD_READY_TIMEOUT, TIMEOUT, finish, start_scoped};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{ListParams, Patch, PatchParams, WatchParams};
use kube::{Api, ResourceExt};
use signpost_e2e::watch::writes_until_quiet;
use signpost_e2e::{fixtures, wait_ready_pods, wait_until};

/// An endpoint's hints as (zones, nodes).
fn hints(endpoint: &Endpoint) -> (Vec<String>, Vec<String>) {
    let hints = endpoint.hints.clone().unwrap_or_default();
    (
        hints
            .for_zones
            .unwrap_or_default()
            .into_iter()
            .map(|z| z.name)
            .collect(),
        hints
            .for_nodes
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.name)
            .collect(),
    )
}

/// What each ready endpoint's hints should be for `distribution`, from its zone and node.
fn expected(endpoint: &Endpoint, distribution: Option<&str>) -> (Vec<String>, Vec<String>) {
    let zone: Vec<String> = endpoint.zone.iter().cloned().collect();
    let node: Vec<String> = endpoint.node_name.iter().cloned().collect();
    match distribution {
        Some("PreferClose" | "PreferSameZone") => (zone, Vec::new()),
        Some("PreferSameNode") => (zone, node),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Sets the Service's `trafficDistribution` (`None` removes it), waits until its one slice
/// holds 3 ready endpoints with the hints that asks for, and returns how many slice writes
/// that took once they settled.
async fn distribute(
    services: &Api<Service>,
    slices: &Api<EndpointSlice>,
    distribution: Option<&str>,
) -> anyhow::Result<usize> {
    let of_web = ListParams::default().labels("kubernetes.io/service-name=web");
    let before = slices.list(&of_web).await?.metadata.resource_version;
    let patch = serde_json::json!({"spec": {"trafficDistribution": distribution}});
    services
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_until(&format!("hints for {distribution:?}"), TIMEOUT, || async {
        let list = slices.list(&of_web).await.map_err(|e| e.to_string())?;
        let endpoints: Vec<Endpoint> = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.clone().unwrap_or_default())
            .collect();
        let ready = endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        let wrong: Vec<_> = endpoints
            .iter()
            .filter(|e| hints(e) != expected(e, distribution))
            .map(|e| (e.addresses.clone(), hints(e)))
            .collect();
        if list.items.len() == 1 && ready == 3 && wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} slices, {ready} ready, wrong hints: {wrong:?}",
                list.items.len()
            ))
        }
    })
    .await?;
    let params = WatchParams::default().labels("kubernetes.io/service-name=web");
    let writes = writes_until_quiet(
        slices,
        &params,
        &before.unwrap_or_default(),
        std::time::Duration::from_secs(2),
    )
    .await?;
    Ok(writes.len())
}

#[tokio::test]
async fn traffic_distribution_sets_and_removes_hints_one_write_each() -> anyhow::Result<()> {
    let (client, ns, running, metrics) = start_scoped("hints").await?;

    ns.create_object(&fixtures::app_deployment("web", 3, 8080))
        .await?;
    ns.create_object(&fixtures::service_selecting("web", "web", 8080))
        .await?;
    let services: Api<Service> = ns.api();
    let pods: Api<Pod> = ns.api();
    let ready = wait_ready_pods(&pods, "app=web", 3, POD_READY_TIMEOUT).await?;
    assert!(
        ready
            .iter()
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()),
        "pods are scheduled: {:?}",
        ready.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    let slices: Api<EndpointSlice> = ns.api();

    // The slice settles first (3 ready endpoints, no hints), so the writes counted below are
    // the hints' alone.
    distribute(&services, &slices, None).await?;
    // Each change of the distribution rewrites the one slice once: hints alone change.
    for distribution in [
        Some("PreferSameZone"),
        Some("PreferSameNode"),
        Some("PreferClose"),
        None,
    ] {
        let writes = distribute(&services, &slices, distribution).await?;
        assert_eq!(writes, 1, "{distribution:?}: slice writes");
    }
    // The metrics operators alert on saw it: the Service's 3 endpoints in 1 slice, the slice
    // created once and updated per change, syncs and their time in the queue.
    let text = metrics.encode();
    let value = |series: &str| {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(value("signpost_endpoints_desired "), Some(3.0), "{text}");
    assert_eq!(value("signpost_endpointslices "), Some(1.0), "{text}");
    let changes = "signpost_endpointslice_changes_total{controller=\"endpoints\",operation=";
    assert_eq!(
        value(&format!("{changes}\"create\"}}")),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&format!("{changes}\"update\"}}")) >= Some(4.0),
        "{text}"
    );
    let waits = "signpost_queue_wait_seconds_count{controller=\"endpoints\"}";
    assert!(value(waits) >= Some(5.0), "{text}");
    finish(&client, ns, running).await
}
