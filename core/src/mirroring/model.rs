//! Hand-written Endpoints → the EndpointSlices that mirror them, as pure functions.
//!
//! Users who run a Service without a selector write its Endpoints themselves (an external
//! database, a VM). Consumers that read only EndpointSlices must still see them, so every
//! subset is mirrored: one address type per slice, one slice group per distinct port set,
//! ready endpoints from `addresses`, not-ready ones from `notReadyAddresses`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

use crate::endpoints::AddressType;
use crate::endpoints::legacy::subset_addresses;

/// At most this many addresses of one subset are mirrored, as Kubernetes' mirroring does.
pub const MAX_ADDRESSES_PER_SUBSET: usize = 1000;

/// The endpoints of one address type and one port set.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorGroup {
    /// Address type of every endpoint.
    pub address_type: AddressType,
    /// The subset's ports, sorted by (name, port, protocol).
    pub ports: Vec<EndpointPort>,
    /// The endpoints, sorted by address.
    pub endpoints: Vec<Endpoint>,
}

/// Something of the user's Endpoints that could not be mirrored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    /// An address that is not an IP.
    #[error("address {0:?} is not an IP address")]
    InvalidAddress(String),
    /// A port number outside 1–65535.
    #[error("port {name:?} has number {port}, outside 1-65535")]
    InvalidPort {
        /// The port's name.
        name: String,
        /// Its number.
        port: i32,
    },
    /// A subset held more addresses than are mirrored.
    #[error("{0} addresses beyond the first {MAX_ADDRESSES_PER_SUBSET} of a subset")]
    OverCapacity(usize),
}

/// What the mirrored slices should hold, and what was left out.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Mirror {
    /// Groups sorted by (address type, ports).
    pub groups: Vec<MirrorGroup>,
    /// What could not be mirrored (reported as Events and metrics, never retried).
    pub skipped: Vec<Skipped>,
}

type GroupKey = (AddressType, Vec<(String, i32, String, Option<String>)>);

/// The slices' contents for one Endpoints object.
pub fn mirror(endpoints: &Endpoints) -> Mirror {
    let mut out = Mirror::default();
    let mut groups: BTreeMap<GroupKey, BTreeMap<String, Endpoint>> = BTreeMap::new();
    for subset in endpoints.subsets.iter().flatten() {
        let mut ports: Vec<EndpointPort> = Vec::new();
        for port in subset.ports.iter().flatten() {
            if !(1..=65535).contains(&port.port) {
                out.skipped.push(Skipped::InvalidPort {
                    name: port.name.clone().unwrap_or_default(),
                    port: port.port,
                });
                continue;
            }
            ports.push(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(port.port),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            });
        }
        ports.sort_by_key(port_key);
        ports.dedup();
        let port_keys: Vec<_> = ports.iter().map(port_key).collect();

        let mut taken = 0usize;
        let mut over = 0usize;
        for (address, ready) in subset_addresses(subset) {
            let Ok(ip) = address.ip.trim().parse::<IpAddr>() else {
                out.skipped
                    .push(Skipped::InvalidAddress(address.ip.clone()));
                continue;
            };
            if taken == MAX_ADDRESSES_PER_SUBSET {
                over += 1;
                continue;
            }
            taken += 1;
            let endpoint = to_endpoint(address, ip, ready);
            let group = groups
                .entry((AddressType::of(&ip), port_keys.clone()))
                .or_default();
            // One IP listed twice with the same ports (ready in one subset, not in another)
            // becomes one endpoint; ready wins.
            let key = ip.to_string();
            match group.get(&key) {
                Some(existing) if is_ready(existing) => {}
                _ => {
                    group.insert(key, endpoint);
                }
            }
        }
        if over > 0 {
            out.skipped.push(Skipped::OverCapacity(over));
        }
    }
    out.groups = groups
        .into_iter()
        .map(|((address_type, port_keys), endpoints)| MirrorGroup {
            address_type,
            ports: port_keys
                .into_iter()
                .map(|(name, port, protocol, app_protocol)| EndpointPort {
                    name: Some(name),
                    port: Some(port),
                    protocol: Some(protocol),
                    app_protocol,
                })
                .collect(),
            endpoints: endpoints.into_values().collect(),
        })
        .collect();
    out
}

fn port_key(port: &EndpointPort) -> (String, i32, String, Option<String>) {
    (
        port.name.clone().unwrap_or_default(),
        port.port.unwrap_or(0),
        port.protocol.clone().unwrap_or_else(|| "TCP".into()),
        port.app_protocol.clone(),
    )
}

fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true)
}

