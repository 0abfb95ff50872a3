//! What a Service asks of the allocator: which IP families, and which specific addresses.
//!
//! Pure functions over the Service object, so Kubernetes' `ipFamilyPolicy` rules and the
//! `signpost.dev/cluster-ip` annotation are tested without a cluster.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::IpFamily;

pub use crate::labels::REQUESTED_IP_ANNOTATION;

/// The addresses a Service should hold, one entry per family in preference order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Families to hold an address of, primary first.
    pub families: Vec<FamilyRequest>,
    /// Problems to report on the Service (each becomes a Warning Event); the families that can
    /// be served still are.
    pub problems: Vec<RequestProblem>,
    /// The annotation asks for something that cannot be given: keep what is held, allocate
    /// nothing new (never a different address than the one asked for).
    pub hold_only: bool,
}

/// One family a Service should hold an address of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyRequest {
    /// The family.
    pub family: IpFamily,
    /// The address the Service asked for, if any; never replaced by another address.
    pub requested: Option<IpAddr>,
}

/// Something wrong with what a Service asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestProblem {
    /// The annotation does not parse.
    #[error(
        "annotation {REQUESTED_IP_ANNOTATION}={value:?} is not a list of IP addresses: {detail}"
    )]
    InvalidAnnotation {
        /// The annotation's value.
        value: String,
        /// What is wrong.
        detail: String,
    },
    /// The Service needs a family Signpost has no CIDR for.
    #[error("the Service requires {family} but no {family} service CIDR is configured")]
    FamilyNotConfigured {
        /// The missing family.
        family: IpFamily,
    },
    /// The annotation asks for an address of a family the Service does not use.
    #[error("requested address {address} is {family}, which this Service does not use")]
    RequestedFamilyUnused {
        /// The address.
        address: IpAddr,
        /// Its family.
        family: IpFamily,
    },
}

impl RequestProblem {
    /// The Event reason for this problem.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestProblem::InvalidAnnotation { .. } => "ClusterIPInvalid",
            RequestProblem::FamilyNotConfigured { .. } => "IPFamilyNotConfigured",
            RequestProblem::RequestedFamilyUnused { .. } => "ClusterIPInvalid",
        }
    }
}

/// Whether the Service gets virtual IPs at all: ClusterIP, NodePort and LoadBalancer
/// Services do; headless (`clusterIP: None`) and ExternalName Services do not.
pub fn wants_virtual_ip(service: &Service) -> bool {
    let Some(spec) = service.spec.as_ref() else {
        return false;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    spec.cluster_ip.as_deref() != Some("None")
}

/// What `service` asks for, limited to the `configured` families (in configuration order,
/// the first being the cluster's primary family).
///
/// Follows Kubernetes' `ipFamilyPolicy`: `SingleStack` (default) holds the first of
/// `spec.ipFamilies` (or the primary configured family); `PreferDualStack` holds every
/// configured family, `spec.ipFamilies` order first; `RequireDualStack` needs both and reports
/// a problem for a missing one.
pub fn request_of(service: &Service, configured: &[IpFamily]) -> Request {
    let mut request = Request::default();
    if !wants_virtual_ip(service) {
        return request;
    }
    let spec = service.spec.as_ref();
    let asked: Vec<IpFamily> = spec
        .and_then(|s| s.ip_families.as_ref())
        .map(|fs| fs.iter().filter_map(|f| parse_family(f)).collect())
        .unwrap_or_default();
    let policy = spec
        .and_then(|s| s.ip_family_policy.as_deref())
        .unwrap_or("SingleStack");

    let mut families: Vec<IpFamily> = Vec::new();
    match policy {
        "RequireDualStack" | "PreferDualStack" => {
            for family in asked
                .iter()
                .chain(configured)
                .chain([IpFamily::V4, IpFamily::V6].iter())
            {
                if !families.contains(family) {
                    families.push(*family);
                }
            }
            if policy == "PreferDualStack" {
                families.retain(|f| configured.contains(f));
            }
        }
        _ => {
            if let Some(first) = asked.first().or(configured.first()) {
                families.push(*first);
            }
        }
    }
    for family in &families {
        if !configured.contains(family) {
            request
                .problems
                .push(RequestProblem::FamilyNotConfigured { family: *family });
        }
    }
    families.retain(|f| configured.contains(f));

    let requested = match requested_addresses(service) {
        Ok(addresses) => addresses,
        Err(problem) => {
            request.problems.push(problem);
            request.hold_only = true;
            Vec::new()
        }
    };
    for address in &requested {
        let family = IpFamily::of(*address);
        if !families.contains(&family) {
            request
                .problems
                .push(RequestProblem::RequestedFamilyUnused {
                    address: *address,
                    family,
                });
            request.hold_only = true;
        }
    }
    request.families = families
        .into_iter()
        .map(|family| FamilyRequest {
            family,
            requested: requested
                .iter()
                .copied()
                .find(|a| IpFamily::of(*a) == family),
        })
        .collect();
    request
}

/// The addresses of the `signpost.dev/cluster-ip` annotation: at most one per family.
pub fn requested_addresses(service: &Service) -> Result<Vec<IpAddr>, RequestProblem> {
    let Some(value) = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REQUESTED_IP_ANNOTATION))
    else {
        return Ok(Vec::new());
    };
    let invalid = |detail: String| RequestProblem::InvalidAnnotation {
        value: value.clone(),
        detail,
    };
    let mut addresses: Vec<IpAddr> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let address: IpAddr = part
            .parse()
            .map_err(|_| invalid(format!("{part:?} is not an IP address")))?;
        if addresses
            .iter()
            .any(|a| IpFamily::of(*a) == IpFamily::of(address))
        {
            return Err(invalid(format!(
                "more than one {} address",
                IpFamily::of(address)
            )));
        }
        addresses.push(address);
    }
    if addresses.is_empty() {
        return Err(invalid("no address given".into()));
    }
    Ok(addresses)
}

