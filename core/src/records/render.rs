//! Service + virtual IPs + EndpointSlices → `DNSRecordSpec`, following the Kubernetes
//! DNS-based service discovery specification (the records CoreDNS's `kubernetes` plugin serves).
//!
//! Pure and deterministic: the same inputs, in any order, render the same spec byte for byte,
//! so the reconciler can compare with what is stored and skip the write.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use signpost_crds::dns_record::{
    DNSRecordSpec, HostRecord, MAX_ADDRESSES, Protocol, RecordType, SrvRecord, SrvTarget,
};

use super::names::{self, MAX_NAME_LEN};
use super::summary;

/// Largest TTL the CRD admits; a larger `--ttl` is clamped rather than failing every record.
pub const MAX_TTL: i32 = 3600;
/// Bound of `spec.hosts` in the CRD schema.
pub const MAX_HOSTS: usize = 5000;
/// Bound of each host's `ipv4` and `ipv6` lists in the CRD schema.
pub const MAX_HOST_ADDRESSES: usize = 16;
/// Bound of `spec.srv` in the CRD schema.
pub const MAX_SRV_RECORDS: usize = 250;
/// Bound of each SRV record's `targets` in the CRD schema.
pub const MAX_SRV_TARGETS: usize = 5000;
/// Bound of `srv[].portName` in the CRD schema (an IANA service name is at most 15 characters).
pub const MAX_PORT_NAME_LEN: usize = 15;

/// Why a Service cannot be rendered at all. These are inputs the API server does not let
/// through (or a bad `--cluster-domain`), so the reconciler reports them instead of writing a
/// record the CRD schema would reject. Variant names double as metric labels.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The cluster domain is not a DNS name.
    #[error("cluster domain {0:?} is not a valid DNS name")]
    InvalidClusterDomain(String),
    /// The Service's name or namespace is missing or not a DNS label.
    #[error("service {field} {value:?} is not a DNS label")]
    InvalidServiceName {
        /// `name` or `namespace`.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// `<svc>.<ns>.svc.<cluster-domain>` is longer than a DNS name may be.
    #[error("name {0:?} is longer than {MAX_NAME_LEN} characters")]
    NameTooLong(String),
    /// An ExternalName Service whose `externalName` is empty or not a DNS name.
    #[error("externalName {0:?} is not a valid DNS name")]
    InvalidExternalName(String),
}

/// What the reconciler needs from one render: the spec to store and what its status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The record itself; byte-identical for identical inputs.
    pub spec: DNSRecordSpec,
    /// Whether the record is complete, for the `Ready` condition.
    pub state: RecordState,
    /// What was left out and why; all zero for an ordinary Service.
    pub omitted: Omitted,
    /// `status.addressSummary`, the ADDRESSES column of `kubectl get dnsrecords`.
    pub address_summary: String,
}

impl Rendered {
    /// Status of the `Ready` condition: false only while the record still lacks addresses it
    /// is owed. A truncated record is served, so it stays ready.
    pub fn is_ready(&self) -> bool {
        !matches!(self.state, RecordState::AddressPending { .. })
    }

    /// Reason of the `Ready` condition (CamelCase, stable: alerts and tests match on it).
    pub fn reason(&self) -> &'static str {
        self.state.reason()
    }

    /// Message of the `Ready` condition. It depends only on the rendered content, so an
    /// unchanged input does not rewrite the status either.
    pub fn message(&self) -> String {
        let head = match self.state {
            RecordState::Complete => "record is complete".to_owned(),
            RecordState::Truncated => "record is truncated to the DNSRecord size limits".to_owned(),
            RecordState::AddressPending { have, want } => {
                format!("waiting for virtual IPs: {have} of {want} allocated")
            }
        };
        if self.omitted.is_empty() {
            head
        } else {
            format!("{head}; {}", self.omitted)
        }
    }
}

/// Whether a record is complete, from the point of view of a client resolving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Everything the Service should resolve to is in the record. A headless Service without
    /// ready endpoints is complete too: "no addresses" is the right answer for it.
    Complete,
    /// The record is served, but some entries did not fit the CRD's bounds (see [`Omitted`]).
    Truncated,
    /// A Service that gets virtual IPs has fewer than it asked for (none yet, or one family of
    /// a `RequireDualStack` Service), so its name would not resolve as it should.
    AddressPending {
        /// Virtual IPs allocated.
        have: usize,
        /// Virtual IPs the Service needs before it is complete.
        want: usize,
    },
}

