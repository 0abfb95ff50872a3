//! Metrics of `signpost proxy` and its HTTP endpoints (`/metrics`, `/healthz`, `/readyz`).
//!
//! They live in the shared registry under `signpost_proxy_`. Labels name Services and
//! backends: their number follows the cluster's Services and ready pods, not what clients
//! send, so clients cannot grow the series count.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use signpost_runtime::server::{probe_router, serve_router};
use signpost_runtime::{Metrics, SharedMetrics};

/// Labels of one proxied connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `<namespace>/<name>` of the Service.
    pub service: String,
    /// The service port's name (empty for an unnamed port).
    pub port: String,
    /// The backend, `<ip>:<port>`.
    pub backend: String,
}

/// Labels of a failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `<namespace>/<name>` of the Service, empty for failures not tied to one.
    pub service: String,
    /// `no_backend`, `connect`, `accept`, `listen`, `netlink`.
    pub reason: String,
}

/// Labels of a byte count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    /// `<namespace>/<name>` of the Service.
    pub service: String,
    /// `to_backend` or `to_client`.
    pub direction: String,
}

/// Labels naming a Service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// `<namespace>/<name>` of the Service.
    pub service: String,
}

/// The metrics `signpost proxy` adds to the shared registry.
#[derive(Clone)]
pub struct ProxyMetrics {
    /// Connections handed to a backend, by Service, port and backend.
    pub connections: Family<ConnectionLabels, Counter>,
    /// Connections refused or failed, and data-plane failures, by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Bytes copied, by Service and direction (counted when a connection ends).
    pub bytes: Family<BytesLabels, Counter>,
    /// Connections open now, by Service.
    pub active: Family<ServiceLabels, Gauge>,
    /// Connections closed on arrival because `--max-connections` were open.
    pub over_limit: Counter,
    /// VIPs on the interface.
    pub vips: Gauge,
    /// Frontends (VIP:port) listening.
    pub listeners: Gauge,
    /// Ready backends over all frontends.
    pub backends: Gauge,
    /// The label sets of `connections` created so far: prometheus-client cannot list a
    /// family's series, and [`ProxyMetrics::forget_backends`] must find the gone ones.
    series: Arc<Mutex<HashSet<ConnectionLabels>>>,
}

impl ProxyMetrics {
    /// Registers the proxy metrics in `metrics`' registry (before it is shared).
    pub fn register(metrics: &mut Metrics) -> Self {
        let proxy = Self {
            connections: Family::default(),
            errors: Family::default(),
            bytes: Family::default(),
            active: Family::default(),
            over_limit: Counter::default(),
            vips: Gauge::default(),
            listeners: Gauge::default(),
            backends: Gauge::default(),
            series: Arc::default(),
        };
        metrics
            .registrar("proxy")
            .add(
                "connections",
                "Connections handed to a backend",
                &proxy.connections,
            )
            .add(
                "errors",
                "Connections refused (no ready backend) or failed, and data-plane failures",
                &proxy.errors,
            )
            .add(
                "bytes",
                "Bytes copied between clients and backends",
                &proxy.bytes,
            )
            .add("active_connections", "Connections open now", &proxy.active)
            .add(
                "connections_over_limit",
                "Connections closed on arrival because --max-connections were open",
                &proxy.over_limit,
            )
            .add("vips", "VIPs on the interface", &proxy.vips)
            .add(
                "listeners",
                "VIP:port frontends listening",
                &proxy.listeners,
            )
            .add(
                "ready_backends",
                "Ready backends over all frontends",
                &proxy.backends,
            );
        proxy
    }

    /// Counts one connection handed to `backend` of `service`'s port `port`.
    pub fn connected(&self, service: &str, port: &str, backend: &str) {
        let labels = ConnectionLabels {
            service: service.to_owned(),
            port: port.to_owned(),
            backend: backend.to_owned(),
        };
        self.connections.get_or_create(&labels).inc();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if !series.contains(&labels) {
            series.insert(labels);
        }
    }

    /// Removes the `connections` series of every (Service, port, backend) not in `live`: a
    /// backend that left (a pod replaced, a Service deleted) would otherwise keep its series
    /// until the proxy restarts, and pods come and go with new addresses all the time.
    pub fn forget_backends(&self, live: &BTreeSet<(String, String, String)>) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.retain(|labels| {
            let keep = live.contains(&(
                labels.service.clone(),
                labels.port.clone(),
                labels.backend.clone(),
            ));
            if !keep {
                self.connections.remove(labels);
            }
            keep
        });
    }

    /// Counts one failure.
    pub fn error(&self, service: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                service: service.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// Serves `/metrics`, `/healthz` (200 while the process runs) and `/readyz` (200 once the
/// three watches listed everything and the interface and listeners match them: before that
/// a VIP may be missing) on an already bound listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: SharedMetrics,
    ready: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let app = probe_router(
        metrics,
        || (true, "ok".into()),
        move || {
            if ready.load(Ordering::Acquire) {
                (true, "VIPs and listeners in place".into())
            } else {
                (false, "loading Services".into())
            }
        },
    );
    serve_router(listener, app).await
}
