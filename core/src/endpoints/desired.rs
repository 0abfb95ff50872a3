//! Service + selected pods + node zones → the endpoints the Service should have.
//!
//! Computed once per sync and rendered twice: into EndpointSlices ([`super::slices`]) and into
//! the legacy Endpoints object ([`super::legacy`]). The rules follow Kubernetes'
//! endpointslice controller (`podToEndpoint`, `getEndpointPorts`, `FindPort`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, ForNode, ForZone,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{NodeZones, PodRecord, Protocol, parse_ip_sloppy};

/// An EndpointSlice address type. `FQDN` is never produced for pods, so it is not modelled;
/// slices of that type are foreign to this controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressType {
    /// `IPv4`.
    IPv4,
    /// `IPv6`.
    IPv6,
}

impl AddressType {
    /// The API spelling, used both for `EndpointSlice.addressType` and `spec.ipFamilies`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IPv4 => "IPv4",
            Self::IPv6 => "IPv6",
        }
    }

    /// Parses an address type or IP family name (`IPv4`/`IPv6`); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(Self::IPv4),
            "IPv6" => Some(Self::IPv6),
            _ => None,
        }
    }

    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::IPv4,
            IpAddr::V6(_) => Self::IPv6,
        }
    }
}

/// A service port resolved for one pod: the service port's name, protocol and appProtocol with
/// the pod's port number.
///
/// Ordered so a port list can be kept sorted, which makes "same port set" a plain `==` no
/// matter in which order the Service or an existing slice lists its ports.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolvedPort {
    /// The service port's name (`""` for a single unnamed port, as Kubernetes writes it).
    pub name: Arc<str>,
    /// The pod's port number.
    pub port: i32,
    /// The service port's protocol.
    pub protocol: Protocol,
    /// The service port's `appProtocol`, passed through.
    pub app_protocol: Option<Arc<str>>,
}

impl ResolvedPort {
    /// The EndpointSlice form. Name and protocol are always set, as Kubernetes writes them.
    pub fn to_slice_port(&self) -> EndpointPort {
        EndpointPort {
            name: Some(self.name.to_string()),
            port: Some(self.port),
            protocol: Some(self.protocol.as_str().to_string()),
            app_protocol: self.app_protocol.as_deref().map(str::to_string),
        }
    }

    /// Reads an existing slice's port, treating an absent name as `""` and an absent protocol
    /// as TCP (what the API server would store for what we write). An absent port number
    /// ("all ports") becomes 0, which no resolved port has.
    pub fn from_slice_port(port: &EndpointPort) -> Self {
        Self {
            name: Arc::from(port.name.as_deref().unwrap_or("")),
            port: port.port.unwrap_or(0),
            protocol: Protocol::parse(port.protocol.as_deref()),
            app_protocol: port.app_protocol.as_deref().map(Arc::from),
        }
    }
}

/// The pod an endpoint points at (`targetRef`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    /// The pod's namespace (the Service's).
    pub namespace: Arc<str>,
    /// The pod's name.
    pub name: Arc<str>,
    /// The pod's uid, so a recreated pod of the same name is a different target.
    pub uid: Arc<str>,
}

/// One endpoint as it should be: one pod's addresses of one family.
///
/// Strings are shared with the [`PodRecord`] and [`NodeZones`] they came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DesiredEndpoint {
    /// The pod's IPs of the endpoint's family, canonical, in pod status order (normally one).
    pub addresses: Box<[IpAddr]>,
    /// Ready condition true and not terminating, or `publishNotReadyAddresses`.
    pub ready: bool,
    /// Ready condition true (or `publishNotReadyAddresses`), regardless of termination.
    pub serving: bool,
    /// The pod has a deletion timestamp.
    pub terminating: bool,
    /// The pod's node.
    pub node_name: Option<Arc<str>>,
    /// The node's zone, if the node has one.
    pub zone: Option<Arc<str>>,
    /// The pod's `spec.hostname` when its `spec.subdomain` names this Service.
    pub hostname: Option<Arc<str>>,
    /// The topology hints it carries (see [`Distribution`]).
    pub hints: Option<Hints>,
    /// The pod.
    pub pod: PodRef,
}

