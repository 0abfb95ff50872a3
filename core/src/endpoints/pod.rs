//! Compact per-pod records and the node → zone lookup.
//!
//! Kubernetes' endpoint controllers cache whole `Pod` objects (spec, status, managed fields…)
//! although they read a dozen fields. A [`PodRecord`] keeps exactly those fields, in shared or
//! boxed strings and boxed slices, so the pod index costs a fraction of the memory and the
//! strings that end up in endpoints (`name`, `namespace`, `uid`, `nodeName`, `hostname`) are
//! shared with them instead of copied.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ContainerPort, Node, Pod};

use super::Error;

pub use crate::labels::LABEL_TOPOLOGY_ZONE;

/// A pod's lifecycle phase. Only `Succeeded` and `Failed` matter to the controller (terminal
/// pods never get endpoints); the rest are kept so a record can be inspected and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PodPhase {
    /// `Pending`, and also what an absent phase means.
    #[default]
    Pending,
    /// `Running`.
    Running,
    /// `Succeeded`: terminal, no endpoints.
    Succeeded,
    /// `Failed`: terminal, no endpoints.
    Failed,
    /// `Unknown` or a value this version does not know.
    Unknown,
}

impl PodPhase {
    /// Parses `status.phase`; an absent phase is `Pending` (the API server's default).
    pub fn parse(phase: Option<&str>) -> Self {
        match phase {
            None | Some("Pending") => Self::Pending,
            Some("Running") => Self::Running,
            Some("Succeeded") => Self::Succeeded,
            Some("Failed") => Self::Failed,
            Some(_) => Self::Unknown,
        }
    }

    /// Terminal pods (`Succeeded`/`Failed`) are excluded from endpoints, as Kubernetes does,
    /// because their IPs may already belong to another pod.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// An L4 protocol of a container or service port.
///
/// An enum rather than a string because almost every port is TCP; `Other` keeps any value the
/// API server accepted so nothing is lost.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    /// `TCP`, also what an absent protocol means (the API server's default).
    #[default]
    Tcp,
    /// `UDP`.
    Udp,
    /// `SCTP`.
    Sctp,
    /// Any other spelling, kept verbatim.
    Other(Box<str>),
}

impl Protocol {
    /// Parses a port's `protocol`; absent means `TCP`, as the API server defaults it.
    pub fn parse(protocol: Option<&str>) -> Self {
        match protocol {
            None | Some("TCP") => Self::Tcp,
            Some("UDP") => Self::Udp,
            Some("SCTP") => Self::Sctp,
            Some(other) => Self::Other(other.into()),
        }
    }

    /// The API spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
            Self::Other(s) => s,
        }
    }
}

/// A named container port. Only named ports are kept: a numeric `targetPort` is used as is and
/// never consults the pod, so unnamed container ports are never read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamedPort {
    /// The port's name (an IANA service name, unique within the pod).
    pub name: Box<str>,
    /// The container port number.
    pub port: i32,
    /// Its protocol; a named `targetPort` only matches a port of the service port's protocol.
    pub protocol: Protocol,
}

/// What the endpoints controllers need to know about one pod.
///
/// Built with [`PodRecord::from_pod`]. Fields are public so the reconciler can index them (by
/// node, by label) and tests can build records directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRecord {
    /// `metadata.namespace`; shared with every endpoint made from this pod.
    pub namespace: Arc<str>,
    /// `metadata.name`.
    pub name: Arc<str>,
    /// `metadata.uid`, for the endpoints' `targetRef`.
    pub uid: Arc<str>,
    /// `metadata.resourceVersion`: lets the reconciler tell a stale event from a new one. It
    /// never reaches an endpoint (Kubernetes leaves it out of the comparison too, so a pod
    /// update that changes nothing else writes nothing).
    pub resource_version: Box<str>,
    /// `metadata.labels`, sorted by key (binary search, no map overhead).
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// `status.podIPs` (or `status.podIP` if the list is absent), parsed, in status order,
    /// both families; unparsable entries are dropped. IPv4-mapped IPv6 addresses count as IPv4,
    /// as in Kubernetes.
    pub ips: Box<[IpAddr]>,
    /// `spec.nodeName`, if scheduled.
    pub node_name: Option<Arc<str>>,
    /// `spec.hostname`, if set and non-empty.
    pub hostname: Option<Arc<str>>,
    /// `spec.subdomain`, if set and non-empty: the hostname is published only by the Service
    /// of that name.
    pub subdomain: Option<Box<str>>,
    /// `status.phase`.
    pub phase: PodPhase,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Named ports of all containers, then of sidecars (init containers with
    /// `restartPolicy: Always`), in spec order: the order Kubernetes searches them.
    pub named_ports: Box<[NamedPort]>,
}

