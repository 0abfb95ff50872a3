//! `signpost run`: the controllers, from their flags, under leader election.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ipnet::IpNet;
use signpost_controllers::app::{self, Settings};
use signpost_controllers::runtime::leader::{Elector, LeaseTiming};
use signpost_controllers::runtime::server::{self, Health};
use signpost_controllers::runtime::{Metrics, Start};
use signpost_core::labels::SliceManager;

use crate::webhook::{ClusterIpArgs, Webhook};
use crate::{CommonArgs, block_on, client, hostname, init_logging, shutdown_signal};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A service CIDR Signpost allocates virtual IPs from; repeat for several (IPv4 and/or IPv6,
    /// IPv6 no wider than /64).
    #[arg(
        long = "service-cidr",
        value_name = "CIDR",
        env = "SIGNPOST_SERVICE_CIDRS",
        value_delimiter = ',',
        required = true
    )]
    pub service_cidrs: Vec<IpNet>,

    /// The cluster's DNS domain.
    #[arg(
        long,
        value_name = "DOMAIN",
        env = "SIGNPOST_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,

    /// At most this many endpoints per EndpointSlice.
    #[arg(long, value_name = "N", env = "SIGNPOST_MAX_ENDPOINTS_PER_SLICE", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_endpoints_per_slice: u16,

    /// How often the IPAM repair pass runs (e.g. 60s, 5m).
    #[arg(long, value_name = "DURATION", env = "SIGNPOST_REPAIR_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub repair_interval: Duration,

    /// Shortest time between two endpoint syncs of one Service (e.g. 100ms, 0 to turn off):
    /// changes within it are written together; a Service idle for longer syncs at once.
    #[arg(long, value_name = "DURATION", env = "SIGNPOST_ENDPOINT_BATCH_PERIOD", default_value = "100ms", value_parser = parse_batch_period)]
    pub endpoint_batch_period: Duration,

    /// Longest time between two endpoint syncs of a Service that keeps changing (e.g. 500ms):
    /// the time doubles, from --endpoint-batch-period, with each sync that had to wait, and
    /// falls back after a quiet period; at or below --endpoint-batch-period it never grows.
    #[arg(long, value_name = "DURATION", env = "SIGNPOST_ENDPOINT_MAX_BATCH_PERIOD", default_value = "500ms", value_parser = parse_batch_period)]
    pub endpoint_max_batch_period: Duration,

    /// Syncs of a Service that go at once within the batch period before batching starts
    /// (`refill`: until a change arrives while the Service is being synced).
    #[arg(long, value_name = "N|refill", env = "SIGNPOST_ENDPOINT_BATCH_BURST", default_value = "3", value_parser = parse_batch_start)]
    pub endpoint_batch_burst: Start,

    /// Only manage Services in this namespace (default: all namespaces).
    #[arg(long, value_name = "NAMESPACE", env = "SIGNPOST_NAMESPACE")]
    pub namespace: Option<String>,

    /// Fill the caches with streaming lists, one watch per kind served from the API server's
    /// cache (needs its WatchList feature, on by default since Kubernetes 1.34): a fifth less
    /// memory at scale, slower start-up; default: paged lists.
    #[arg(long, value_name = "BOOL", env = "SIGNPOST_STREAMING_LISTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub streaming_lists: bool,

    /// List and watch pods in the API server's protobuf encoding (as kube-controller-manager
    /// does): half the API server's time per page and a third of the bytes of JSON. `false`
    /// uses JSON. Streaming lists always use JSON.
    #[arg(long, value_name = "BOOL", env = "SIGNPOST_PODS_PROTOBUF", default_value_t = true, action = clap::ArgAction::Set)]
    pub pods_protobuf: bool,

    /// Whose `endpointslice.kubernetes.io/managed-by` values Signpost's EndpointSlices carry:
    /// `kubernetes` (endpointslice-controller.k8s.io and endpointslicemirroring-controller.k8s.io,
    /// as kube-controller-manager writes, so consumers see no difference) or `signpost`
    /// (*.signpost.dev, to run beside kube-controller-manager's endpoint controllers).
    #[arg(long, value_name = "WHOSE", env = "SIGNPOST_ENDPOINTSLICE_MANAGED_BY", default_value = "kubernetes", value_parser = parse_slice_manager)]
    pub endpointslice_managed_by: SliceManager,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SIGNPOST_METRICS_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub metrics_addr: std::net::SocketAddr,

    /// Elect one leader among replicas through a Lease; only the leader writes.
    #[arg(long, value_name = "BOOL", env = "SIGNPOST_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease (default: POD_NAMESPACE, else `default`).
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "SIGNPOST_LEADER_ELECTION_NAMESPACE"
    )]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        value_name = "NAME",
        env = "SIGNPOST_LEADER_ELECTION_NAME",
        default_value = "signpost"
    )]
    pub leader_election_name: String,

    /// How long a lease is valid after its last renewal.
    #[arg(long, value_name = "DURATION", env = "SIGNPOST_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// How long the leader tries to renew before it stops leading (shorter than the lease).
    #[arg(long, value_name = "DURATION", env = "SIGNPOST_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,

    /// How often the leader renews the lease.
    #[arg(long, value_name = "DURATION", env = "SIGNPOST_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,

    #[command(flatten)]
    pub cluster_ip: ClusterIpArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Whose managed-by values the slices carry: `kubernetes` or `signpost`.
