//! The Pod as the endpoints controller reads it off the wire.
//!
//! A full `Pod` decodes managed fields (a `serde_json::Value` tree per field manager),
//! annotations, volumes, every container's image, env and probes, and every condition's
//! message: about 30 KB of heap per pod, for a dozen fields. The initial list arrives in pages
//! of 500, so decoding whole Pods made that list the largest allocation of the process (16 MB
//! of a 22 MB heap peak at 1,000 pods, measured with heaptrack). [`SlimPod`] decodes only what
//! [`super::PodRecord::from_pod`] reads; serde skips the rest without allocating for it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

/// A `Pod` holding only the fields endpoints are made from. Watched and listed in place of
/// `Pod` (same API path and kind); the inner `Pod` has every other field unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlimPod(pub Pod);

impl k8s_openapi::Resource for SlimPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for SlimPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    metadata: WireMeta,
    spec: Option<WireSpec>,
    status: Option<WireStatus>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<Time>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSpec {
    node_name: Option<String>,
    hostname: Option<String>,
    subdomain: Option<String>,
    #[serde(default)]
    containers: Vec<WireContainer>,
    init_containers: Option<Vec<WireContainer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireContainer {
    #[serde(default)]
    name: String,
    ports: Option<Vec<ContainerPort>>,
    restart_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<PodIP>>,
    conditions: Option<Vec<WireCondition>>,
}

#[derive(Deserialize)]
struct WireCondition {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    status: String,
}

fn container(c: WireContainer) -> Container {
    Container {
        name: c.name,
        ports: c.ports,
        restart_policy: c.restart_policy,
        ..Default::default()
    }
}

impl<'de> Deserialize<'de> for SlimPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let meta = wire.metadata;
        Ok(Self(Pod {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                labels: meta.labels,
                deletion_timestamp: meta.deletion_timestamp,
                ..Default::default()
            },
            spec: wire.spec.map(|s| PodSpec {
                node_name: s.node_name,
                hostname: s.hostname,
                subdomain: s.subdomain,
                containers: s.containers.into_iter().map(container).collect(),
                init_containers: s
                    .init_containers
                    .map(|list| list.into_iter().map(container).collect()),
                ..Default::default()
            }),
            status: wire.status.map(|s| PodStatus {
                phase: s.phase,
                pod_ip: s.pod_ip,
                pod_ips: s.pod_ips,
                conditions: s.conditions.map(|list| {
                    list.into_iter()
                        .map(|c| PodCondition {
                            type_: c.type_,
                            status: c.status,
                            ..Default::default()
                        })
                        .collect()
                }),
                ..Default::default()
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::PodRecord;

    /// A pod as the API server sends it, with the fields a slim decode must drop.
    fn full_pod() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-0", "namespace": "demo", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"big": "x".repeat(1000)},
                "deletionTimestamp": "2026-11-23T10:00:00Z",
                "managedFields": [{"manager": "kubelet", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}}}}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs"}]
            },
            "spec": {
                "nodeName": "node-a", "hostname": "web-0", "subdomain": "web",
                "containers": [{"name": "c", "image": "nginx", "env": [{"name": "A", "value": "b"}],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}],
                "initContainers": [
                    {"name": "side", "image": "envoy", "restartPolicy": "Always",
                     "ports": [{"name": "admin", "containerPort": 9901}]},
                    {"name": "init", "image": "busybox", "ports": [{"name": "nope", "containerPort": 1}]}
                ],
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.5",
                "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
                "conditions": [
                    {"type": "Ready", "status": "True", "message": "ok", "lastTransitionTime": "2026-11-23T09:00:00Z"},
                    {"type": "PodScheduled", "status": "True"}
                ],
                "containerStatuses": [{"name": "c", "image": "nginx", "imageID": "x", "ready": true, "restartCount": 0}]
            }
        })
    }

    #[test]
    fn a_slim_pod_gives_the_same_record_as_the_full_pod() {
        let full: Pod = serde_json::from_value(full_pod()).unwrap();
        let slim: SlimPod = serde_json::from_value(full_pod()).unwrap();
        assert_eq!(
            PodRecord::from_pod(&slim.0).unwrap(),
            PodRecord::from_pod(&full).unwrap()
        );
        // And it holds nothing else.
        assert!(slim.0.metadata.annotations.is_none());
        assert!(slim.0.metadata.managed_fields.is_none());
        assert!(slim.0.metadata.owner_references.is_none());
        let spec = slim.0.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none());
        assert!(spec.containers[0].image.is_none());
        let status = slim.0.status.as_ref().unwrap();
        assert!(status.container_statuses.is_none());
        assert!(status.conditions.as_ref().unwrap()[0].message.is_none());
    }

    #[test]
    fn a_pod_with_almost_nothing_still_decodes() {
        let slim: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u"}
        }))
        .unwrap();
        let record = PodRecord::from_pod(&slim.0).unwrap();
        assert!(record.ips.is_empty());
        assert!(!record.ready);
    }

    #[test]
    fn it_is_watched_as_a_pod() {
        use kube::Resource;
        assert_eq!(SlimPod::kind(&()), "Pod");
        assert_eq!(SlimPod::plural(&()), "pods");
        assert_eq!(SlimPod::api_version(&()), "v1");
        assert_eq!(
            SlimPod::url_path(&(), Some("demo")),
            Pod::url_path(&(), Some("demo"))
        );
    }
}
