//! Bad and extreme input end to end: what users see (Events, empty or truncated objects) when a
//! request cannot be honoured, and a Service with 5,000 pods.
#![cfg(feature = "cluster")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use signpost_e2e::process::metric_sum;
use signpost_e2e::{
    claims_in_namespace, events_about, fixtures, present, scale_deployment, unique_cidr,
    wait_until, wait_until_every,
};

/// Waits for a Warning Event `reason` about Service `name`.
async fn wait_warning(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<String> {
    wait_until(
        &format!("Warning Event {reason} on {name}"),
        CONVERGE,
        || async {
            let events = events_about(client, namespace, name, reason)
                .await
                .map_err(|e| e.to_string())?;
            events
                .iter()
                .find(|e| e.type_.as_deref() == Some("Warning"))
                .map(|e| e.note.clone().unwrap_or_default())
                .ok_or_else(|| format!("{} Events {reason}, none Warning", events.len()))
        },
    )
    .await
}

/// `signpost.dev/cluster-ip: not-an-ip` → a Warning Event and no address, never another one.
#[tokio::test]
async fn invalid_requested_address_gets_a_warning_and_no_claim() -> anyhow::Result<()> {
    let (client, ns, signpost) = setup_leading("badip").await?;

    let t0 = Instant::now();
    ns.create_object(&fixtures::requesting_address(
        fixtures::app_service("garbage", 80, 8080),
        "not-an-ip",
    ))
    .await?;
    ns.create_object(&fixtures::app_service("fine", 80, 8080))
        .await?;
    let note = wait_warning(&client, &ns.name, "garbage", "ClusterIPInvalid").await?;
    println!(
        "[badip] Warning ClusterIPInvalid {:?} after creation: {note}",
        t0.elapsed()
    );
    wait_claimed_address(&client, &ns.name, "fine", "fine holds a VIP").await?;
    no_claims_during(&client, &ns.name, &["garbage"], Duration::from_secs(2)).await?;
    println!("[badip] no claim for garbage over a 2 s quiet period (fine got one)");
    let metrics = signpost.metrics().await?;
    println!(
        "[badip] signpost_problems_total = {}",
        metric_sum(&metrics, "signpost_problems_total")
    );

    finish(&client, ns, vec![signpost]).await
}

/// A huge requested-address annotation (60 KB of user input): the Warning still reaches the
/// user, its note cut to what the Events API takes.
#[tokio::test]
async fn a_huge_annotation_still_gets_its_warning() -> anyhow::Result<()> {
    let (client, ns, signpost) = setup_leading("huge").await?;
    let huge = "9".repeat(60_000);
    ns.create_object(&fixtures::requesting_address(
        fixtures::app_service("huge", 80, 8080),
        &huge,
    ))
    .await?;
    let note = wait_warning(&client, &ns.name, "huge", "ClusterIPInvalid").await?;
    println!(
        "[huge] Warning ClusterIPInvalid, note of {} bytes: {:.80}…",
        note.len(),
        note
    );
    assert!(note.len() <= 1024, "the note fits the Events API");
    no_claims_during(&client, &ns.name, &["huge"], Duration::from_secs(1)).await?;
    finish(&client, ns, vec![signpost]).await
}

/// A /30 has two usable addresses: the third Service gets `ClusterIPExhausted` and no claim.
#[tokio::test]
async fn exhausted_range_gets_a_warning() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-full").await?;
    // The first /30 of a /29 no one else uses.
    let slash29 = unique_cidr(29);
    let cidrs = vec![slash29.replace("/29", "/30")];
    let signpost = start_leader("full", &ns, &cidrs).await?;

    let t0 = Instant::now();
    for name in ["one", "two", "three"] {
        ns.create_object(&fixtures::app_service(name, 80, 8080))
            .await?;
    }
    let holders = wait_until("2 claims", CONVERGE, || async {
        let claims = claims_in_namespace(&client, &ns.name)
            .await
            .map_err(|e| e.to_string())?;
        if claims.len() == 2 {
            Ok(claims
                .iter()
                .map(|c| (c.spec.service_ref.name.clone(), c.spec.address.clone()))
                .collect::<Vec<_>>())
        } else {
            Err(format!("{} claims", claims.len()))
        }
    })
    .await?;
    let left_out = ["one", "two", "three"]
        .into_iter()
        .find(|n| !holders.iter().any(|(h, _)| h == n))
        .expect("one Service without a claim");
    let note = wait_warning(&client, &ns.name, left_out, "ClusterIPExhausted").await?;
    println!(
        "[full] {cidrs:?}: claims {holders:?}; {left_out} got Warning ClusterIPExhausted {:?} after creation: {note}",
        t0.elapsed()
    );
    no_claims_during(&client, &ns.name, &[left_out], Duration::from_secs(2)).await?;
    assert_eq!(claims_in_namespace(&client, &ns.name).await?.len(), 2);

    finish(&client, ns, vec![signpost]).await
}

