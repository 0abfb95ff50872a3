//! Wires the controllers to shared informers and runs them until shutdown.
//!
//! One informer per kind, shared by every controller that reads it, so a Service or a Pod is
//! listed and cached once however many controllers look at it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IPAddress;
use kube::runtime::watcher;
use kube::{Api, Client};
use signpost_crds::{DNSRecord, ServiceIP};

use crate::endpoints::controller::{
    EndpointsConfig, EndpointsController, EndpointsInformers, strip_node,
};
use crate::endpoints::slices::LABEL_MANAGED_BY;
use crate::endpoints::{SlimPod, decode_slim_pod};
use crate::ipam::{Allocator, Ipam, IpamConfig};
use crate::mirroring::{MirroringConfig, MirroringController};
use crate::records::controller::{RecordsConfig, RecordsController, RecordsInformers};
use crate::runtime::health::{Liveness, Readiness};
use crate::runtime::{EventSink, Informer, SharedMetrics, Start, strip_metadata};
use signpost_core::labels::SliceManager;

/// Settings shared by the controllers (the `signpost run` flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Signpost's own service CIDRs (one or two families).
    pub service_cidrs: Vec<IpNet>,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// TTL of DNS answers, in seconds (5 by default, as CoreDNS's `kubernetes` plugin: short,
    /// so a changed record is picked up quickly by caching resolvers).
    pub dns_ttl: u32,
    /// Endpoint limit of one EndpointSlice.
    pub max_endpoints_per_slice: usize,
    /// How often IPAM's repair pass runs.
    pub repair_interval: Duration,
    /// Shortest time between two syncs of one Service by the endpoints controller: changes
    /// within it go out together (zero: every change on its own).
    pub endpoint_batch_period: Duration,
    /// What that time grows to for a Service that keeps changing (doubling per sync that had
    /// to wait; back to the shortest after a quiet period). At or below
    /// `endpoint_batch_period`, it never grows.
    pub endpoint_max_batch_period: Duration,
    /// When a Service that keeps changing starts to be batched (see [`Start`]).
    pub endpoint_batch_start: Start,
    /// Only this namespace's Services (used by tests that run many controllers side by side);
    /// `None` for the whole cluster.
    pub namespace: Option<String>,
    /// This process's name in Events (the pod name in a cluster).
    pub instance: Option<String>,
    /// Concurrent reconciles per controller.
    pub workers: usize,
    /// Fill the caches with streaming lists (a watch that starts with the current objects,
    /// served from the API server's watch cache in one response) instead of paged lists:
    /// less memory, but slower to start at scale (docs/performance.md). Needs the API server's
    /// `WatchList` feature (on by default since Kubernetes 1.34).
    pub streaming_lists: bool,
    /// List and watch pods as protobuf rather than JSON: pods are most of what the caches
    /// read, and the API server encodes them as protobuf in under half the time
    /// (docs/performance.md, "Pods as protobuf"). Ignored with streaming lists.
    pub pods_protobuf: bool,
    /// Whose `endpointslice.kubernetes.io/managed-by` values the slices carry: Kubernetes'
    /// (a drop-in replacement) or Signpost's own (beside kube-controller-manager's).
    pub slice_manager: SliceManager,
    /// ClusterIP mode (issue 30): Signpost's addresses are the Services' own ClusterIPs,
    /// written at creation by its admission webhook; see [`crate::ipam::cluster_ip`].
    pub cluster_ip_mode: bool,
}

/// Default of [`Settings::endpoint_batch_period`]: long enough to fold a rollout's events for
/// one Service into a few writes, short next to the seconds a rollout takes; a Service that
/// has not synced within it syncs at once, so isolated changes never wait.
pub const DEFAULT_ENDPOINT_BATCH_PERIOD: Duration = Duration::from_millis(100);

/// Default of [`Settings::endpoint_max_batch_period`]: a rollout that lasts seconds costs a
/// Service about two writes a second instead of ten, and a change in its middle waits at most
/// half of kube-proxy's own default minimum sync period (1s), so the data plane's limit stays
/// the larger delay.
pub const DEFAULT_ENDPOINT_MAX_BATCH_PERIOD: Duration = Duration::from_millis(500);

