//! `signpost proxy`: a userspace L4 proxy on every Signpost VIP, round-robin over the ready
//! endpoints of its EndpointSlices, as kube-proxy does on every node.
//!
//! It is the second reference consumer of Signpost's outputs (after `signpost dns`): it proves
//! that the VIPs (DNSRecords) and the EndpointSlices are enough to make `curl <VIP>` reach a
//! ready pod, and that a pod leaving the ready set stops receiving connections.
//!
//! - [`table`]: the pure state (frontends, service port → ordered ready backends + cursor).
//! - [`watch`]: informers over DNSRecords, ServiceIP claims, Services and EndpointSlices
//!   feeding the table.
//! - [`netlink`]: the VIPs on a dummy interface (`rtnetlink`, needs `CAP_NET_ADMIN`).
//! - [`privileges`]: NET_ADMIN and NET_BIND_SERVICE put in effect for a non-root user.
//! - [`server`]: the listeners and the per-connection splice.
//! - [`metrics`]: connections, errors, bytes, `/metrics`, `/healthz`, `/readyz`.
//!
//! See docs/proxy.md.

pub mod metrics;
pub mod netlink;
pub mod privileges;
pub mod server;
pub mod table;
pub mod watch;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use tokio::sync::Notify;

pub use metrics::ProxyMetrics;
use signpost_runtime::metrics::spawn_metrics_listener;
use signpost_runtime::{Metrics, SharedMetrics};
pub use table::{Frontend, Pick, Pool, Protocol, Table};

/// How soon a failed netlink or listen step is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// What `signpost proxy` is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// The dummy interface the VIPs are put on (created if missing).
    pub interface: String,
    /// Only proxy Services of this namespace (default: all).
    pub namespace: Option<String>,
    /// Address of `/metrics`, `/healthz`, `/readyz`; `None`: no HTTP server.
    pub metrics_addr: Option<SocketAddr>,
    /// Client connections proxied at once; beyond, new ones are reset on arrival.
    pub max_connections: usize,
}

impl Config {
    /// Defaults of the `signpost proxy` flags.
    pub fn new() -> Self {
        Self {
            interface: "signpost0".into(),
            namespace: None,
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9154))),
            max_connections: server::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// A running proxy.
pub struct Running {
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Every metric, proxy ones included.
    pub metrics: SharedMetrics,
    /// The frontends and pools, for inspection.
    pub table: Arc<Mutex<Table>>,
    ready: Arc<AtomicBool>,
    ready_changed: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    dataplane: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until the four watches have listed everything and the interface and listeners
    /// match what they listed.
    pub async fn wait_ready(&self) {
        loop {
            let changed = self.ready_changed.notified();
            if self.is_ready() {
                return;
            }
            changed.await;
        }
    }

    /// Whether the first full lists are applied to the interface and listeners.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The ready backends behind `frontend`, in rotation order.
    pub fn backends(&self, frontend: &Frontend) -> Vec<SocketAddr> {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .backends(frontend)
    }

    /// Runs until the data plane task ends, which only happens if it panicked.
    pub async fn block_until_done(&mut self) -> anyhow::Result<()> {
        match (&mut self.dataplane).await {
            Ok(()) => anyhow::bail!("the data plane stopped"),
            Err(error) => anyhow::bail!("the data plane task ended: {error}"),
        }
    }

    /// Stops watching and closes every listener. The VIPs stay on the interface (a restarted
    /// proxy takes them over without a gap in which they would be unreachable); connections
    /// already accepted are not cut.
    pub async fn shut_down(self) {
        self.dataplane.abort();
        let _ = self.dataplane.await;
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Creates (or adopts) the interface, starts the watches, the data plane and the metrics
/// server. Everything network-facing is created in the caller's network namespace: the
/// netlink socket, the VIPs, the listeners and the connections to backends.
pub async fn start(client: Client, config: Config) -> anyhow::Result<Running> {
    let table = Arc::new(Mutex::new(Table::new()));
    let mut metrics = Metrics::new();
    let proxy_metrics = ProxyMetrics::register(&mut metrics);
    let metrics = Arc::new(metrics);
    let interface = netlink::Interface::ensure(&config.interface)
        .await
        .with_context(|| format!("--interface {}", config.interface))?;
    let mut dataplane = server::Dataplane::new(
        table.clone(),
        proxy_metrics.clone(),
        interface,
        config.max_connections,
    )
    .await?;

    let notify = Arc::new(Notify::new());
    let ns = config.namespace.as_deref();
    let feed = watch::Feed {
        client: &client,
        namespace: ns,
        table: table.clone(),
        notify: notify.clone(),
    };
    let (records, claims) = (feed.records(), feed.claims());
    let (services, slices) = (feed.services(), feed.slices());
    let synced = [
        records.synced(),
        claims.synced(),
        services.synced(),
        slices.synced(),
    ];
    let mut tasks = vec![
        tokio::spawn(records.run()),
        tokio::spawn(claims.run()),
        tokio::spawn(services.run()),
        tokio::spawn(slices.run()),
    ];

    let ready = Arc::new(AtomicBool::new(false));
    let ready_changed = Arc::new(Notify::new());
    let metrics_addr = {
        let (metrics, ready) = (metrics.clone(), ready.clone());
        let serve = |listener| metrics::serve(listener, metrics, ready);
        spawn_metrics_listener(config.metrics_addr, &mut tasks, serve).await?
    };

    let dataplane = {
        let (ready, ready_changed) = (ready.clone(), ready_changed.clone());
        tokio::spawn(async move {
            // Nothing is removed from the interface before every watch has listed: an
            // early pass would drop VIPs of Services not seen yet.
            for mut synced in synced {
                synced.wait().await;
            }
            loop {
                let ok = dataplane.sync().await;
                if ok && !ready.swap(true, Ordering::AcqRel) {
                    tracing::info!("proxy ready: VIPs and listeners match the cluster");
                    ready_changed.notify_waiters();
                }
                if ok {
                    notify.notified().await;
                } else {
                    let _ = tokio::time::timeout(RETRY, notify.notified()).await;
                }
            }
        })
    };
    tracing::info!(interface = %config.interface, namespace = ?config.namespace, metrics = ?metrics_addr, "signpost proxy starting");
    Ok(Running {
        metrics_addr,
        metrics,
        table,
        ready,
        ready_changed,
        tasks,
        dataplane,
    })
}
