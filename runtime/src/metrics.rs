//! Prometheus metrics of every controller, registered once and shared.
//!
//! Label values are small, fixed sets (controller names, error reasons as stable strings,
//! CIDRs) so the series count stays bounded however many objects the cluster has.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Labels naming one controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `ipam`, `endpoints`, `records`, `mirroring`.
    pub controller: String,
}

/// Labels of a failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller that failed.
    pub controller: String,
    /// A stable reason (an error variant name).
    pub reason: String,
}

/// Labels of one service CIDR.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CidrLabels {
    /// The CIDR as configured.
    pub cidr: String,
}

/// Labels of an Event-worthy problem reported on an object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProblemLabels {
    /// The controller that noticed it.
    pub controller: String,
    /// The Event reason.
    pub reason: String,
}

/// Every metric Signpost exports.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Reconciles run, by controller.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles that failed, by controller and reason.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration in seconds, by controller.
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// Keys waiting in each controller's queue.
    pub queue_depth: Family<ControllerLabels, Gauge>,
    /// API writes (create, update, patch, delete), by controller.
    pub writes: Family<ControllerLabels, Counter>,
    /// Problems reported as Warning Events, by controller and reason.
    pub problems: Family<ProblemLabels, Counter>,
    /// Addresses allocated, per service CIDR.
    pub ipam_used: Family<CidrLabels, Gauge>,
    /// Addresses still free, per service CIDR (saturates at i64::MAX for wide IPv6 ranges).
    pub ipam_free: Family<CidrLabels, Gauge>,
    /// Allocations that failed, by reason (`exhausted`, `taken`, `invalid`, ...).
    pub ipam_allocation_failures: Family<ErrorLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered under the `signpost_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("signpost");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            });
        let queue_depth = Family::<ControllerLabels, Gauge>::default();
        let writes = Family::<ControllerLabels, Counter>::default();
        let problems = Family::<ProblemLabels, Counter>::default();
        let ipam_used = Family::<CidrLabels, Gauge>::default();
        let ipam_free = Family::<CidrLabels, Gauge>::default();
        let ipam_allocation_failures = Family::<ErrorLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Keys waiting in a controller's queue",
            queue_depth.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server",
            writes.clone(),
        );
        registry.register(
            "problems",
            "Problems reported as Warning Events",
            problems.clone(),
        );
        registry.register(
            "ipam_addresses_used",
            "Allocated addresses per CIDR",
            ipam_used.clone(),
        );
        registry.register(
            "ipam_addresses_free",
            "Free addresses per CIDR",
            ipam_free.clone(),
        );
        registry.register(
            "ipam_allocation_failures",
            "Allocations that failed",
            ipam_allocation_failures.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            queue_depth,
            writes,
            problems,
            ipam_used,
            ipam_free,
            ipam_allocation_failures,
        }
    }

    /// Records one finished reconcile.
    pub fn observe_reconcile(&self, controller: &str, took: Duration, error: Option<&str>) {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(reason) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    controller: controller.into(),
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// Counts one API write.
    pub fn wrote(&self, controller: &str) {
        self.writes
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .inc();
    }

    /// Counts one reported problem.
    pub fn problem(&self, controller: &str, reason: &str) {
        self.problems
            .get_or_create(&ProblemLabels {
                controller: controller.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

/// Registers a process's own metrics under its prefix, one `add` per metric, so the `dns` and
/// `proxy` sets read as a list of name, help and metric rather than a register call each.
pub struct Registrar<'a>(&'a mut Registry);

impl Metrics {
    /// A [`Registrar`] for the metrics of one process, named `signpost_<prefix>_...`.
    pub fn registrar(&mut self, prefix: &str) -> Registrar<'_> {
        Registrar(self.registry.sub_registry_with_prefix(prefix))
    }
}

impl Registrar<'_> {
    /// Registers a handle on `metric` (metrics are shared handles: the caller keeps updating
    /// its own).
    pub fn add(&mut self, name: &str, help: &str, metric: &(impl Metric + Clone)) -> &mut Self {
        self.0.register(name, help, metric.clone());
        self
    }
}

/// The `--metrics-addr` of a process could not be listened on.
#[derive(Debug, thiserror::Error)]
#[error("--metrics-addr {addr}: cannot listen")]
pub struct ListenError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why binding it failed.
    #[source]
    pub source: std::io::Error,
}

/// Starts `serve` on `--metrics-addr` when the flag is given, as a task pushed onto `tasks`,
/// and returns the address bound (port 0 resolved): `signpost dns` and `signpost proxy` serve
/// their probes only when asked to, and both report where.
pub async fn spawn_metrics_listener<F, Fut>(
    addr: Option<SocketAddr>,
    tasks: &mut Vec<JoinHandle<()>>,
    serve: F,
) -> Result<Option<SocketAddr>, ListenError>
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let Some(addr) = addr else {
        return Ok(None);
    };
    let (bound, task) = crate::server::spawn_listener(addr, serve)
        .await
        .map_err(|source| ListenError { addr, source })?;
    tasks.push(task);
    Ok(Some(bound))
}