/// Default of [`Settings::endpoint_batch_start`]: the echoes of a Service's own writes queue
/// nothing, so every sync at once is a real change; three more at once cover two or three pods
/// of one Service changing close together (random flips keep an unbatched controller's tail)
/// while a rollout's first changes cost a few writes, not ten (docs/performance.md, issue 28).
pub const DEFAULT_ENDPOINT_BATCH_START: Start = Start::Burst(3);

impl Settings {
    /// Defaults for everything but the CIDRs. One struct literal, one line per setting: long
    /// because the settings are many, not because it does much.
    pub fn new(service_cidrs: Vec<IpNet>) -> Self {
        Self {
            service_cidrs,
            cluster_domain: "cluster.local".into(),
            dns_ttl: 5,
            max_endpoints_per_slice: 100,
            repair_interval: Duration::from_secs(60),
            endpoint_batch_period: DEFAULT_ENDPOINT_BATCH_PERIOD,
            endpoint_max_batch_period: DEFAULT_ENDPOINT_MAX_BATCH_PERIOD,
            endpoint_batch_start: DEFAULT_ENDPOINT_BATCH_START,
            namespace: None,
            instance: None,
            workers: 4,
            streaming_lists: false,
            pods_protobuf: true,
            slice_manager: SliceManager::default(),
            cluster_ip_mode: false,
        }
    }

    /// How every informer lists and watches.
    fn watch_config(&self) -> watcher::Config {
        let config = watcher::Config::default();
        if self.streaming_lists {
            config.streaming_lists()
        } else {
            config
        }
    }
}

/// The running controllers.
pub struct Running {
    ipam: Arc<Ipam>,
    endpoints: Arc<EndpointsController>,
    records: Arc<RecordsController>,
    mirroring: Arc<MirroringController>,
    controllers: Vec<tokio::task::JoinHandle<()>>,
    informers: Vec<tokio::task::JoinHandle<()>>,
    /// Readiness of everything started.
    pub readiness: Readiness,
}

