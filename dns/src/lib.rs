//! `signpost dns`: an authoritative DNS server for the cluster domain that reads nothing but
//! DNSRecords.
//!
//! It is the reference consumer of the DNSRecord contract: if it can answer every query of the
//! Kubernetes DNS specification from DNSRecords alone, so can any other DNS server or proxy.
//!
//! - [`table`]: the pure lookup table (name → A, AAAA, SRV, CNAME), updated one record at a
//!   time, with every DNS rule (NXDOMAIN, NODATA, REFUSED, CNAME, SRV additionals).
//! - [`watch`]: one informer over DNSRecords feeding the table; malformed records get a
//!   Warning Event.
//! - [`server`]: the hickory-server request handler; [`forward`]: the optional upstream.
//! - [`metrics`]: query counters, latency, `/metrics`, `/healthz`, `/readyz`.
//!
//! See docs/dns.md.

mod compile;
pub mod forward;
pub mod metrics;
pub mod reverse;
pub mod rotate;
pub mod server;
pub mod table;
pub mod watch;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_spec;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use hickory_server::Server;
use kube::Client;

pub use metrics::DnsMetrics;
use signpost_runtime::metrics::spawn_metrics_listener;
use signpost_runtime::{EventSink, Metrics, SharedMetrics, Synced};
pub use table::{Answer, Applied, Data, Lookup, QueryType, Status, Table};

/// How long a TCP client may stay idle before its connection is closed (hickory's guard
/// against connections that never send).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of `--max-udp-size`: the largest UDP answer, whatever EDNS buffer the client
/// advertises. 1232 bytes is the DNS Flag Day 2020 value: it fits the IPv6 minimum MTU without
/// fragmentation, and it bounds what a spoofed-source query can make the server send (a query
/// advertising 65,535 bytes got a 16,299-byte answer before this cap). Larger answers are
/// truncated with the TC bit, and the client asks again over TCP.
pub const DEFAULT_MAX_UDP_SIZE: u16 = 1232;

/// Default of `--startup-timeout`: how long names of the zone get SERVFAIL while the first
/// list of DNSRecords is not in (CoreDNS's kubernetes plugin waits 5 s too).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// What `signpost dns` is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP address to answer on (port 0: any free port, the same for both).
    pub listen: SocketAddr,
    /// The zone answered authoritatively.
    pub cluster_domain: String,
    /// Where names outside the cluster domain go; `None`: they are REFUSED.
    pub upstream: Option<SocketAddr>,
    /// Only read DNSRecords of this namespace (default: all).
    pub namespace: Option<String>,
    /// Address of `/metrics`, `/healthz`, `/readyz`; `None`: no HTTP server.
    pub metrics_addr: Option<SocketAddr>,
    /// This process's name in Events it publishes.
    pub instance: Option<String>,
    /// Largest UDP answer in bytes (at least 512); see [`DEFAULT_MAX_UDP_SIZE`].
    pub max_udp_size: u16,
    /// Forwarded queries allowed to wait on the upstream at once; beyond, SERVFAIL at once.
    pub max_upstream_in_flight: usize,
    /// Until the first full list of DNSRecords is in, names of the zone get SERVFAIL (never
    /// an NXDOMAIN that resolvers would cache); after this long without it, the server answers
    /// from what it has. See [`DEFAULT_STARTUP_TIMEOUT`].
    pub startup_timeout: Duration,
    /// The service and pod CIDRs: reverse names of addresses inside them are answered (PTR,
    /// or NXDOMAIN when no record has the address); other reverse names are forwarded or
    /// refused like any name outside the cluster domain.
    pub reverse_cidrs: Vec<reverse::Cidr>,
}

impl Config {
    /// Defaults of the `signpost dns` flags.
    pub fn new() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5353)),
            cluster_domain: "cluster.local".into(),
            upstream: None,
            namespace: None,
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9153))),
            instance: None,
            max_udp_size: DEFAULT_MAX_UDP_SIZE,
            max_upstream_in_flight: forward::DEFAULT_MAX_IN_FLIGHT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            reverse_cidrs: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// A running DNS server.
