//! ClusterIP mode: the addresses the admission webhook writes into a Service as it is created.
//!
//! A Service's `spec.clusterIPs` can only be chosen at creation, so in ClusterIP mode
//! Signpost's allocator answers in the create path: the API server asks the webhook, the
//! webhook picks from the book and holds each new address for the Service until the Service
//! exists (then the IPAM controller claims it, or the hold runs out). This module decides
//! what to set; holding and the HTTP side are the caller's.
//!
//! Rules, as the API server's own allocator has them: ExternalName and headless Services get
//! nothing; addresses the user set in `spec.clusterIPs` are kept, and held when they are
//! Signpost's; the `signpost.dev/cluster-ip` annotation asks for an address per family;
//! `ipFamilyPolicy` and `ipFamilies` say which families, as [`request_of`] reads them (with
//! the families of user-set addresses counting as asked for). Families Signpost has no CIDR
//! for are left to the API server.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::request::{Request, RequestProblem, request_of, wants_virtual_ip};
use super::{AllocError, IpFamily};

/// Where the webhook takes addresses from: the claim book of the leader, in production.
pub trait AddressSource {
    /// The families Signpost has CIDRs for, the primary first.
    fn families(&self) -> Vec<IpFamily>;
    /// Whether `address` lies in one of Signpost's CIDRs.
    fn contains(&self, address: IpAddr) -> bool;
    /// Holds `address`; fails if it is taken, reserved or out of range.
    fn hold(&mut self, address: IpAddr) -> Result<(), AllocError>;
    /// Holds the next free address of `family`.
    fn hold_next(&mut self, family: IpFamily) -> Result<IpAddr, AllocError>;
    /// Gives back a hold (a refused or dry-run request).
    fn release(&mut self, address: IpAddr);
}

/// What the webhook does with one Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admission {
    /// The `spec.clusterIPs` to write, primary first; `None` leaves the Service as it came.
    pub cluster_ips: Option<Vec<IpAddr>>,
    /// The addresses now held for the Service: to be claimed once it exists, or given back
    /// if the request was a dry run or the webhook's answer is not sent.
    pub held: Vec<IpAddr>,
    /// What could not be honoured, reported later as Events by the IPAM controller.
    pub problems: Vec<RequestProblem>,
}

/// Why the webhook refuses a Service: an address the user set is in Signpost's CIDRs and
/// cannot be had (taken, or never handed out). The API server would refuse a taken one too
/// once its holder exists; refusing now also covers a holder whose create is on its way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.clusterIPs: {0}")]
pub struct AddressRefused(#[source] pub AllocError);

/// The addresses to write into `service` (being created, or turning from ExternalName into a
/// type with a cluster IP), taking new ones from `source`. On an error nothing stays held.
pub fn admit(
    service: &Service,
    source: &mut impl AddressSource,
) -> Result<Admission, AddressRefused> {
    let mut admission = Admission::default();
    if !wants_virtual_ip(service) {
        return Ok(admission);
    }
    let set_by_user = user_cluster_ips(service);
    let request = request_with_user_families(service, &set_by_user, &source.families());
    admission.problems = request.problems.clone();

    let mut addresses: Vec<IpAddr> = Vec::new();
    // The user's addresses first, in their order: the API server keeps `clusterIPs[0]` as the
    // primary. Ours among them are held.
    for address in &set_by_user {
        if source.contains(*address) {
            if let Err(error) = source.hold(*address) {
                admission.held.iter().for_each(|a| source.release(*a));
                return Err(AddressRefused(error));
            }
            admission.held.push(*address);
        }
        addresses.push(*address);
    }
    // Then every family asked for that the user did not give an address of.
    for want in &request.families {
        if addresses.iter().any(|a| IpFamily::of(*a) == want.family) {
            continue;
        }
        let picked = match want.requested {
            Some(requested) => source.hold(requested).map(|()| requested),
            None if request.hold_only => continue,
            None => source.hold_next(want.family),
        };
        // An address that cannot be had is the API server's to choose (it allocates every
        // family left without an address); the IPAM controller reports why.
        if let Ok(address) = picked {
            admission.held.push(address);
            addresses.push(address);
        }
    }
    if addresses != set_by_user {
        admission.cluster_ips = Some(addresses);
    }
    Ok(admission)
}

/// The addresses in `spec.clusterIPs` (or `spec.clusterIP`) the user set, in order.
fn user_cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let listed = spec.cluster_ips.clone().unwrap_or_default();
    let single = spec.cluster_ip.iter().cloned().collect::<Vec<_>>();
    let texts = if listed.is_empty() { single } else { listed };
    texts.iter().filter_map(|t| t.parse().ok()).collect()
}

