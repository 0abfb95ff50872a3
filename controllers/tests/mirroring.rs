//! EndpointSlice mirroring against the local control plane: selector-less Services with
//! hand-written Endpoints get mirrored slices.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{POD_READY_TIMEOUT, TIMEOUT, finish, scoped_settings, slice_ports, start_controllers};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams, WatchParams};
use kube::{Api, Client, ResourceExt};
use signpost_controllers::app::Running;
use signpost_e2e::watch::writes_until_quiet;
use signpost_e2e::{
    TestNamespace, client, fixtures, set_selector, unique_cidr, wait_events, wait_for_count,
    wait_ready_pods, wait_until,
};

const MIRRORED: &str =
    "endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io";
const OURS: &str = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io";

/// Where every test here starts: a namespace of its own with the controllers running scoped
/// to it, and the APIs of what mirroring reads and writes there.
struct Scene {
    client: Client,
    ns: TestNamespace,
    running: Running,
    services: Api<Service>,
    endpoints: Api<Endpoints>,
    slice_api: Api<EndpointSlice>,
}

impl Scene {
    async fn start(prefix: &str) -> anyhow::Result<Self> {
        let client = client().await?;
        let ns = TestNamespace::create(&client, prefix).await?;
        let settings = scoped_settings(&ns.name, &[&unique_cidr(24)])?;
        let (running, _) = start_controllers(&client, settings).await?;
        Ok(Self {
            services: ns.api(),
            endpoints: ns.api(),
            slice_api: ns.api(),
            client,
            ns,
            running,
        })
    }

    /// Creates the selector-less `db` Service whose Endpoints the tests write by hand.
    async fn create_db_service(&self) -> anyhow::Result<()> {
        let db = db_service(None);
        self.services.create(&PostParams::default(), &db).await?;
        Ok(())
    }

    /// Stops the controllers and deletes the namespace.
    async fn finish(self) -> anyhow::Result<()> {
        finish(&self.client, self.ns, self.running).await
    }
}

async fn slices(api: &Api<EndpointSlice>, selector: &str) -> Result<Vec<EndpointSlice>, String> {
    api.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

fn ready_ips(slice: &EndpointSlice) -> BTreeSet<String> {
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.clone())
        .collect()
}

fn db_service(selector: Option<&str>) -> Service {
    let mut spec = serde_json::json!({"ports": [{"name": "pg", "port": 5432}]});
    if let Some(app) = selector {
        spec["selector"] = serde_json::json!({"app": app});
    }
    serde_json::from_value(serde_json::json!({"metadata": {"name": "db"}, "spec": spec})).unwrap()
}

fn db_endpoints(ips: &[&str]) -> Endpoints {
    let addresses: Vec<serde_json::Value> =
        ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db", "labels": {"team": "data"}},
        "subsets": [{"addresses": addresses, "ports": [{"name": "pg", "port": 5432}]}]
    }))
    .unwrap()
}

#[tokio::test]
async fn hand_written_endpoints_are_mirrored_updated_in_place_and_removed() -> anyhow::Result<()> {
    let scene = Scene::start("mirror").await?;
    let (endpoints, slice_api) = (&scene.endpoints, &scene.slice_api);

    let t0 = Instant::now();
    scene.create_db_service().await?;
    endpoints
        .create(
            &PostParams::default(),
            &db_endpoints(&["10.1.0.1", "10.1.0.2"]),
        )
        .await?;
    let slice = wait_until(
        "one mirrored slice with 2 ready endpoints",
        TIMEOUT,
        || async {
            let list = slices(slice_api, MIRRORED).await?;
            if list.len() == 1 && ready_ips(&list[0]).len() == 2 {
                Ok(list[0].clone())
            } else {
                Err(format!("{} slices", list.len()))
            }
        },
    )
    .await?;
    println!("mirrored in {:?}", t0.elapsed());
    assert_eq!(slice.ports.as_ref().and_then(|p| p[0].port), Some(5432));
    assert_eq!(
        slice
            .labels()
            .get("kubernetes.io/service-name")
            .map(String::as_str),
        Some("db")
    );
    assert_eq!(
        slice.labels().get("team").map(String::as_str),
        Some("data"),
        "the Endpoints' labels are carried"
    );
    assert!(
        slices(slice_api, OURS)
            .await
            .map_err(anyhow::Error::msg)?
            .is_empty(),
        "the endpoints controller stays out"
    );

    // Three addresses: the same slice, updated in place, exactly one write.
    let version = slice.resource_version().unwrap_or_default();
    let counter = tokio::spawn({
        let slice_api = slice_api.clone();
        async move { count_writes_until_quiet(&slice_api, &version, Duration::from_secs(2)).await }
    });
    endpoints
        .replace("db", &PostParams::default(), &{
            let mut e = db_endpoints(&["10.1.0.1", "10.1.0.2", "10.1.0.3"]);
            e.metadata.resource_version = endpoints.get("db").await?.resource_version();
            e
        })
        .await?;
    assert_eq!(
        counter.await??,
        1,
        "an edit of the Endpoints is one slice write"
    );
    let list = slices(slice_api, MIRRORED)
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name_any(), slice.name_any(), "updated in place");
    assert_eq!(ready_ips(&list[0]).len(), 3);

    // The Endpoints deleted: the slice goes.
    endpoints.delete("db", &DeleteParams::default()).await?;
    wait_for_count("mirrored slice gone", TIMEOUT, 0, "slices", || async {
        Ok(slices(slice_api, MIRRORED).await?.len())
    })
    .await?;

    // The skip-mirror label: no slice at all.
    let mut skipped = db_endpoints(&["10.1.0.9"]);
    skipped.metadata.labels.get_or_insert_default().insert(
        "endpointslice.kubernetes.io/skip-mirror".into(),
        "true".into(),
    );
    let created = endpoints.create(&PostParams::default(), &skipped).await?;
    let version = created.resource_version().unwrap_or_default();
    let writes = count_writes_until_quiet(slice_api, &version, Duration::from_secs(2)).await?;
    assert_eq!(writes, 0, "skip-mirror: nothing written");
    assert!(
        slices(slice_api, MIRRORED)
            .await
            .map_err(anyhow::Error::msg)?
            .is_empty()
    );

    scene.finish().await
}