impl RecordState {
    /// The `Ready` condition's reason for this state.
    pub fn reason(self) -> &'static str {
        match self {
            RecordState::Complete => "Rendered",
            RecordState::Truncated => "Truncated",
            RecordState::AddressPending { .. } => "AddressPending",
        }
    }
}

/// Counts of entries left out of a record. The first six are entries cut to respect the CRD
/// bounds (deterministically: the lowest in sort order are kept); `invalid` counts inputs no
/// record may hold (unparsable or IPv4-mapped addresses, bad port names or protocols).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Omitted {
    /// IPv4 addresses of `fqdn` beyond [`MAX_ADDRESSES`].
    pub ipv4: usize,
    /// IPv6 addresses of `fqdn` beyond [`MAX_ADDRESSES`].
    pub ipv6: usize,
    /// Hosts beyond [`MAX_HOSTS`], or whose name would exceed 253 characters.
    pub hosts: usize,
    /// Addresses of one host beyond [`MAX_HOST_ADDRESSES`] per family.
    pub host_addresses: usize,
    /// SRV records beyond [`MAX_SRV_RECORDS`], or whose owner name would exceed 253 characters.
    pub srv_records: usize,
    /// SRV targets of one record beyond [`MAX_SRV_TARGETS`].
    pub srv_targets: usize,
    /// Input entries that no record may hold.
    pub invalid: usize,
}

impl Omitted {
    /// Whether anything was cut to fit the CRD bounds.
    pub fn truncated(&self) -> bool {
        self.ipv4
            + self.ipv6
            + self.hosts
            + self.host_addresses
            + self.srv_records
            + self.srv_targets
            > 0
    }

    /// Whether nothing at all was left out.
    pub fn is_empty(&self) -> bool {
        !self.truncated() && self.invalid == 0
    }
}

impl fmt::Display for Omitted {
    /// `left out 1 IPv4 address, 2 hosts; ignored 1 invalid entry`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = [
            (self.ipv4, "IPv4 address", "IPv4 addresses"),
            (self.ipv6, "IPv6 address", "IPv6 addresses"),
            (self.hosts, "host", "hosts"),
            (self.host_addresses, "host address", "host addresses"),
            (self.srv_records, "SRV record", "SRV records"),
            (self.srv_targets, "SRV target", "SRV targets"),
        ];
        let parts: Vec<String> = cut
            .iter()
            .filter(|(n, ..)| *n > 0)
            .map(|&(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
            .collect();
        let mut sep = "";
        if !parts.is_empty() {
            write!(f, "left out {}", parts.join(", "))?;
            sep = "; ";
        }
        if self.invalid > 0 {
            let noun = if self.invalid == 1 {
                "entry"
            } else {
                "entries"
            };
            write!(f, "{sep}ignored {} invalid {noun}", self.invalid)?;
        }
        Ok(())
    }
}

/// The DNS shape of a Service: `ExternalName` by type, `Headless` when `clusterIP` is `None`,
/// otherwise `ClusterIP` (which covers NodePort and LoadBalancer: they get virtual IPs too).
pub fn record_type(service: &Service) -> RecordType {
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        RecordType::ExternalName
    } else if spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        RecordType::Headless
    } else {
        RecordType::ClusterIP
    }
}

/// Renders the DNSRecord of `service`.
///
/// - `vips`: Signpost's virtual IPs of the Service (from its ServiceIP claims), in any order;
///   ignored unless the record type is ClusterIP.
/// - `slices`: the Service's EndpointSlices (the caller selects them by the
///   `kubernetes.io/service-name` label), in any order; read only for a headless Service.
/// - `cluster_domain`: e.g. `cluster.local`; one trailing dot is tolerated.
/// - `ttl`: seconds, clamped to [`MAX_TTL`].
pub fn render(
    service: &Service,
    vips: &[IpAddr],
    slices: &[EndpointSlice],
    cluster_domain: &str,
    ttl: u32,
) -> Result<Rendered, RenderError> {
    let meta = &service.metadata;
    let fqdn = names::service_fqdn(
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        cluster_domain,
    )?;
    let record_type = record_type(service);
    let mut out = Output {
        spec: DNSRecordSpec {
            fqdn,
            record_type,
            ttl: i32::try_from(ttl).map_or(MAX_TTL, |t| t.min(MAX_TTL)),
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            hosts: Vec::new(),
            srv: Vec::new(),
            cname: None,
        },
        omitted: Omitted::default(),
    };
    let (pending, summary) = match record_type {
        RecordType::ExternalName => {
            let target = external_name(service)?;
            let summary = summary::cname(&target);
            out.spec.cname = Some(target);
            (None, summary)
        }
        RecordType::ClusterIP => out.cluster_ip(service, vips),
        RecordType::Headless => (None, out.headless(service, slices)),
    };
    let state = match pending {
        Some((have, want)) => RecordState::AddressPending { have, want },
        None if out.omitted.truncated() => RecordState::Truncated,
        None => RecordState::Complete,
    };
    Ok(Rendered {
        spec: out.spec,
        state,
        omitted: out.omitted,
        address_summary: summary,
    })
}

