//! Service + virtual IPs + EndpointSlices → `DNSRecordSpec`, following the Kubernetes
//! DNS-based service discovery specification (the records CoreDNS's `kubernetes` plugin serves).
//!
//! Pure and deterministic: the same inputs, in any order, render the same spec byte for byte,
//! so the reconciler can compare with what is stored and skip the write.

use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use signpost_crds::dns_record::{DNSRecordSpec, RecordType};

use super::names::{self, MAX_NAME_LEN};
use super::spec_builder::Output;
use super::summary;

/// Largest TTL the CRD admits; a larger `--ttl` is clamped rather than failing every record.
pub const MAX_TTL: i32 = 3600;
/// Bound of `spec.hosts` in the CRD schema.
pub const MAX_HOSTS: usize = 5000;
/// Bound of each host's `ipv4` and `ipv6` lists in the CRD schema.
pub const MAX_HOST_ADDRESSES: usize = 16;
/// Bound of `spec.srv` in the CRD schema.
pub const MAX_SRV_RECORDS: usize = 250;
/// Bound of each SRV record's `targets` in the CRD schema.
pub const MAX_SRV_TARGETS: usize = 5000;
/// Bound of `srv[].portName` in the CRD schema (an IANA service name is at most 15 characters).
pub const MAX_PORT_NAME_LEN: usize = 15;

/// Why a Service cannot be rendered at all. These are inputs the API server does not let
/// through (or a bad `--cluster-domain`), so the reconciler reports them instead of writing a
/// record the CRD schema would reject. Variant names double as metric labels.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The cluster domain is not a DNS name.
    #[error("cluster domain {0:?} is not a valid DNS name")]
    InvalidClusterDomain(String),
    /// The Service's name or namespace is missing or not a DNS label.
    #[error("service {field} {value:?} is not a DNS label")]
    InvalidServiceName {
        /// `name` or `namespace`.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// `<svc>.<ns>.svc.<cluster-domain>` is longer than a DNS name may be.
    #[error("name {0:?} is longer than {MAX_NAME_LEN} characters")]
    NameTooLong(String),
    /// An ExternalName Service whose `externalName` is empty or not a DNS name.
    #[error("externalName {0:?} is not a valid DNS name")]
    InvalidExternalName(String),
}

/// What the reconciler needs from one render: the spec to store and what its status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The record itself; byte-identical for identical inputs.
    pub spec: DNSRecordSpec,
    /// Whether the record is complete, for the `Ready` condition.
    pub state: RecordState,
    /// What was left out and why; all zero for an ordinary Service.
    pub omitted: Omitted,
    /// `status.addressSummary`, the ADDRESSES column of `kubectl get dnsrecords`.
    pub address_summary: String,
}

impl Rendered {
    /// Status of the `Ready` condition: false only while the record still lacks addresses it
    /// is owed. A truncated record is served, so it stays ready.
    pub fn is_ready(&self) -> bool {
        !matches!(self.state, RecordState::AddressPending { .. })
    }

    /// Reason of the `Ready` condition (CamelCase, stable: alerts and tests match on it).
    pub fn reason(&self) -> &'static str {
        self.state.reason()
    }

    /// Message of the `Ready` condition. It depends only on the rendered content, so an
    /// unchanged input does not rewrite the status either.
    pub fn message(&self) -> String {
        let head = match self.state {
            RecordState::Complete => "record is complete".to_owned(),
            RecordState::Truncated => "record is truncated to the DNSRecord size limits".to_owned(),
            RecordState::AddressPending { have, want } => {
                format!("waiting for virtual IPs: {have} of {want} allocated")
            }
        };
        if self.omitted.is_empty() {
            head
        } else {
            format!("{head}; {}", self.omitted)
        }
    }
}

/// Whether a record is complete, from the point of view of a client resolving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Everything the Service should resolve to is in the record. A headless Service without
    /// ready endpoints is complete too: "no addresses" is the right answer for it.
    Complete,
    /// The record is served, but some entries did not fit the CRD's bounds (see [`Omitted`]).
    Truncated,
    /// A Service that gets virtual IPs has fewer than it asked for (none yet, or one family of
    /// a `RequireDualStack` Service), so its name would not resolve as it should.
    AddressPending {
        /// Virtual IPs allocated.
        have: usize,
        /// Virtual IPs the Service needs before it is complete.
        want: usize,
    },
}

impl RecordState {
    /// The `Ready` condition's reason for this state.
    pub fn reason(self) -> &'static str {
        match self {
            RecordState::Complete => "Rendered",
            RecordState::Truncated => "Truncated",
            RecordState::AddressPending { .. } => "AddressPending",
        }
    }
}