/// How a Service asks for its traffic to be spread (`spec.trafficDistribution`), which decides
/// the topology hints of its endpoints as Kubernetes' endpointslice controller writes them:
/// proxies that honour hints keep a client's traffic in its zone (or on its node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distribution {
    /// No preference (or a value this version does not know): no hints.
    #[default]
    Anywhere,
    /// `PreferSameZone`, or the older `PreferClose`: each ready endpoint is hinted for its
    /// zone.
    SameZone,
    /// `PreferSameNode`: each ready endpoint is hinted for its zone and its node.
    SameNode,
}

impl Distribution {
    /// The Service's distribution.
    pub fn of(service: &Service) -> Self {
        match service
            .spec
            .as_ref()
            .and_then(|s| s.traffic_distribution.as_deref())
        {
            Some("PreferClose" | "PreferSameZone") => Self::SameZone,
            Some("PreferSameNode") => Self::SameNode,
            _ => Self::Anywhere,
        }
    }

    /// The hints of an endpoint that is `ready`, in `zone`, on `node`: only ready endpoints
    /// are hinted, and an endpoint with neither a zone nor (for same-node) a node gets none.
    fn hints(self, ready: bool, zone: Option<&Arc<str>>, node: Option<&Arc<str>>) -> Option<Hints> {
        if self == Self::Anywhere || !ready {
            return None;
        }
        let hints = Hints {
            zone: zone.cloned(),
            node: node.filter(|_| self == Self::SameNode).cloned(),
        };
        (hints.zone.is_some() || hints.node.is_some()).then_some(hints)
    }
}

/// An endpoint's topology hints: the zone and the node it is meant for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hints {
    /// `hints.forZones`: one zone, the endpoint's.
    pub zone: Option<Arc<str>>,
    /// `hints.forNodes`: one node, the endpoint's.
    pub node: Option<Arc<str>>,
}

impl Hints {
    fn to_api(&self) -> EndpointHints {
        EndpointHints {
            for_zones: self.zone.as_deref().map(|name| {
                vec![ForZone {
                    name: name.to_string(),
                }]
            }),
            for_nodes: self.node.as_deref().map(|name| {
                vec![ForNode {
                    name: name.to_string(),
                }]
            }),
        }
    }

    /// Whether `existing` (an endpoint's hints as written) says exactly this.
    fn matches(hints: Option<&Self>, existing: Option<&EndpointHints>) -> bool {
        let one = |names: Option<Vec<&str>>, want: Option<&str>| match (names, want) {
            (None, None) => true,
            (Some(names), None) => names.is_empty(),
            (Some(names), Some(want)) => names == [want],
            (None, Some(_)) => false,
        };
        match (hints, existing) {
            (None, None) => true,
            (None, Some(e)) => {
                e.for_zones.as_ref().is_none_or(Vec::is_empty)
                    && e.for_nodes.as_ref().is_none_or(Vec::is_empty)
            }
            (Some(_), None) => false,
            (Some(h), Some(e)) => {
                let zones = e
                    .for_zones
                    .as_ref()
                    .map(|z| z.iter().map(|z| z.name.as_str()).collect());
                let nodes = e
                    .for_nodes
                    .as_ref()
                    .map(|n| n.iter().map(|n| n.name.as_str()).collect());
                one(zones, h.zone.as_deref()) && one(nodes, h.node.as_deref())
            }
        }
    }
}

impl DesiredEndpoint {
    /// The EndpointSlice form. All three conditions are always set, as Kubernetes writes them.
    pub fn to_endpoint(&self) -> Endpoint {
        Endpoint {
            addresses: self.addresses.iter().map(IpAddr::to_string).collect(),
            conditions: Some(EndpointConditions {
                ready: Some(self.ready),
                serving: Some(self.serving),
                terminating: Some(self.terminating),
            }),
            node_name: self.node_name.as_deref().map(str::to_string),
            zone: self.zone.as_deref().map(str::to_string),
            hostname: self.hostname.as_deref().map(str::to_string),
            target_ref: Some(self.object_reference()),
            deprecated_topology: None,
            hints: self.hints.as_ref().map(Hints::to_api),
        }
    }