impl PodRecord {
    /// Extracts the record from a full `Pod`, through [`PodParts`] like the decoders that
    /// read a pod off the wire.
    ///
    /// Fails only if `metadata.name`, `metadata.namespace` or `metadata.uid` is missing, which
    /// objects from the API server always have.
    pub fn from_pod(pod: &Pod) -> Result<Self, Error> {
        let meta = &pod.metadata;
        let mut parts = PodParts {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            labels: meta
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            terminating: meta.deletion_timestamp.is_some(),
            ..PodParts::default()
        };
        if let Some(spec) = &pod.spec {
            parts.node_name = spec.node_name.clone();
            parts.hostname = spec.hostname.clone();
            parts.subdomain = spec.subdomain.clone();
            for container in &spec.containers {
                parts.container(false, None, container.ports.as_deref().unwrap_or_default());
            }
            for container in spec.init_containers.iter().flatten() {
                let ports = container.ports.as_deref().unwrap_or_default();
                parts.container(true, container.restart_policy.as_deref(), ports);
            }
        }
        if let Some(status) = &pod.status {
            parts.phase = status.phase.clone();
            parts.pod_ip = status.pod_ip.clone();
            parts.pod_ips = status
                .pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.clone())
                .collect();
            for condition in status.conditions.iter().flatten() {
                parts.condition(&condition.type_, &condition.status);
            }
        }
        parts.into_record()
    }

    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// Whether an equality-based selector (a Service's `spec.selector`) selects this pod.
    /// An empty selector selects every pod, as `labels.SelectorFromSet` does; whether an empty
    /// `spec.selector` means "no selector" is the caller's call (see
    /// [`super::desired::service_selector`]).
    pub fn matches_selector(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(k, v)| self.label(k) == Some(v.as_str()))
    }

    /// Looks up a named container port for a service port of `protocol`, first match in
    /// Kubernetes' search order.
    pub fn find_named_port(&self, name: &str, protocol: &Protocol) -> Option<i32> {
        self.named_ports
            .iter()
            .find(|p| &*p.name == name && &p.protocol == protocol)
            .map(|p| p.port)
    }

    /// Whether two records of the same pod would produce the same endpoints: everything but
    /// `resourceVersion` is compared. Lets the reconciler drop pod events that change nothing
    /// it reads (status heartbeats, annotation edits) before queueing any Service.
    pub fn same_endpoint_inputs(&self, other: &Self) -> bool {
        let Self {
            namespace,
            name,
            uid,
            resource_version: _,
            labels,
            ips,
            node_name,
            hostname,
            subdomain,
            phase,
            ready,
            terminating,
            named_ports,
        } = self;
        *namespace == other.namespace
            && *name == other.name
            && *uid == other.uid
            && *labels == other.labels
            && *ips == other.ips
            && *node_name == other.node_name
            && *hostname == other.hostname
            && *subdomain == other.subdomain
            && *phase == other.phase
            && *ready == other.ready
            && *terminating == other.terminating
            && *named_ports == other.named_ports
    }
}

/// The fields of a pod a [`PodRecord`] is made from, as a decoder reads them: JSON and
/// protobuf decoders fill it straight off the wire (no `Pod` in between, so a pod costs only
/// what its record keeps) and [`PodParts::into_record`] applies the rules every source
/// shares. Fields are the API's, unparsed; absent is `None` or empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodParts {
    /// `metadata.name`.
    pub name: Option<String>,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `metadata.labels`, in any order.
    pub labels: Vec<(Box<str>, Box<str>)>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// `spec.hostname`.
    pub hostname: Option<String>,
    /// `spec.subdomain`.
    pub subdomain: Option<String>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `status.podIP`, used when `status.podIPs` is empty.
    pub pod_ip: Option<String>,
    /// `status.podIPs[].ip`, in status order.
    pub pod_ips: Vec<String>,
    /// Some `status.conditions` entry is `Ready: True` (see [`PodParts::condition`]).
    pub ready: bool,
    /// Named ports of the regular containers, in spec order.
    container_ports: Vec<NamedPort>,
    /// Named ports of the sidecars, in spec order: searched after the containers'.
    sidecar_ports: Vec<NamedPort>,
}

