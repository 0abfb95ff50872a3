//! Set-up and tear-down shared by the controllers' integration tests. Each test runs Signpost's
//! controllers inside the test process, scoped to a namespace of its own and over a CIDR no
//! other test uses, so the tests of every file run side by side against one cluster.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use signpost_controllers::app::{self, Running, Settings};
use signpost_controllers::runtime::Metrics;
use signpost_e2e::stateful::create_stateful_app;
use signpost_e2e::{
    TestNamespace, client, delete_namespace_and_claims, fixtures, install_crds, unique_cidr,
    wait_events, wait_ready_pod_ips,
};

/// How long one step of a test may take: the controllers becoming ready, or one change
/// showing up in the API.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// How long a test's pods may take to become ready: the scheduler and kwok are at work then,
/// not Signpost, and a test's Deployment competes with every other test's.
pub const POD_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends the logs of the code under test to the test's own output (shown when it fails),
/// filtered by `RUST_LOG` or else by `default_filter`. Every test calls it, since any may run
/// first; the first call wins.
pub fn init_logs(default_filter: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_test_writer()
        .try_init();
}

/// Settings for controllers that manage `namespace` only, over `cidrs`: a test's controllers
/// must not act on another test's objects.
pub fn scoped_settings(namespace: &str, cidrs: &[&str]) -> anyhow::Result<Settings> {
    let cidrs = cidrs
        .iter()
        .map(|c| c.parse())
        .collect::<Result<Vec<IpNet>, _>>()?;
    let mut settings = Settings::new(cidrs);
    settings.namespace = Some(namespace.to_string());
    Ok(settings)
}

/// Installs the CRDs, starts Signpost's controllers with `settings` and waits until they are
/// ready, so what the test creates next is seen by synced caches. Returns the controllers
/// and their metrics (for tests that count writes).
pub async fn start_controllers(
    client: &Client,
    settings: Settings,
) -> anyhow::Result<(Running, Arc<Metrics>)> {
    install_crds(client).await?;
    let metrics = Arc::new(Metrics::new());
    let mut running = app::start(client.clone(), settings, metrics.clone())?;
    tokio::time::timeout(TIMEOUT, running.readiness.wait()).await?;
    Ok((running, metrics))
}

/// What most tests start from: a namespace of their own (named from `prefix`), and
/// Signpost's controllers scoped to it over a CIDR no other test uses, ready, with their
/// metrics for tests that count writes. Tests end with [`finish`].
pub async fn start_scoped(
    prefix: &str,
) -> anyhow::Result<(Client, TestNamespace, Running, Arc<Metrics>)> {
    init_logs("warn");
    let client = client().await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    let settings = scoped_settings(&ns.name, &[&unique_cidr(24)])?;
    let (running, metrics) = start_controllers(&client, settings).await?;
    Ok((client, ns, running, metrics))
}

/// Ends a test: deletes its namespace and waits until every claim of it is released (while
/// the controllers still run, so they are the ones releasing them), then stops the
/// controllers.
pub async fn finish(client: &Client, ns: TestNamespace, running: Running) -> anyhow::Result<()> {
    delete_namespace_and_claims(client, ns).await?;
    running.shut_down().await;
    Ok(())
}

/// Creates `foreign` through `api`, an object someone other than Signpost wrote where
/// Signpost would write its own, and the Service with a selector it is named after
/// (`fixtures::app_service`); returns the object as stored, to compare with later.
pub async fn create_foreign<K>(ns: &TestNamespace, api: &Api<K>, foreign: &K) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + Debug,
{
    let foreign = api.create(&PostParams::default(), foreign).await?;
    let services: Api<Service> = ns.api();
    let service = fixtures::app_service(&foreign.name_any(), 80, 8080);
    services.create(&PostParams::default(), &service).await?;
    Ok(foreign)
}

/// Waits for the `reason` Event about `foreign`, an object of `namespace` that someone else
/// wrote where Signpost would write its own, and checks that it is still at the version its
/// writer left: Signpost reports such an object and leaves it alone.
pub async fn wait_reported_and_untouched<K>(
    client: &Client,
    namespace: &str,
    api: &Api<K>,
    foreign: &K,
    reason: &str,
) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let name = foreign.name_any();
    wait_events(client, namespace, &name, reason, TIMEOUT).await?;
    assert_eq!(
        api.get(&name).await?.resource_version(),
        foreign.resource_version(),
        "foreign {} untouched",
        K::kind(&())
    );
    Ok(())
}

/// The sample line of `signpost_api_writes_total` for `controller`, if that controller wrote
/// anything: the counter of a controller appears with its first write.
pub fn api_writes_sample(metrics: &Metrics, controller: &str) -> Option<String> {
    let series = format!("signpost_api_writes_total{{controller=\"{controller}\"}}");
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(&series))
        .map(str::to_owned)
}

/// The headless scenario the records and DNS tests share: the stateful pods `web-0` and
/// `web-1` behind the headless Service `web`, and the ExternalName Service `ext`, a CNAME to
/// `example.com.`. Waits up to `pods_ready_within` for both pods to be ready and returns
/// their IPs, which the records and answers about `web` must list.
pub async fn create_web_and_ext(
    ns: &TestNamespace,
    pods_ready_within: Duration,
) -> anyhow::Result<BTreeSet<String>> {
    create_stateful_app(ns, "web", 2).await?;
    let services: Api<Service> = ns.api();
    services
        .create(
            &PostParams::default(),
            &fixtures::external_name_service("ext", "example.com."),
        )
        .await?;
    let pods: Api<Pod> = ns.api();
    let ips = wait_ready_pod_ips(&pods, "app=web", 2, pods_ready_within).await?;
    let distinct: BTreeSet<String> = ips.iter().cloned().collect();
    anyhow::ensure!(
        distinct.len() == 2,
        "web-0 and web-1 share an address: {ips:?}"
    );
    Ok(distinct)
}

/// The port of each slice (its first), sorted: which port mappings got a slice of their own.
pub fn slice_ports(slices: &[EndpointSlice]) -> Vec<i32> {
    let mut ports: Vec<i32> = slices
        .iter()
        .filter_map(|s| s.ports.as_ref()?.first()?.port)
        .collect();
    ports.sort();
    ports
}

/// Runs `dig @<ip> -p <port> <args>` (one try, 2 s) and returns its standard output.
pub async fn dig(server: std::net::SocketAddr, args: &[&str]) -> Result<String, String> {
    let mut command = std::process::Command::new("dig");
    command
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+tries=1", "+time=2"])
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot run dig: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "dig {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout)
}

/// `GET path` over HTTP/1.0 on a process's metrics server: (status code, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text).await?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// A DNS server for `domain` reading the DNSRecords of `ns` (forwarding other names to
/// `upstream`), on free loopback ports, ready: what the DNS tests query with `dig`.
pub async fn start_dns(
    client: &Client,
    ns: &str,
    domain: &str,
    upstream: Option<SocketAddr>,
) -> anyhow::Result<signpost_dns::Running> {
    let mut config = signpost_dns::Config::new();
    config.listen = "127.0.0.1:0".parse()?;
    config.metrics_addr = Some("127.0.0.1:0".parse()?);
    config.namespace = Some(ns.to_string());
    config.cluster_domain = domain.to_string();
    config.upstream = upstream;
    let mut running = signpost_dns::start(client.clone(), config).await?;
    let started = Instant::now();
    tokio::time::timeout(TIMEOUT, running.wait_ready()).await?;
    println!(
        "dns: server on {} ready (DNSRecords listed) in {:?}",
        running.dns_addr,
        started.elapsed()
    );
    Ok(running)
}
