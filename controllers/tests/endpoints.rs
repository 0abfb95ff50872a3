//! The endpoints controller against the local control plane: each test runs its own
//! controllers scoped to its own namespace.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    POD_READY_TIMEOUT, TIMEOUT, api_writes_sample, create_foreign, finish, init_logs,
    scoped_settings, slice_ports, start_controllers, start_scoped, wait_reported_and_untouched,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::{Api, Client, ResourceExt};
use signpost_controllers::app::Running;
use signpost_controllers::runtime::Metrics;
use signpost_e2e::watch::{list_version, writes_until_quiet};
use signpost_e2e::{
    TestNamespace, client, events_about, fixtures, present, scale_deployment, set_pod_ready,
    set_selector, unique_cidr, wait_for_count, wait_ready_pods, wait_until,
};

const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io";

async fn start(client: &Client, ns: &str, cidr: &str) -> anyhow::Result<(Running, Arc<Metrics>)> {
    init_logs("warn");
    start_controllers(client, scoped_settings(ns, &[cidr])?).await
}

async fn our_slices(slices: &Api<EndpointSlice>) -> Result<Vec<EndpointSlice>, String> {
    slices
        .list(&ListParams::default().labels(MANAGED_BY))
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

/// Waits until Signpost's slices are as `done` wants and returns them; until then, says how
/// many there are and which addresses they hold, ready and all.
async fn wait_our_slices(
    slices: &Api<EndpointSlice>,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[EndpointSlice]) -> bool,
) -> anyhow::Result<Vec<EndpointSlice>> {
    let done = &done;
    wait_until(what, timeout, || async {
        let list = our_slices(slices).await?;
        if done(&list) {
            Ok(list)
        } else {
            Err(format!(
                "{} slices, ready {:?}, all {:?}",
                list.len(),
                ready_addresses(&list),
                all_addresses(&list)
            ))
        }
    })
    .await
}

fn endpoints_of(slice: &EndpointSlice) -> &[k8s_openapi::api::discovery::v1::Endpoint] {
    slice.endpoints.as_deref().unwrap_or_default()
}