/// How long the controllers together may take to finish reconciles in flight on shutdown:
/// with the lease release after it (one retry period), well inside the chart's 30 s
/// `terminationGracePeriodSeconds`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Running {
    /// The IPAM controller, for ClusterIP mode's admission webhook.
    pub fn ipam(&self) -> Arc<Ipam> {
        self.ipam.clone()
    }

    /// Stops everything at once, reconciles in flight included: used when leadership is lost,
    /// because another replica may start writing as soon as the lease expires.
    pub fn abort(self) {
        self.readiness.liveness().stop();
        for task in self.controllers.iter().chain(self.informers.iter()) {
            task.abort();
        }
    }

    /// Stops taking work, lets reconciles in flight finish (all of them within
    /// [`DRAIN_TIMEOUT`], then they are cut off), and stops the watches.
    pub async fn shut_down(self) {
        self.readiness.liveness().stop();
        self.ipam.shut_down();
        self.endpoints.shut_down();
        self.records.shut_down();
        self.mirroring.shut_down();
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for task in self.controllers {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        for task in self.informers {
            task.abort();
            let _ = task.await;
        }
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts every controller on shared informers.
pub fn start(
    client: Client,
    settings: Settings,
    metrics: SharedMetrics,
) -> anyhow::Result<Running> {
    start_when(client, settings, metrics, std::future::ready(()))
}

/// Starts the informers of built-in kinds at once, and those of Signpost's own kinds and the
/// controllers once `go` completes: a start-up check (are the CRDs installed?) then costs no
/// round trip of its own, because it runs while the largest caches (pods) fill; no controller
/// writes before it passed, and a missing CRD is reported once, by the check, not also by
/// failing watches. A `go` that never completes leaves the process not ready.
pub fn start_when(
    client: Client,
    settings: Settings,
    metrics: SharedMetrics,
    go: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let mut informers = SharedInformers::new(&client, &settings);
    let controllers = Controllers::new(&client, &settings, &metrics, &mut informers)?;
    Ok(spawn(informers, controllers, go))
}

/// One informer per kind, shared by every controller that reads it.
struct SharedInformers {
    services: Informer<Service>,
    claims: Informer<ServiceIP>,
    pods: Informer<SlimPod>,
    /// The endpoints controller's slices.
    slices: Informer<EndpointSlice>,
    endpoints: Informer<Endpoints>,
    nodes: Informer<Node>,
    records: Informer<DNSRecord>,
    /// Mirrored slices are a different set from the endpoints controller's: a watch of
    /// their own.
    mirrored_slices: Informer<EndpointSlice>,
    /// ClusterIP mode only: the API server's record of every address in use.
    ip_addresses: Option<Informer<IPAddress>>,
}

impl SharedInformers {
    fn new(client: &Client, settings: &Settings) -> Self {
        let namespace = settings.namespace.as_deref();
        let config = || settings.watch_config();
        let slices_by = |manager: &str| config().labels(&format!("{LABEL_MANAGED_BY}={manager}"));
        let mut pods = Informer::without_cache(
            scoped(client, namespace),
            config(),
            strip_metadata::<SlimPod>,
        );
        if settings.pods_protobuf {
            pods = pods.with_protobuf(decode_slim_pod);
        }
        Self {
            services: Informer::new(scoped(client, namespace), config(), strip_metadata),
            claims: Informer::new(Api::all(client.clone()), config(), strip_metadata),
            pods,
            slices: Informer::new(
                scoped(client, namespace),
                slices_by(settings.slice_manager.endpoints()),
                strip_metadata,
            ),
            endpoints: Informer::new(scoped(client, namespace), config(), strip_metadata),
            nodes: Informer::new(Api::all(client.clone()), config(), strip_node),
            records: Informer::new(scoped(client, namespace), config(), strip_metadata),
            mirrored_slices: Informer::new(
                scoped(client, namespace),
                slices_by(settings.slice_manager.mirroring()),
                strip_metadata,
            ),
            ip_addresses: settings
                .cluster_ip_mode
                .then(|| Informer::new(Api::all(client.clone()), config(), strip_metadata)),
        }
    }
}

/// The four controllers, registered on the shared informers.
struct Controllers {
    ipam: Arc<Ipam>,
    endpoints: Arc<EndpointsController>,
    records: Arc<RecordsController>,
    mirroring: Arc<MirroringController>,
}

impl Controllers {
    /// Registers the four controllers on `informers`. Long only because it spells out each
    /// controller's configuration field by field from the settings; there is no logic to split.
    fn new(
        client: &Client,
        settings: &Settings,
        metrics: &SharedMetrics,
        informers: &mut SharedInformers,
    ) -> anyhow::Result<Self> {
        let events = |controller: &'static str| {
            EventSink::new(
                client.clone(),
                controller,
                settings.instance.clone(),
                metrics.clone(),
            )
        };
        let allocator =
            Allocator::new(settings.service_cidrs.iter().copied()).context("--service-cidr")?;
        let ipam = Ipam::new(
            client.clone(),
            &mut informers.services,
            &mut informers.claims,
            informers.ip_addresses.as_mut(),
            events(crate::ipam::CONTROLLER),
            metrics.clone(),
            IpamConfig {
                allocator,
                repair_interval: settings.repair_interval,
                namespace: settings.namespace.clone(),
                workers: settings.workers,
                cluster_ip_mode: settings.cluster_ip_mode,
            },
        );
        let endpoints = EndpointsController::new(
            client.clone(),
            EndpointsInformers {
                services: &mut informers.services,
                pods: &mut informers.pods,
                slices: &mut informers.slices,
                endpoints: &mut informers.endpoints,
                nodes: &mut informers.nodes,
            },
            events(crate::endpoints::controller::CONTROLLER),
            metrics.clone(),
            EndpointsConfig {
                max_endpoints_per_slice: settings.max_endpoints_per_slice,
                batch_period: settings.endpoint_batch_period,
                max_batch_period: settings.endpoint_max_batch_period,
                batch_start: settings.endpoint_batch_start,
                namespace: settings.namespace.clone(),
                workers: settings.workers,
                manager: settings.slice_manager.endpoints(),
            },
        );
        let records = RecordsController::new(
            client.clone(),
            RecordsInformers {
                services: &mut informers.services,
                claims: &mut informers.claims,
                slices: &mut informers.slices,
                records: &mut informers.records,
            },
            events(crate::records::controller::CONTROLLER),
            metrics.clone(),
            RecordsConfig {
                cluster_domain: settings.cluster_domain.clone(),
                ttl: settings.dns_ttl,
                namespace: settings.namespace.clone(),
                workers: settings.workers,
                cluster_ip_mode: settings.cluster_ip_mode,
            },
        )
        .context("--cluster-domain")?;
        let mirroring = MirroringController::new(
            client.clone(),
            &mut informers.services,
            &mut informers.endpoints,
            &mut informers.mirrored_slices,
            events(crate::mirroring::CONTROLLER),
            metrics.clone(),
            MirroringConfig {
                max_endpoints_per_slice: settings.max_endpoints_per_slice,
                workers: settings.workers,
                manager: settings.slice_manager.mirroring(),
            },
        );
        Ok(Self {
            ipam,
            endpoints,
            records,
            mirroring,
        })
    }
}

/// Runs the informers and the controllers, each as a task watched for ending on its own: the
/// built-in kinds' informers at once, Signpost's own kinds' and the controllers once `go`.
fn spawn(
    informers: SharedInformers,
    controllers: Controllers,
    go: impl Future<Output = ()> + Send + 'static,
) -> Running {
    let liveness = Liveness::default();
    let readiness = Readiness::new(
        vec![
            controllers.ipam.ready(),
            controllers.endpoints.ready(),
            controllers.records.ready(),
            controllers.mirroring.ready(),
        ],
        liveness.clone(),
    );
    let go = go.shared();
    let task = |name: &'static str, work| tokio::spawn(liveness.clone().watch(name, work));
    let SharedInformers {
        services,
        claims,
        pods,
        slices,
        endpoints,
        nodes,
        records,
        mirrored_slices,
        ip_addresses,
    } = informers;
    let mut informers = vec![
        task("services watch", services.run().boxed()),
        task("claims watch", after(go.clone(), claims.run()).boxed()),
        task("pods watch", pods.run().boxed()),
        task("slices watch", slices.run().boxed()),
        task("endpoints watch", endpoints.run().boxed()),
        task("nodes watch", nodes.run().boxed()),
        task("records watch", after(go.clone(), records.run()).boxed()),
        task("mirrored slices watch", mirrored_slices.run().boxed()),
    ];
    if let Some(ip_addresses) = ip_addresses {
        informers.push(task("IP addresses watch", ip_addresses.run().boxed()));
    }
    let Controllers {
        ipam,
        endpoints,
        records,
        mirroring,
    } = controllers;
    let tasks = vec![
        task("ipam", after(go.clone(), ipam.clone().run()).boxed()),
        task(
            "endpoints",
            after(go.clone(), endpoints.clone().run()).boxed(),
        ),
        task("records", after(go.clone(), records.clone().run()).boxed()),
        task("mirroring", after(go, mirroring.clone().run()).boxed()),
    ];
    Running {
        ipam,
        endpoints,
        records,
        mirroring,
        controllers: tasks,
        informers,
        readiness,
    }
}

/// Runs `work` once `go` has completed.
async fn after(go: impl Future<Output = ()>, work: impl Future<Output = ()>) {
    go.await;
    work.await;
}

/// Runs the controllers until `shutdown` completes.
pub async fn run_until(
    client: Client,
    settings: Settings,
    metrics: SharedMetrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = start(client, settings, metrics)?;
    shutdown.await;
    running.shut_down().await;
    Ok(())
}
