//! The legacy `v1` Endpoints object of a Service, rendered from the same
//! [`DesiredEndpoints`] as the slices.
//!
//! Follows Kubernetes' endpoints controller (`syncService`, `RepackSubsets`,
//! `truncateEndpoints`): one IP family (the Service's primary), terminating pods left out
//! unless `publishNotReadyAddresses`, subsets repacked so ports with the same addresses share
//! a subset, at most [`MAX_ENDPOINTS_ADDRESSES`] addresses. Unlike Kubernetes, an over-capacity
//! object that is already correctly truncated is recognised as unchanged, so it is not
//! rewritten on every sync.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::desired::DesiredEndpoints;
use super::pod::parse_ip_sloppy;
use super::{Error, is_headless, name_and_namespace};
pub use crate::labels::{
    ANNOTATION_OVER_CAPACITY, LABEL_APP_MANAGED_BY, MANAGED_BY_SIGNPOST, OVER_CAPACITY_TRUNCATED,
};
use crate::labels::{LABEL_HEADLESS, has_label};

/// Kubernetes' cap on addresses (ready plus not ready) in one Endpoints object; beyond it
/// consumers are expected to use EndpointSlices.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

/// A subset's addresses, each with whether it is ready: the ready ones first, then the not
/// ready ones, the order both the comparison here and mirroring read them in.
pub(crate) fn subset_addresses(
    subset: &EndpointSubset,
) -> impl Iterator<Item = (&EndpointAddress, bool)> {
    let ready = subset.addresses.iter().flatten().map(|a| (a, true));
    let not_ready = subset
        .not_ready_addresses
        .iter()
        .flatten()
        .map(|a| (a, false));
    ready.chain(not_ready)
}

/// Whether an Endpoints object carries Signpost's managed-by label, i.e. is ours to update.
pub fn is_managed_by_signpost(endpoints: &Endpoints) -> bool {
    has_label(
        endpoints.metadata.labels.as_ref(),
        LABEL_APP_MANAGED_BY,
        MANAGED_BY_SIGNPOST,
    )
}

/// Renders the Endpoints object the Service should have (name and namespace of the Service,
/// no resourceVersion: a create, or the content of an update via [`prepare_update`]).
///
/// Labels: the Service's labels, [`LABEL_HEADLESS`] for headless Services (as Kubernetes),
/// and [`LABEL_APP_MANAGED_BY`]` = signpost`, which overrides a Service label of that key.
/// Fails only if the Service lacks a name or namespace.
pub fn render_endpoints(service: &Service, desired: &DesiredEndpoints) -> Result<Endpoints, Error> {
    let meta = &service.metadata;
    let (name, namespace) = name_and_namespace(meta)?;
    let headless = is_headless(service);
    let has_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_some_and(|p| !p.is_empty());

    let mut subsets = repack(entries(desired, headless && !has_ports));
    let truncated = truncate(&mut subsets);
    let annotations = truncated.then(|| {
        BTreeMap::from([(
            ANNOTATION_OVER_CAPACITY.to_string(),
            OVER_CAPACITY_TRUNCATED.to_string(),
        )])
    });
    Ok(Endpoints {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(endpoints_labels(meta.labels.as_ref(), headless)),
            annotations,
            ..ObjectMeta::default()
        },
        subsets: Some(subsets),
    })
}

