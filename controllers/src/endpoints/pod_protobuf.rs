//! [`SlimPod`] read from the API server's protobuf encoding.
//!
//! Reads the same fields as the JSON decode in [`super::slim_pod`] (the ones a
//! [`super::PodRecord`] is made of) into [`PodParts`], and skips every other field by its
//! length. Go's empty strings and zero ports are written to protobuf but left out of JSON, so
//! they read as absent here, and both decodes give the same `SlimPod` for the same pod
//! (tested against a pod captured both ways from the API server).

use k8s_openapi::api::core::v1::ContainerPort;

use super::{PodParts, SlimPod};
use crate::runtime::protobuf::{Value, WireError, fields, string_pair};

/// Decodes a `Pod` message (out of its envelope) into its record.
pub fn decode_slim_pod(message: &[u8]) -> Result<SlimPod, WireError> {
    let mut parts = PodParts::default();
    for field in fields(message) {
        match field? {
            (1, value) => object_meta(value.bytes(1)?, &mut parts)?,
            (2, value) => spec(value.bytes(2)?, &mut parts)?,
            (3, value) => status(value.bytes(3)?, &mut parts)?,
            _ => {}
        }
    }
    Ok(SlimPod::from_parts(parts))
}

fn object_meta(message: &[u8], parts: &mut PodParts) -> Result<(), WireError> {
    for field in fields(message) {
        match field? {
            (1, value) => parts.name = value.non_empty_string(1)?,
            (3, value) => parts.namespace = value.non_empty_string(3)?,
            (5, value) => parts.uid = value.non_empty_string(5)?,
            (6, value) => parts.resource_version = value.non_empty_string(6)?,
            // deletionTimestamp: only whether it is set matters.
            (9, value) => {
                value.bytes(9)?;
                parts.terminating = true;
            }
            (11, value) => {
                // A `map<string, string>` entry: key in field 1, value in field 2.
                let (key, label) = string_pair(value.bytes(11)?, 1, 2)?;
                parts.labels.push((key.into(), label.into()));
            }
            _ => {}
        }
    }
    Ok(())
}

fn spec(message: &[u8], parts: &mut PodParts) -> Result<(), WireError> {
    for field in fields(message) {
        match field? {
            (2, value) => container(value.bytes(2)?, false, parts)?,
            (10, value) => parts.node_name = value.non_empty_string(10)?,
            (16, value) => parts.hostname = value.non_empty_string(16)?,
            (17, value) => parts.subdomain = value.non_empty_string(17)?,
            (20, value) => container(value.bytes(20)?, true, parts)?,
            _ => {}
        }
    }
    Ok(())
}

/// A container's ports and restart policy (which may follow the ports on the wire), added to
/// `parts` once the container is read.
fn container(message: &[u8], init: bool, parts: &mut PodParts) -> Result<(), WireError> {
    let mut ports = Vec::new();
    let mut restart_policy = None;
    for field in fields(message) {
        match field? {
            (6, value) => ports.push(container_port(value.bytes(6)?)?),
            (24, value) => restart_policy = value.non_empty_string(24)?,
            _ => {}
        }
    }
    parts.container(init, restart_policy.as_deref(), &ports);
    Ok(())
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

fn status(message: &[u8], parts: &mut PodParts) -> Result<(), WireError> {
    for field in fields(message) {
        match field? {
            (1, value) => parts.phase = value.non_empty_string(1)?,
            (2, value) => {
                // A condition: type in field 1, status in field 2.
                let (type_, status) = string_pair(value.bytes(2)?, 1, 2)?;
                parts.condition(type_, status);
            }
            (6, value) => parts.pod_ip = value.non_empty_string(6)?,
            (12, value) => parts.pod_ips.push(pod_ip(value.bytes(12)?)?),
            _ => {}
        }
    }
    Ok(())
}

fn pod_ip(message: &[u8]) -> Result<String, WireError> {
    let mut ip = String::new();
    for field in fields(message) {
        if let (1, value) = field? {
            ip = value.string(1)?;
        }
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::{NamedPort, Protocol};
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
        let record = from_protobuf.record.unwrap();
        assert!(record.terminating);
        assert!(record.ready);
        // The container's two named ports (the unnamed one is not kept), then the sidecar's;
        // the plain init container's port is not searched.
        let port = |name: &str, port, protocol| NamedPort {
            name: name.into(),
            port,
            protocol,
        };
        assert_eq!(
            &*record.named_ports,
            [
                port("http", 8080, Protocol::Tcp),
                port("dns", 53, Protocol::Udp),
                port("admin", 9901, Protocol::Tcp),
            ]
        );
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
        let record = pod.record.clone().unwrap();
        assert_eq!(record.node_name, None);
        assert!(record.named_ports.is_empty());
        assert!(record.labels.is_empty());
        assert!(!record.ready);
        assert_eq!(
            *record.ips,
            [
                "10.0.0.5".parse::<std::net::IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
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
