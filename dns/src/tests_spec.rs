//! Unit tests of the specification's records that `tests.rs` does not cover: `dns-version`,
//! PTR names, reverse zones, answer rotation, headless Services without ready endpoints.

use serde_json::json;
use signpost_crds::DNSRecord;

use super::table::{Data, QueryType, SCHEMA_VERSION, Status, Table, VERSION_TTL};

use super::tests::{NS, fqdn, record};

fn table() -> Table {
    Table::new("cluster.local").expect("a valid domain")
}

#[test]
fn dns_version_is_a_txt_record_at_the_apex() {
    let t = table();
    for name in ["dns-version.cluster.local", "DNS-Version.Cluster.Local."] {
        let got = t.lookup(name, QueryType::Txt);
        assert_eq!(got.status, Status::NoError);
        assert_eq!(got.answers.len(), 1);
        assert_eq!(got.answers[0].name, "dns-version.cluster.local");
        assert_eq!(got.answers[0].ttl, VERSION_TTL);
        assert_eq!(got.answers[0].data, Data::Txt(SCHEMA_VERSION.into()));
    }
    assert_eq!(SCHEMA_VERSION, "1.1.0");
    // Other types at that name: NODATA, not NXDOMAIN.
    let a = t.lookup("dns-version.cluster.local", QueryType::A);
    assert_eq!(a.status, Status::NoError);
    assert!(a.answers.is_empty());
    // TXT of a Service name: NODATA.
    let mut t = table();
    t.apply(&record(
        "web",
        "1",
        json!({"fqdn": fqdn("web"), "type": "ClusterIP", "ttl": 5, "ipv4": ["10.96.0.10"]}),
    ));
    let txt = t.lookup(&fqdn("web"), QueryType::Txt);
    assert_eq!(txt.status, Status::NoError);
    assert!(txt.answers.is_empty());
    assert_eq!(
        t.lookup("x.dns-version.cluster.local", QueryType::Txt)
            .status,
        Status::NxDomain
    );
}

fn reverse_table() -> Table {
    Table::new("cluster.local")
        .expect("a valid domain")
        .with_reverse_zones(
            [
                "10.96.0.0/12",
                "fd00:96::/108",
                "10.244.0.0/16",
                "fd00:244::/64",
            ]
            .map(|c| c.parse().unwrap()),
        )
}

fn cluster_ip(name: &str, v4: &str, v6: &str) -> DNSRecord {
    record(
        name,
        "1",
        json!({"fqdn": fqdn(name), "type": "ClusterIP", "ttl": 7, "ipv4": [v4], "ipv6": [v6]}),
    )
}

fn headless(name: &str, version: &str, hosts: serde_json::Value) -> DNSRecord {
    let fqdn = fqdn(name);
    let hosts = hosts.as_array().unwrap().clone();
    let ipv4: Vec<serde_json::Value> = hosts
        .iter()
        .flat_map(|h| h["ipv4"].as_array().cloned().unwrap_or_default())
        .collect();
    let targets: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| json!({"host": format!("{}.{fqdn}", h["name"].as_str().unwrap()), "port": 80}))
        .collect();
    let srv = if targets.is_empty() {
        json!([{"name": format!("_http._tcp.{fqdn}"), "portName": "http", "protocol": "TCP",
                "targets": []}])
    } else {
        json!([{"name": format!("_http._tcp.{fqdn}"), "portName": "http", "protocol": "TCP",
                "targets": targets}])
    };
    record(
        name,
        version,
        json!({"fqdn": fqdn, "type": "Headless", "ttl": 5, "ipv4": ipv4, "hosts": hosts,
               "srv": srv}),
    )
}

fn ptrs(t: &Table, name: &str) -> (Status, Vec<String>) {
    let got = t.lookup(name, QueryType::Ptr);
    let names = got
        .answers
        .iter()
        .map(|a| match &a.data {
            Data::Ptr(target) => target.clone(),
            other => panic!("not a PTR: {other:?}"),
        })
        .collect();
    (got.status, names)
}

#[test]
fn cluster_ip_addresses_point_back_to_the_service() {
    let mut t = reverse_table();
    t.apply(&cluster_ip("api", "10.96.0.10", "fd00:96::a"));
    assert_eq!(
        ptrs(&t, "10.0.96.10.in-addr.arpa"),
        (Status::NoError, vec![fqdn("api")])
    );
    let v6 = crate::reverse::ptr_name("fd00:96::a".parse().unwrap());
    assert_eq!(ptrs(&t, &v6), (Status::NoError, vec![fqdn("api")]));
    // Upper case and a trailing dot, as clients send them.
    assert_eq!(ptrs(&t, "10.0.96.10.IN-ADDR.ARPA.").1, vec![fqdn("api")]);
    let answer = &t.lookup("10.0.96.10.in-addr.arpa", QueryType::Ptr).answers[0];
    assert_eq!(answer.ttl, 7);
    // Another type at the name: NODATA; an unknown address in range: NXDOMAIN with the
    // reverse zone's SOA; a prefix with something below: NODATA.
    let a = t.lookup("10.0.96.10.in-addr.arpa", QueryType::A);
    assert_eq!((a.status, a.answers.len()), (Status::NoError, 0));
    assert_eq!(ptrs(&t, "11.0.96.10.in-addr.arpa").0, Status::NxDomain);
    assert_eq!(t.soa_for("11.0.96.10.in-addr.arpa").name, "10.in-addr.arpa");
    assert_eq!(t.soa_for(&fqdn("x")).name, "cluster.local");
    assert_eq!(ptrs(&t, "0.96.10.in-addr.arpa"), (Status::NoError, vec![]));
    assert_eq!(ptrs(&t, "1.96.10.in-addr.arpa").0, Status::NxDomain);
    assert_eq!(ptrs(&t, "x.10.0.96.10.in-addr.arpa").0, Status::NxDomain);
    // Outside every range (even when wider than one): not the table's.
    assert!(t.authoritative("10.0.96.10.in-addr.arpa"));
    assert!(!t.authoritative("8.8.8.8.in-addr.arpa"));
    assert!(!t.authoritative("10.in-addr.arpa"));
    assert_eq!(ptrs(&t, "8.8.8.8.in-addr.arpa").0, Status::Outside);
    // Deleted: NXDOMAIN again.
    assert!(t.delete(NS, "api"));
    assert_eq!(ptrs(&t, "10.0.96.10.in-addr.arpa").0, Status::NxDomain);
    assert_eq!(ptrs(&t, "0.96.10.in-addr.arpa").0, Status::NxDomain);
}

