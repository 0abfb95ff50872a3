//! The Pod as the endpoints controller reads it off the wire: straight into the
//! [`PodRecord`] its index keeps.
//!
//! A full `Pod` decodes managed fields (a `serde_json::Value` tree per field manager),
//! annotations, volumes, every container's image, env and probes, and every condition's
//! message: about 30 KB of heap per pod, for a dozen fields. The initial list arrives in pages
//! of 500, so decoding whole Pods made that list the largest allocation of the process (16 MB
//! of a 22 MB heap peak at 1,000 pods, measured with heaptrack). The JSON decode here and the
//! protobuf one ([`super::pod_protobuf`]) read only what a record is made of into
//! [`PodParts`]; serde skips the rest without allocating for it, and no `Pod` is built.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerPort, Pod, PodIP};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::{PodParts, PodRecord};

/// A pod as the pod informer delivers it: the [`PodRecord`] the index keeps, and the metadata
/// the watch itself reads (name, namespace, resourceVersion). Watched and listed in place of
/// `Pod` (same API path and kind).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlimPod {
    metadata: ObjectMeta,
    /// The pod's record; `None` for an object without a name, namespace or uid, which the API
    /// server never sends and the controller ignores.
    pub record: Option<PodRecord>,
}

impl SlimPod {
    /// The pod a decoder read: its record, and the metadata the watch needs.
    pub fn from_parts(parts: PodParts) -> Self {
        let metadata = ObjectMeta {
            name: parts.name.clone(),
            namespace: parts.namespace.clone(),
            resource_version: parts.resource_version.clone(),
            ..ObjectMeta::default()
        };
        Self {
            metadata,
            record: parts.into_record().ok(),
        }
    }
}

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
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
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
    /// Only whether it is set matters.
    deletion_timestamp: Option<IgnoredAny>,
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

impl<'de> Deserialize<'de> for SlimPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let meta = wire.metadata;
        let mut parts = PodParts::default();
        parts.name = meta.name;
        parts.namespace = meta.namespace;
        parts.uid = meta.uid;
        parts.resource_version = meta.resource_version;
        parts.labels = meta
            .labels
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect();
        parts.terminating = meta.deletion_timestamp.is_some();
        if let Some(spec) = wire.spec {
            parts.node_name = spec.node_name;
            parts.hostname = spec.hostname;
            parts.subdomain = spec.subdomain;
            let init = spec.init_containers.iter().flatten();
            let all = spec.containers.iter().map(|c| (false, c));
            for (init, c) in all.chain(init.map(|c| (true, c))) {
                let ports = c.ports.as_deref().unwrap_or_default();
                parts.container(init, c.restart_policy.as_deref(), ports);
            }
        }
        if let Some(status) = wire.status {
            parts.phase = status.phase;
            parts.pod_ip = status.pod_ip;
            parts.pod_ips = status.pod_ips.into_iter().flatten().map(|p| p.ip).collect();
            for c in status.conditions.iter().flatten() {
                parts.condition(&c.type_, &c.status);
            }
        }
        Ok(Self::from_parts(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(slim.record, Some(PodRecord::from_pod(&full).unwrap()));
        // And it holds nothing else: the metadata only what the watch reads.
        assert_eq!(
            slim.metadata,
            ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("demo".into()),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            }
        );
    }

    #[test]
    fn a_pod_with_almost_nothing_still_decodes() {
        let slim: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u"}
        }))
        .unwrap();
        let record = slim.record.unwrap();
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