    /// `targetRef`: kind Pod with namespace, name and uid (no resourceVersion, so pod updates
    /// that change nothing else do not change the endpoint).
    pub fn object_reference(&self) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".to_string()),
            namespace: Some(self.pod.namespace.to_string()),
            name: Some(self.pod.name.to_string()),
            uid: Some(self.pod.uid.to_string()),
            ..ObjectReference::default()
        }
    }

    /// Whether an existing slice endpoint is this endpoint, possibly in an outdated state:
    /// same target pod (namespace and name) and same address set. This is the identity
    /// Kubernetes hashes endpoints by (less the hostname, which cannot change for a pod), so an
    /// endpoint that stays keeps its slice even when its conditions change.
    pub fn same_identity(&self, existing: &Endpoint) -> bool {
        let Some(target) = existing.target_ref.as_ref() else {
            return false;
        };
        target.name.as_deref() == Some(&*self.pod.name)
            && target.namespace.as_deref() == Some(&*self.pod.namespace)
            && self.same_addresses(&existing.addresses)
    }

    /// Whether an existing slice endpoint says exactly what this one says: address set,
    /// conditions, node, zone, hostname, target (ignoring the target's resourceVersion) and
    /// hints. Address order does not matter; nothing is allocated.
    pub fn matches(&self, existing: &Endpoint) -> bool {
        let conditions_match = existing.conditions.as_ref().is_some_and(|c| {
            c.ready == Some(self.ready)
                && c.serving == Some(self.serving)
                && c.terminating == Some(self.terminating)
        });
        let target_matches = existing.target_ref.as_ref().is_some_and(|t| {
            t.kind.as_deref() == Some("Pod")
                && t.namespace.as_deref() == Some(&*self.pod.namespace)
                && t.name.as_deref() == Some(&*self.pod.name)
                && t.uid.as_deref() == Some(&*self.pod.uid)
                && t.api_version.is_none()
                && t.field_path.is_none()
        });
        conditions_match
            && target_matches
            && self.same_addresses(&existing.addresses)
            && existing.node_name.as_deref() == self.node_name.as_deref()
            && existing.zone.as_deref() == self.zone.as_deref()
            && existing.hostname.as_deref() == self.hostname.as_deref()
            && Hints::matches(self.hints.as_ref(), existing.hints.as_ref())
            && existing
                .deprecated_topology
                .as_ref()
                .is_none_or(|t| t.is_empty())
    }

    /// Set equality between our (duplicate-free) addresses and an existing endpoint's
    /// strings: equal length plus containment both ways rules out duplicates on their side.
    fn same_addresses(&self, existing: &[String]) -> bool {
        existing.len() == self.addresses.len()
            && existing
                .iter()
                .all(|a| parse_ip_sloppy(a).is_some_and(|ip| self.addresses.contains(&ip)))
            && self.addresses.iter().all(|ip| {
                existing
                    .iter()
                    .any(|a| parse_ip_sloppy(a).as_ref() == Some(ip))
            })
    }

    /// The order endpoints are written in: by pod, then addresses. Deterministic, so
    /// rewriting unchanged content produces identical objects.
    pub fn sort_key(&self) -> (&str, &str, &[IpAddr]) {
        (&self.pod.namespace, &self.pod.name, &self.addresses)
    }
}

/// The endpoints of one address type that share one resolved port list; they go into the
/// same slices (a slice has one address type and one port list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointGroup {
    /// The address type of every endpoint in the group.
    pub address_type: AddressType,
    /// The resolved ports, sorted.
    pub ports: Vec<ResolvedPort>,
    /// The endpoints, sorted by [`DesiredEndpoint::sort_key`], never empty.
    pub endpoints: Vec<DesiredEndpoint>,
}

/// Everything the Service's endpoints should say, independent of how it is packed into
/// objects.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DesiredEndpoints {
    /// The address types the Service wants slices for, sorted: its `spec.ipFamilies`, or if
    /// that is empty the families its pods have. Slices of other types are deleted; a wanted
    /// type without endpoints gets one empty placeholder slice, as in Kubernetes.
    pub address_types: Vec<AddressType>,
    /// The family of the legacy Endpoints object (which holds one family): the first of
    /// `spec.ipFamilies`, else the ClusterIP's family, else the first wanted type.
    pub primary_address_type: Option<AddressType>,
    /// `spec.publishNotReadyAddresses`: the legacy Endpoints object then also keeps
    /// terminating pods (as ready).
    pub publish_not_ready_addresses: bool,
    /// Endpoint groups sorted by (address type, ports); a type appears here only if it is
    /// wanted, and no group is empty.
    pub groups: Vec<EndpointGroup>,
}