fn ready_addresses(slices: &[EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .flat_map(|s| endpoints_of(s).iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.clone())
        .collect()
}

fn all_addresses(slices: &[EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .flat_map(|s| endpoints_of(s).iter())
        .flat_map(|e| e.addresses.clone())
        .collect()
}

fn endpoints_counts(e: &Endpoints) -> (usize, usize) {
    let subsets = e.subsets.clone().unwrap_or_default();
    let ready = subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    let not_ready = subsets
        .iter()
        .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
        .sum();
    (ready, not_ready)
}

#[tokio::test]
async fn seed_scenario_readiness_and_termination() -> anyhow::Result<()> {
    let (client, ns, running, _) = start_scoped("ep-seed").await?;
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    let endpoints: Api<Endpoints> = ns.api();

    let t0 = Instant::now();
    ns.create_hostnames(3).await?;
    let ready = wait_ready_pods(&pods, "app=hostnames", 3, POD_READY_TIMEOUT).await?;
    let ep = wait_until(
        "Endpoints hostnames with 3 ready addresses",
        TIMEOUT,
        || async {
            let ep = present(&endpoints, "hostnames").await?;
            if endpoints_counts(&ep) == (3, 0) {
                Ok(ep)
            } else {
                Err(format!("{:?}", endpoints_counts(&ep)))
            }
        },
    )
    .await?;
    println!(
        "Endpoints converged {:?} after creating the Deployment",
        t0.elapsed()
    );
    let subsets = ep.subsets.unwrap_or_default();
    assert!(
        subsets
            .iter()
            .all(|s| s.ports.iter().flatten().all(|p| p.port == 9376)),
        "port 9376: {subsets:?}"
    );
    let one = |l: &[EndpointSlice]| l.len() == 1 && ready_addresses(l).len() == 3;
    let list = wait_our_slices(&slices, "one slice with 3 ready endpoints", TIMEOUT, one).await?;
    let slice = &list[0];
    assert_eq!(
        slice
            .labels()
            .get("kubernetes.io/service-name")
            .map(String::as_str),
        Some("hostnames")
    );
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.ports.as_ref().and_then(|p| p[0].port), Some(9376));

    // A pod that fails its readiness probe leaves the ready set within 5 s.
    let victim = ready[0].name_any();
    let victim_ip = ready[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap();
    let flipped = Instant::now();
    set_pod_ready(&pods, &victim, false).await?;
    wait_until(
        "victim not ready in slice and Endpoints",
        Duration::from_secs(5),
        || async {
            let list = our_slices(&slices).await?;
            let ep = endpoints
                .get("hostnames")
                .await
                .map_err(|e| e.to_string())?;
            let in_slice = !ready_addresses(&list).contains(&victim_ip)
                && all_addresses(&list).contains(&victim_ip);
            if in_slice && endpoints_counts(&ep) == (2, 1) {
                Ok(())
            } else {
                Err(format!(
                    "slice ready {:?}, endpoints {:?}",
                    ready_addresses(&list),
                    endpoints_counts(&ep)
                ))
            }
        },
    )
    .await?;
    println!(
        "not-ready pod left the ready set {:?} after the flip",
        flipped.elapsed()
    );
    set_pod_ready(&pods, &victim, true).await?;

    // A deleted pod shows terminating: true while a finalizer holds it, then leaves.
    let held = ready[1].name_any();
    let held_ip = ready[1]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap();
    pods.patch(
        &held,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": ["signpost.dev/test-hold"]}})),
    )
    .await?;
    pods.delete(&held, &DeleteParams::default()).await?;
    wait_until("terminating endpoint", TIMEOUT, || async {
        let list = our_slices(&slices).await?;
        let terminating = list.iter().flat_map(|s| endpoints_of(s).iter()).any(|e| {
            e.addresses.contains(&held_ip)
                && e.conditions.as_ref().and_then(|c| c.terminating) == Some(true)
        });
        if terminating {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                list.iter()
                    .flat_map(|s| endpoints_of(s).iter())
                    .map(|e| (&e.addresses, &e.conditions))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await?;
    pods.patch(
        &held,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    let gone = |l: &[EndpointSlice]| !all_addresses(l).contains(&held_ip);
    wait_our_slices(
        &slices,
        "terminated pod gone from the slices",
        TIMEOUT,
        gone,
    )
    .await?;
    finish(&client, ns, running).await
}

fn bare_pod(name: &str, labels: serde_json::Value, port_name: &str, port: i32) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "x", "ports": [{"name": port_name, "containerPort": port}]}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn named_target_port_resolves_per_pod() -> anyhow::Result<()> {
    let (client, ns, running, _) = start_scoped("ep-named").await?;
    let pods: Api<Pod> = ns.api();
    let services: Api<Service> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    pods.create(
        &PostParams::default(),
        &bare_pod("old", serde_json::json!({"app": "web"}), "http", 8080),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &bare_pod("new", serde_json::json!({"app": "web"}), "http", 9090),
    )
    .await?;
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))?;
    services.create(&PostParams::default(), &svc).await?;
    wait_ready_pods(&pods, "app=web", 2, POD_READY_TIMEOUT).await?;
    let two = |l: &[EndpointSlice]| l.len() == 2 && ready_addresses(l).len() == 2;
    let list = wait_our_slices(&slices, "two slices, one per port mapping", TIMEOUT, two).await?;
    assert_eq!(slice_ports(&list), vec![8080, 9090]);
    for slice in &list {
        assert_eq!(
            endpoints_of(slice).len(),
            1,
            "each slice holds the pod with that port"
        );
    }
    finish(&client, ns, running).await
}

/// Starts counting writes to our slices from the current resource version; the task ends
/// once two seconds pass without one.
async fn count_our_slice_writes_from_now(
    slices: &Api<EndpointSlice>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<usize>>> {
    let version = list_version(slices, &ListParams::default()).await?;
    let slices = slices.clone();
    Ok(tokio::spawn(async move {
        let params = WatchParams::default().labels(MANAGED_BY);
        let writes = writes_until_quiet(&slices, &params, &version, Duration::from_secs(2)).await?;
        Ok(writes.len())
    }))
}

#[tokio::test]
async fn large_service_packs_slices_and_one_flip_is_one_slice_write() -> anyhow::Result<()> {
    let (client, ns, running, _) = start_scoped("ep-250").await?;
    let deployments: Api<Deployment> = ns.api();
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    ns.create_app("big", 250).await?;
    let ready = wait_ready_pods(&pods, "app=big", 250, POD_READY_TIMEOUT).await?;
    let all_ready = |l: &[EndpointSlice]| ready_addresses(l).len() == 250;
    let minute = Duration::from_secs(60);
    let list = wait_our_slices(
        &slices,
        "250 ready endpoints in 3 slices",
        minute,
        all_ready,
    )
    .await?;
    assert_eq!(list.len(), 3, "250 endpoints at 100 per slice");
    assert!(list.iter().all(|s| endpoints_of(s).len() <= 100));

    let victim = ready[17].name_any();
    let counter = count_our_slice_writes_from_now(&slices).await?;
    set_pod_ready(&pods, &victim, false).await?;
    let writes = counter.await??;
    assert_eq!(
        writes, 1,
        "one readiness flip must cause exactly one slice write"
    );
    println!("one flip among 250 pods: {writes} slice write");

    // Scale to 0: Kubernetes keeps one empty slice per address type; Signpost does the same.
    scale_deployment(&deployments, "big", 0).await?;
    let empty = |l: &[EndpointSlice]| l.len() == 1 && endpoints_of(&l[0]).is_empty();
    wait_our_slices(&slices, "one empty slice", minute, empty).await?;
    scale_deployment(&deployments, "big", 5).await?;
    let five = |l: &[EndpointSlice]| l.len() == 1 && ready_addresses(l).len() == 5;
    wait_our_slices(&slices, "5 ready endpoints again", minute, five).await?;
    finish(&client, ns, running).await
}

/// A Service whose pods change without pause for seconds (a rollout) is written a few times
/// a second, not once per 100 ms batch period, and its slices end current.
#[tokio::test]
async fn a_service_changing_for_seconds_is_written_a_few_times_and_ends_current()
-> anyhow::Result<()> {
    let (client, ns, running, _) = start_scoped("ep-burst").await?;
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    ns.create_app("burst", 10).await?;
    let names: Vec<String> = wait_ready_pods(&pods, "app=burst", 10, POD_READY_TIMEOUT)
        .await?
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    wait_for_count("10 ready endpoints", TIMEOUT, 10, "ready", || async {
        Ok(ready_addresses(&our_slices(&slices).await?).len())
    })
    .await?;

    let counter = count_our_slice_writes_from_now(&slices).await?;
    // 120 flips 25 ms apart (3 s), each toggling a pod picked by a fixed pseudo-random
    // sequence (a regular pattern could repeat with the period of the syncs and hide them),
    // then every pod ready again.
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    let mut ready = vec![true; names.len()];
    let mut pick: u32 = 12345;
    // Pauses of the burst as long as the shortest spacing interval: on a loaded machine a flip
    // can wait that long for the API server, the Service goes quiet, and its next change is
    // synced at once again (as an isolated change should be).
    let shortest = Duration::from_millis(100);
    let (mut last_flip, mut pauses) = (Instant::now(), 0usize);
    for _ in 0..120 {
        tick.tick().await;
        pick = pick.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let i = (pick >> 16) as usize % names.len();
        ready[i] = !ready[i];
        set_pod_ready(&pods, &names[i], ready[i]).await?;
        pauses += usize::from(last_flip.elapsed() >= shortest);
        last_flip = Instant::now();
    }
    for (name, _) in names.iter().zip(&ready).filter(|(_, ready)| !**ready) {
        set_pod_ready(&pods, name, true).await?;
    }
    let burst = started.elapsed();
    wait_for_count(
        "10 ready endpoints after the burst",
        TIMEOUT,
        10,
        "ready",
        || async { Ok(ready_addresses(&our_slices(&slices).await?).len()) },
    )
    .await?;
    let writes = counter.await??;
    println!(
        "120 flips of one Service over {burst:?} ({pauses} pauses of {shortest:?} or more): \
         {writes} slice writes"
    );
    // A fixed 100 ms period would write about 30 times in 3 s; growing to 500 ms, about 9,
    // after the four syncs at once the burst allowance gives the first changes. On a loaded
    // machine the 120 flips take longer than 3 s: the bound follows the burst's length at one
    // write per 500 ms, plus those four, the growing periods' first writes and the last one;
    // a pause may start that over (four at once, three growing periods).
    let most =
        15.max(usize::try_from(burst.as_millis() / 500).unwrap_or(usize::MAX) + 8) + 7 * pauses;
    assert!(
        (2..=most).contains(&writes),
        "120 flips over {burst:?} ({pauses} pauses): {writes} slice writes, want 2..={most}"
    );
    finish(&client, ns, running).await
}

#[tokio::test]
async fn publish_not_ready_dual_stack_selectorless_and_selector_changes() -> anyhow::Result<()> {
    let (client, ns, running, _) = start_scoped("ep-misc").await?;
    let services: Api<Service> = ns.api();
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    let endpoints: Api<Endpoints> = ns.api();
    ns.create_object(&fixtures::app_deployment("a", 2, 8080))
        .await?;
    ns.create_object(&fixtures::app_deployment("b", 3, 8080))
        .await?;
    let a = wait_ready_pods(&pods, "app=a", 2, POD_READY_TIMEOUT).await?;
    wait_ready_pods(&pods, "app=b", 3, POD_READY_TIMEOUT).await?;

    // publishNotReadyAddresses: a not-ready pod is still published as ready.
    set_pod_ready(&pods, &a[0].name_any(), false).await?;
    let mut eager = fixtures::app_service("eager", 80, 8080);
    eager.spec.as_mut().unwrap().selector = Some([("app".to_string(), "a".to_string())].into());
    eager.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    services.create(&PostParams::default(), &eager).await?;
    wait_until("eager publishes both pods as ready", TIMEOUT, || async {
        let list: Vec<EndpointSlice> = our_slices(&slices)
            .await?
            .into_iter()
            .filter(|s| {
                s.labels()
                    .get("kubernetes.io/service-name")
                    .map(String::as_str)
                    == Some("eager")
            })
            .collect();
        if ready_addresses(&list).len() == 2 {
            Ok(())
        } else {
            Err(format!("{:?}", ready_addresses(&list)))
        }
    })
    .await?;

    // Changing the selector moves the endpoints.
    let mut moving = fixtures::app_service("moving", 80, 8080);
    moving.spec.as_mut().unwrap().selector = Some([("app".to_string(), "b".to_string())].into());
    services.create(&PostParams::default(), &moving).await?;
    let of = |name: &'static str| {
        let slices = slices.clone();
        async move {
            let list: Vec<EndpointSlice> = our_slices(&slices)
                .await?
                .into_iter()
                .filter(|s| {
                    s.labels()
                        .get("kubernetes.io/service-name")
                        .map(String::as_str)
                        == Some(name)
                })
                .collect();
            Ok::<_, String>(list)
        }
    };
    wait_until("moving selects b's 3 pods", TIMEOUT, || async {
        let list = of("moving").await?;
        if all_addresses(&list).len() == 3 {
            Ok(())
        } else {
            Err(format!("{:?}", all_addresses(&list)))
        }
    })
    .await?;
    set_selector(&services, "moving", serde_json::json!({"app": "a"})).await?;
    let a_ips: BTreeSet<String> = a
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    wait_until("moving selects a's 2 pods", TIMEOUT, || async {
        let list = of("moving").await?;
        if all_addresses(&list) == a_ips {
            Ok(())
        } else {
            Err(format!("{:?}", all_addresses(&list)))
        }
    })
    .await?;

    // Dual-stack pods give one slice per address family.
    let ds_pod = wait_ready_pods(&pods, "app=b", 3, POD_READY_TIMEOUT).await?[0].clone();
    let v4 = ds_pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap();
    pods.patch_status(
        &ds_pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"status": {"podIPs": [{"ip": v4}, {"ip": "fd00:10:244::99"}]}}),
        ),
    )
    .await?;
    let mut dual = fixtures::app_service("dual", 80, 8080);
    dual.spec.as_mut().unwrap().selector = Some([("app".to_string(), "b".to_string())].into());
    dual.spec.as_mut().unwrap().ip_family_policy = Some("RequireDualStack".into());
    dual.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
    services.create(&PostParams::default(), &dual).await?;
    wait_until(
        "dual: an IPv4 slice with 3 and an IPv6 slice with 1",
        TIMEOUT,
        || async {
            let list = of("dual").await?;
            let count = |t: &str| {
                list.iter()
                    .filter(|s| s.address_type == t)
                    .map(|s| endpoints_of(s).len())
                    .sum::<usize>()
            };
            if count("IPv4") == 3 && count("IPv6") == 1 {
                Ok(())
            } else {
                Err(format!("v4 {} v6 {}", count("IPv4"), count("IPv6")))
            }
        },
    )
    .await?;

    // A Service without a selector is left alone: its hand-written Endpoints stay as written.
    let manual: Service = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 5432}]}}),
    )?;
    services.create(&PostParams::default(), &manual).await?;
    let written: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}]
    }))?;
    let written = endpoints.create(&PostParams::default(), &written).await?;
    let version = written.resource_version().unwrap_or_default();
    let rewrites = writes_until_quiet(
        &endpoints,
        &WatchParams::default().fields("metadata.name=manual"),
        &version,
        Duration::from_secs(2),
    )
    .await?
    .len();
    assert_eq!(rewrites, 0, "selector-less Endpoints must not be rewritten");
    assert!(
        of("manual").await.map_err(anyhow::Error::msg)?.is_empty(),
        "no Signpost slices for a selector-less Service"
    );
    let events = events_about(&client, &ns.name, "manual", "EndpointsManagedElsewhere").await?;
    assert!(
        events.is_empty(),
        "selector-less Services are not reported as conflicts"
    );
    finish(&client, ns, running).await
}

