//! `DNSRecord`: everything a DNS server or proxy needs to know about one Service.
//!
//! It follows the Kubernetes DNS-based service discovery specification, so a consumer can
//! answer every query about a Service from this one object without reading Services, Pods or
//! EndpointSlices itself.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Upper bound on addresses per list: keeps one record well under etcd's object size limit
/// and lets the API server bound the cost of validating it.
pub const MAX_ADDRESSES: usize = 5000;

/// Spec of a DNSRecord: the answers for `fqdn` and the names below it.
// Each `printcolumn(...)` repeats `type_ = "string"`, which clippy mistakes for a duplicated
// attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "signpost.dev",
    version = "v1alpha1",
    kind = "DNSRecord",
    plural = "dnsrecords",
    shortname = "dnsr",
    category = "signpost",
    namespaced,
    status = "DNSRecordStatus",
    derive = "PartialEq",
    doc = "The DNS records of one Service, published by Signpost for downstream DNS servers and proxies.",
    printcolumn(name = "FQDN", type_ = "string", json_path = ".spec.fqdn"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Addresses",
        type_ = "string",
        json_path = ".status.addressSummary"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.type == 'ExternalName' ? has(self.cname) : !has(self.cname)").message("cname is set exactly when type is ExternalName"))]
#[serde(rename_all = "camelCase")]
pub struct DNSRecordSpec {
    /// Fully qualified name of the Service, `<service>.<namespace>.svc.<cluster-domain>`, without
    /// the trailing dot.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub fqdn: String,
    /// What kind of Service the record describes.
    #[serde(rename = "type")]
    pub record_type: RecordType,
    /// Time to live of every answer, in seconds.
    #[schemars(range(min = 0, max = 3600))]
    pub ttl: i32,
    /// A records of `fqdn`: the virtual IPs, or for a headless Service the ready pod addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 5000),
        inner(length(max = 15), regex(pattern = r"^(\d{1,3})(\.\d{1,3}){3}$"))
    )]
    #[x_kube(validation = Rule::new("self.all(a, isIP(a) && ip(a).family() == 4)").message("every ipv4 entry must be an IPv4 address"))]
    pub ipv4: Vec<String>,
    /// AAAA records of `fqdn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5000), inner(length(max = 39)))]
    #[x_kube(validation = Rule::new("self.all(a, isIP(a) && ip(a).family() == 6)").message("every ipv6 entry must be an IPv6 address"))]
    pub ipv6: Vec<String>,
    /// Per-endpoint names under `fqdn` (headless Services only): `<name>.<fqdn>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5000))]
    pub hosts: Vec<HostRecord>,
    /// One SRV record set per named service port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 250))]
    pub srv: Vec<SrvRecord>,
    /// Target of the CNAME record (ExternalName Services only), without the trailing dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cname: Option<String>,
}

/// The three shapes of Service the DNS specification distinguishes.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// A Service with virtual IPs: `fqdn` resolves to them.
    ClusterIP,
    /// `clusterIP: None`: `fqdn` resolves to the ready endpoints themselves.
    Headless,
    /// `fqdn` is an alias (CNAME) of an external name.
    ExternalName,
}

impl RecordType {
    /// The spelling used in the API, also shown by `kubectl get dnsrecords`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::ClusterIP => "ClusterIP",
            RecordType::Headless => "Headless",
            RecordType::ExternalName => "ExternalName",
        }
    }
}

/// One endpoint's own name under a headless Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HostRecord {
    /// DNS label: the pod's `spec.hostname`, or its address with dashes when it has none.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A records of the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 15)))]
    #[x_kube(validation = Rule::new("self.all(a, isIP(a) && ip(a).family() == 4)").message("every ipv4 entry must be an IPv4 address"))]
    pub ipv4: Vec<String>,
    /// AAAA records of the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 39)))]
    #[x_kube(validation = Rule::new("self.all(a, isIP(a) && ip(a).family() == 6)").message("every ipv6 entry must be an IPv6 address"))]
    pub ipv6: Vec<String>,
}

/// The SRV records of one named port: `_<port>._<protocol>.<fqdn>`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SrvRecord {
    /// Owner name of the records, `_<port-name>._<protocol>.<fqdn>`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Name of the service port.
    #[schemars(length(min = 1, max = 15))]
    pub port_name: String,
    /// Transport protocol of the port.
    pub protocol: Protocol,
    /// Where the port is served: the service name and service port, or for a headless Service
    /// each endpoint's host name and its target port.
    #[schemars(length(max = 5000))]
    pub targets: Vec<SrvTarget>,
}

/// Transport protocols a Service port can use.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    TCP,
    /// UDP.
    UDP,
    /// SCTP.
    SCTP,
}

impl Protocol {
    /// The label used in SRV owner names (`_tcp`, `_udp`, `_sctp`).
    pub fn srv_label(self) -> &'static str {
        match self {
            Protocol::TCP => "_tcp",
            Protocol::UDP => "_udp",
            Protocol::SCTP => "_sctp",
        }
    }
}

/// One SRV answer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SrvTarget {
    /// Host name the port is served on, without the trailing dot.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port number on that host.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// Observed state of a DNSRecord.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DNSRecordStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` tells whether the record is complete (for example `AddressPending` while the
    /// Service still waits for its virtual IP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Human-readable summary of the addresses, for `kubectl get`: `10.200.0.7`, or
    /// `10.244.0.4 +2 more`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub address_summary: Option<String>,
}