/// One entry per (port, address) of the primary family's endpoints: what [`repack`] groups
/// into subsets. Terminating endpoints are left out unless `publishNotReadyAddresses`.
/// `portless_subsets`: a headless Service without ports, the only kind whose pods are listed
/// without a port.
fn entries(desired: &DesiredEndpoints, portless_subsets: bool) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let Some(family) = desired.primary_address_type else {
        return entries;
    };
    for group in desired.groups_of(family) {
        // A pod none of whose ports resolve is in no subset.
        if group.ports.is_empty() && !portless_subsets {
            continue;
        }
        let ports: Vec<Option<PortKey>> = if group.ports.is_empty() {
            vec![None]
        } else {
            group
                .ports
                .iter()
                .map(|p| {
                    Some(PortKey::new(
                        Some(&p.name),
                        p.port,
                        Some(p.protocol.as_str()),
                        p.app_protocol.as_deref(),
                    ))
                })
                .collect()
        };
        for ep in &group.endpoints {
            if ep.terminating && !desired.publish_not_ready_addresses {
                continue;
            }
            let Some(ip) = ep.addresses.first() else {
                continue;
            };
            let address = EndpointAddress {
                ip: ip.to_string(),
                hostname: ep.hostname.as_deref().map(str::to_string),
                node_name: ep.node_name.as_deref().map(str::to_string),
                target_ref: Some(ep.object_reference()),
            };
            for port in &ports {
                entries.push(Entry {
                    port: port.clone(),
                    address: address.clone(),
                    ready: ep.ready,
                });
            }
        }
    }
    entries
}

/// The Endpoints object's labels: the Service's, [`LABEL_HEADLESS`] exactly when headless,
/// and the managed-by label that marks it as Signpost's (over a Service label of that key).
fn endpoints_labels(
    service_labels: Option<&BTreeMap<String, String>>,
    headless: bool,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service_labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != LABEL_HEADLESS)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if headless {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    labels.insert(
        LABEL_APP_MANAGED_BY.to_string(),
        MANAGED_BY_SIGNPOST.to_string(),
    );
    labels
}

/// Whether an existing Endpoints object already says what `desired` (from
/// [`render_endpoints`]) says, so the caller writes nothing.
///
/// Compares subsets ignoring order, packing and the targets' resourceVersions, the labels
/// exactly, and only the over-capacity annotation; server-set metadata (uid,
/// resourceVersion, managedFields…) and other annotations are ignored.
pub fn endpoints_equivalent(existing: &Endpoints, desired: &Endpoints) -> bool {
    let labels = |e: &Endpoints| e.metadata.labels.clone().unwrap_or_default();
    let capacity = |e: &Endpoints| {
        e.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_OVER_CAPACITY))
            .cloned()
    };
    if labels(existing) != labels(desired) || capacity(existing) != capacity(desired) {
        return false;
    }
    let want = normalize(desired.subsets.as_deref().unwrap_or(&[]));
    let have = existing.subsets.as_deref().unwrap_or(&[]);
    // Sorting alone is enough for what we wrote; repacking also accepts other packings. Both,
    // because a truncated object may repack differently from how it was written.
    normalize(have) == want || repack(flatten(have)) == want
}

/// The object to send as an update: the existing one (keeping its resourceVersion for a
/// conditional write, and annotations others set) with the desired labels, subsets and
/// over-capacity annotation.
pub fn prepare_update(existing: &Endpoints, desired: &Endpoints) -> Endpoints {
    let mut out = existing.clone();
    out.metadata.labels = desired.metadata.labels.clone();
    out.subsets = desired.subsets.clone();
    let mut annotations = out.metadata.annotations.take().unwrap_or_default();
    annotations.remove(ANNOTATION_OVER_CAPACITY);
    if let Some(v) = desired
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_OVER_CAPACITY))
    {
        annotations.insert(ANNOTATION_OVER_CAPACITY.to_string(), v.clone());
    }
    out.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    out
}

/// An endpoint port in normal form (empty name → none, absent protocol → TCP), ordered.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: Option<String>,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

impl PortKey {
    fn new(
        name: Option<&str>,
        port: i32,
        protocol: Option<&str>,
        app_protocol: Option<&str>,
    ) -> Self {
        Self {
            name: name.filter(|n| !n.is_empty()).map(str::to_string),
            port,
            protocol: protocol.unwrap_or("TCP").to_string(),
            app_protocol: app_protocol.map(str::to_string),
        }
    }

    fn of(port: &EndpointPort) -> Self {
        Self::new(
            port.name.as_deref(),
            port.port,
            port.protocol.as_deref(),
            port.app_protocol.as_deref(),
        )
    }

    fn to_port(&self) -> EndpointPort {
        EndpointPort {
            name: self.name.clone(),
            port: self.port,
            protocol: Some(self.protocol.clone()),
            app_protocol: self.app_protocol.clone(),
        }
    }
}

