//! The DNSRecord spec under construction: the A/AAAA, SRV and host entries of a ClusterIP or a
//! headless Service, each list bounded as the CRD requires, with what was left out counted.
//! [`super::render`] decides the record's type and calls into this.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use signpost_crds::dns_record::{
    DNSRecordSpec, HostRecord, MAX_ADDRESSES, Protocol, SrvRecord, SrvTarget,
};

use super::names::{self, MAX_NAME_LEN};
use super::render::{
    MAX_HOST_ADDRESSES, MAX_HOSTS, MAX_PORT_NAME_LEN, MAX_SRV_RECORDS, MAX_SRV_TARGETS, Omitted,
};
use super::summary;

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
pub(super) struct Output {
    pub(super) spec: DNSRecordSpec,
    pub(super) omitted: Omitted,
}

impl Output {
    /// Virtual IPs as A/AAAA, one SRV target (the Service name, service port) per named port.
    /// Returns `(have, want)` when the Service still lacks virtual IPs, and the summary.
    pub(super) fn cluster_ip(
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
    pub(super) fn headless(&mut self, service: &Service, slices: &[EndpointSlice]) -> String {
        let spec = service.spec.as_ref();
        let include_not_ready = spec.and_then(|s| s.publish_not_ready_addresses) == Some(true);

        let (hosts, all) = self.collect_hosts(slices, include_not_ready);
        let all: Vec<IpAddr> = all.into_iter().collect();
        self.set_addresses(&all);
        let named = self.name_hosts(hosts);
        let fqdn = self.spec.fqdn.clone();

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

    /// The hosts of a headless Service's slices, by what identifies them (explicit hostname,
    /// pod UID, or the address alone), and every usable address; not-ready endpoints only with
    /// `include_not_ready`.
    fn collect_hosts(
        &mut self,
        slices: &[EndpointSlice],
        include_not_ready: bool,
    ) -> (BTreeMap<HostKey, Host>, BTreeSet<IpAddr>) {
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
        (hosts, all)
    }

    /// Names the hosts and bounds them as the CRD requires (a name that would make the owner
    /// name too long, and hosts beyond [`MAX_HOSTS`], are counted as omitted).
    fn name_hosts(&mut self, hosts: BTreeMap<HostKey, Host>) -> BTreeMap<String, Host> {
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
        let fqdn = &self.spec.fqdn;
        let before = named.len();
        named.retain(|name, _| name.len() + 1 + fqdn.len() <= MAX_NAME_LEN);
        self.omitted.hosts += before - named.len();
        if named.len() > MAX_HOSTS {
            self.omitted.hosts += named.len() - MAX_HOSTS;
            named = named.into_iter().take(MAX_HOSTS).collect();
        }

        named
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