impl DesiredEndpoints {
    /// The number of endpoints over all groups.
    pub fn endpoint_count(&self) -> usize {
        self.groups.iter().map(|g| g.endpoints.len()).sum()
    }

    /// The groups of one address type.
    pub fn groups_of(&self, address_type: AddressType) -> impl Iterator<Item = &EndpointGroup> {
        self.groups
            .iter()
            .filter(move |g| g.address_type == address_type)
    }
}

/// The selector that makes a Service's endpoints ours, or `None` when this controller must not
/// touch them: ExternalName Services and Services without a selector (their Endpoints are
/// user-managed, and mirrored instead). An empty selector counts as none, because the API
/// server omits empty maps, so Kubernetes' controller sees nil.
pub fn service_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Equality-based selector match over a plain label map (for objects other than
/// [`PodRecord`], which has [`PodRecord::matches_selector`]).
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A service port before resolution against a pod.
struct PortTemplate {
    name: Arc<str>,
    target: Target,
    protocol: Protocol,
    app_protocol: Option<Arc<str>>,
}

enum Target {
    Number(i32),
    Named(Box<str>),
}

impl PortTemplate {
    fn new(port: &ServicePort) -> Self {
        // The API server defaults a missing, 0 or "" targetPort to the port itself.
        let target = match &port.target_port {
            Some(IntOrString::Int(n)) if *n != 0 => Target::Number(*n),
            Some(IntOrString::String(s)) if !s.is_empty() => Target::Named(s.as_str().into()),
            _ => Target::Number(port.port),
        };
        Self {
            name: Arc::from(port.name.as_deref().unwrap_or("")),
            target,
            protocol: Protocol::parse(port.protocol.as_deref()),
            app_protocol: port.app_protocol.as_deref().map(Arc::from),
        }
    }

    /// The pod's port for this service port; `None` if a named target is not declared by
    /// the pod with the service port's protocol (the port is then left out for that pod).
    fn resolve(&self, pod: &PodRecord) -> Option<ResolvedPort> {
        let port = match &self.target {
            Target::Number(n) => *n,
            Target::Named(name) => pod.find_named_port(name, &self.protocol)?,
        };
        Some(ResolvedPort {
            name: self.name.clone(),
            port,
            protocol: self.protocol.clone(),
            app_protocol: self.app_protocol.clone(),
        })
    }
}

/// Computes the Service's desired endpoints from its pods.
///
/// `pods` may be any superset of the selected pods (say, the namespace's pods): pods in other
/// namespaces or not matching [`service_selector`] are skipped, and a Service without one gets
/// no endpoints. A pod passed twice counts once. Terminal pods (Succeeded/Failed) and pods
/// without an IP of a family give no endpoint of that family.
///
/// Unlike Kubernetes, a pod on a node missing from `zones` is kept (just without a zone):
/// `zones` only knows nodes with a zone label, so absence does not mean the node is gone.
pub fn desired_endpoints<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a PodRecord>,
    zones: &NodeZones,
) -> DesiredEndpoints {
    let spec = service.spec.as_ref();
    let publish_not_ready = spec
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let declared_families: Vec<AddressType> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| AddressType::parse(f))
        .collect();
    let (groups, pod_families) = group_pods(service, pods, zones);

    let mut address_types = if declared_families.is_empty() {
        pod_families
    } else {
        declared_families.clone()
    };
    address_types.sort();
    address_types.dedup();

    let cluster_ip_family = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(parse_ip_sloppy)
        .map(|ip| AddressType::of(&ip));
    let primary_address_type = declared_families
        .first()
        .copied()
        .or(cluster_ip_family)
        .or_else(|| address_types.first().copied());

    let groups = groups
        .into_iter()
        .filter(|((family, _), _)| address_types.contains(family))
        .map(|((address_type, ports), mut endpoints)| {
            endpoints.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            endpoints.dedup_by(|a, b| a.sort_key() == b.sort_key());
            EndpointGroup {
                address_type,
                ports,
                endpoints,
            }
        })
        .collect();

    DesiredEndpoints {
        address_types,
        primary_address_type,
        publish_not_ready_addresses: publish_not_ready,
        groups,
    }
}

