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

/// Labels of one kind of change to a controller's EndpointSlices.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `endpoints` or `mirroring`.
    pub controller: String,
    /// `create`, `update` or `delete`.
    pub operation: String,
}

/// Labels of a sync's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The controller.
    pub controller: String,
    /// `success` or `error`.
    pub result: String,
}

/// Labels of the build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The release, `CARGO_PKG_VERSION`.
    pub version: String,
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
    /// Syncs by controller and result (`success`, `error`).
    pub syncs: Family<ResultLabels, Counter>,
    /// Syncs that found the cache behind the controller's own last slice writes and planned
    /// from what those writes returned (kube-controller-manager waits instead, and counts such
    /// syncs as `stale`).
    pub syncs_from_own_writes: Family<ControllerLabels, Counter>,
    /// EndpointSlices created, updated and deleted, by controller and operation.
    pub slice_changes: Family<OperationLabels, Counter>,
    /// EndpointSlices one sync changed (created, updated or deleted), by controller.
    pub slices_changed_per_sync: Family<ControllerLabels, Histogram>,
    /// Endpoints the endpoints controller wants in its slices, over every Service.
    pub endpoints_desired: Gauge,
    /// EndpointSlices the endpoints controller manages, over every Service.
    pub endpoint_slices: Gauge,
    /// Time a key waited in its controller's queue before a worker took it, in seconds.
    pub queue_wait: Family<ControllerLabels, Histogram>,
    /// Syncs retried after a failure (each scheduled with backoff), by controller.
    pub retries: Family<ControllerLabels, Counter>,
    /// 1 while this replica runs the controllers (it leads, or runs without leader
    /// election), else 0.
    pub leader: Gauge,
    /// Always 1, labelled with the version, so dashboards can show what runs.
    pub build_info: Family<BuildLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered under the `signpost_` prefix.
    pub fn new() -> Self {
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let mut this = Self {
            registry: Registry::with_prefix("signpost"),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(seconds),
            queue_depth: Family::default(),
            writes: Family::default(),
            problems: Family::default(),
            ipam_used: Family::default(),
            ipam_free: Family::default(),
            ipam_allocation_failures: Family::default(),
            syncs: Family::default(),
            syncs_from_own_writes: Family::default(),
            slice_changes: Family::default(),
            slices_changed_per_sync: Family::new_with_constructor(|| {
                Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
            }),
            endpoints_desired: Gauge::default(),
            endpoint_slices: Gauge::default(),
            queue_wait: Family::new_with_constructor(seconds),
            retries: Family::default(),
            leader: Gauge::default(),
            build_info: Family::default(),
        };
        this.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        this.register_all();
        this
    }

    fn register_all(&mut self) {
        Registrar(&mut self.registry)
            .add("reconciles", "Reconciles run", &self.reconciles)
            .add("reconcile_errors", "Reconciles that failed", &self.reconcile_errors)
            .add(
                "reconcile_duration_seconds",
                "Time one reconcile took",
                &self.reconcile_duration,
            )
            .add("queue_depth", "Keys waiting in a controller's queue", &self.queue_depth)
            .add("api_writes", "Writes sent to the API server", &self.writes)
            .add("problems", "Problems reported as Warning Events", &self.problems)
            .add("ipam_addresses_used", "Allocated addresses per CIDR", &self.ipam_used)
            .add("ipam_addresses_free", "Free addresses per CIDR", &self.ipam_free)
            .add(
                "ipam_allocation_failures",
                "Allocations that failed",
                &self.ipam_allocation_failures,
            )
            .add("syncs", "Syncs by result (success, error)", &self.syncs)
            .add(
                "syncs_from_own_writes",
                "Syncs that planned from the controller's own last writes, the cache being behind them",
                &self.syncs_from_own_writes,
            )
            .add(
                "endpointslice_changes",
                "EndpointSlices created, updated and deleted",
                &self.slice_changes,
            )
            .add(
                "endpointslices_changed_per_sync",
                "EndpointSlices one sync created, updated or deleted",
                &self.slices_changed_per_sync,
            )
            .add(
                "endpoints_desired",
                "Endpoints the endpoints controller wants in its slices",
                &self.endpoints_desired,
            )
            .add(
                "endpointslices",
                "EndpointSlices the endpoints controller manages",
                &self.endpoint_slices,
            )
            .add(
                "queue_wait_seconds",
                "Time a key waited in its queue before a worker took it",
                &self.queue_wait,
            )
            .add("sync_retries", "Syncs retried after a failure", &self.retries)
            .add(
                "leader",
                "1 while this replica runs the controllers, else 0",
                &self.leader,
            )
            .add("build_info", "Always 1, labelled with the version", &self.build_info);
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
        let result = if error.is_some() { "error" } else { "success" };
        self.syncs
            .get_or_create(&ResultLabels {
                controller: controller.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Counts one change of `controller`'s EndpointSlices (`create`, `update`, `delete`).
    pub fn slice_changed(&self, controller: &str, operation: &str) {
        self.slice_changes
            .get_or_create(&OperationLabels {
                controller: controller.into(),
                operation: operation.into(),
            })
            .inc();
    }

    /// A key of `controller` waited `waited` in its queue, and a retry was scheduled if
    /// `retried`.
    pub fn observe_queue(&self, controller: &str, waited: Option<Duration>, retried: bool) {
        let labels = ControllerLabels {
            controller: controller.into(),
        };
        if let Some(waited) = waited {
            self.queue_wait
                .get_or_create(&labels)
                .observe(waited.as_secs_f64());
        }
        if retried {
            self.retries.get_or_create(&labels).inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_operators_alert_on_is_exported_in_prometheus_style() {
        let metrics = Metrics::new();
        metrics.observe_reconcile("endpoints", Duration::from_millis(3), None);
        metrics.observe_reconcile("endpoints", Duration::from_millis(3), Some("ApiError"));
        metrics.slice_changed("endpoints", "create");
        metrics.observe_queue("endpoints", Some(Duration::from_millis(2)), true);
        metrics.leader.set(1);
        let text = metrics.encode();
        for line in [
            "signpost_syncs_total{controller=\"endpoints\",result=\"success\"} 1",
            "signpost_syncs_total{controller=\"endpoints\",result=\"error\"} 1",
            "signpost_endpointslice_changes_total{controller=\"endpoints\",operation=\"create\"} 1",
            "signpost_queue_wait_seconds_count{controller=\"endpoints\"} 1",
            "signpost_sync_retries_total{controller=\"endpoints\"} 1",
            "signpost_leader 1",
            "signpost_endpoints_desired 0",
            "signpost_endpointslices 0",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        let build = format!(
            "signpost_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "no {build:?} in\n{text}");
    }
}