/// `externalName` as a CNAME target: lowercased, without its trailing dot.
fn external_name(service: &Service) -> Result<String, RenderError> {
    let raw = service
        .spec
        .as_ref()
        .and_then(|s| s.external_name.as_deref())
        .unwrap_or_default();
    let target = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if target.is_empty() || target.len() > MAX_NAME_LEN || target.split('.').any(str::is_empty) {
        return Err(RenderError::InvalidExternalName(raw.to_owned()));
    }
    Ok(target)
}

/// A named service port, the key of one SRV record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    protocol: ProtocolKey,
}

/// `Protocol` with an order, so ports can live in sorted sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ProtocolKey {
    Tcp,
    Udp,
    Sctp,
}

impl ProtocolKey {
    /// Kubernetes' spelling; unset means TCP (the API default).
    fn parse(protocol: Option<&str>) -> Option<Self> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Self::Tcp => Protocol::TCP,
            Self::Udp => Protocol::UDP,
            Self::Sctp => Protocol::SCTP,
        }
    }
}

/// Which endpoint addresses belong to one host name before names are assigned: pods are
/// recognised by explicit hostname, then by UID, and anything else stands alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum HostKey {
    Hostname(String),
    Pod(String),
    Address(IpAddr),
}

/// The addresses and ports found for one host.
#[derive(Debug, Default)]
struct Host {
    addresses: BTreeSet<IpAddr>,
    ports: BTreeSet<(PortKey, i32)>,
}

/// The spec under construction plus the omission counts.
struct Output {
    spec: DNSRecordSpec,
    omitted: Omitted,
}

impl Output {
    /// Virtual IPs as A/AAAA, one SRV target (the Service name, service port) per named port.
    /// Returns `(have, want)` when the Service still lacks virtual IPs, and the summary.
    fn cluster_ip(
        &mut self,
        service: &Service,
        vips: &[IpAddr],
    ) -> (Option<(usize, usize)>, String) {
        let vips = self.usable(vips.iter().copied());
        self.set_addresses(&vips);
        let fqdn = self.spec.fqdn.clone();
        for (key, port) in self.named_ports(service) {
            self.push_srv(
                key,
                vec![SrvTarget {
                    host: fqdn.clone(),
                    port,
                }],
            );
        }
        self.finish_srv();

        let spec = service.spec.as_ref();
        let dual_stack =
            spec.and_then(|s| s.ip_family_policy.as_deref()) == Some("RequireDualStack");
        let families = usize::from(vips.iter().any(IpAddr::is_ipv4))
            + usize::from(vips.iter().any(IpAddr::is_ipv6));
        let want = if dual_stack { 2 } else { 1 };
        let pending = (families < want).then_some((families, want));
        let summary = if vips.is_empty() {
            summary::PENDING.to_owned()
        } else {
            self.summary(self.spec.ipv4.len() + self.spec.ipv6.len())
        };
        (pending, summary)
    }