#[test]
fn without_ranges_no_reverse_name_is_answered() {
    let mut t = table();
    t.apply(&cluster_ip("api", "10.96.0.10", "fd00:96::a"));
    assert!(!t.authoritative("10.0.96.10.in-addr.arpa"));
    assert_eq!(ptrs(&t, "10.0.96.10.in-addr.arpa").0, Status::Outside);
}

#[test]
fn headless_endpoints_point_back_to_their_host_names() {
    let mut t = reverse_table();
    t.apply(&headless(
        "web",
        "1",
        json!([{"name": "web-0", "ipv4": ["10.244.0.4"], "ipv6": ["fd00:244::4"]},
               {"name": "10-244-0-5", "ipv4": ["10.244.0.5"]}]),
    ));
    assert_eq!(
        ptrs(&t, "4.0.244.10.in-addr.arpa").1,
        vec![format!("web-0.{}", fqdn("web"))]
    );
    assert_eq!(
        ptrs(&t, "5.0.244.10.in-addr.arpa").1,
        vec![format!("10-244-0-5.{}", fqdn("web"))]
    );
    let v6 = crate::reverse::ptr_name("fd00:244::4".parse().unwrap());
    assert_eq!(ptrs(&t, &v6).1, vec![format!("web-0.{}", fqdn("web"))]);
    let db0 = format!("db-0.{}", fqdn("db"));
    let web0 = format!("web-0.{}", fqdn("web"));
    for (what, change, names) in [
        (
            "a pod behind two headless Services: both names",
            headless("db", "1", json!([{"name": "db-0", "ipv4": ["10.244.0.4"]}])),
            vec![db0.clone(), web0],
        ),
        (
            "the endpoint goes: its PTR goes",
            headless(
                "web",
                "2",
                json!([{"name": "10-244-0-5", "ipv4": ["10.244.0.5"]}]),
            ),
            vec![db0],
        ),
    ] {
        t.apply(&change);
        assert_eq!(ptrs(&t, "4.0.244.10.in-addr.arpa").1, names, "{what}");
    }
}

#[test]
fn headless_service_without_ready_endpoints_is_nxdomain() {
    let mut t = reverse_table();
    t.apply(&headless(
        "web",
        "1",
        json!([{"name": "web-0", "ipv4": ["10.244.0.4"]}]),
    ));
    let srv = format!("_http._tcp.{}", fqdn("web"));
    assert_eq!(t.lookup(&fqdn("web"), QueryType::A).answers.len(), 1);
    assert_eq!(t.lookup(&srv, QueryType::Srv).answers.len(), 1);
    t.apply(&headless("web", "2", json!([])));
    for (name, qtype) in [
        (fqdn("web"), QueryType::A),
        (fqdn("web"), QueryType::Aaaa),
        (srv.clone(), QueryType::Srv),
        (format!("web-0.{}", fqdn("web")), QueryType::A),
    ] {
        assert_eq!(t.lookup(&name, qtype).status, Status::NxDomain, "{name}");
    }
    assert_eq!(ptrs(&t, "4.0.244.10.in-addr.arpa").0, Status::NxDomain);
    // The namespace's other names are untouched; an endpoint coming back is served again.
    t.apply(&cluster_ip("api", "10.96.0.10", "fd00:96::a"));
    t.apply(&headless(
        "web",
        "3",
        json!([{"name": "web-1", "ipv4": ["10.244.0.6"]}]),
    ));
    assert_eq!(t.lookup(&fqdn("web"), QueryType::A).answers.len(), 1);
}

#[test]
fn programming_latency_is_now_minus_the_trigger_time() {
    use crate::watch::latency_since;
    use std::time::Duration;
    let now: k8s_openapi::jiff::Timestamp = "2026-12-06T10:00:01.25Z".parse().unwrap();
    assert_eq!(
        latency_since("2026-12-06T10:00:00Z", now),
        Some(Duration::from_millis(1250))
    );
    // A trigger in the future (clock skew between nodes) counts as zero, not as a panic.
    assert_eq!(
        latency_since("2026-12-06T10:00:02Z", now),
        Some(Duration::ZERO)
    );
    assert_eq!(latency_since("yesterday", now), None);
    assert_eq!(
        crate::watch::service_kind(signpost_crds::RecordType::Headless),
        "headless"
    );
}