impl PodParts {
    /// Reads one `status.conditions` entry: only `Ready` with status `True` counts.
    pub fn condition(&mut self, type_: &str, status: &str) {
        self.ready |= type_ == "Ready" && status == "True";
    }

    /// Adds a container's named ports: every regular container's, and an init container's
    /// only when it is a sidecar (`restartPolicy: Always`), whose ports Kubernetes searches
    /// after all the regular containers'.
    pub fn container(&mut self, init: bool, restart_policy: Option<&str>, ports: &[ContainerPort]) {
        let out = match (init, restart_policy) {
            (false, _) => &mut self.container_ports,
            (true, Some("Always")) => &mut self.sidecar_ports,
            (true, _) => return,
        };
        for port in ports {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                out.push(NamedPort {
                    name: name.into(),
                    port: port.container_port,
                    protocol: Protocol::parse(port.protocol.as_deref()),
                });
            }
        }
    }

    /// The record: labels sorted, addresses parsed (`podIPs`, else `podIP`; unparsable ones
    /// dropped, repeats once), empty strings as absent. Fails only if the name, namespace or
    /// uid is missing.
    pub fn into_record(self) -> Result<PodRecord, Error> {
        let name = self.name.ok_or(Error::MissingField("metadata.name"))?;
        let namespace = self
            .namespace
            .ok_or(Error::MissingField("metadata.namespace"))?;
        let uid = self.uid.ok_or(Error::MissingField("metadata.uid"))?;

        let mut labels = self.labels;
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        let mut ips: Vec<IpAddr> = Vec::new();
        if self.pod_ips.is_empty() {
            ips.extend(self.pod_ip.as_deref().and_then(parse_ip_sloppy));
        } else {
            for ip in self.pod_ips.iter().filter_map(|ip| parse_ip_sloppy(ip)) {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }

        let mut named_ports = self.container_ports;
        named_ports.extend(self.sidecar_ports);
        Ok(PodRecord {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            resource_version: self.resource_version.unwrap_or_default().into(),
            labels: labels.into_boxed_slice(),
            ips: ips.into_boxed_slice(),
            node_name: non_empty(self.node_name.as_ref()).map(Arc::from),
            hostname: non_empty(self.hostname.as_ref()).map(Arc::from),
            subdomain: non_empty(self.subdomain.as_ref()).map(Box::from),
            phase: PodPhase::parse(self.phase.as_deref()),
            ready: self.ready,
            terminating: self.terminating,
            named_ports: named_ports.into_boxed_slice(),
        })
    }
}

fn non_empty(s: Option<&String>) -> Option<&str> {
    s.map(String::as_str).filter(|s| !s.is_empty())
}

/// Parses an IP the way Kubernetes' `ParseIPSloppy` does: also accepts IPv4 octets with
/// leading zeros (read as decimal, for objects written before stricter validation), and
/// treats IPv4-mapped IPv6 addresses as IPv4. Returns the canonical address, so endpoints are
/// always written in canonical form.
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4, as Go's `net.IP` treats it.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Node name → zone (the node's `topology.kubernetes.io/zone` label), filled by the caller
/// from its Node watch.
///
/// Only the zone is kept because it is all endpoints read from a Node; zone strings are shared
/// between nodes and with the endpoints that carry them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeZones {
    zones: HashMap<Arc<str>, Arc<str>>,
}

impl NodeZones {
    /// An empty lookup.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or, with `None`, clears) the zone of `node`. Returns whether anything changed, so
    /// the caller re-queues the Services with pods on that node only when it did.
    pub fn set(&mut self, node: &str, zone: Option<&str>) -> bool {
        match zone.filter(|z| !z.is_empty()) {
            None => self.zones.remove(node).is_some(),
            Some(zone) => {
                if self.zones.get(node).is_some_and(|z| &**z == zone) {
                    return false;
                }
                // Reuse an existing allocation of this zone: there are few distinct zones.
                let shared = self
                    .zones
                    .values()
                    .find(|z| &***z == zone)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(zone));
                self.zones.insert(Arc::from(node), shared);
                true
            }
        }
    }

    /// Records a Node's zone from its labels. Returns whether anything changed.
    pub fn apply_node(&mut self, node: &Node) -> bool {
        let Some(name) = node.metadata.name.as_deref() else {
            return false;
        };
        let zone = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_TOPOLOGY_ZONE))
            .map(String::as_str);
        self.set(name, zone)
    }

    /// Forgets a deleted node. Returns whether it had a zone.
    pub fn remove(&mut self, node: &str) -> bool {
        self.zones.remove(node).is_some()
    }

    /// The zone of `node`, if known.
    pub fn zone(&self, node: &str) -> Option<&Arc<str>> {
        self.zones.get(node)
    }
}

