use std::time::Instant;

use signpost_crds::{DNSRecord, ServiceIP};

use super::*;
use crate::records::RecordsIndex;

fn claim(address: &str, service: &str, namespace: &str) -> ServiceIP {
    serde_json::from_value(json!({
        "apiVersion": "signpost.dev/v1alpha1",
        "kind": "ServiceIP",
        "metadata": {"name": address, "uid": format!("claim-{address}")},
        "spec": {
            "address": address,
            "cidr": "10.96.0.0/16",
            "serviceRef": {"namespace": namespace, "name": service, "uid": format!("uid-{service}")},
        },
    }))
    .expect("a ServiceIP")
}

fn record(name: &str, version: &str) -> DNSRecord {
    serde_json::from_value(json!({
        "apiVersion": "signpost.dev/v1alpha1",
        "kind": "DNSRecord",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": version},
        "spec": {"fqdn": format!("{name}.ns.svc.cluster.local"), "type": "ClusterIP", "ttl": 5},
    }))
    .expect("a DNSRecord")
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("an address")
}

#[test]
fn a_claim_gives_its_service_an_address_and_its_deletion_takes_it() {
    let mut index = RecordsIndex::new(None);
    assert_eq!(
        index.apply_claim(&claim("10.96.0.7", "web", "ns")),
        vec![key("web")]
    );
    assert_eq!(
        index.vips.vips_of(&key("web"), "uid-web"),
        vec![ip("10.96.0.7")]
    );
    assert!(
        index
            .apply_claim(&claim("10.96.0.7", "web", "ns"))
            .is_empty(),
        "the same claim again changes nothing"
    );
    assert_eq!(
        index.delete_claim(&claim("10.96.0.7", "web", "ns")),
        Some(key("web"))
    );
    assert!(index.vips.vips_of(&key("web"), "uid-web").is_empty());
}

#[test]
fn claims_of_other_namespaces_or_malformed_are_filed_nowhere() {
    let mut index = RecordsIndex::new(Some("ns".into()));
    assert!(
        index
            .apply_claim(&claim("10.96.0.8", "web", "other"))
            .is_empty()
    );
    let mut bad = claim("10.96.0.9", "web", "ns");
    bad.spec.address = "not an address".into();
    assert!(index.apply_claim(&bad).is_empty());
    assert!(index.vips.is_empty());
}

#[test]
fn a_claim_relist_reports_only_services_whose_addresses_changed() {
    let mut index = RecordsIndex::new(None);
    index.apply_claim(&claim("10.96.0.1", "kept", "ns"));
    index.apply_claim(&claim("10.96.0.2", "gone", "ns"));
    let affected = index.reset_claims([
        &claim("10.96.0.1", "kept", "ns"),
        &claim("10.96.0.3", "new", "ns"),
    ]);
    assert_eq!(sorted(affected), vec![key("gone"), key("new")]);
}

#[test]
fn slices_are_filed_by_service_and_a_relabel_concerns_both() {
    let mut index = RecordsIndex::new(None);
    assert_eq!(index.apply_slice(&slice("db-abc", "db")), vec![key("db")]);
    assert_eq!(index.slices.names(&key("db")), vec!["db-abc".to_string()]);
    assert_eq!(
        index.apply_slice(&slice("db-abc", "db2")),
        vec![key("db"), key("db2")]
    );
    assert_eq!(
        index.delete_slice(&slice("db-abc", "db2")),
        Some(key("db2"))
    );
    assert!(index.slices.names(&key("db2")).is_empty());
    assert_eq!(
        index.reset_slices([&slice("a-1", "a"), &slice("a-2", "a"), &slice("b-1", "b")]),
        vec![key("a"), key("b")]
    );
}

#[test]
fn our_record_write_is_pending_until_the_cache_shows_it() {
    let mut index = RecordsIndex::new(None);
    index
        .written
        .insert(key("web"), ("12".into(), Instant::now()));
    assert_eq!(index.apply_record(&record("web", "11")), key("web"));
    assert!(index.written.contains_key(&key("web")), "an older version");
    assert_eq!(index.apply_record(&record("web", "12")), key("web"));
    assert!(index.written.is_empty(), "ours arrived");

    index
        .written
        .insert(key("web"), ("13".into(), Instant::now()));
    assert_eq!(index.delete_record(&record("web", "12")), key("web"));
    assert!(index.written.is_empty());

    index
        .written
        .insert(key("api"), ("2".into(), Instant::now()));
    index.reset_records();
    assert!(index.written.is_empty());
}