    /// Ready endpoint addresses as A/AAAA, a host per endpoint (pod), and per named port one
    /// SRV target per host serving it. Returns the summary.
    fn headless(&mut self, service: &Service, slices: &[EndpointSlice]) -> String {
        let spec = service.spec.as_ref();
        let include_not_ready = spec.and_then(|s| s.publish_not_ready_addresses) == Some(true);

        let mut hosts: BTreeMap<HostKey, Host> = BTreeMap::new();
        let mut all = BTreeSet::new();
        for slice in slices {
            // FQDN slices are deprecated and have no defined meaning for DNS.
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let ports = self.slice_ports(slice);
            for endpoint in slice.endpoints.iter().flatten() {
                // EndpointSlice API: an unset `ready` means ready.
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                if !ready && !include_not_ready {
                    continue;
                }
                // The endpoints controller sets `hostname` only when the pod's subdomain is
                // this Service; anything else cannot be a host label.
                let hostname = endpoint.hostname.as_deref().filter(|h| !h.is_empty());
                let hostname = match hostname {
                    Some(h) if names::is_dns_label(h) => Some(h),
                    Some(_) => {
                        self.omitted.invalid += 1;
                        None
                    }
                    None => None,
                };
                let uid = endpoint
                    .target_ref
                    .as_ref()
                    .and_then(|r| r.uid.as_deref())
                    .filter(|u| !u.is_empty());
                let parsed: Vec<IpAddr> = endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect();
                self.omitted.invalid += endpoint.addresses.len() - parsed.len();
                let addresses = self.usable(parsed.into_iter());
                for ip in addresses {
                    all.insert(ip);
                    let key = match (hostname, uid) {
                        (Some(h), _) => HostKey::Hostname(h.to_owned()),
                        (None, Some(u)) => HostKey::Pod(u.to_owned()),
                        (None, None) => HostKey::Address(ip),
                    };
                    let host = hosts.entry(key).or_default();
                    host.addresses.insert(ip);
                    host.ports.extend(ports.iter().cloned());
                }
            }
        }
        let all: Vec<IpAddr> = all.into_iter().collect();
        self.set_addresses(&all);

        // Name the hosts; two keys that end up with one name (a pod's hostname equal to another
        // endpoint's dashed address) share it, as they would in any DNS server.
        let mut named: BTreeMap<String, Host> = BTreeMap::new();
        for (key, host) in hosts {
            let name = match key {
                HostKey::Hostname(h) => h,
                // Lowest address, IPv4 before IPv6: stable while the pod keeps its addresses.
                HostKey::Pod(_) => match host.addresses.first() {
                    Some(ip) => names::dashed_address(*ip),
                    None => continue,
                },
                HostKey::Address(ip) => names::dashed_address(ip),
            };
            let merged = named.entry(name).or_default();
            merged.addresses.extend(host.addresses);
            merged.ports.extend(host.ports);
        }
        let fqdn = self.spec.fqdn.clone();
        let before = named.len();
        named.retain(|name, _| name.len() + 1 + fqdn.len() <= MAX_NAME_LEN);
        self.omitted.hosts += before - named.len();
        if named.len() > MAX_HOSTS {
            self.omitted.hosts += named.len() - MAX_HOSTS;
            named = named.into_iter().take(MAX_HOSTS).collect();
        }

        for (name, host) in &named {
            let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) =
                host.addresses.iter().partition(|ip| ip.is_ipv4());
            let ipv4 = bounded(&v4, MAX_HOST_ADDRESSES, &mut self.omitted.host_addresses);
            let ipv6 = bounded(&v6, MAX_HOST_ADDRESSES, &mut self.omitted.host_addresses);
            self.spec.hosts.push(HostRecord {
                name: name.clone(),
                ipv4,
                ipv6,
            });
        }

        for (key, _) in self.named_ports(service) {
            // Hosts are visited in name order and each host's ports are a set, so the targets
            // come out sorted and free of duplicates.
            let mut targets = Vec::new();
            for (name, host) in &named {
                for (_, port) in host.ports.iter().filter(|(port_key, _)| *port_key == key) {
                    targets.push(SrvTarget {
                        host: format!("{name}.{fqdn}"),
                        port: *port,
                    });
                }
            }
            self.push_srv(key, targets);
        }
        self.finish_srv();