impl<N: AsRef<str>, Z: AsRef<str>> FromIterator<(N, Z)> for NodeZones {
    fn from_iter<I: IntoIterator<Item = (N, Z)>>(iter: I) -> Self {
        let mut zones = Self::new();
        for (node, zone) in iter {
            zones.set(node.as_ref(), Some(zone.as_ref()));
        }
        zones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn record_keeps_what_endpoints_read() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                          "labels": {"b": "2", "app": "web"},
                          "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "nodeName": "n1", "hostname": "h", "subdomain": "svc",
                "containers": [
                    {"name": "c", "ports": [{"containerPort": 80}, {"name": "http", "containerPort": 8080}]}
                ],
                "initContainers": [
                    {"name": "side", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "UDP"}]},
                    {"name": "init", "ports": [{"name": "ignored", "containerPort": 1}]}
                ]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}, {"ip": "bogus"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let r = PodRecord::from_pod(&p).unwrap();
        assert_eq!(&*r.name, "web-1");
        assert_eq!(&*r.resource_version, "7");
        assert_eq!(r.label("app"), Some("web"));
        assert_eq!(r.label("zzz"), None);
        assert_eq!(
            &*r.ips,
            &[
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        assert_eq!(r.node_name.as_deref(), Some("n1"));
        assert_eq!(r.hostname.as_deref(), Some("h"));
        assert_eq!(r.subdomain.as_deref(), Some("svc"));
        assert_eq!(r.phase, PodPhase::Running);
        assert!(r.ready && r.terminating);
        assert_eq!(r.find_named_port("http", &Protocol::Tcp), Some(8080));
        assert_eq!(r.find_named_port("http", &Protocol::Udp), None);
        assert_eq!(r.find_named_port("metrics", &Protocol::Udp), Some(9090));
        assert_eq!(r.find_named_port("ignored", &Protocol::Tcp), None);
        let sel = BTreeMap::from([("app".to_string(), "web".to_string())]);
        assert!(r.matches_selector(&sel));
        assert!(r.matches_selector(&BTreeMap::new()));
        let other = BTreeMap::from([("app".to_string(), "db".to_string())]);
        assert!(!r.matches_selector(&other));

        let mut newer = r.clone();
        newer.resource_version = "8".into();
        assert!(r.same_endpoint_inputs(&newer));
        newer.ready = false;
        assert!(!r.same_endpoint_inputs(&newer));
    }

    #[test]
    fn record_falls_back_to_pod_ip_and_needs_identity() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "a", "namespace": "ns", "uid": "u"},
            "status": {"podIP": "010.000.000.001"}
        }));
        let r = PodRecord::from_pod(&p).unwrap();
        assert_eq!(&*r.ips, &["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(!r.ready && !r.terminating);
        assert_eq!(r.phase, PodPhase::Pending);

        let nameless = pod(serde_json::json!({"metadata": {"namespace": "ns", "uid": "u"}}));
        assert!(matches!(
            PodRecord::from_pod(&nameless),
            Err(Error::MissingField("metadata.name"))
        ));
    }

    #[test]
    fn sloppy_ip_parsing() {
        assert_eq!(parse_ip_sloppy("::ffff:1.2.3.4"), "1.2.3.4".parse().ok());
        assert_eq!(parse_ip_sloppy("1.2.3"), None);
        assert_eq!(parse_ip_sloppy("1.2.3.4.5"), None);
        assert_eq!(parse_ip_sloppy("1.2.3.256"), None);
        assert_eq!(parse_ip_sloppy("+1.2.3.4"), None);
    }

    #[test]
    fn node_zones_report_changes() {
        let mut z = NodeZones::new();
        assert!(z.set("n1", Some("a")));
        assert!(!z.set("n1", Some("a")));
        assert!(z.set("n2", Some("a")));
        assert!(Arc::ptr_eq(z.zone("n1").unwrap(), z.zone("n2").unwrap()));
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {LABEL_TOPOLOGY_ZONE: "b"}}
        }))
        .unwrap();
        assert!(z.apply_node(&node));
        assert_eq!(z.zone("n1").map(|s| &**s), Some("b"));
        assert!(z.set("n1", None));
        assert!(!z.remove("n1"));
        assert!(z.remove("n2"));
        let z: NodeZones = [("n", "z")].into_iter().collect();
        assert_eq!(z.zone("n").map(|s| &**s), Some("z"));
    }
}
