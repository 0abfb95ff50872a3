//! The indexes fed the way the controllers' watch handlers feed them: objects in, the Services
//! to sync out. No cluster.

mod claims;
mod endpoints;
mod mirroring;
mod records;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use signpost_core::endpoints::pod::PodRecord;
use signpost_core::keys::ServiceKey;

use crate::own_slices::OwnSlices;

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("ns", name)
}

fn service(name: &str, selector: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
        "spec": {"selector": selector, "ports": [{"port": 80}]},
    }))
    .expect("a Service")
}

fn pod(name: &str, labels: serde_json::Value, ip: &str, ready: bool) -> PodRecord {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"containers": [{"name": "c"}], "nodeName": "node-a"},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        },
    }))
    .expect("a Pod");
    PodRecord::from_pod(&pod).expect("a record")
}

fn slice(name: &str, service: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "generation": 1,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [],
    }))
    .expect("an EndpointSlice")
}

fn endpoints(name: &str, version: &str) -> Endpoints {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": version},
    }))
    .expect("an Endpoints")
}

fn node(name: &str, zone: Option<&str>) -> Node {
    let labels = zone.map(|z| json!({"topology.kubernetes.io/zone": z}));
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("a Node")
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("a time")
}

fn sorted(keys: impl IntoIterator<Item = ServiceKey>) -> Vec<ServiceKey> {
    let mut keys: Vec<_> = keys.into_iter().collect();
    keys.sort();
    keys
}

/// A slice filed under Service `from`, relabelled to `to`, then deleted, in a controller's own
/// slices (the endpoints and the mirroring indexes each hold one).
fn a_relabel_moves_a_slice(slices: &mut OwnSlices, name: &str, from: &str, to: &str) {
    assert_eq!(slices.apply(&slice(name, from)), vec![key(from)]);
    assert_eq!(slices.names.names(&key(from)), vec![name.to_string()]);
    // Relabelled to another Service: both are synced, and the old one no longer has it.
    assert_eq!(slices.apply(&slice(name, to)), vec![key(from), key(to)]);
    assert!(slices.names.names(&key(from)).is_empty());
    assert_eq!(slices.delete(&slice(name, to)), Some(key(to)));
    assert!(slices.names.names(&key(to)).is_empty());
}

/// We deleted `web-abc` of Service `web`, and the delete event was lost while the watch was
/// down; a relist that shows `listed` settles the deletion. Returns the Services the relist
/// reports.
fn a_relist_settles_a_lost_deletion(
    slices: &mut OwnSlices,
    listed: &[EndpointSlice],
) -> Vec<ServiceKey> {
    slices.apply(&slice("web-abc", "web"));
    slices.tracker.deleted(&key("web"), "web-abc");
    slices.begin_relist(std::time::Instant::now());
    let keys = slices.finish_relist(listed);
    assert!(slices.names.names(&key("web")).is_empty());
    assert_eq!(slices.tracker.pending(), 0, "the relist is the truth");
    keys
}
