//! [`SlimPod`] read from the API server's protobuf encoding.
//!
//! Reads the same fields as the JSON decode in [`super::slim_pod`] (the ones
//! [`super::PodRecord::from_pod`] uses) and skips every other field by its length. Go's empty
//! strings and zero ports are written to protobuf but left out of JSON, so they read as absent
//! here, and both decodes give the same `SlimPod` for the same pod (tested against a pod
//! captured both ways from the API server).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::SlimPod;
use crate::runtime::protobuf::{Value, WireError, fields};

/// Decodes a `Pod` message (out of its envelope) into the fields endpoints are made from.
pub fn decode_slim_pod(message: &[u8]) -> Result<SlimPod, WireError> {
    let mut pod = Pod::default();
    for field in fields(message) {
        match field? {
            (1, value) => pod.metadata = object_meta(value.bytes(1)?)?,
            (2, value) => pod.spec = Some(spec(value.bytes(2)?)?),
            (3, value) => pod.status = Some(status(value.bytes(3)?)?),
            _ => {}
        }
    }
    Ok(SlimPod(pod))
}

fn object_meta(message: &[u8]) -> Result<ObjectMeta, WireError> {
    let mut meta = ObjectMeta::default();
    for field in fields(message) {
        match field? {
            (1, value) => meta.name = value.non_empty_string(1)?,
            (3, value) => meta.namespace = value.non_empty_string(3)?,
            (5, value) => meta.uid = value.non_empty_string(5)?,
            (6, value) => meta.resource_version = value.non_empty_string(6)?,
            (9, value) => meta.deletion_timestamp = Some(time(value.bytes(9)?)?),
            (11, value) => {
                let (key, label) = map_entry(value.bytes(11)?)?;
                meta.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, label);
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// A `map<string, string>` entry: key in field 1, value in field 2.
fn map_entry(message: &[u8]) -> Result<(String, String), WireError> {
    let (mut key, mut value) = (String::new(), String::new());
    for field in fields(message) {
        match field? {
            (1, v) => key = v.string(1)?,
            (2, v) => value = v.string(2)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// `metav1.Time`: seconds and nanoseconds since the epoch. JSON carries whole seconds.
fn time(message: &[u8]) -> Result<Time, WireError> {
    let mut seconds = 0;
    for field in fields(message) {
        if let (1, value) = field? {
            seconds = value.int64(1)?;
        }
    }
    let timestamp =
        k8s_openapi::jiff::Timestamp::from_second(seconds).map_err(|_| WireError::FieldType(1))?;
    Ok(Time(timestamp))
}

fn spec(message: &[u8]) -> Result<PodSpec, WireError> {
    let mut spec = PodSpec::default();
    for field in fields(message) {
        match field? {
            (2, value) => spec.containers.push(container(value.bytes(2)?)?),
            (10, value) => spec.node_name = value.non_empty_string(10)?,
            (16, value) => spec.hostname = value.non_empty_string(16)?,
            (17, value) => spec.subdomain = value.non_empty_string(17)?,
            (20, value) => spec
                .init_containers
                .get_or_insert_with(Vec::new)
                .push(container(value.bytes(20)?)?),
            _ => {}
        }
    }
    Ok(spec)
}

fn container(message: &[u8]) -> Result<Container, WireError> {
    let mut container = Container::default();
    for field in fields(message) {
        match field? {
            (1, value) => container.name = value.string(1)?,
            (6, value) => container
                .ports
                .get_or_insert_with(Vec::new)
                .push(container_port(value.bytes(6)?)?),
            (24, value) => container.restart_policy = value.non_empty_string(24)?,
            _ => {}
        }
    }
    Ok(container)
}

fn container_port(message: &[u8]) -> Result<ContainerPort, WireError> {
    let mut port = ContainerPort::default();
    for field in fields(message) {
        match field? {
            (1, value) => port.name = value.non_empty_string(1)?,
            (2, value) => port.host_port = non_zero(value, 2)?,
            (3, value) => port.container_port = value.int32(3)?,
            (4, value) => port.protocol = value.non_empty_string(4)?,
            (5, value) => port.host_ip = value.non_empty_string(5)?,
            _ => {}
        }
    }
    Ok(port)
}

/// An int32 that JSON leaves out when zero.
fn non_zero(value: Value<'_>, field: u32) -> Result<Option<i32>, WireError> {
    let number = value.int32(field)?;
    Ok((number != 0).then_some(number))
}

fn status(message: &[u8]) -> Result<PodStatus, WireError> {
    let mut status = PodStatus::default();
    for field in fields(message) {
        match field? {
            (1, value) => status.phase = value.non_empty_string(1)?,
            (2, value) => status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(condition(value.bytes(2)?)?),
            (6, value) => status.pod_ip = value.non_empty_string(6)?,
            (12, value) => status
                .pod_ips
                .get_or_insert_with(Vec::new)
                .push(pod_ip(value.bytes(12)?)?),
            _ => {}
        }
    }
    Ok(status)
}

fn condition(message: &[u8]) -> Result<PodCondition, WireError> {
    let mut condition = PodCondition::default();
    for field in fields(message) {
        match field? {
            (1, value) => condition.type_ = value.string(1)?,
            (2, value) => condition.status = value.string(2)?,
            _ => {}
        }
    }
    Ok(condition)
}

fn pod_ip(message: &[u8]) -> Result<PodIP, WireError> {
    let mut ip = PodIP::default();
    for field in fields(message) {
        if let (1, value) = field? {
            ip.ip = value.string(1)?;
        }
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::PodRecord;
    use crate::runtime::protobuf::{decode_list, open_envelope};
    use crate::runtime::testing::{bytes_field, envelope, varint_field};

    fn pod_message(body: &[u8]) -> &[u8] {
        open_envelope(body).unwrap().expect("Pod").unwrap()
    }

    /// One terminating pod with a sidecar, an init container, three ports (one unnamed, one
    /// with a host port), an empty label value and a ready condition, fetched from
    /// kube-apiserver v1.37.2 once as JSON and once as protobuf.
    #[test]
    fn a_captured_pod_decodes_the_same_from_protobuf_and_json() {
        let from_json: SlimPod =
            serde_json::from_slice(include_bytes!("testdata/pod.json")).unwrap();
        let from_protobuf =
            decode_slim_pod(pod_message(include_bytes!("testdata/pod.pb"))).unwrap();
        assert_eq!(from_protobuf, from_json);
        let record = PodRecord::from_pod(&from_protobuf.0).unwrap();
        assert!(record.terminating);
        assert!(record.ready);
        let spec = from_protobuf.0.spec.as_ref().unwrap();
        assert_eq!(spec.containers[0].ports.as_ref().unwrap().len(), 3);
        assert_eq!(spec.init_containers.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn a_captured_list_page_decodes_item_by_item_like_json() {
        let json: serde_json::Value =
            serde_json::from_slice(include_bytes!("testdata/pod-list-page.json")).unwrap();
        let list = open_envelope(include_bytes!("testdata/pod-list-page.pb"))
            .unwrap()
            .expect("PodList")
            .unwrap();
        let page = decode_list(list).unwrap();
        assert_eq!(page.resource_version, json["metadata"]["resourceVersion"]);
        assert_eq!(page.continue_token, json["metadata"]["continue"]);
        let items = json["items"].as_array().unwrap();
        assert_eq!(page.items.len(), items.len());
        for (item, expected) in page.items.iter().zip(items) {
            let expected: SlimPod = serde_json::from_value(expected.clone()).unwrap();
            assert_eq!(decode_slim_pod(item).unwrap(), expected);
        }
    }

    #[test]
    fn dual_stack_ips_and_absent_sections_read_like_json() {
        let mut status = bytes_field(1, b"Running");
        status.extend(bytes_field(6, b"10.0.0.5"));
        status.extend(bytes_field(12, &bytes_field(1, b"10.0.0.5")));
        status.extend(bytes_field(12, &bytes_field(1, b"fd00::5")));
        let mut meta = bytes_field(1, b"web-1");
        meta.extend(bytes_field(2, b""));
        meta.extend(bytes_field(3, b"demo"));
        meta.extend(bytes_field(5, b"u-2"));
        meta.extend(varint_field(7, 3));
        let mut message = bytes_field(1, &meta);
        message.extend(bytes_field(3, &status));
        let pod = decode_slim_pod(&message).unwrap();
        assert_eq!(pod.0.spec, None);
        assert_eq!(pod.0.metadata.labels, None);
        let ips: Vec<_> = pod
            .0
            .status
            .as_ref()
            .unwrap()
            .pod_ips
            .iter()
            .flatten()
            .collect();
        assert_eq!(ips.len(), 2);
        let record = PodRecord::from_pod(&pod.0).unwrap();
        assert!(!record.ready);
        assert_eq!(record.ips.len(), 2);
        // The envelope helper builds what open_envelope reads back.
        let wrapped = envelope("v1", "Pod", &message);
        assert_eq!(decode_slim_pod(pod_message(&wrapped)).unwrap(), pod);
    }

    #[test]
    fn a_malformed_pod_is_an_error() {
        let mut message = bytes_field(1, &bytes_field(1, b"web"));
        message.truncate(message.len() - 1);
        assert_eq!(decode_slim_pod(&message), Err(WireError::Truncated));
        let wrong_type = varint_field(2, 1);
        assert_eq!(decode_slim_pod(&wrong_type), Err(WireError::FieldType(2)));
    }
}