fn parse_slice_manager(value: &str) -> Result<SliceManager, String> {
    match value {
        "kubernetes" => Ok(SliceManager::Kubernetes),
        "signpost" => Ok(SliceManager::Signpost),
        other => Err(format!("{other:?} is neither kubernetes nor signpost")),
    }
}

/// When batching starts: a number of syncs at once, or `refill`.
fn parse_batch_start(text: &str) -> Result<Start, String> {
    if text == "refill" {
        return Ok(Start::Refill);
    }
    text.parse()
        .map(Start::Burst)
        .map_err(|_| format!("{text:?} is neither a number nor refill"))
}

/// A batch period: `0`, milliseconds (`100ms`) or a [`parse_duration`] value, at most 10s.
fn parse_batch_period(text: &str) -> Result<Duration, String> {
    let period = match text.strip_suffix("ms") {
        Some(ms) => Duration::from_millis(
            ms.parse()
                .map_err(|_| format!("{text:?} is not a duration such as 100ms or 1s"))?,
        ),
        None if text == "0" || text == "0s" => Duration::ZERO,
        None => parse_duration(text)?,
    };
    if period > Duration::from_secs(10) {
        return Err(format!("{text:?} is longer than 10s"));
    }
    Ok(period)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s or 5m"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{text:?} has an unknown unit (use s, m or h)")),
    };
    // Longer would be a mistake, and deadlines computed from it (now + duration) must not
    // overflow.
    const MAX_SECONDS: u64 = 24 * 3600;
    let seconds = n.checked_mul(scale).filter(|s| *s <= MAX_SECONDS);
    match seconds {
        Some(0) => Err("must be longer than 0s".into()),
        Some(seconds) => Ok(Duration::from_secs(seconds)),
        None => Err(format!("{text:?} is longer than 24h")),
    }
}

/// Checks what clap cannot check flag by flag, before anything starts: a mistake stops the
/// binary with one line naming the flag, instead of surfacing after leader election.
fn check_run_args(args: &RunArgs) -> Result<(), String> {
    signpost_controllers::ipam::Allocator::new(args.service_cidrs.iter().copied())
        .map_err(|error| format!("invalid value for '--service-cidr': {error}"))?;
    signpost_controllers::records::normalize_cluster_domain(&args.cluster_domain)
        .map_err(|error| format!("invalid value for '--cluster-domain': {error}"))?;
    if args.leader_elect {
        timing(args).validate().map_err(|error| {
            format!("invalid leader election timing (--leader-election-*): {error}")
        })?;
    }
    Ok(())
}

