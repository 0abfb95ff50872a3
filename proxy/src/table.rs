//! The proxy's pure state: which VIP:port frontends exist and which ready backends each one
//! round-robins over.
//!
//! No I/O and no Kubernetes types: the watch turns DNSRecords, Services and EndpointSlices
//! into the plain inputs below, and the data plane asks [`Table::pick`] for a backend per new
//! connection. Keeping it pure is what lets every rule (port matching by name, readiness,
//! address families, round robin across updates) be a unit test.
//!
//! - A **frontend** (VIP, port, protocol) exists while the Service's DNSRecord is of type
//!   ClusterIP with that VIP, the VIP is the Service's, and the Service has that port. A VIP is
//!   the Service's when its ServiceIP claim names that Service (namespace, name and UID), or
//!   when it is one of the Service's own `spec.clusterIPs` and no claim gives it to another
//!   Service. A DNSRecord is written by whoever may write in its namespace; the claim is
//!   written by the allocator alone, and a ClusterIP by the API server, which gives each
//!   address to one Service only; so a record (or a Service, or a slice) in another namespace
//!   that names someone else's VIP never redirects it. ClusterIPs are what make a Service
//!   whose address Signpost did not choose (ClusterIP mode, a Service created while Signpost
//!   was down) reachable; a claim still wins over them, since outside ClusterIP mode
//!   Signpost's CIDRs may overlap the API server's.
//! - Its **pool** is the ordered list of ready backends of that service port in the Service's
//!   EndpointSlices of the VIP's family: each slice port whose *name* equals the service
//!   port's name (both empty for a single unnamed port) and whose protocol matches, times
//!   each endpoint whose `ready` condition is not false (first address only, as kube-proxy).
//! - The pool keeps a **cursor**: each pick returns the backend under it and moves it on, so
//!   N connections over k backends give each N/k (±1). When the backends change, the cursor
//!   moves to the backend that would have come next (or the first after it, if that one
//!   left), so an update neither restarts the rotation nor skips anyone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// A Service, by namespace and name.
pub type ServiceKey = (String, String);

/// Transport protocols a frontend can have. Only TCP is proxied today; the others are kept
/// apart so a UDP port never shares a pool with a TCP one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses a Kubernetes protocol name (`TCP` when unset, as the API defaults it).
    pub fn parse(text: Option<&str>) -> Option<Self> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

/// One port of a Service (`spec.ports[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `name`, empty when unset (only allowed for a single-port Service).
    pub name: String,
    /// The port the VIP listens on.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

/// What the proxy needs from one EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Slice {
    /// `true` for addressType IPv6, `false` for IPv4 (FQDN slices are never given here).
    pub ipv6: bool,
    /// `ports[]`: name (empty when unset), port number, protocol.
    pub ports: Vec<(String, u16, Protocol)>,
    /// The first address of every endpoint whose `ready` condition is not false.
    pub ready: Vec<IpAddr>,
}

/// A VIP:port the proxy listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    /// The VIP and the service port.
    pub addr: SocketAddr,
    /// The protocol.
    pub protocol: Protocol,
}

/// Which pool a frontend draws from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolKey {
    /// The Service.
    pub service: ServiceKey,
    /// The service port's name (empty for an unnamed port).
    pub port_name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The address family of the backends (`true`: IPv6).
    pub ipv6: bool,
}

/// The ordered ready backends of one service port, and the round-robin cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    backends: Vec<SocketAddr>,
    cursor: usize,
}

impl Pool {
    /// A pool over `backends` (sorted and de-duplicated here), starting at the first.
    pub fn new(backends: Vec<SocketAddr>) -> Self {
        let mut pool = Self::default();
        pool.set(backends);
        pool
    }

    /// The backends, in rotation order.
    pub fn backends(&self) -> &[SocketAddr] {
        &self.backends
    }

    /// The backend the next pick returns.
    pub fn peek(&self) -> Option<SocketAddr> {
        self.backends.get(self.cursor).copied()
    }

    /// Returns the backend under the cursor and moves the cursor on; `None` when no backend
    /// is ready (the connection must be refused, not parked).
    pub fn pick(&mut self) -> Option<SocketAddr> {
        let backend = self.peek()?;
        self.cursor = (self.cursor + 1) % self.backends.len();
        Some(backend)
    }