/// An address's identity, as Kubernetes keys them: IP, then target uid (none first).
type AddrKey = (String, Option<String>);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (
        a.ip.clone(),
        a.target_ref.as_ref().and_then(|t| t.uid.clone()),
    )
}

/// An address in normal form: canonical IP, empty strings as none, no target resourceVersion.
fn normal_address(a: &EndpointAddress) -> EndpointAddress {
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    EndpointAddress {
        ip: parse_ip_sloppy(&a.ip).map_or_else(|| a.ip.clone(), |ip| ip.to_string()),
        hostname: non_empty(&a.hostname),
        node_name: non_empty(&a.node_name),
        target_ref: a.target_ref.as_ref().map(|t| ObjectReference {
            resource_version: None,
            ..t.clone()
        }),
    }
}

/// One (port, address, readiness) fact; subsets are a packing of these.
struct Entry {
    /// `None`: the sentinel of a port-less subset (headless Service without ports).
    port: Option<PortKey>,
    address: EndpointAddress,
    ready: bool,
}

fn flatten(subsets: &[EndpointSubset]) -> Vec<Entry> {
    let mut out = Vec::new();
    for subset in subsets {
        let ports: Vec<Option<PortKey>> = match subset.ports.as_deref() {
            Some(ports) if !ports.is_empty() => {
                ports.iter().map(|p| Some(PortKey::of(p))).collect()
            }
            _ => vec![None],
        };
        for (address, ready) in subset_addresses(subset) {
            for port in &ports {
                out.push(Entry {
                    port: port.clone(),
                    address: normal_address(address),
                    ready,
                });
            }
        }
    }
    out
}

/// Packs facts into the fewest subsets: ports whose (address, ready) sets are identical share
/// one subset. An address not ready for a port in any fact is not ready for it. The result is
/// in normal form (see [`normalize`]).
fn repack(entries: Vec<Entry>) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    let mut per_port: BTreeMap<Option<PortKey>, BTreeMap<AddrKey, bool>> = BTreeMap::new();
    for entry in entries {
        let key = addr_key(&entry.address);
        addresses.entry(key.clone()).or_insert(entry.address);
        per_port
            .entry(entry.port)
            .or_default()
            .entry(key)
            .and_modify(|ready| *ready &= entry.ready)
            .or_insert(entry.ready);
    }
    let mut by_set: BTreeMap<Vec<(AddrKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, set) in per_port {
        let ports = by_set.entry(set.into_iter().collect()).or_default();
        ports.extend(port);
    }
    let subsets = by_set
        .into_iter()
        .map(|(set, ports)| {
            let (ready, not_ready): (Vec<_>, Vec<_>) = set.into_iter().partition(|(_, r)| *r);
            let pick = |list: Vec<(AddrKey, bool)>| {
                list.into_iter()
                    .map(|(k, _)| addresses[&k].clone())
                    .collect::<Vec<_>>()
            };
            EndpointSubset {
                addresses: Some(pick(ready)),
                not_ready_addresses: Some(pick(not_ready)),
                ports: Some(ports.iter().map(PortKey::to_port).collect()),
            }
        })
        .collect();
    normalize_owned(subsets)
}

/// Normal form of subsets for comparison and writing: addresses normalised and sorted by
/// (IP, uid), ports normalised and sorted, empty lists absent, empty subsets dropped, subsets
/// sorted.
fn normalize(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let owned = subsets
        .iter()
        .map(|s| EndpointSubset {
            addresses: s
                .addresses
                .as_ref()
                .map(|v| v.iter().map(normal_address).collect()),
            not_ready_addresses: s
                .not_ready_addresses
                .as_ref()
                .map(|v| v.iter().map(normal_address).collect()),
            ports: s
                .ports
                .as_ref()
                .map(|v| v.iter().map(|p| PortKey::of(p).to_port()).collect()),
        })
        .collect();
    normalize_owned(owned)
}