/// [`request_of`], with the families of addresses the user set counting as asked for when
/// `spec.ipFamilies` is empty (the API server derives them the same way).
fn request_with_user_families(
    service: &Service,
    set_by_user: &[IpAddr],
    configured: &[IpFamily],
) -> Request {
    let asked = service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .is_some_and(|f| !f.is_empty());
    if asked || set_by_user.is_empty() {
        return request_of(service, configured);
    }
    let mut service = service.clone();
    if let Some(spec) = service.spec.as_mut() {
        spec.ip_families = Some(
            set_by_user
                .iter()
                .map(|a| IpFamily::of(*a).to_string())
                .collect(),
        );
    }
    request_of(&service, configured)
}

/// What a Service holds in ClusterIP mode: its `spec.clusterIPs` that lie in Signpost's CIDRs
/// (`ours`), each the requested address of its family. Once a Service exists its addresses are
/// the API server's record, whoever chose them (the webhook, or the API server itself while
/// Signpost was down): the IPAM controller claims exactly those, and releases any other.
pub fn request_from_cluster_ips(service: &Service, ours: impl Fn(IpAddr) -> bool) -> Request {
    let mut request = Request::default();
    if !wants_virtual_ip(service) {
        return request;
    }
    for address in user_cluster_ips(service) {
        let family = IpFamily::of(address);
        let seen = request.families.iter().any(|f| f.family == family);
        if ours(address) && !seen {
            request.families.push(super::request::FamilyRequest {
                family,
                requested: Some(address),
            });
        }
    }
    request
}

impl AddressSource for super::ClaimBook {
    fn families(&self) -> Vec<IpFamily> {
        self.allocator().families().to_vec()
    }

    fn contains(&self, address: IpAddr) -> bool {
        self.allocator().cidr_of(address).is_some()
    }

    fn hold(&mut self, address: IpAddr) -> Result<(), AllocError> {
        self.reserve(address).map(|_| ())
    }

    fn hold_next(&mut self, family: IpFamily) -> Result<IpAddr, AllocError> {
        self.reserve_next(family).map(|a| a.address)
    }

