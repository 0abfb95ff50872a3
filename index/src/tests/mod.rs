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