pub fn run(args: RunArgs) -> ExitCode {
    let started = std::time::Instant::now();
    if let Err(error) = check_run_args(&args) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    init_logging(&args.common.log_format);
    block_on(run_controllers(args, started))
}

fn timing(args: &RunArgs) -> LeaseTiming {
    LeaseTiming {
        lease_duration: args.leader_election_lease_duration,
        renew_deadline: args.leader_election_renew_deadline,
        retry_period: args.leader_election_retry_period,
    }
}

/// The controllers' settings from the flags; `identity` names this process in Events and the
/// Lease.
fn settings(args: &RunArgs, identity: &str) -> Settings {
    let mut settings = Settings::new(args.service_cidrs.clone());
    settings.cluster_domain = args.cluster_domain.clone();
    settings.max_endpoints_per_slice = usize::from(args.max_endpoints_per_slice);
    settings.repair_interval = args.repair_interval;
    settings.endpoint_batch_period = args.endpoint_batch_period;
    settings.endpoint_max_batch_period = args.endpoint_max_batch_period;
    settings.endpoint_batch_start = args.endpoint_batch_burst;
    settings.namespace = args.namespace.clone();
    settings.streaming_lists = args.streaming_lists;
    settings.pods_protobuf = args.pods_protobuf;
    settings.slice_manager = args.endpointslice_managed_by;
    settings.cluster_ip_mode = args.cluster_ip.cluster_ip_mode;
    settings.instance = Some(identity.to_owned());
    settings
}

/// What the controllers run with, once the client, the HTTP server and the signal handler are
/// in place.
struct Process {
    client: kube::Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Health,
    identity: String,
    /// Becomes true at SIGTERM or Ctrl-C.
    stop: tokio::sync::watch::Receiver<bool>,
    started: std::time::Instant,
    /// The admission webhook, in ClusterIP mode.
    webhook: Option<Webhook>,
}

async fn run_controllers(args: RunArgs, started: std::time::Instant) -> anyhow::Result<()> {
    let client = client(args.common.kubeconfig.as_deref()).await?;
    let identity = format!(
        "{}_{}",
        std::env::var("POD_NAME")
            .ok()
            .or_else(hostname)
            .unwrap_or_else(|| "signpost".into()),
        std::process::id()
    );
    let settings = settings(&args, &identity);
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("--metrics-addr {}: cannot listen", args.metrics_addr))?;
    drop(listener);
    server::serve_on_own_thread(args.metrics_addr, metrics.clone(), health.clone())
        .context("starting the thread that serves /metrics, /healthz and /readyz")?;
    tracing::info!(cidrs = ?settings.service_cidrs, %identity, metrics = %args.metrics_addr, "starting signpost");
    let webhook = Webhook::start(&args.cluster_ip, &client, &settings.service_cidrs).await?;

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let process = Process {
        client,
        settings,
        metrics,
        health,
        identity,
        stop,
        started,
        webhook,
    };
    if args.leader_elect {
        run_leading(process, &args).await
    } else {
        run_alone(process).await
    }
}

/// Without leader election: the controllers start at once, their writes held until the CRD
/// check (whose round trip overlaps the caches' first lists instead of preceding them) passed.
async fn run_alone(mut process: Process) -> anyhow::Result<()> {
    let (crds_checked, go) = crd_gate();
    process.metrics.leader.set(1);
    let running = app::start_when(
        process.client.clone(),
        process.settings,
        process.metrics,
        go,
    )?;
    process.health.leading(running.readiness.clone());
    announce_ready(running.readiness.clone(), process.started);
    if let Err(error) = check_crds(&process.client).await {
        running.abort();
        return Err(error);
    }
    let _ = crds_checked.send(());
    if let Some(webhook) = &process.webhook {
        webhook.leading(&running).await?;
    }
    let _ = process.stop.wait_for(|s| *s).await;
    running.shut_down().await;
    Ok(())
}