        self.summary(all.len())
    }

    /// Drops addresses no record may hold: IPv4-mapped IPv6 addresses, which the CRD's `isIP`
    /// validation rejects and which would put one address in both families.
    fn usable(&mut self, addresses: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for ip in addresses {
            match ip {
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => self.omitted.invalid += 1,
                _ => out.push(ip),
            }
        }
        out
    }

    /// Fills `ipv4`/`ipv6` of `fqdn`: sorted numerically, deduplicated, bounded.
    fn set_addresses(&mut self, addresses: &[IpAddr]) {
        let set: BTreeSet<IpAddr> = addresses.iter().copied().collect();
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = set.into_iter().partition(IpAddr::is_ipv4);
        self.spec.ipv4 = bounded(&v4, MAX_ADDRESSES, &mut self.omitted.ipv4);
        self.spec.ipv6 = bounded(&v6, MAX_ADDRESSES, &mut self.omitted.ipv6);
    }

    /// The Service's named ports with their service port numbers. Unnamed ports get no SRV
    /// record (the specification has no owner name for them).
    fn named_ports(&mut self, service: &Service) -> Vec<(PortKey, i32)> {
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
        let mut out = Vec::new();
        for port in ports.into_iter().flatten() {
            let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            match (
                valid_port_name(name),
                ProtocolKey::parse(port.protocol.as_deref()),
            ) {
                (true, Some(protocol)) => {
                    out.push((
                        PortKey {
                            name: name.to_owned(),
                            protocol,
                        },
                        port.port,
                    ));
                }
                _ => self.omitted.invalid += 1,
            }
        }
        out
    }

    /// A slice's named ports with the endpoints' port numbers.
    fn slice_ports(&mut self, slice: &EndpointSlice) -> Vec<(PortKey, i32)> {
        let mut out = Vec::new();
        for port in slice.ports.iter().flatten() {
            // A nil port number means "all ports": nothing an SRV record can say.
            let (Some(name), Some(number)) =
                (port.name.as_deref().filter(|n| !n.is_empty()), port.port)
            else {
                continue;
            };
            match ProtocolKey::parse(port.protocol.as_deref()) {
                Some(protocol) if valid_port_number(number) => {
                    out.push((
                        PortKey {
                            name: name.to_owned(),
                            protocol,
                        },
                        number,
                    ));
                }
                _ => self.omitted.invalid += 1,
            }
        }
        out
    }

    /// Adds the SRV record of one named port, if its owner name fits in a DNS name.
    fn push_srv(&mut self, key: PortKey, mut targets: Vec<SrvTarget>) {
        let protocol = key.protocol.protocol();
        let name = format!("_{}.{}.{}", key.name, protocol.srv_label(), self.spec.fqdn);
        if name.len() > MAX_NAME_LEN {
            self.omitted.srv_records += 1;
            return;
        }
        let before = targets.len();
        targets.retain(|t| valid_port_number(t.port));
        self.omitted.invalid += before - targets.len();
        if targets.len() > MAX_SRV_TARGETS {
            self.omitted.srv_targets += targets.len() - MAX_SRV_TARGETS;
            targets.truncate(MAX_SRV_TARGETS);
        }
        self.spec.srv.push(SrvRecord {
            name,
            port_name: key.name,
            protocol,
            targets,
        });
    }

    /// Sorts the SRV records by owner name and bounds their number.
    fn finish_srv(&mut self) {
        self.spec.srv.sort_by(|a, b| a.name.cmp(&b.name));
        self.spec.srv.dedup_by(|a, b| a.name == b.name);
        if self.spec.srv.len() > MAX_SRV_RECORDS {
            self.omitted.srv_records += self.spec.srv.len() - MAX_SRV_RECORDS;
            self.spec.srv.truncate(MAX_SRV_RECORDS);
        }
    }

    /// The summary of `fqdn`'s addresses, IPv4 first, out of `total` before truncation.
    fn summary(&self, total: usize) -> String {
        let shown: Vec<&str> = self
            .spec
            .ipv4
            .iter()
            .chain(&self.spec.ipv6)
            .take(2)
            .map(String::as_str)
            .collect();
        summary::addresses(&shown, total)
    }
}

/// Formats the first `max` of `addresses` and counts the rest into `omitted`.
fn bounded(addresses: &[IpAddr], max: usize, omitted: &mut usize) -> Vec<String> {
    *omitted += addresses.len().saturating_sub(max);
    addresses.iter().take(max).map(IpAddr::to_string).collect()
}

/// Port names end up as the first label of an SRV owner name and in the CRD's `portName`
/// (at most 15 characters), so they must be short DNS labels; the API server's IANA service
/// name rule guarantees that for real Services.
fn valid_port_name(name: &str) -> bool {
    name.len() <= MAX_PORT_NAME_LEN && names::is_dns_label(name)
}

fn valid_port_number(port: i32) -> bool {
    (1..=65535).contains(&port)
}