fn to_endpoint(address: &EndpointAddress, ip: IpAddr, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: Some(false),
        }),
        hostname: address.hostname.clone(),
        node_name: address.node_name.clone(),
        target_ref: address.target_ref.clone().map(|mut t| {
            // A resourceVersion would make every edit of the target look like a change here.
            t.resource_version = None;
            t
        }),
        zone: None,
        hints: None,
        deprecated_topology: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(subsets: serde_json::Value) -> Endpoints {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "db", "namespace": "demo"}, "subsets": subsets})).unwrap()
    }

    fn addresses(group: &MirrorGroup) -> Vec<(String, bool)> {
        group
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].clone(), is_ready(e)))
            .collect()
    }

    #[test]
    fn ready_and_not_ready_addresses_become_one_group_per_port_set() {
        let m = mirror(&endpoints(serde_json::json!([{
            "addresses": [{"ip": "10.0.0.2", "nodeName": "n1", "hostname": "db-0", "targetRef": {"kind": "Pod", "name": "db-0", "namespace": "demo", "resourceVersion": "7"}}, {"ip": "10.0.0.1"}],
            "notReadyAddresses": [{"ip": "10.0.0.3"}],
            "ports": [{"port": 5432}]
        }])));
        assert!(m.skipped.is_empty());
        assert_eq!(m.groups.len(), 1);
        let group = &m.groups[0];
        assert_eq!(group.address_type, AddressType::IPv4);
        assert_eq!(group.ports[0].port, Some(5432));
        assert_eq!(group.ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(
            addresses(group),
            vec![
                ("10.0.0.1".into(), true),
                ("10.0.0.2".into(), true),
                ("10.0.0.3".into(), false)
            ]
        );
        let carried = &group.endpoints[1];
        assert_eq!(carried.node_name.as_deref(), Some("n1"));
        assert_eq!(carried.hostname.as_deref(), Some("db-0"));
        let target = carried.target_ref.as_ref().unwrap();
        assert_eq!(target.name.as_deref(), Some("db-0"));
        assert_eq!(target.resource_version, None);
    }

    #[test]
    fn two_subsets_with_one_ip_and_different_ports_give_two_groups_with_that_ip() {
        let m = mirror(&endpoints(serde_json::json!([
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "a", "port": 80}]},
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "b", "port": 81}]}
        ])));
        assert_eq!(m.groups.len(), 2);
        for group in &m.groups {
            assert_eq!(addresses(group), vec![("10.0.0.1".into(), true)]);
        }
        assert_ne!(m.groups[0].ports, m.groups[1].ports);
    }

    #[test]
    fn subsets_with_the_same_ports_share_a_group() {
        let m = mirror(&endpoints(serde_json::json!([
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}, {"name": "x", "port": 81}]},
            {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "x", "port": 81}, {"port": 80}]}
        ])));
        assert_eq!(m.groups.len(), 1);
        assert_eq!(m.groups[0].endpoints.len(), 2);
    }

    #[test]
    fn ipv6_addresses_get_their_own_address_type() {
        let m = mirror(&endpoints(serde_json::json!([
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}]}
        ])));
        let types: Vec<AddressType> = m.groups.iter().map(|g| g.address_type).collect();
        assert_eq!(types, vec![AddressType::IPv4, AddressType::IPv6]);
    }

    #[test]
    fn an_empty_endpoints_mirrors_nothing() {
        assert_eq!(mirror(&endpoints(serde_json::json!([]))), Mirror::default());
        let no_subsets: Endpoints =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "db"}})).unwrap();
        assert_eq!(mirror(&no_subsets), Mirror::default());
    }

    #[test]
    fn invalid_addresses_and_ports_are_skipped_and_the_rest_mirrored() {
        let m = mirror(&endpoints(serde_json::json!([
            {"addresses": [{"ip": "not-an-ip"}, {"ip": "10.0.0.1"}], "ports": [{"name": "ok", "port": 80}, {"name": "bad", "port": 70000}]}
        ])));
        assert_eq!(
            m.skipped,
            vec![
                Skipped::InvalidPort {
                    name: "bad".into(),
                    port: 70000
                },
                Skipped::InvalidAddress("not-an-ip".into())
            ]
        );
        assert_eq!(m.groups.len(), 1);
        assert_eq!(m.groups[0].ports.len(), 1);
        assert_eq!(addresses(&m.groups[0]), vec![("10.0.0.1".into(), true)]);
    }

    #[test]
    fn at_most_a_thousand_addresses_of_a_subset_are_mirrored() {
        let many: Vec<serde_json::Value> = (0..1200)
            .map(|i| serde_json::json!({"ip": format!("10.0.{}.{}", i / 250, i % 250 + 1)}))
            .collect();
        let m = mirror(&endpoints(
            serde_json::json!([{"addresses": many, "ports": [{"port": 80}]}]),
        ));
        assert_eq!(m.groups[0].endpoints.len(), MAX_ADDRESSES_PER_SUBSET);
        assert_eq!(m.skipped, vec![Skipped::OverCapacity(200)]);
    }
}