    fn release(&mut self, address: IpAddr) {
        self.unreserve(address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::{Allocator, ClaimBook};

    fn book(cidrs: &[&str]) -> ClaimBook {
        let cidrs = cidrs.iter().map(|c| c.parse().unwrap());
        ClaimBook::new(Allocator::with_quarantine(cidrs, 0).unwrap())
    }

    fn service(spec: serde_json::Value, annotation: Option<&str>) -> Service {
        let mut meta = serde_json::json!({"name": "web", "namespace": "demo"});
        if let Some(value) = annotation {
            meta["annotations"] = serde_json::json!({"signpost.dev/cluster-ip": value});
        }
        serde_json::from_value(serde_json::json!({"metadata": meta, "spec": spec})).unwrap()
    }

    fn ips(texts: &[&str]) -> Vec<IpAddr> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn a_plain_service_gets_the_next_address_of_the_primary_family() {
        let mut book = book(&["10.200.0.0/24", "fd00:200::/120"]);
        let admitted = admit(&service(serde_json::json!({}), None), &mut book).unwrap();
        assert_eq!(admitted.cluster_ips, Some(ips(&["10.200.0.1"])));
        assert_eq!(admitted.held, ips(&["10.200.0.1"]));
        let next = admit(&service(serde_json::json!({}), None), &mut book).unwrap();
        assert_eq!(
            next.cluster_ips,
            Some(ips(&["10.200.0.2"])),
            "held addresses are not handed out again"
        );
    }

    #[test]
    fn dual_stack_follows_ip_families_order() {
        let mut book = book(&["10.200.0.0/24", "fd00:200::/120"]);
        let spec = serde_json::json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]});
        let admitted = admit(&service(spec, None), &mut book).unwrap();
        assert_eq!(
            admitted.cluster_ips,
            Some(ips(&["fd00:200::1", "10.200.0.1"]))
        );
    }

    #[test]
    fn prefer_dual_stack_with_one_family_configured_leaves_the_other_to_the_api_server() {
        let mut book = book(&["10.200.0.0/24"]);
        let spec = serde_json::json!({"ipFamilyPolicy": "PreferDualStack"});
        let admitted = admit(&service(spec, None), &mut book).unwrap();
        assert_eq!(admitted.cluster_ips, Some(ips(&["10.200.0.1"])));
    }

    #[test]
    fn headless_and_external_name_services_are_left_alone() {
        let mut book = book(&["10.200.0.0/24"]);
        for spec in [
            serde_json::json!({"clusterIP": "None"}),
            serde_json::json!({"type": "ExternalName", "externalName": "example.com"}),
        ] {
            let admitted = admit(&service(spec, None), &mut book).unwrap();
            assert_eq!(admitted, Admission::default());
        }
    }

    #[test]
    fn the_annotation_asks_for_an_address() {
        let mut book = book(&["10.200.0.0/24"]);
        let admitted = admit(
            &service(serde_json::json!({}), Some("10.200.0.77")),
            &mut book,
        )
        .unwrap();
        assert_eq!(admitted.cluster_ips, Some(ips(&["10.200.0.77"])));
    }

    #[test]
    fn a_user_set_address_is_kept_and_held_when_it_is_ours() {
        let mut book = book(&["10.200.0.0/24"]);
        let spec = serde_json::json!({"clusterIP": "10.200.0.9", "clusterIPs": ["10.200.0.9"]});
        let admitted = admit(&service(spec.clone(), None), &mut book).unwrap();
        assert_eq!(admitted.cluster_ips, None, "nothing to change");
        assert_eq!(admitted.held, ips(&["10.200.0.9"]));
        let refused = admit(&service(spec, None), &mut book).unwrap_err();
        assert!(refused.to_string().contains("10.200.0.9"), "{refused}");
    }

    #[test]
    fn a_user_set_address_outside_our_cidrs_is_passed_on_untouched() {
        let mut book = book(&["10.200.0.0/24"]);
        let spec = serde_json::json!({"clusterIPs": ["10.96.0.50"]});
        let admitted = admit(&service(spec, None), &mut book).unwrap();
        assert_eq!(admitted, Admission::default());
    }

    #[test]
    fn a_missing_family_is_added_after_the_users_address() {
        let mut book = book(&["10.200.0.0/24", "fd00:200::/120"]);
        let spec =
            serde_json::json!({"ipFamilyPolicy": "PreferDualStack", "clusterIPs": ["fd00:200::9"]});
        let admitted = admit(&service(spec, None), &mut book).unwrap();
        assert_eq!(
            admitted.cluster_ips,
            Some(ips(&["fd00:200::9", "10.200.0.1"]))
        );
        assert_eq!(admitted.held, ips(&["fd00:200::9", "10.200.0.1"]));
    }

    #[test]
    fn an_existing_service_holds_its_cluster_ips_in_our_cidrs() {
        let book = book(&["10.200.0.0/24"]);
        let ours = |a: IpAddr| book.contains(a);
        let spec = serde_json::json!({"clusterIPs": ["10.200.0.7", "fd00:96::7"]});
        let request = request_from_cluster_ips(&service(spec, None), ours);
        let held: Vec<_> = request.families.iter().map(|f| f.requested).collect();
        assert_eq!(held, vec![Some("10.200.0.7".parse().unwrap())]);
        let outside = serde_json::json!({"clusterIPs": ["10.96.0.7"]});
        assert!(
            request_from_cluster_ips(&service(outside, None), ours)
                .families
                .is_empty()
        );
        let headless = serde_json::json!({"clusterIP": "None", "clusterIPs": ["None"]});
        assert!(
            request_from_cluster_ips(&service(headless, None), ours)
                .families
                .is_empty()
        );
    }

    #[test]
    fn a_refusal_gives_back_what_it_held() {
        let mut book = book(&["10.200.0.0/24", "fd00:200::/120"]);
        book.reserve("fd00:200::5".parse().unwrap()).unwrap();
        let spec = serde_json::json!({"ipFamilyPolicy": "RequireDualStack", "clusterIPs": ["10.200.0.5", "fd00:200::5"]});
        assert!(admit(&service(spec, None), &mut book).is_err());
        assert!(!book.allocator().is_allocated("10.200.0.5".parse().unwrap()));
    }
}