fn parse_family(family: &str) -> Option<IpFamily> {
    match family {
        "IPv4" => Some(IpFamily::V4),
        "IPv6" => Some(IpFamily::V6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IpFamily::{V4, V6};

    fn service(spec: serde_json::Value, annotation: Option<&str>) -> Service {
        let mut meta = serde_json::json!({"name": "web", "namespace": "demo", "uid": "u1"});
        if let Some(value) = annotation {
            meta["annotations"] = serde_json::json!({REQUESTED_IP_ANNOTATION: value});
        }
        serde_json::from_value(serde_json::json!({"metadata": meta, "spec": spec})).unwrap()
    }

    fn families(r: &Request) -> Vec<IpFamily> {
        r.families.iter().map(|f| f.family).collect()
    }

    #[test]
    fn headless_and_external_name_services_want_no_address() {
        let headless = service(serde_json::json!({"clusterIP": "None"}), None);
        let external = service(
            serde_json::json!({"type": "ExternalName", "externalName": "x.example"}),
            None,
        );
        assert!(!wants_virtual_ip(&headless));
        assert!(!wants_virtual_ip(&external));
        assert_eq!(request_of(&headless, &[V4, V6]), Request::default());
        assert_eq!(request_of(&external, &[V4]), Request::default());
    }

    #[test]
    fn node_port_and_load_balancer_services_get_addresses() {
        for kind in ["NodePort", "LoadBalancer", "ClusterIP"] {
            let svc = service(serde_json::json!({"type": kind}), None);
            assert_eq!(families(&request_of(&svc, &[V4])), vec![V4], "{kind}");
        }
    }

    #[test]
    fn family_policies_follow_kubernetes_limited_to_configured_families() {
        type Case = (
            &'static str,
            &'static [&'static str],
            &'static [IpFamily],
            &'static [IpFamily],
            usize,
        );
        let cases: &[Case] = &[
            // policy, spec.ipFamilies, configured, expected families, problems
            ("SingleStack", &[], &[V4], &[V4], 0),
            ("SingleStack", &[], &[V6, V4], &[V6], 0),
            ("SingleStack", &["IPv6"], &[V4, V6], &[V6], 0),
            ("SingleStack", &["IPv6"], &[V4], &[], 1),
            (
                "PreferDualStack",
                &["IPv4", "IPv6"],
                &[V4, V6],
                &[V4, V6],
                0,
            ),
            (
                "PreferDualStack",
                &["IPv6", "IPv4"],
                &[V4, V6],
                &[V6, V4],
                0,
            ),
            ("PreferDualStack", &["IPv4"], &[V4], &[V4], 0),
            (
                "RequireDualStack",
                &["IPv4", "IPv6"],
                &[V4, V6],
                &[V4, V6],
                0,
            ),
            ("RequireDualStack", &["IPv4", "IPv6"], &[V4], &[V4], 1),
        ];
        for (policy, asked, configured, expected, problems) in cases {
            let svc = service(
                serde_json::json!({"ipFamilyPolicy": policy, "ipFamilies": asked}),
                None,
            );
            let request = request_of(&svc, configured);
            assert_eq!(
                families(&request),
                expected.to_vec(),
                "{policy} {asked:?} on {configured:?}"
            );
            assert_eq!(
                request.problems.len(),
                *problems,
                "{policy} {asked:?}: {:?}",
                request.problems
            );
        }
    }

    #[test]
    fn annotation_requests_one_address_per_family() {
        let svc = service(
            serde_json::json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}),
            Some("10.200.0.9, fd00:10:200::9"),
        );
        let request = request_of(&svc, &[V4, V6]);
        assert_eq!(
            request.families[0].requested,
            Some("10.200.0.9".parse().unwrap())
        );
        assert_eq!(
            request.families[1].requested,
            Some("fd00:10:200::9".parse().unwrap())
        );
        assert!(request.problems.is_empty());
    }

    #[test]
    fn bad_annotations_are_problems_not_other_addresses() {
        for value in ["not-an-ip", "10.0.0.1,10.0.0.2", "", "10.0.0.300"] {
            let svc = service(serde_json::json!({}), Some(value));
            let request = request_of(&svc, &[V4]);
            assert_eq!(
                request.problems.len(),
                1,
                "{value:?}: {:?}",
                request.problems
            );
            assert_eq!(request.problems[0].reason(), "ClusterIPInvalid");
            assert!(
                request.hold_only,
                "{value:?} must not lead to some other address"
            );
        }
    }

    #[test]
    fn requested_address_of_an_unused_family_is_reported() {
        let svc = service(serde_json::json!({}), Some("fd00::5"));
        let request = request_of(&svc, &[V4, V6]);
        assert_eq!(families(&request), vec![V4]);
        assert!(matches!(
            request.problems[0],
            RequestProblem::RequestedFamilyUnused { .. }
        ));
        assert!(request.hold_only);
    }
}
