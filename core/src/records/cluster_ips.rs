//! A Service's own addresses, as the API server records them: what a ClusterIP record holds in
//! ClusterIP mode (`--cluster-ip-mode`), where `spec.clusterIPs` is the truth whoever chose the
//! addresses (Signpost's webhook, or the API server from another ServiceCIDR while Signpost was
//! down), and what `signpost proxy` accepts as a Service's own VIPs.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

/// The Service's `spec.clusterIPs` (or `spec.clusterIP` when the list is empty, as on objects
/// written before the list existed), primary first, at most one per family: the API server
/// allows no more, so a second address of a family is not the Service's. `None` (headless),
/// empty and unparsable entries give nothing, so a headless or ExternalName Service, or one not
/// yet allocated, has no addresses.
pub fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let listed = spec.cluster_ips.as_deref().unwrap_or_default();
    let texts: Vec<&str> = if listed.is_empty() {
        spec.cluster_ip.as_deref().into_iter().collect()
    } else {
        listed.iter().map(String::as_str).collect()
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for address in texts.iter().filter_map(|t| t.trim().parse::<IpAddr>().ok()) {
        if !out.iter().any(|a| a.is_ipv4() == address.is_ipv4()) {
            out.push(address);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "demo"},
            "spec": spec,
        }))
        .expect("a Service")
    }

    fn ips(texts: &[&str]) -> Vec<IpAddr> {
        texts
            .iter()
            .map(|t| t.parse().expect("an address"))
            .collect()
    }

    #[test]
    fn dual_stack_gives_both_primary_first() {
        let spec = serde_json::json!({"clusterIP": "fd00:96::7",
            "clusterIPs": ["fd00:96::7", "10.96.0.7"]});
        assert_eq!(
            cluster_ips(&service(spec)),
            ips(&["fd00:96::7", "10.96.0.7"])
        );
    }

    #[test]
    fn the_single_field_counts_when_the_list_is_empty() {
        let spec = serde_json::json!({"clusterIP": "10.96.0.8"});
        assert_eq!(cluster_ips(&service(spec)), ips(&["10.96.0.8"]));
        let spec = serde_json::json!({"clusterIP": "10.96.0.8", "clusterIPs": []});
        assert_eq!(cluster_ips(&service(spec)), ips(&["10.96.0.8"]));
    }

    #[test]
    fn the_list_wins_over_the_single_field() {
        let spec = serde_json::json!({"clusterIP": "10.96.0.8", "clusterIPs": ["10.200.0.8"]});
        assert_eq!(cluster_ips(&service(spec)), ips(&["10.200.0.8"]));
    }

    #[test]
    fn headless_empty_and_unparsable_give_nothing() {
        for spec in [
            serde_json::json!({"clusterIP": "None", "clusterIPs": ["None"]}),
            serde_json::json!({"clusterIP": ""}),
            serde_json::json!({"clusterIPs": ["", "bogus"]}),
            serde_json::json!({"type": "ExternalName", "externalName": "example.com"}),
            serde_json::json!({}),
        ] {
            assert_eq!(
                cluster_ips(&service(spec.clone())),
                Vec::<IpAddr>::new(),
                "{spec}"
            );
        }
        let no_spec: Service = serde_json::from_value(serde_json::json!({})).expect("a Service");
        assert_eq!(cluster_ips(&no_spec), Vec::<IpAddr>::new());
    }

    #[test]
    fn one_address_per_family() {
        let spec = serde_json::json!({"clusterIPs": ["10.96.0.1", "None", "10.96.0.2", "fd00::1", "fd00::2"]});
        assert_eq!(cluster_ips(&service(spec)), ips(&["10.96.0.1", "fd00::1"]));
    }
}