fn normalize_owned(mut subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    for s in &mut subsets {
        for list in [&mut s.addresses, &mut s.not_ready_addresses] {
            if let Some(v) = list {
                v.sort_by_key(addr_key);
            }
            if list.as_ref().is_some_and(Vec::is_empty) {
                *list = None;
            }
        }
        if let Some(ports) = &mut s.ports {
            ports.sort_by_key(PortKey::of);
        }
        if s.ports.as_ref().is_some_and(Vec::is_empty) {
            s.ports = None;
        }
    }
    subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    subsets.sort_by_cached_key(subset_key);
    subsets
}

type SubsetKey = (Vec<PortKey>, Vec<AddrKey>, Vec<AddrKey>);

fn subset_key(s: &EndpointSubset) -> SubsetKey {
    let addrs = |l: &Option<Vec<EndpointAddress>>| l.iter().flatten().map(addr_key).collect();
    (
        s.ports.iter().flatten().map(PortKey::of).collect(),
        addrs(&s.addresses),
        addrs(&s.not_ready_addresses),
    )
}

/// Caps the addresses at [`MAX_ENDPOINTS_ADDRESSES`], ready ones first, each subset keeping a
/// share proportional to its size (rounded up, the last ones get what is left), as Kubernetes
/// does. Subsets are sorted, so the lowest IPs are kept. Returns whether anything was cut.
fn truncate(subsets: &mut Vec<EndpointSubset>) -> bool {
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ENDPOINTS_ADDRESSES {
        return false;
    }
    let cut_ready = ready > MAX_ENDPOINTS_ADDRESSES;
    let (budget, total) = if cut_ready {
        (MAX_ENDPOINTS_ADDRESSES, ready)
    } else {
        (MAX_ENDPOINTS_ADDRESSES - ready, not_ready)
    };
    let mut left = budget;
    for s in subsets.iter_mut() {
        if cut_ready {
            s.not_ready_addresses = None;
        }
        let list = if cut_ready {
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        if let Some(v) = list {
            let share = (v.len() * budget).div_ceil(total).min(left);
            v.truncate(share);
            left -= v.len();
            if v.is_empty() {
                *list = None;
            }
        }
    }
    subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::desired::desired_endpoints;
    use crate::endpoints::desired::tests::{pod_record, service};
    use crate::endpoints::pod::{NamedPort, NodeZones, PodPhase, PodRecord, Protocol};
    use serde_json::json;

    fn named(mut pod: PodRecord, port: i32) -> PodRecord {
        pod.named_ports = vec![NamedPort {
            name: "http".into(),
            port,
            protocol: Protocol::Tcp,
        }]
        .into();
        pod
    }

    fn render(spec: serde_json::Value, pods: &[PodRecord]) -> Endpoints {
        let svc = service(spec);
        let desired = desired_endpoints(&svc, pods, &NodeZones::new());
        render_endpoints(&svc, &desired).unwrap()
    }

    /// A subset as (ports "name:port", ready IPs, not-ready IPs).
    type Summary = (Vec<String>, Vec<String>, Vec<String>);

    fn summary(e: &Endpoints) -> Vec<Summary> {
        let ips =
            |l: &Option<Vec<EndpointAddress>>| l.iter().flatten().map(|a| a.ip.clone()).collect();
        e.subsets
            .iter()
            .flatten()
            .map(|s| {
                let ports = s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.port))
                    .collect();
                (ports, ips(&s.addresses), ips(&s.not_ready_addresses))
            })
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn endpoints_table() {
        let mut terminating = pod_record("t", &["10.0.0.3"], true);
        terminating.terminating = true;
        let mut failed = pod_record("f", &["10.0.0.4"], true);
        failed.phase = PodPhase::Failed;
        let two_ports = json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]});

        let cases: Vec<(&str, serde_json::Value, Vec<PodRecord>, Vec<Summary>)> = vec![
            (
                "named targetPort resolving differently: two subsets; unresolved pod left out",
                json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
                vec![
                    named(pod_record("a", &["10.0.0.1"], true), 8080),
                    named(pod_record("b", &["10.0.0.2"], false), 9090),
                    pod_record("c", &["10.0.0.3"], true),
                ],
                vec![
                    (s(&["http:8080"]), s(&["10.0.0.1"]), s(&[])),
                    (s(&["http:9090"]), s(&[]), s(&["10.0.0.2"])),
                ],
            ),
            (
                "ports with the same addresses share a subset; ready and not ready split",
                two_ports.clone(),
                vec![
                    pod_record("a", &["10.0.0.1"], true),
                    pod_record("b", &["10.0.0.2"], false),
                ],
                vec![(s(&["a:80", "b:81"]), s(&["10.0.0.1"]), s(&["10.0.0.2"]))],
            ),
            (
                "dual-stack pods: only the primary family",
                json!({"ipFamilies": ["IPv6", "IPv4"], "ports": [{"port": 80}]}),
                vec![pod_record("a", &["10.0.0.1", "fd00::1"], true)],
                vec![(s(&[":80"]), s(&["fd00::1"]), s(&[]))],
            ),
            (
                "terminating pod left out, Failed pod excluded",
                json!({"ports": [{"port": 80}]}),
                vec![
                    terminating.clone(),
                    failed.clone(),
                    pod_record("a", &["10.0.0.1"], false),
                ],
                vec![(s(&[":80"]), s(&[]), s(&["10.0.0.1"]))],
            ),
            (
                "publishNotReadyAddresses: not-ready and terminating pods are ready",
                json!({"publishNotReadyAddresses": true, "ports": [{"port": 80}]}),
                vec![terminating, failed, pod_record("a", &["10.0.0.1"], false)],
                vec![(s(&[":80"]), s(&["10.0.0.1", "10.0.0.3"]), s(&[]))],
            ),
            (
                "headless without ports: a port-less subset",
                json!({"clusterIP": "None"}),
                vec![pod_record("a", &["10.0.0.1"], true)],
                vec![(s(&[]), s(&["10.0.0.1"]), s(&[]))],
            ),
            ("no pods: no subsets", two_ports, vec![], vec![]),
        ];
        for (name, spec, pods, want) in cases {
            let e = render(spec, &pods);
            assert_eq!(summary(&e), want, "{name}");
            assert!(endpoints_equivalent(&e, &e), "{name}");
            assert!(e.metadata.annotations.is_none(), "{name}");
        }
    }

    #[test]
    fn metadata_and_address_fields() {
        let mut pod = pod_record("a", &["10.0.0.1"], true);
        pod.hostname = Some("h".into());
        pod.subdomain = Some("web".into());
        let e = render(
            json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}),
            &[pod],
        );
        assert_eq!(e.metadata.name.as_deref(), Some("web"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        let labels = e.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_APP_MANAGED_BY], MANAGED_BY_SIGNPOST);
        assert_eq!(labels["team"], "a");
        assert!(!labels.contains_key(LABEL_HEADLESS));
        assert!(is_managed_by_signpost(&e));
        let addr = &e.subsets.as_ref().unwrap()[0].addresses.as_ref().unwrap()[0];
        assert_eq!(addr.hostname.as_deref(), Some("h"));
        assert_eq!(addr.node_name.as_deref(), Some("node-a"));
        let target = addr.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.name.as_deref(),
                target.uid.as_deref()
            ),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
    }

    #[test]
    fn over_capacity_is_truncated_ready_first() {
        let mut pods = Vec::new();
        for i in 0..1200 {
            let ip = format!("10.0.{}.{}", i / 200, i % 200 + 1);
            pods.push(pod_record(&format!("p{i}"), &[&ip], i < 900));
        }
        let e = render(json!({"ports": [{"port": 80}]}), &pods);
        let subset = &e.subsets.as_ref().unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap().len(), 900);
        assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 100);
        assert_eq!(
            e.metadata.annotations.as_ref().unwrap()[ANNOTATION_OVER_CAPACITY],
            OVER_CAPACITY_TRUNCATED
        );
        assert!(endpoints_equivalent(&e, &e));

        // More ready than the cap: ready split proportionally, not-ready dropped.
        let mut pods = Vec::new();
        for i in 0..1500 {
            let ip = format!("10.1.{}.{}", i / 200, i % 200 + 1);
            let mut p = pod_record(&format!("q{i}"), &[&ip], i % 5 != 0);
            if i % 2 == 0 {
                p.named_ports = vec![NamedPort {
                    name: "http".into(),
                    port: 8080,
                    protocol: Protocol::Tcp,
                }]
                .into();
            } else {
                p.named_ports = vec![NamedPort {
                    name: "http".into(),
                    port: 9090,
                    protocol: Protocol::Tcp,
                }]
                .into();
            }
            pods.push(p);
        }
        let e = render(
            json!({"ports": [{"port": 80, "targetPort": "http"}]}),
            &pods,
        );
        let total: usize = e
            .subsets
            .iter()
            .flatten()
            .map(|s| {
                s.addresses.as_ref().map_or(0, Vec::len)
                    + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
            })
            .sum();
        assert_eq!(total, MAX_ENDPOINTS_ADDRESSES);
        assert!(
            e.subsets
                .iter()
                .flatten()
                .all(|s| s.not_ready_addresses.is_none())
        );
        assert_eq!(e.subsets.as_ref().unwrap().len(), 2);

        // Under the cap the annotation goes away.
        let small = render(json!({"ports": [{"port": 80}]}), &pods[..10]);
        assert!(!endpoints_equivalent(&e, &small));
        let updated = prepare_update(&e, &small);
        assert!(updated.metadata.annotations.is_none());
        assert!(endpoints_equivalent(&updated, &small));
    }

    #[test]
    fn equivalence_ignores_order_packing_and_server_metadata() {
        let pods = [
            pod_record("a", &["10.0.0.1"], true),
            pod_record("b", &["10.0.0.2"], true),
            pod_record("c", &["10.0.0.3"], false),
        ];
        let desired = render(
            json!({"ports": [{"name": "x", "port": 80}, {"name": "y", "port": 81}]}),
            &pods,
        );
        let mut existing = desired.clone();
        existing.metadata.resource_version = Some("42".into());
        existing.metadata.uid = Some("e-uid".into());
        existing.metadata.annotations = Some(BTreeMap::from([(
            "endpoints.kubernetes.io/last-change-trigger-time".to_string(),
            "2024-01-01T00:00:00Z".to_string(),
        )]));
        // Unpacked: one subset per port, addresses reversed, targets with resourceVersions.
        let packed = existing.subsets.take().unwrap().remove(0);
        let mut split = Vec::new();
        for port in packed.ports.clone().unwrap().into_iter().rev() {
            let mut s = packed.clone();
            s.ports = Some(vec![port]);
            if let Some(a) = s.addresses.as_mut() {
                a.reverse();
                a[0].target_ref.as_mut().unwrap().resource_version = Some("7".into());
            }
            split.push(s);
        }
        existing.subsets = Some(split);
        assert!(endpoints_equivalent(&existing, &desired));

        let updated = prepare_update(&existing, &desired);
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("42"));
        assert!(updated.metadata.annotations.as_ref().unwrap().len() == 1);

        // A readiness change, a missing label, a stray over-capacity annotation all differ.
        let flipped = render(
            json!({"ports": [{"name": "x", "port": 80}, {"name": "y", "port": 81}]}),
            &[
                pod_record("a", &["10.0.0.1"], true),
                pod_record("b", &["10.0.0.2"], true),
                pod_record("c", &["10.0.0.3"], true),
            ],
        );
        assert!(!endpoints_equivalent(&existing, &flipped));
        let mut unlabeled = existing.clone();
        unlabeled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(LABEL_APP_MANAGED_BY);
        assert!(!endpoints_equivalent(&unlabeled, &desired));
        assert!(!is_managed_by_signpost(&unlabeled));
        let mut stray = existing.clone();
        stray.metadata.annotations.as_mut().unwrap().insert(
            ANNOTATION_OVER_CAPACITY.to_string(),
            OVER_CAPACITY_TRUNCATED.to_string(),
        );
        assert!(!endpoints_equivalent(&stray, &desired));
    }
}