#[tokio::test]
async fn one_ip_with_two_port_sets_gives_two_slices() -> anyhow::Result<()> {
    let scene = Scene::start("mirror-ports").await?;
    let (endpoints, slice_api) = (&scene.endpoints, &scene.slice_api);
    scene.create_db_service().await?;
    let two: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db"},
        "subsets": [
            {"addresses": [{"ip": "10.1.0.1"}], "ports": [{"name": "pg", "port": 5432}]},
            {"addresses": [{"ip": "10.1.0.1"}], "ports": [{"name": "metrics", "port": 9187}]}
        ]
    }))?;
    endpoints.create(&PostParams::default(), &two).await?;
    let list = wait_until("two mirrored slices", TIMEOUT, || async {
        let list = slices(slice_api, MIRRORED).await?;
        if list.len() == 2 {
            Ok(list)
        } else {
            Err(format!("{} slices", list.len()))
        }
    })
    .await?;
    assert_eq!(slice_ports(&list), vec![5432, 9187]);
    for slice in &list {
        assert_eq!(ready_ips(slice), BTreeSet::from(["10.1.0.1".to_string()]));
    }
    scene.finish().await
}

#[tokio::test]
async fn gaining_a_selector_hands_over_to_the_endpoints_controller_and_back() -> anyhow::Result<()>
{
    let scene = Scene::start("mirror-sel").await?;
    let (ns, services) = (&scene.ns, &scene.services);
    let (endpoints, slice_api) = (&scene.endpoints, &scene.slice_api);
    let pods: Api<Pod> = ns.api();
    ns.create_object(&fixtures::app_deployment("pg", 2, 5432))
        .await?;
    wait_ready_pods(&pods, "app=pg", 2, POD_READY_TIMEOUT).await?;
    scene.create_db_service().await?;
    endpoints
        .create(&PostParams::default(), &db_endpoints(&["10.1.0.1"]))
        .await?;
    wait_for_count("mirrored slice", TIMEOUT, 1, "slices", || async {
        Ok(slices(slice_api, MIRRORED).await?.len())
    })
    .await?;

    set_selector(services, "db", serde_json::json!({"app": "pg"})).await?;
    wait_until(
        "mirrored slices gone, the endpoints controller's slice with 2 pods",
        TIMEOUT,
        || async {
            let mirrored = slices(slice_api, MIRRORED).await?.len();
            let ours = slices(slice_api, OURS).await?;
            let ready: usize = ours.iter().map(|s| ready_ips(s).len()).sum();
            if mirrored == 0 && ready == 2 {
                Ok(())
            } else {
                Err(format!("mirrored {mirrored}, ours ready {ready}"))
            }
        },
    )
    .await?;

    set_selector(services, "db", serde_json::json!(null)).await?;
    wait_until(
        "mirroring restored, the endpoints controller's slices gone",
        TIMEOUT,
        || async {
            let mirrored = slices(slice_api, MIRRORED).await?;
            let ours = slices(slice_api, OURS).await?.len();
            if mirrored.len() == 1 && ready_ips(&mirrored[0]).contains("10.1.0.1") && ours == 0 {
                Ok(())
            } else {
                Err(format!("mirrored {}, ours {ours}", mirrored.len()))
            }
        },
    )
    .await?;
    scene.finish().await
}

/// How many writes to mirrored slices a watch from `version` sees until `quiet` passes
/// without one.
async fn count_writes_until_quiet(
    api: &Api<EndpointSlice>,
    version: &str,
    quiet: Duration,
) -> anyhow::Result<usize> {
    let params = WatchParams::default().labels(MIRRORED);
    Ok(writes_until_quiet(api, &params, version, quiet)
        .await?
        .len())
}

/// The API server refuses invalid IPs and ports in Endpoints (the same validation as slices),
/// so the bad input a user can store is a subset larger than mirroring takes: the rest is
/// reported, and what fits is still mirrored.
#[tokio::test]
async fn what_cannot_be_mirrored_is_reported_and_the_rest_mirrored() -> anyhow::Result<()> {
    let scene = Scene::start("mirror-bad").await?;
    let (ns, endpoints, slice_api) = (&scene.ns, &scene.endpoints, &scene.slice_api);
    scene.create_db_service().await?;
    let ips: Vec<String> = (0..1001)
        .map(|i| format!("10.2.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    endpoints
        .create(&PostParams::default(), &db_endpoints(&refs))
        .await?;
    let list = wait_until("1000 mirrored endpoints", TIMEOUT, || async {
        let list = slices(slice_api, MIRRORED).await?;
        let n: usize = list.iter().map(|s| ready_ips(s).len()).sum();
        if n == 1000 {
            Ok(list)
        } else {
            Err(format!("{n} endpoints in {} slices", list.len()))
        }
    })
    .await?;
    assert_eq!(list.len(), 10, "1000 endpoints at 100 per slice");
    let events = wait_events(
        &scene.client,
        &ns.name,
        "db",
        "EndpointsNotMirrored",
        TIMEOUT,
    )
    .await?;
    println!("Event: {}", events[0].note.clone().unwrap_or_default());
    scene.finish().await
}
