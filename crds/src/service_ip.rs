//! `ServiceIP`: the durable claim on one virtual IP.
//!
//! The object's name is the address itself, so the API server's refusal of a second object
//! with the same name is what makes an address impossible to hand out twice, even while two
//! Signpost replicas overlap during a leadership hand-over. The in-memory bitmap is only a
//! cache of the set of these objects.

use std::net::IpAddr;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Spec of a ServiceIP. Immutable: a claim is released by deleting it, never edited.
// Each `printcolumn(...)` repeats `type_ = "string"`, which clippy mistakes for a duplicated
// attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "signpost.dev",
    version = "v1alpha1",
    kind = "ServiceIP",
    plural = "serviceips",
    shortname = "sip",
    category = "signpost",
    doc = "A virtual IP that Signpost allocated to a Service. The object name is the address (IPv6 with ':' written as '-', and a leading or trailing '::' given its zero, e.g. fd00--0); creating it claims the address.",
    validation = Rule::new("self.metadata.name == (self.spec.address.startsWith(':') ? '0' : '') + self.spec.address.replace(':', '-') + (self.spec.address.endsWith(':') ? '0' : '')").message("the name of a ServiceIP must be its address, with ':' written as '-' (and a leading or trailing '::' as '0--' or '--0')"),
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.serviceRef.namespace"),
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.serviceRef.name"),
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.serviceRef.uid"
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a ServiceIP is immutable: delete it to release the address"))]
#[x_kube(validation = Rule::new("cidr(self.cidr).containsIP(self.address)").message("address must lie inside cidr"))]
#[serde(rename_all = "camelCase")]
pub struct ServiceIPSpec {
    /// The allocated address, in canonical form.
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self) && ip.isCanonical(self)").message("must be an IP address in canonical form"))]
    pub address: String,
    /// The configured service CIDR the address was allocated from.
    #[schemars(length(max = 49))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("must be a CIDR such as 10.200.0.0/16"))]
    pub cidr: String,
    /// The Service holding the address; the UID tells a recreated Service of the same name apart.
    pub service_ref: ServiceRef,
}

/// Identifies the Service that owns an address.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceRef {
    /// Namespace of the Service.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the Service.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// UID of the Service.
    #[schemars(length(min = 1, max = 64))]
    pub uid: String,
}

/// The object name that claims `address`: the address itself, with IPv6 colons written as
/// dashes because object names are DNS subdomains. A subdomain must start and end with a
/// letter or digit, so an address that starts or ends with `::` gets the zero that `::`
/// stands for written out (`fd00::` → `fd00--0`, `::1` → `0--1`), which reads back as the
/// same address.
pub fn claim_name(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let text = v6.to_string();
            let mut name = String::with_capacity(text.len() + 2);
            if text.starts_with(':') {
                name.push('0');
            }
            name.push_str(&text.replace(':', "-"));
            if text.ends_with(':') {
                name.push('0');
            }
            name
        }
    }
}

/// The address a claim name stands for, if it is one.
pub fn address_of_claim(name: &str) -> Option<IpAddr> {
    if name.contains('-') {
        name.replace('-', ":").parse().ok()
    } else {
        name.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_round_trip_for_both_families() {
        for text in ["10.200.0.7", "fd00:10:200::7", "fd00::", "::1"] {
            let address: IpAddr = text.parse().unwrap();
            let name = claim_name(address);
            assert!(!name.contains(':'), "{name} must be a valid object name");
            assert_eq!(address_of_claim(&name), Some(address));
        }
    }

    /// What the API server accepts as an object name (a DNS subdomain, RFC 1123).
    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn every_claim_name_is_a_valid_object_name() {
        for text in [
            "fd00::",
            "::1",
            "::",
            "fd00:10:200:0:1::",
            "10.0.0.1",
            "fd00::1",
        ] {
            let address: IpAddr = text.parse().unwrap();
            let name = claim_name(address);
            assert!(is_dns_subdomain(&name), "{text} -> {name}");
            assert_eq!(address_of_claim(&name), Some(address), "{name}");
        }
        assert_eq!(claim_name("fd00::".parse().unwrap()), "fd00--0");
        assert_eq!(claim_name("::1".parse().unwrap()), "0--1");
    }

    #[test]
    fn ipv6_claim_name_uses_canonical_form() {
        let address: IpAddr = "fd00:0010:0200:0000::0007".parse().unwrap();
        assert_eq!(claim_name(address), "fd00-10-200--7");
    }

    #[test]
    fn names_that_are_not_addresses_are_not_claims() {
        assert_eq!(address_of_claim("hostnames"), None);
        assert_eq!(address_of_claim("10.200.0"), None);
    }
}