/// A blue/green hand-over of a pinned address: `green` asks for the address `blue` holds and
/// gets `ClusterIPTaken`; once `blue` is deleted, `green` gets the address within seconds
/// without anyone touching it.
#[tokio::test]
async fn a_requested_address_is_granted_when_its_holder_lets_go() -> anyhow::Result<()> {
    let (client, ns, signpost) = setup_leading("pin").await?;
    let services: Api<Service> = ns.api();
    ns.create_object(&fixtures::app_service("blue", 80, 8080))
        .await?;
    let pinned = wait_claimed_address(&client, &ns.name, "blue", "blue holds a VIP").await?;
    ns.create_object(&fixtures::requesting_address(
        fixtures::app_service("green", 80, 8080),
        &pinned,
    ))
    .await?;
    let note = wait_warning(&client, &ns.name, "green", "ClusterIPTaken").await?;
    println!("[pin] green asks for {pinned}: Warning ClusterIPTaken: {note}");

    let t0 = Instant::now();
    services.delete("blue", &Default::default()).await?;
    let holder = wait_until(
        "green holds the pinned address",
        Duration::from_secs(20),
        || async {
            let claims = claims_in_namespace(&client, &ns.name)
                .await
                .map_err(|e| e.to_string())?;
            claims
                .iter()
                .find(|c| c.spec.address == pinned)
                .map(|c| c.spec.service_ref.name.clone())
                .filter(|name| name == "green")
                .ok_or_else(|| {
                    let held: Vec<_> = claims
                        .iter()
                        .map(|c| (c.spec.service_ref.name.clone(), c.spec.address.clone()))
                        .collect();
                    format!("claims {held:?}")
                })
        },
    )
    .await?;
    println!(
        "[pin] blue deleted: {holder} holds {pinned} {:?} later",
        t0.elapsed()
    );
    finish(&client, ns, vec![signpost]).await
}

/// A selector that matches no pod: an Endpoints object with no addresses and one empty slice,
/// and then no further writes.
#[tokio::test]
async fn selector_matching_nothing_gets_empty_endpoints_and_one_empty_slice() -> anyhow::Result<()>
{
    let (client, ns, signpost) = setup_leading("empty").await?;
    let endpoints: Api<Endpoints> = ns.api();

    let t0 = Instant::now();
    ns.create_object(&fixtures::service_selecting("lonely", "nobody", 8080))
        .await?;
    let slices = wait_until(
        "Endpoints without addresses and one empty slice",
        CONVERGE,
        || async {
            let ep = present(&endpoints, "lonely").await?;
            let (ready, not_ready) = endpoints_addresses(&ep);
            let slices = slices_of(&ns.api(), "lonely").await?;
            let counts: Vec<usize> = slices.iter().map(endpoint_count).collect();
            if ready.is_empty() && not_ready.is_empty() && counts == vec![0] {
                Ok(slices)
            } else {
                Err(format!(
                    "Endpoints {}/{} addresses, slices {counts:?}",
                    ready.len(),
                    not_ready.len()
                ))
            }
        },
    )
    .await?;
    println!(
        "[empty] Endpoints with no addresses and one empty slice ({}) {:?} after creation",
        slices[0].name_any(),
        t0.elapsed()
    );
    assert_quiet(&client, &ns.name, "empty", "no writes once converged").await?;

    finish(&client, ns, vec![signpost]).await
}