    /// Replaces the backends. The cursor moves to the backend that would have been picked
    /// next, or to the first one after it in order if it left, so the rotation continues.
    /// Returns whether the set changed.
    pub fn set(&mut self, mut backends: Vec<SocketAddr>) -> bool {
        backends.sort();
        backends.dedup();
        if backends == self.backends {
            return false;
        }
        let next = self.peek();
        self.backends = backends;
        self.cursor = match next {
            Some(next) => self.backends.partition_point(|b| *b < next),
            None => 0,
        };
        if self.cursor >= self.backends.len() {
            self.cursor = 0;
        }
        true
    }
}

/// A ServiceIP claim: the Service a VIP was allocated to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The Service named by the claim's `serviceRef`.
    pub service: ServiceKey,
    /// The Service's UID from `serviceRef` (empty: not checked): a Service deleted and
    /// recreated under the same name does not inherit its predecessor's VIP.
    pub uid: String,
}

/// What a pick hands to the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The Service the frontend belongs to.
    pub service: ServiceKey,
    /// The service port's name.
    pub port_name: String,
    /// The backend to connect to, or `None` when no backend is ready.
    pub backend: Option<SocketAddr>,
}

/// Every frontend and pool, rebuilt one Service at a time.
#[derive(Debug, Default)]
pub struct Table {
    records: BTreeMap<ServiceKey, Vec<IpAddr>>,
    claims: BTreeMap<IpAddr, Claim>,
    uids: BTreeMap<ServiceKey, String>,
    /// Each Service's own `spec.clusterIPs`, sorted.
    cluster_ips: BTreeMap<ServiceKey, Vec<IpAddr>>,
    /// The same, by address: whose frontends a claim of that address may take or give back.
    cluster_ip_owners: BTreeMap<IpAddr, BTreeSet<ServiceKey>>,
    services: BTreeMap<ServiceKey, Vec<ServicePort>>,
    slices: BTreeMap<ServiceKey, BTreeMap<String, Slice>>,
    pools: BTreeMap<PoolKey, Pool>,
    /// Every Service claiming a frontend; the first (in namespace/name order) is served, so
    /// when it goes the next one takes over without a rebuild of its own.
    frontends: BTreeMap<Frontend, BTreeMap<ServiceKey, PoolKey>>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or with `None` removes) the VIPs of a Service's ClusterIP DNSRecord. A record of
    /// another type is given as `None`: it has no VIP to proxy.
    pub fn set_record(&mut self, service: &ServiceKey, vips: Option<Vec<IpAddr>>) -> bool {
        let vips = vips.map(|mut vips| {
            vips.sort();
            vips.dedup();
            vips
        });
        let changed = replace(&mut self.records, service, vips);
        if changed {
            self.rebuild(service);
        }
        changed
    }

    /// Sets (or with `None` removes) the ServiceIP claim of `vip`: which Service may serve it.
    /// A VIP without a claim is served by nobody.
    pub fn set_claim(&mut self, vip: IpAddr, claim: Option<Claim>) -> bool {
        let old = match &claim {
            Some(claim) => self.claims.insert(vip, claim.clone()),
            None => self.claims.remove(&vip),
        };
        if old == claim {
            return false;
        }
        // The claim's Services before and after, and those whose ClusterIP it is: a claim
        // naming another Service takes a ClusterIP from them, and gives it back when it goes.
        let mut affected: BTreeSet<ServiceKey> = old.into_iter().map(|c| c.service).collect();
        affected.extend(claim.map(|c| c.service));
        affected.extend(
            self.cluster_ip_owners
                .get(&vip)
                .into_iter()
                .flatten()
                .cloned(),
        );
        for service in &affected {
            self.rebuild(service);
        }
        true
    }

    /// Sets (or with `None` forgets) a Service's own `spec.clusterIPs`: addresses the API
    /// server gave to this Service alone, so its DNSRecord may list them although no claim
    /// names it (Signpost did not choose them, or chose them in ClusterIP mode).
    pub fn set_service_cluster_ips(
        &mut self,
        service: &ServiceKey,
        cluster_ips: Option<Vec<IpAddr>>,
    ) -> bool {
        let cluster_ips = cluster_ips.map(|mut ips| {
            ips.sort();
            ips.dedup();
            ips
        });
        let old = self.cluster_ips.get(service).cloned().unwrap_or_default();
        let changed = replace(&mut self.cluster_ips, service, cluster_ips);
        if !changed {
            return false;
        }
        for ip in old {
            if let Some(owners) = self.cluster_ip_owners.get_mut(&ip) {
                owners.remove(service);
                if owners.is_empty() {
                    self.cluster_ip_owners.remove(&ip);
                }
            }
        }
        for ip in self.cluster_ips.get(service).into_iter().flatten() {
            self.cluster_ip_owners
                .entry(*ip)
                .or_default()
                .insert(service.clone());
        }
        self.rebuild(service);
        true
    }

    /// Sets (or with `None` forgets) a Service's UID, checked against its VIPs' claims.
    pub fn set_service_uid(&mut self, service: &ServiceKey, uid: Option<String>) -> bool {
        let changed = replace(&mut self.uids, service, uid);
        if changed {
            self.rebuild(service);
        }
        changed
    }

    /// Whether `vip` is `service`'s: its claim gives it to `service` (and, when both UIDs are
    /// known, to this incarnation of it), or it is one of the Service's ClusterIPs and no
    /// claim gives it to another Service.
    fn owns(&self, service: &ServiceKey, vip: &IpAddr) -> bool {
        let claim = self.claims.get(vip);
        let claimed = claim.is_some_and(|claim| {
            claim.service == *service
                && (claim.uid.is_empty()
                    || self
                        .uids
                        .get(service)
                        .is_none_or(|uid| uid.is_empty() || *uid == claim.uid))
        });
        let cluster_ip = self
            .cluster_ips
            .get(service)
            .is_some_and(|ips| ips.binary_search(vip).is_ok())
            && claim.is_none_or(|claim| claim.service == *service);
        claimed || cluster_ip
    }

    /// Sets (or with `None` removes) a Service's ports.
    pub fn set_service(&mut self, service: &ServiceKey, ports: Option<Vec<ServicePort>>) -> bool {
        let changed = replace(&mut self.services, service, ports);
        if changed {
            self.rebuild(service);
        }
        changed
    }

    /// Sets (or with `None` removes) one EndpointSlice of a Service.
    pub fn set_slice(&mut self, service: &ServiceKey, name: &str, slice: Option<Slice>) -> bool {
        let changed = match slice {
            Some(slice) => {
                let slices = self.slices.entry(service.clone()).or_default();
                slices.insert(name.to_string(), slice.clone()) != Some(slice)
            }
            None => {
                let removed = self
                    .slices
                    .get_mut(service)
                    .is_some_and(|slices| slices.remove(name).is_some());
                if self.slices.get(service).is_some_and(BTreeMap::is_empty) {
                    self.slices.remove(service);
                }
                removed
            }
        };
        if changed {
            self.rebuild(service);
        }
        changed
    }

    /// Picks the backend for a new connection to `frontend`; `None` when the frontend is
    /// unknown (the Service went away meanwhile).
    pub fn pick(&mut self, frontend: &Frontend) -> Option<Pick> {
        let key = self.active(frontend)?.clone();
        let backend = self.pools.get_mut(&key).and_then(Pool::pick);
        Some(Pick {
            service: key.service.clone(),
            port_name: key.port_name.clone(),
            backend,
        })
    }

    /// Every frontend, with the number of ready backends behind it.
    pub fn frontends(&self) -> BTreeMap<Frontend, usize> {
        self.frontends
            .iter()
            .filter_map(|(frontend, claims)| {
                let key = claims.values().next()?;
                let ready = self.pools.get(key).map_or(0, |p| p.backends().len());
                Some((*frontend, ready))
            })
            .collect()
    }

    /// The VIPs that belong on the interface: those of ClusterIP records whose Service exists
    /// and owns the VIP (its claim, or its ClusterIP).
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.records
            .iter()
            .filter(|(service, _)| self.services.contains_key(*service))
            .flat_map(|(service, vips)| vips.iter().filter(|vip| self.owns(service, vip)))
            .copied()
            .collect()
    }

    /// The ready backends behind a frontend, in rotation order.
    pub fn backends(&self, frontend: &Frontend) -> Vec<SocketAddr> {
        self.active(frontend)
            .and_then(|key| self.pools.get(key))
            .map(|pool| pool.backends().to_vec())
            .unwrap_or_default()
    }

    /// The Service a frontend belongs to.
    pub fn service_of(&self, frontend: &Frontend) -> Option<&ServiceKey> {
        self.active(frontend).map(|key| &key.service)
    }

    /// Frontends two or more Services claim, with the claimants; only the first (in
    /// namespace/name order) is served.
    pub fn conflicts(&self) -> Vec<(Frontend, Vec<ServiceKey>)> {
        self.frontends
            .iter()
            .filter(|(_, claims)| claims.len() > 1)
            .map(|(frontend, claims)| (*frontend, claims.keys().cloned().collect()))
            .collect()
    }

    fn active(&self, frontend: &Frontend) -> Option<&PoolKey> {
        self.frontends.get(frontend)?.values().next()
    }

    /// Every (Service, service port name, backend) some pool holds now: the series the
    /// per-backend metrics may keep.
    pub fn backend_series(&self) -> BTreeSet<(ServiceKey, String, SocketAddr)> {
        self.pools
            .iter()
            .flat_map(|(key, pool)| {
                pool.backends()
                    .iter()
                    .map(|backend| (key.service.clone(), key.port_name.clone(), *backend))
            })
            .collect()
    }

    /// Number of pools (service ports × families).
    pub fn pools(&self) -> usize {
        self.pools.len()
    }

    /// Recomputes the frontends and pools of one Service from its record, ports and slices.
    /// Pools that survive keep their cursor.
    fn rebuild(&mut self, service: &ServiceKey) {
        let mut wanted: BTreeMap<PoolKey, Vec<SocketAddr>> = BTreeMap::new();
        let mut frontends: Vec<(Frontend, PoolKey)> = Vec::new();
        if let (Some(vips), Some(ports)) = (self.records.get(service), self.services.get(service)) {
            let slices = self.slices.get(service);
            for vip in vips.iter().filter(|vip| self.owns(service, vip)) {
                for port in ports {
                    let key = PoolKey {
                        service: service.clone(),
                        port_name: port.name.clone(),
                        protocol: port.protocol,
                        ipv6: vip.is_ipv6(),
                    };
                    frontends.push((
                        Frontend {
                            addr: SocketAddr::new(*vip, port.port),
                            protocol: port.protocol,
                        },
                        key.clone(),
                    ));
                    if wanted.contains_key(&key) {
                        continue;
                    }
                    let backends = slices
                        .into_iter()
                        .flat_map(BTreeMap::values)
                        .filter(|slice| slice.ipv6 == key.ipv6)
                        .flat_map(|slice| {
                            let target = slice
                                .ports
                                .iter()
                                .find(|(name, _, protocol)| {
                                    *name == key.port_name && *protocol == key.protocol
                                })
                                .map(|(_, port, _)| *port);
                            target.into_iter().flat_map(move |port| {
                                slice
                                    .ready
                                    .iter()
                                    .filter(|ip| ip.is_ipv6() == slice.ipv6)
                                    .map(move |ip| SocketAddr::new(*ip, port))
                            })
                        })
                        .collect();
                    wanted.insert(key, backends);
                }
            }
        }

        // Pools of this Service: update in place (keeping cursors), drop the ones not wanted.
        self.pools
            .retain(|key, _| key.service != *service || wanted.contains_key(key));
        for (key, backends) in wanted {
            self.pools.entry(key).or_default().set(backends);
        }

        // Frontends: drop this Service's claims, then add its current ones.
        self.frontends.retain(|_, claims| {
            claims.remove(service);
            !claims.is_empty()
        });
        for (frontend, key) in frontends {
            self.frontends
                .entry(frontend)
                .or_default()
                .insert(service.clone(), key);
        }
    }
}

/// Puts `value` under `key` (or with `None` removes the key) and says whether the map changed:
/// how each input of the table is set, so an unchanged watch event rebuilds nothing.
fn replace<K: Ord + Clone, V: PartialEq>(
    map: &mut BTreeMap<K, V>,
    key: &K,
    value: Option<V>,
) -> bool {
    match value {
        Some(value) if map.get(key) == Some(&value) => false,
        Some(value) => {
            map.insert(key.clone(), value);
            true
        }
        None => map.remove(key).is_some(),
    }
}