/// The endpoints of the pods a Service selects, by (family, resolved ports), not yet sorted.
type PodGroups = BTreeMap<(AddressType, Vec<ResolvedPort>), Vec<DesiredEndpoint>>;

/// Groups the endpoints of the Service's live pods in its namespace, and lists the families
/// they have addresses of in the order first seen: what [`desired_endpoints`] then narrows to
/// the Service's families and sorts.
fn group_pods<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a PodRecord>,
    zones: &NodeZones,
) -> (PodGroups, Vec<AddressType>) {
    let spec = service.spec.as_ref();
    let name = service.metadata.name.as_deref().unwrap_or("");
    let namespace = service.metadata.namespace.as_deref().unwrap_or("");
    let publish_not_ready = spec
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let distribution = Distribution::of(service);
    let templates: Vec<PortTemplate> = spec
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(PortTemplate::new)
        .collect();
    let selector = service_selector(service);

    let mut groups = PodGroups::new();
    let mut pod_families: Vec<AddressType> = Vec::new();
    for pod in pods {
        let selected = selector.is_some_and(|s| pod.matches_selector(s));
        if !selected || &*pod.namespace != namespace || pod.phase.is_terminal() {
            continue;
        }
        let mut ports: Vec<ResolvedPort> =
            templates.iter().filter_map(|t| t.resolve(pod)).collect();
        ports.sort();
        ports.dedup();
        for (family, endpoint) in pod_endpoints(pod, publish_not_ready, name, zones, distribution) {
            if !pod_families.contains(&family) {
                pod_families.push(family);
            }
            groups
                .entry((family, ports.clone()))
                .or_default()
                .push(endpoint);
        }
    }
    (groups, pod_families)
}