pub struct Running {
    /// Where it answers (UDP and TCP).
    pub dns_addr: SocketAddr,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Every metric, DNS ones included.
    pub metrics: SharedMetrics,
    /// The lookup table, for inspection.
    pub table: Arc<RwLock<Table>>,
    timed_out: Arc<AtomicBool>,
    synced: Synced,
    server: Server<server::Handler>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits until the first full list of DNSRecords is in the table (before that an
    /// NXDOMAIN could be wrong).
    pub async fn wait_ready(&mut self) {
        self.synced.wait().await;
    }

    /// Whether the first full list of DNSRecords is in the table.
    pub fn is_ready(&self) -> bool {
        self.synced.is_synced()
    }

    /// Whether names of the zone are answered (the first list is in, or the start-up timeout
    /// passed); before, they get SERVFAIL.
    pub fn is_serving(&self) -> bool {
        self.synced.is_synced() || self.timed_out.load(Ordering::Acquire)
    }

    /// Stops answering and watching.
    pub async fn shut_down(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::debug!(%error, "DNS server stopped with an error");
        }
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Runs until the DNS server stops (it only stops on error or shutdown).
    pub async fn block_until_done(&mut self) -> anyhow::Result<()> {
        self.server
            .block_until_done()
            .await
            .context("the DNS server stopped")
    }
}

/// Binds the sockets, starts the watch and the server. Names of the zone get SERVFAIL until the
/// first list is in (which `/readyz` reports) or `startup_timeout` has passed, then answers
/// from the table.
pub async fn start(client: Client, config: Config) -> anyhow::Result<Running> {
    let table = Table::new(&config.cluster_domain)
        .map_err(|e| anyhow::anyhow!("--cluster-domain: {e}"))?
        .with_reverse_zones(config.reverse_cidrs.iter().copied());
    let table = Arc::new(RwLock::new(table));
    let mut metrics = Metrics::new();
    let dns_metrics = DnsMetrics::register(&mut metrics);
    let metrics = Arc::new(metrics);

    let (udp, tcp) = bind(config.listen).await?;
    let dns_addr = udp.local_addr()?;
    let mut tasks = Vec::new();

    let (reports_tx, reports_rx) = tokio::sync::mpsc::unbounded_channel();
    let informer = watch::informer(
        &client,
        config.namespace.as_deref(),
        table.clone(),
        dns_metrics.clone(),
        reports_tx,
    );
    let synced = informer.synced();
    let events = EventSink::new(client, "dns", config.instance.clone(), metrics.clone());
    tasks.push(tokio::spawn(watch::report(reports_rx, events)));
    tasks.push(tokio::spawn(informer.run()));

    let metrics_addr = {
        let (metrics, synced) = (metrics.clone(), synced.clone());
        let serve = |listener| metrics::serve(listener, metrics, synced);
        spawn_metrics_listener(config.metrics_addr, &mut tasks, serve).await?
    };

    let timed_out = Arc::new(AtomicBool::new(false));
    tasks.push(tokio::spawn(startup_timeout(
        synced.clone(),
        config.startup_timeout,
        timed_out.clone(),
    )));

    let mut handler = server::Handler::new(table.clone(), config.upstream, dns_metrics);
    handler.set_startup(synced.clone(), timed_out.clone());
    handler.set_max_udp_size(config.max_udp_size);
    handler.set_max_upstream_in_flight(config.max_upstream_in_flight);
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, 64);
    tracing::info!(%dns_addr, domain = %config.cluster_domain, upstream = ?config.upstream, metrics = ?metrics_addr, "signpost dns answering");
    Ok(Running {
        dns_addr,
        metrics_addr,
        metrics,
        table,
        timed_out,
        synced,
        server,
        tasks,
    })
}

/// Sets `timed_out` when the first list is not in after `timeout`: from then on the zone is
/// answered from what the table has.
async fn startup_timeout(mut synced: Synced, timeout: Duration, timed_out: Arc<AtomicBool>) {
    if tokio::time::timeout(timeout, synced.wait()).await.is_err() {
        tracing::warn!(
            ?timeout,
            "DNSRecords not listed within the start-up timeout; answering from what is loaded"
        );
        timed_out.store(true, Ordering::Release);
    }
}

/// A UDP socket and a TCP listener on the same address. With port 0 the UDP socket picks the
/// port and TCP follows; if TCP finds it taken, both try again.
async fn bind(
    listen: SocketAddr,
) -> anyhow::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("--listen {listen}: cannot bind UDP"))?;
        let addr = udp.local_addr()?;
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if listen.port() == 0 && attempt < 20 => {
                tracing::debug!(%addr, %error, "TCP port taken; picking another");
            }
            Err(error) => {
                return Err(error).with_context(|| format!("--listen {addr}: cannot bind TCP"));
            }
        }
    }
}
