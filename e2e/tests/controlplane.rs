//! The local control plane behaves as Signpost's tests assume: kwok pods become Running and
//! Ready with distinct IPs across zones, readiness can be flipped, and nothing but Signpost
//! writes Endpoints or EndpointSlices.
#![cfg(feature = "cluster")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;
use signpost_e2e::{TestNamespace, client, pod_is_ready, set_pod_ready, wait_ready_pods};

#[tokio::test]
async fn seed_app_becomes_ready_on_fake_nodes_and_readiness_can_flip() -> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "cp").await?;
    let pods: Api<Pod> = ns.api();

    let start = Instant::now();
    ns.create_hostnames(3).await?;
    let ready = wait_ready_pods(&pods, "app=hostnames", 3, Duration::from_secs(60)).await?;
    println!("3/3 pods ready after {:?}", start.elapsed());

    let ips: BTreeSet<String> = ready
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    let nodes: BTreeSet<String> = ready
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(ips.len(), 3, "pod IPs must be distinct: {ips:?}");
    assert!(
        nodes.len() >= 2,
        "pods must spread over at least 2 nodes: {nodes:?}"
    );

    let node_api: Api<Node> = Api::all(client.clone());
    let zones: BTreeSet<String> = node_api
        .list(&ListParams::default().labels("type=kwok"))
        .await?
        .items
        .iter()
        .filter_map(|n| {
            n.metadata
                .labels
                .as_ref()?
                .get("topology.kubernetes.io/zone")
                .cloned()
        })
        .collect();
    assert!(
        zones.len() >= 3,
        "fake nodes must carry 3 distinct zones: {zones:?}"
    );

    // kube-controller-manager's endpoint controllers are off: nobody but Signpost writes these.
    let endpoints: Api<Endpoints> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    assert!(
        endpoints
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );
    assert!(slices.list(&ListParams::default()).await?.items.is_empty());

    let victim = ready[0].metadata.name.clone().unwrap_or_default();
    set_pod_ready(&pods, &victim, false).await?;
    assert!(
        !pod_is_ready(&pods.get(&victim).await?),
        "{victim} should be not ready"
    );
    set_pod_ready(&pods, &victim, true).await?;
    assert!(
        pod_is_ready(&pods.get(&victim).await?),
        "{victim} should be ready again"
    );

    ns.delete().await
}
