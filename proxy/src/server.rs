//! The data plane: VIPs on the interface, one listener per frontend, one task per connection.
//!
//! [`Dataplane::sync`] makes the interface and the listeners match the table: VIPs are added
//! before their listeners are bound (a socket cannot bind a non-local address) and removed
//! after their listeners are closed. A frontend listens only while it has a ready backend, so
//! a connection to a Service with none is refused by the kernel at once (RST), as kube-proxy's
//! REJECT rule does; one that races in between gets an RST from [`handle`].
//!
//! Backends are chosen per connection under the table's lock, so a backend that left the
//! ready set is never picked after the watch event that removed it was applied. Closing a
//! listener never touches the connections it accepted: they run in tasks of their own and end
//! when either side closes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::metrics::{BytesLabels, ProxyMetrics, ServiceLabels};
use super::netlink::Interface;
use super::table::{Frontend, Protocol, ServiceKey, Table};

/// How long a backend may take to accept before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How many backends one connection tries before it is reset.
const CONNECT_ATTEMPTS: usize = 3;
/// Default of `--max-connections`: client connections proxied at once, over all VIPs. Each
/// holds two sockets and a task; beyond the bound a new connection is reset on arrival, so a
/// flood cannot exhaust the process's descriptors (and with them the API watches).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// The interface and the listeners, as last made to match the table.
pub struct Dataplane {
    table: Arc<Mutex<Table>>,
    metrics: ProxyMetrics,
    interface: Interface,
    addresses: BTreeSet<IpAddr>,
    listeners: BTreeMap<Frontend, JoinHandle<()>>,
    limit: Arc<Semaphore>,
}