#[tokio::test]
async fn restart_with_nothing_changed_writes_nothing_and_foreign_endpoints_are_left_alone()
-> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "ep-restart").await?;
    let endpoints: Api<Endpoints> = ns.api();
    // An Endpoints object some other controller wrote, for a Service with a selector.
    let foreign: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "theirs"},
        "subsets": [{"addresses": [{"ip": "192.0.2.20"}], "ports": [{"port": 80}]}]
    }))?;
    let foreign = create_foreign(&ns, &endpoints, &foreign).await?;

    let cidr = unique_cidr(24);
    let (running, _) = start(&client, &ns.name, &cidr).await?;
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    ns.create_hostnames(3).await?;
    wait_ready_pods(&pods, "app=hostnames", 3, POD_READY_TIMEOUT).await?;
    wait_until("hostnames converged", TIMEOUT, || async {
        let ep = present(&endpoints, "hostnames").await?;
        let list = our_slices(&slices).await?;
        if endpoints_counts(&ep) == (3, 0) && ready_addresses(&list).len() == 3 {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await?;
    wait_reported_and_untouched(
        &client,
        &ns.name,
        &endpoints,
        &foreign,
        "EndpointsManagedElsewhere",
    )
    .await?;
    running.shut_down().await;

    let slice_version = list_version(&slices, &ListParams::default()).await?;
    let ep_version = list_version(&endpoints, &ListParams::default()).await?;
    let slice_writes = tokio::spawn({
        let slices = slices.clone();
        async move {
            let params = WatchParams::default();
            writes_until_quiet(&slices, &params, &slice_version, Duration::from_secs(3)).await
        }
    });
    let ep_writes = tokio::spawn({
        let endpoints = endpoints.clone();
        async move {
            let params = WatchParams::default();
            writes_until_quiet(&endpoints, &params, &ep_version, Duration::from_secs(3)).await
        }
    });
    let started = Instant::now();
    let (running, metrics) = start(&client, &ns.name, &cidr).await?;
    println!("restarted controller ready in {:?}", started.elapsed());
    assert_eq!(
        slice_writes.await??.len(),
        0,
        "no slice writes after a restart with nothing changed"
    );
    assert_eq!(
        ep_writes.await??.len(),
        0,
        "no Endpoints writes after a restart with nothing changed"
    );
    assert!(
        api_writes_sample(&metrics, "endpoints").is_none(),
        "no writes counted"
    );
    finish(&client, ns, running).await
}

/// A user relabels Signpost's slice so it names another Service, then edits the one that
/// replaced it: within seconds the Service has exactly its own slice again, with the pods'
/// addresses, and no slice of Signpost's names a Service that does not exist.
#[tokio::test]
async fn a_relabelled_or_edited_slice_of_ours_is_put_right() -> anyhow::Result<()> {
    let (client, ns, running, _) = start_scoped("ep-relabel").await?;
    let slices: Api<EndpointSlice> = ns.api();
    let pods: Api<Pod> = ns.api();
    ns.create_app("web", 3).await?;
    let want: BTreeSet<String> = wait_ready_pods(&pods, "app=web", 3, POD_READY_TIMEOUT)
        .await?
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    let right = || async {
        let ours = our_slices(&slices).await?;
        let names: Vec<String> = ours
            .iter()
            .map(|s| {
                let service = s.labels().get("kubernetes.io/service-name").cloned();
                format!("{} -> {service:?}", s.name_any())
            })
            .collect();
        let all_web = ours.iter().all(|s| {
            s.labels()
                .get("kubernetes.io/service-name")
                .map(String::as_str)
                == Some("web")
        });
        if ours.len() == 1 && all_web && ready_addresses(&ours) == want {
            Ok(ours[0].name_any())
        } else {
            Err(format!(
                "slices {names:?}, ready {:?}",
                ready_addresses(&ours)
            ))
        }
    };
    let first = wait_until("web's slice", TIMEOUT, right).await?;

    let t0 = Instant::now();
    slices
        .patch(
            &first,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"kubernetes.io/service-name": "elsewhere"}}})),
        )
        .await?;
    let second = wait_until("web's slice after the relabel", TIMEOUT, right).await?;
    println!(
        "relabelled {first} to another Service: put right {:?} later (slice {second})",
        t0.elapsed()
    );

    let t0 = Instant::now();
    slices
        .patch(
            &second,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"endpoints": []})),
        )
        .await?;
    wait_until("web's slice after the edit", TIMEOUT, right).await?;
    println!("emptied {second}: put right {:?} later", t0.elapsed());

    finish(&client, ns, running).await
}