/// Counts of entries left out of a record. The first six are entries cut to respect the CRD
/// bounds (deterministically: the lowest in sort order are kept); `invalid` counts inputs no
/// record may hold (unparsable or IPv4-mapped addresses, bad port names or protocols).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Omitted {
    /// IPv4 addresses of `fqdn` beyond [`MAX_ADDRESSES`].
    pub ipv4: usize,
    /// IPv6 addresses of `fqdn` beyond [`MAX_ADDRESSES`].
    pub ipv6: usize,
    /// Hosts beyond [`MAX_HOSTS`], or whose name would exceed 253 characters.
    pub hosts: usize,
    /// Addresses of one host beyond [`MAX_HOST_ADDRESSES`] per family.
    pub host_addresses: usize,
    /// SRV records beyond [`MAX_SRV_RECORDS`], or whose owner name would exceed 253 characters.
    pub srv_records: usize,
    /// SRV targets of one record beyond [`MAX_SRV_TARGETS`].
    pub srv_targets: usize,
    /// Input entries that no record may hold.
    pub invalid: usize,
}

impl Omitted {
    /// Whether anything was cut to fit the CRD bounds.
    pub fn truncated(&self) -> bool {
        self.ipv4
            + self.ipv6
            + self.hosts
            + self.host_addresses
            + self.srv_records
            + self.srv_targets
            > 0
    }

    /// Whether nothing at all was left out.
    pub fn is_empty(&self) -> bool {
        !self.truncated() && self.invalid == 0
    }
}

impl fmt::Display for Omitted {
    /// `left out 1 IPv4 address, 2 hosts; ignored 1 invalid entry`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = [
            (self.ipv4, "IPv4 address", "IPv4 addresses"),
            (self.ipv6, "IPv6 address", "IPv6 addresses"),
            (self.hosts, "host", "hosts"),
            (self.host_addresses, "host address", "host addresses"),
            (self.srv_records, "SRV record", "SRV records"),
            (self.srv_targets, "SRV target", "SRV targets"),
        ];
        let parts: Vec<String> = cut
            .iter()
            .filter(|(n, ..)| *n > 0)
            .map(|&(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
            .collect();
        let mut sep = "";
        if !parts.is_empty() {
            write!(f, "left out {}", parts.join(", "))?;
            sep = "; ";
        }
        if self.invalid > 0 {
            let noun = if self.invalid == 1 {
                "entry"
            } else {
                "entries"
            };
            write!(f, "{sep}ignored {} invalid {noun}", self.invalid)?;
        }
        Ok(())
    }
}

/// The DNS shape of a Service: `ExternalName` by type, `Headless` when `clusterIP` is `None`,
/// otherwise `ClusterIP` (which covers NodePort and LoadBalancer: they get virtual IPs too).
pub fn record_type(service: &Service) -> RecordType {
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        RecordType::ExternalName
    } else if spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        RecordType::Headless
    } else {
        RecordType::ClusterIP
    }
}

/// Renders the DNSRecord of `service`.
///
/// - `vips`: the Service's virtual IPs (its ServiceIP claims' addresses, or in ClusterIP mode
///   its own `spec.clusterIPs`, see [`super::cluster_ips`]), in any order; ignored unless the
///   record type is ClusterIP.
/// - `slices`: the Service's EndpointSlices (the caller selects them by the
///   `kubernetes.io/service-name` label), in any order; read only for a headless Service.
/// - `cluster_domain`: e.g. `cluster.local`; one trailing dot is tolerated.
/// - `ttl`: seconds, clamped to [`MAX_TTL`].
pub fn render(
    service: &Service,
    vips: &[IpAddr],
    slices: &[EndpointSlice],
    cluster_domain: &str,
    ttl: u32,
) -> Result<Rendered, RenderError> {
    let meta = &service.metadata;
    let fqdn = names::service_fqdn(
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        cluster_domain,
    )?;
    let record_type = record_type(service);
    let mut out = Output {
        spec: DNSRecordSpec {
            fqdn,
            record_type,
            ttl: i32::try_from(ttl).map_or(MAX_TTL, |t| t.min(MAX_TTL)),
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            hosts: Vec::new(),
            srv: Vec::new(),
            cname: None,
        },
        omitted: Omitted::default(),
    };
    let (pending, summary) = match record_type {
        RecordType::ExternalName => {
            let target = external_name(service)?;
            let summary = summary::cname(&target);
            out.spec.cname = Some(target);
            (None, summary)
        }
        RecordType::ClusterIP => out.cluster_ip(service, vips),
        RecordType::Headless => (None, out.headless(service, slices)),
    };
    let state = match pending {
        Some((have, want)) => RecordState::AddressPending { have, want },
        None if out.omitted.truncated() => RecordState::Truncated,
        None => RecordState::Complete,
    };
    Ok(Rendered {
        spec: out.spec,
        state,
        omitted: out.omitted,
        address_summary: summary,
    })
}

/// `externalName` as a CNAME target: lowercased, without its trailing dot.
fn external_name(service: &Service) -> Result<String, RenderError> {
    let raw = service
        .spec
        .as_ref()
        .and_then(|s| s.external_name.as_deref())
        .unwrap_or_default();
    let target = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if target.is_empty() || target.len() > MAX_NAME_LEN || target.split('.').any(str::is_empty) {
        return Err(RenderError::InvalidExternalName(raw.to_owned()));
    }
    Ok(target)
}