impl Dataplane {
    /// A data plane over `interface`, which may still hold addresses of an earlier run: the
    /// first [`Dataplane::sync`] removes those no Service claims. At most `max_connections`
    /// client connections are proxied at once (at least 1).
    pub async fn new(
        table: Arc<Mutex<Table>>,
        metrics: ProxyMetrics,
        interface: Interface,
        max_connections: usize,
    ) -> anyhow::Result<Self> {
        let addresses = interface.addresses().await?;
        Ok(Self {
            table,
            metrics,
            interface,
            addresses,
            listeners: BTreeMap::new(),
            limit: Arc::new(Semaphore::new(
                max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
        })
    }

    /// Makes the interface and listeners match the table. Returns `false` when something
    /// failed (logged and counted) and a retry is due.
    ///
    /// In this order: VIPs added first (a listener binds only an address on the interface),
    /// then listeners opened and closed, then VIPs removed (after their listeners closed).
    pub async fn sync(&mut self) -> bool {
        let (wanted_addresses, frontends) = {
            let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            forget_gone_backends(&table, &self.metrics);
            (table.addresses(), table.frontends())
        };
        let added = self.add_addresses(&wanted_addresses).await;
        let listening = self.sync_listeners(&wanted_addresses, &frontends).await;
        let removed = self.remove_addresses(&wanted_addresses).await;

        self.metrics.vips.set(gauge(self.addresses.len()));
        self.metrics.listeners.set(gauge(self.listeners.len()));
        self.metrics
            .backends
            .set(gauge(frontends.values().copied().sum()));
        added && listening && removed
    }

    /// Adds the wanted VIPs the interface lacks; `false` if one failed.
    async fn add_addresses(&mut self, wanted: &BTreeSet<IpAddr>) -> bool {
        let mut ok = true;
        for ip in wanted.difference(&self.addresses.clone()) {
            match self.interface.add(*ip).await {
                Ok(()) => {
                    tracing::info!(vip = %ip, interface = self.interface.name(), "VIP added");
                    self.addresses.insert(*ip);
                }
                Err(error) => {
                    tracing::warn!(vip = %ip, error = format!("{error:#}"), "cannot add VIP");
                    self.metrics.error("", "netlink");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Listens on each TCP frontend with a ready backend whose VIP is wanted and on the
    /// interface, and closes every other listener (and any that stopped); `false` if a bind
    /// failed.
    async fn sync_listeners(
        &mut self,
        wanted_addresses: &BTreeSet<IpAddr>,
        frontends: &BTreeMap<Frontend, usize>,
    ) -> bool {
        let wanted: BTreeSet<Frontend> = frontends
            .iter()
            .filter(|(frontend, ready)| {
                **ready > 0
                    && frontend.protocol == Protocol::Tcp
                    && self.addresses.contains(&frontend.addr.ip())
                    && wanted_addresses.contains(&frontend.addr.ip())
            })
            .map(|(frontend, _)| *frontend)
            .collect();
        self.listeners.retain(|frontend, task| {
            let keep = wanted.contains(frontend) && !task.is_finished();
            if !keep {
                task.abort();
                tracing::debug!(frontend = %frontend.addr, "listener closed");
            }
            keep
        });
        let mut ok = true;
        for frontend in wanted {
            if self.listeners.contains_key(&frontend) {
                continue;
            }
            match TcpListener::bind(frontend.addr).await {
                Ok(listener) => {
                    tracing::debug!(frontend = %frontend.addr, "listening");
                    let task = tokio::spawn(accept_loop(
                        listener,
                        frontend,
                        self.table.clone(),
                        self.metrics.clone(),
                        self.limit.clone(),
                    ));
                    self.listeners.insert(frontend, task);
                }
                Err(error) => {
                    tracing::warn!(frontend = %frontend.addr, %error, "cannot listen");
                    self.metrics.error("", "listen");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Removes the VIPs on the interface that are no longer wanted; `false` if one failed.
    async fn remove_addresses(&mut self, wanted: &BTreeSet<IpAddr>) -> bool {
        let mut ok = true;
        for ip in self
            .addresses
            .difference(wanted)
            .copied()
            .collect::<Vec<_>>()
        {
            match self.interface.remove(ip).await {
                Ok(()) => {
                    tracing::info!(vip = %ip, interface = self.interface.name(), "VIP removed");
                    self.addresses.remove(&ip);
                }
                Err(error) => {
                    tracing::warn!(vip = %ip, error = format!("{error:#}"), "cannot remove VIP");
                    self.metrics.error("", "netlink");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Closes every listener (the VIPs stay, so a restarted proxy does not flap them).
    pub fn close(&mut self) {
        for (_, task) in std::mem::take(&mut self.listeners) {
            task.abort();
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.close();
    }
}

/// Drops the per-backend metric series of backends no pool holds any more (see
/// [`ProxyMetrics::forget_backends`]).
pub(crate) fn forget_gone_backends(table: &Table, metrics: &ProxyMetrics) {
    let live = table
        .backend_series()
        .into_iter()
        .map(|(service, port, backend)| (service_label(&service), port, backend.to_string()))
        .collect();
    metrics.forget_backends(&live);
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn service_label(service: &ServiceKey) -> String {
    format!("{}/{}", service.0, service.1)
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    frontend: Frontend,
    table: Arc<Mutex<Table>>,
    metrics: ProxyMetrics,
    limit: Arc<Semaphore>,
) {
    loop {
        match listener.accept().await {
            Ok((client, _peer)) => match limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (table, metrics) = (table.clone(), metrics.clone());
                    tokio::spawn(async move {
                        handle(client, frontend, table, metrics).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    // Closed at once (RST) rather than queued: each open connection holds two
                    // sockets and a task, and the bound is what keeps that finite.
                    metrics.over_limit.inc();
                    reset(client);
                }
            },
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(frontend = %frontend.addr, %error, "accept failed");
                metrics.error("", "accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Proxies one accepted connection: picks the next ready backend, connects (trying the next
/// one if it fails) and copies bytes both ways until either side closes. With no ready
/// backend the client gets an RST at once.
pub async fn handle(
    client: TcpStream,
    frontend: Frontend,
    table: Arc<Mutex<Table>>,
    metrics: ProxyMetrics,
) {
    let mut service = String::new();
    for _ in 0..CONNECT_ATTEMPTS {
        let pick = table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pick(&frontend);
        let Some(pick) = pick else { break };
        service = service_label(&pick.service);
        let Some(backend) = pick.backend else { break };
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
            Ok(Ok(upstream)) => {
                metrics.connected(&service, &pick.port_name, &backend.to_string());
                splice(client, upstream, &service, &metrics).await;
                return;
            }
            Ok(Err(error)) => {
                tracing::debug!(frontend = %frontend.addr, %backend, %error, "backend refused");
                metrics.error(&service, "connect");
            }
            Err(_) => {
                tracing::debug!(frontend = %frontend.addr, %backend, "backend timed out");
                metrics.error(&service, "connect");
            }
        }
    }
    metrics.error(&service, "no_backend");
    reset(client);
}

/// Closes with an RST instead of a FIN, so the client sees the refusal at once instead of an
/// empty, successful-looking exchange.
fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}

async fn splice(
    mut client: TcpStream,
    mut upstream: TcpStream,
    service: &str,
    metrics: &ProxyMetrics,
) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    metrics
        .active
        .get_or_create(&ServiceLabels {
            service: service.to_owned(),
        })
        .inc();
    let (to_backend, to_client) =
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok(counts) => counts,
            Err(error) => {
                tracing::debug!(%error, "connection ended with an error");
                (0, 0)
            }
        };
    for (direction, n) in [("to_backend", to_backend), ("to_client", to_client)] {
        metrics
            .bytes
            .get_or_create(&BytesLabels {
                service: service.to_owned(),
                direction: direction.to_owned(),
            })
            .inc_by(n);
    }
    metrics
        .active
        .get_or_create(&ServiceLabels {
            service: service.to_owned(),
        })
        .dec();
}