/// 5,000 pods behind one Service: 50 slices of at most 100 endpoints, and an Endpoints object
/// truncated to 1,000 addresses with `over-capacity: truncated`. Needs the local control
/// plane's kwok fake nodes (a kind node runs at most 110 real pods), hence the gate.
#[tokio::test]
#[cfg_attr(
    not(feature = "local-controlplane"),
    ignore = "5,000 pods need the local control plane's kwok nodes (feature local-controlplane)"
)]
async fn five_thousand_pods_fill_fifty_slices_and_truncate_endpoints() -> anyhow::Result<()> {
    const PODS: i32 = 5000;
    const SLOW: Duration = Duration::from_secs(900);
    let (client, ns, signpost) = setup_leading("big").await?;
    let deployments: Api<Deployment> = ns.api();
    let endpoints: Api<Endpoints> = ns.api();
    let pods: Api<Pod> = ns.api();

    let t0 = Instant::now();
    ns.create_object(&fixtures::app_service("big", 80, 8080))
        .await?;
    ns.create_object(&fixtures::app_deployment("big", PODS, 8080))
        .await?;
    let result = async {
        let took = wait_deployment_ready(&deployments, "big", PODS, SLOW).await?;
        println!("[big] {PODS} pods ready {took:?} after creation");
        let t1 = Instant::now();
        let seen = wait_until_every(
            "50 slices of 100 ready endpoints, Endpoints truncated",
            SLOW,
            Duration::from_secs(2),
            || async {
                let seen = endpoints_match_pods(&client, &ns.name, "big", "app=big", 100).await?;
                if seen.ready == PODS as usize { Ok(seen) } else { Err(format!("{seen:?}")) }
            },
        )
        .await?;
        println!(
            "[big] slices and Endpoints converged {:?} after the last pod was ready, {:?} after creation ({seen:?})",
            t1.elapsed(),
            t0.elapsed()
        );
        let slices = slices_of(&ns.api(), "big").await.map_err(anyhow::Error::msg)?;
        let sizes: Vec<usize> = slices.iter().map(endpoint_count).collect();
        assert_eq!(slices.len(), 50, "50 slices: sizes {sizes:?}");
        assert!(sizes.iter().all(|n| *n <= 100), "≤ 100 endpoints per slice: {sizes:?}");
        let ep = endpoints.get("big").await?;
        let (ready, not_ready) = endpoints_addresses(&ep);
        assert_eq!(ready.len() + not_ready.len(), MAX_ENDPOINTS_ADDRESSES);
        assert_eq!(
            ep.annotations().get(OVER_CAPACITY).map(String::as_str),
            Some("truncated")
        );
        let metrics = signpost.metrics().await?;
        println!(
            "[big] signpost_api_writes_total = {} for {PODS} pods",
            metric_sum(&metrics, "signpost_api_writes_total")
        );
        anyhow::Ok(())
    }
    .await;

    // Whatever happened, scale to 0 and wait for the pods to go: 5,000 pods left to the
    // namespace deletion would keep the control plane busy for the tests that follow.
    let t2 = Instant::now();
    scale_deployment(&deployments, "big", 0).await?;
    wait_until_every(
        "every big pod gone",
        SLOW,
        Duration::from_secs(2),
        || async {
            let left = pods
                .list(&ListParams::default().labels("app=big").limit(1))
                .await
                .map_err(|e| e.to_string())?;
            let more = left.metadata.remaining_item_count.unwrap_or(0);
            if left.items.is_empty() {
                Ok(())
            } else {
                Err(format!("{} pods left", 1 + more))
            }
        },
    )
    .await?;
    println!("[big] scaled to 0: pods gone {:?} later", t2.elapsed());
    result?;
    let seen = wait_endpoints(
        &client,
        &ns.name,
        "big",
        "app=big",
        "no endpoints left",
        |seen| seen.ready + seen.not_ready == 0 && seen.slices == 1,
    )
    .await?;
    println!(
        "[big] after scaling to 0: {seen:?}, {:?} after the scale",
        t2.elapsed()
    );

    finish(&client, ns, vec![signpost]).await
}