/// The endpoints of a selected pod: one per address family it has an address of. Ready
/// means Ready and not terminating, serving means Ready; `publishNotReadyAddresses` makes both
/// true. The pod's hostname counts only when its subdomain is the Service's name.
fn pod_endpoints(
    pod: &PodRecord,
    publish_not_ready: bool,
    service_name: &str,
    zones: &NodeZones,
    distribution: Distribution,
) -> Vec<(AddressType, DesiredEndpoint)> {
    let serving = publish_not_ready || pod.ready;
    let ready = publish_not_ready || (pod.ready && !pod.terminating);
    let hostname = pod
        .hostname
        .clone()
        .filter(|_| pod.subdomain.as_deref() == Some(service_name));
    let zone = pod.node_name.as_deref().and_then(|n| zones.zone(n));
    let hints = distribution.hints(ready, zone, pod.node_name.as_ref());
    let mut out = Vec::new();
    for family in [AddressType::IPv4, AddressType::IPv6] {
        let addresses: Box<[IpAddr]> = pod
            .ips
            .iter()
            .filter(|ip| AddressType::of(ip) == family)
            .copied()
            .collect();
        if addresses.is_empty() {
            continue;
        }
        let endpoint = DesiredEndpoint {
            addresses,
            ready,
            serving,
            terminating: pod.terminating,
            node_name: pod.node_name.clone(),
            zone: zone.cloned(),
            hostname: hostname.clone(),
            hints: hints.clone(),
            pod: PodRef {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
            },
        };
        out.push((family, endpoint));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A pod record for tests: `ips`, ready, terminating, phase and named ports vary.
    pub(crate) fn pod_record(name: &str, ips: &[&str], ready: bool) -> PodRecord {
        PodRecord::from_pod(
            &serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                              "labels": {"app": "web"}},
                "spec": {"containers": [], "nodeName": "node-a"},
                "status": {
                    "phase": "Running",
                    "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
                }
            }))
            .unwrap(),
        )
        .unwrap()
    }

    pub(crate) fn service(spec: serde_json::Value) -> Service {
        let mut spec = spec;
        let obj = spec.as_object_mut().unwrap();
        obj.entry("selector").or_insert(json!({"app": "web"}));
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"team": "a"}},
            "spec": spec
        }))
        .unwrap()
    }

    fn with_named_port(mut pod: PodRecord, name: &str, port: i32) -> PodRecord {
        pod.named_ports = vec![super::super::pod::NamedPort {
            name: name.into(),
            port,
            protocol: Protocol::Tcp,
        }]
        .into();
        pod
    }

    fn zones() -> NodeZones {
        [("node-a", "zone-1")].into_iter().collect()
    }

    /// What one endpoint looks like in a test table: (pod, address, ready, serving, terminating).
    type Ep<'a> = (&'a str, &'a str, bool, bool, bool);

    /// An owned [`Ep`], as produced from computed endpoints.
    type OwnedEp = (String, String, bool, bool, bool);

    fn owned(ep: Ep<'_>) -> OwnedEp {
        (ep.0.into(), ep.1.into(), ep.2, ep.3, ep.4)
    }

    /// Flattens desired endpoints into (type, ports as "name:port", endpoints) for comparison.
    fn summary(d: &DesiredEndpoints) -> Vec<(AddressType, Vec<String>, Vec<OwnedEp>)> {
        d.groups
            .iter()
            .map(|g| {
                let ports = g.ports.iter().map(|p| format!("{}:{}", p.name, p.port));
                let eps = g.endpoints.iter().map(|e| {
                    let addr = e.addresses[0].to_string();
                    (
                        e.pod.name.to_string(),
                        addr,
                        e.ready,
                        e.serving,
                        e.terminating,
                    )
                });
                (g.address_type, ports.collect(), eps.collect())
            })
            .collect()
    }

    #[test]
    fn desired_endpoint_table() {
        use AddressType::{IPv4, IPv6};
        let named = json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}]});
        let mut terminating = pod_record("t", &["10.0.0.3"], true);
        terminating.terminating = true;
        let mut failed = pod_record("f", &["10.0.0.4"], true);
        failed.phase = crate::endpoints::PodPhase::Failed;
        let mut succeeded = pod_record("s", &["10.0.0.5"], false);
        succeeded.phase = crate::endpoints::PodPhase::Succeeded;
        let mut other_ns = pod_record("o", &["10.0.0.6"], true);
        other_ns.namespace = "elsewhere".into();

        struct Case {
            name: &'static str,
            spec: serde_json::Value,
            pods: Vec<PodRecord>,
            types: Vec<AddressType>,
            groups: Vec<(AddressType, Vec<&'static str>, Vec<Ep<'static>>)>,
        }
        let cases = vec![
            Case {
                name: "named targetPort resolving differently gives two port groups; unresolved port omitted",
                spec: named.clone(),
                pods: vec![
                    with_named_port(pod_record("a", &["10.0.0.1"], true), "http", 8080),
                    with_named_port(pod_record("b", &["10.0.0.2"], true), "http", 9090),
                    with_named_port(pod_record("c", &["10.0.0.3"], true), "grpc", 9090),
                ],
                types: vec![IPv4],
                groups: vec![
                    (IPv4, vec![], vec![("c", "10.0.0.3", true, true, false)]),
                    (
                        IPv4,
                        vec!["http:8080"],
                        vec![("a", "10.0.0.1", true, true, false)],
                    ),
                    (
                        IPv4,
                        vec!["http:9090"],
                        vec![("b", "10.0.0.2", true, true, false)],
                    ),
                ],
            },
            Case {
                name: "dual-stack pods with no ipFamilies give both families; missing targetPort = port",
                spec: json!({"ports": [{"name": "p", "port": 80}]}),
                pods: vec![
                    pod_record("a", &["10.0.0.1", "fd00::1"], true),
                    pod_record("b", &["fd00::2"], false),
                ],
                types: vec![IPv4, IPv6],
                groups: vec![
                    (
                        IPv4,
                        vec!["p:80"],
                        vec![("a", "10.0.0.1", true, true, false)],
                    ),
                    (
                        IPv6,
                        vec!["p:80"],
                        vec![
                            ("a", "fd00::1", true, true, false),
                            ("b", "fd00::2", false, false, false),
                        ],
                    ),
                ],
            },
            Case {
                name: "single-stack service keeps only its family",
                spec: json!({"ipFamilies": ["IPv6"], "ports": [{"port": 80, "targetPort": 8080}]}),
                pods: vec![pod_record("a", &["10.0.0.1", "fd00::1"], true)],
                types: vec![IPv6],
                groups: vec![(
                    IPv6,
                    vec![":8080"],
                    vec![("a", "fd00::1", true, true, false)],
                )],
            },
            Case {
                name: "publishNotReadyAddresses makes every endpoint ready and serving",
                spec: json!({"publishNotReadyAddresses": true, "ports": [{"port": 80}]}),
                pods: vec![pod_record("a", &["10.0.0.1"], false), terminating.clone()],
                types: vec![IPv4],
                groups: vec![(
                    IPv4,
                    vec![":80"],
                    vec![
                        ("a", "10.0.0.1", true, true, false),
                        ("t", "10.0.0.3", true, true, true),
                    ],
                )],
            },
            Case {
                name: "terminating pod is serving but not ready; terminal and foreign pods excluded",
                spec: json!({"ports": [{"port": 80}]}),
                pods: vec![terminating, failed, succeeded, other_ns],
                types: vec![IPv4],
                groups: vec![(
                    IPv4,
                    vec![":80"],
                    vec![("t", "10.0.0.3", false, true, true)],
                )],
            },
            Case {
                name: "declared families with no pods: wanted but no groups",
                spec: json!({"ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]}),
                pods: vec![],
                types: vec![IPv4, IPv6],
                groups: vec![],
            },
        ];
        for case in cases {
            let d = desired_endpoints(&service(case.spec), &case.pods, &zones());
            assert_eq!(d.address_types, case.types, "{}", case.name);
            let want: Vec<_> = case
                .groups
                .into_iter()
                .map(|(t, p, e)| {
                    let ports = p.into_iter().map(String::from).collect();
                    (t, ports, e.into_iter().map(owned).collect())
                })
                .collect();
            assert_eq!(summary(&d), want, "{}", case.name);
        }
    }

    #[test]
    fn endpoint_fields_and_selector_rules() {
        let mut pod = pod_record("a", &["10.0.0.1"], true);
        pod.hostname = Some("host".into());
        pod.subdomain = Some("web".into());
        let mut other_sub = pod_record("b", &["10.0.0.2"], true);
        other_sub.hostname = Some("host".into());
        other_sub.subdomain = Some("other".into());
        let mut unlabeled = pod_record("c", &["10.0.0.3"], true);
        unlabeled.labels = Box::new([]);
        let svc =
            service(json!({"ports": [{"port": 80, "appProtocol": "http", "protocol": "TCP"}]}));
        let d = desired_endpoints(&svc, [&pod, &other_sub, &unlabeled, &pod], &zones());
        assert_eq!(d.primary_address_type, Some(AddressType::IPv4));
        let g = &d.groups[0];
        assert_eq!(g.endpoints.len(), 2);
        assert_eq!(g.ports[0].app_protocol.as_deref(), Some("http"));
        let ep = g.endpoints[0].to_endpoint();
        assert_eq!(ep.hostname.as_deref(), Some("host"));
        assert_eq!(ep.zone.as_deref(), Some("zone-1"));
        assert_eq!(ep.node_name.as_deref(), Some("node-a"));
        let target = ep.target_ref.as_ref().unwrap();
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert_eq!(target.uid.as_deref(), Some("uid-a"));
        assert_eq!(target.namespace.as_deref(), Some("ns"));
        assert!(g.endpoints[0].matches(&ep));
        assert!(g.endpoints[1].to_endpoint().hostname.is_none());
        let slice_port = g.ports[0].to_slice_port();
        assert_eq!(ResolvedPort::from_slice_port(&slice_port), g.ports[0]);

        // A resourceVersion on the target does not matter; a flipped condition does.
        let mut ep2 = ep.clone();
        ep2.target_ref.as_mut().unwrap().resource_version = Some("9".into());
        ep2.addresses = vec!["10.0.0.1".into()];
        assert!(g.endpoints[0].matches(&ep2));
        ep2.conditions.as_mut().unwrap().ready = Some(false);
        assert!(!g.endpoints[0].matches(&ep2));
        assert!(g.endpoints[0].same_identity(&ep2));

        let external = service(json!({"type": "ExternalName", "externalName": "x"}));
        assert!(service_selector(&external).is_none());
        let no_sel = service(json!({"selector": {}}));
        assert!(service_selector(&no_sel).is_none());
        assert!(
            desired_endpoints(&no_sel, [&pod], &zones())
                .groups
                .is_empty()
        );
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        assert!(selector_matches(service_selector(&svc).unwrap(), &labels));
        assert!(!selector_matches(
            service_selector(&svc).unwrap(),
            &BTreeMap::new()
        ));
    }

    /// (zones, nodes) of each endpoint's hints, in endpoint order, as written to a slice.
    fn hints_of(d: &DesiredEndpoints) -> Vec<(Vec<String>, Vec<String>)> {
        d.groups[0]
            .endpoints
            .iter()
            .map(|e| {
                let hints = e.to_endpoint().hints.unwrap_or_default();
                let zones = hints.for_zones.unwrap_or_default();
                let nodes = hints.for_nodes.unwrap_or_default();
                (
                    zones.into_iter().map(|z| z.name).collect(),
                    nodes.into_iter().map(|n| n.name).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn traffic_distribution_hints_ready_endpoints_for_their_zone_and_node() {
        let ready = pod_record("a", &["10.0.0.1"], true);
        let unready = pod_record("b", &["10.0.0.2"], false);
        let mut zoneless = pod_record("c", &["10.0.0.3"], true);
        zoneless.node_name = Some("node-z".into());
        let pods = [&ready, &unready, &zoneless];
        let zone = || (vec!["zone-1".to_string()], vec![]);
        let none = || (vec![], vec![]);
        let cases = [
            (None, vec![none(), none(), none()]),
            (Some("PreferClose"), vec![zone(), none(), none()]),
            (Some("PreferSameZone"), vec![zone(), none(), none()]),
            (
                Some("PreferSameNode"),
                vec![
                    (vec!["zone-1".to_string()], vec!["node-a".to_string()]),
                    none(),
                    (vec![], vec!["node-z".to_string()]),
                ],
            ),
            (Some("SomethingNew"), vec![none(), none(), none()]),
        ];
        for (distribution, want) in cases {
            let svc = service(json!({"trafficDistribution": distribution}));
            let d = desired_endpoints(&svc, pods, &zones());
            assert_eq!(hints_of(&d), want, "{distribution:?}");
            // What was written is what is wanted: no rewrite of an unchanged endpoint.
            for e in &d.groups[0].endpoints {
                assert!(e.matches(&e.to_endpoint()), "{distribution:?}");
            }
        }
    }

    #[test]
    fn a_change_of_hints_alone_is_the_same_endpoint_in_another_state() {
        let pod = pod_record("a", &["10.0.0.1"], true);
        let plain = desired_endpoints(&service(json!({})), [&pod], &zones());
        let close = desired_endpoints(
            &service(json!({"trafficDistribution": "PreferSameZone"})),
            [&pod],
            &zones(),
        );
        let written = plain.groups[0].endpoints[0].to_endpoint();
        let wanted = &close.groups[0].endpoints[0];
        assert!(!wanted.matches(&written), "the hints differ");
        assert!(
            wanted.same_identity(&written),
            "so the slice is updated in place"
        );
        assert!(!plain.groups[0].endpoints[0].matches(&wanted.to_endpoint()));
    }

    #[test]
    fn primary_family_follows_ip_families_then_cluster_ip() {
        let pods = [pod_record("a", &["10.0.0.1", "fd00::1"], true)];
        let d = desired_endpoints(
            &service(json!({"ipFamilies": ["IPv6", "IPv4"]})),
            &pods,
            &zones(),
        );
        assert_eq!(d.primary_address_type, Some(AddressType::IPv6));
        let d = desired_endpoints(&service(json!({"clusterIP": "fd00::10"})), &pods, &zones());
        assert_eq!(d.primary_address_type, Some(AddressType::IPv6));
        let d = desired_endpoints(&service(json!({"clusterIP": "None"})), &pods, &zones());
        assert_eq!(d.primary_address_type, Some(AddressType::IPv4));
        assert!(d.groups.iter().all(|g| g.ports.is_empty()));
    }
}