/// With leader election: stand by until this replica leads, run the controllers while it
/// holds the Lease, and exit when it loses it (a fresh start stands by again).
async fn run_leading(mut process: Process, args: &RunArgs) -> anyhow::Result<()> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let lease = format!("{namespace}/{}", args.leader_election_name);
    let mut elector = Elector::new(
        process.client.clone(),
        &namespace,
        &args.leader_election_name,
        &process.identity,
        timing(args),
    );
    process.health.standby();
    // The CRD check overlaps the election; a replica that stands by still reports missing CRDs.
    let checked_and_leading = async {
        tokio::try_join!(check_crds(&process.client), async {
            elector.acquire().await;
            Ok(())
        })
    };
    tokio::select! {
        result = checked_and_leading => {
            if let Err(error) = result {
                elector.release().await;
                return Err(error);
            }
        }
        _ = process.stop.wait_for(|s| *s) => return Ok(()),
    }
    let leader = process.metrics.clone();
    leader.leader.set(1);
    let running = app::start(process.client, process.settings, process.metrics)?;
    process.health.leading(running.readiness.clone());
    announce_ready(running.readiness.clone(), process.started);
    if let Some(webhook) = &process.webhook {
        webhook.leading(&running).await?;
    }
    tokio::select! {
        _ = elector.hold() => {
            // Another replica may take the lease once it expires: stop writing now.
            process.webhook.iter().for_each(Webhook::standing_by);
            leader.leader.set(0);
            running.abort();
            anyhow::bail!("lost leadership of Lease {lease}; exiting so a fresh start can stand by")
        }
        _ = process.stop.wait_for(|s| *s) => {}
    }
    // SIGTERM: the controllers drain while the lease is still renewed, so nobody else writes
    // meanwhile; the drain is bounded, and so is the release, to fit the pod's grace period.
    tokio::select! {
        _ = running.shut_down() => {}
        _ = elector.hold() => {
            anyhow::bail!("lost leadership of Lease {lease} while shutting down")
        }
    }
    elector.release().await;
    Ok(())
}

/// Logs once when every controller is ready, with the time since the process started: the
/// start-up figure an operator looks for after a restart, and a moment a benchmark can read
/// from the log instead of probing `/readyz` (each probe costs both processes CPU while the
/// caches fill).
fn announce_ready(
    mut readiness: signpost_controllers::runtime::health::Readiness,
    started: std::time::Instant,
) {
    tokio::spawn(async move {
        readiness.wait().await;
        // `wait` also returns when the controllers stop before they were ready.
        if !readiness.is_ready() {
            return;
        }
        // With leader election this includes the time spent standing by.
        let since_start_ms = started.elapsed().as_secs_f64() * 1000.0;
        // A target of its own, so a filter can keep this line and quiet everything else.
        tracing::info!(target: "signpost::ready", since_start_ms, "ready: every controller's caches are synced");
    });
}

/// A gate for [`app::start_when`]: the controllers start once the sender is used, and never
/// when it is dropped unused (the check failed and the process is exiting).
fn crd_gate() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (checked, passed) = tokio::sync::oneshot::channel::<()>();
    let go = async move {
        if passed.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    (checked, go)
}

/// Fails with one line saying how to install the CRDs when they are missing.
async fn check_crds(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let names = ["serviceips.signpost.dev", "dnsrecords.signpost.dev"];
    let found = futures::future::join_all(names.map(|name| api.get_metadata_opt(name))).await;
    for (name, found) in names.into_iter().zip(found) {
        let found = found.with_context(|| format!("checking that CRD {name} is installed"))?;
        if found.is_none() {
            anyhow::bail!(
                "CRD {name} is not installed; install Signpost's CRDs with `kubectl apply --server-side -f charts/signpost/crds/` (or `helm install`)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded_and_never_overflow() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("0s").is_err());
        // 18446744073709551615 h would overflow a multiplication by 3600.
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
        assert!(parse_duration("5d").is_err());
    }
}
