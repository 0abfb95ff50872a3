//! Table tests: every DNS rule of `signpost dns`, without a cluster or a socket.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::json;
use signpost_crds::DNSRecord;

use super::server::{query_type, rcode_label, type_label};
use super::table::{Answer, Applied, Data, Lookup, QueryType, Status, Table};

pub(crate) const NS: &str = "demo";

pub(crate) fn record(name: &str, version: &str, spec: serde_json::Value) -> DNSRecord {
    serde_json::from_value(json!({
        "apiVersion": "signpost.dev/v1alpha1",
        "kind": "DNSRecord",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": version},
        "spec": spec,
    }))
    .expect("a DNSRecord")
}

pub(crate) fn fqdn(service: &str) -> String {
    format!("{service}.{NS}.svc.cluster.local")
}

/// A record of Service `name`, its spec made from the Service's FQDN.
fn service_record(
    name: &str,
    version: &str,
    spec: impl FnOnce(&str) -> serde_json::Value,
) -> DNSRecord {
    record(name, version, spec(&fqdn(name)))
}

/// The seed's `hostnames` Service: VIP 10.200.0.7, port `default` 80/TCP.
fn hostnames(version: &str) -> DNSRecord {
    service_record("hostnames", version, |fqdn| {
        json!({
            "fqdn": fqdn, "type": "ClusterIP", "ttl": 5, "ipv4": ["10.200.0.7"],
            "srv": [{"name": format!("_default._tcp.{fqdn}"), "portName": "default",
                     "protocol": "TCP", "targets": [{"host": fqdn, "port": 80}]}]
        })
    })
}

/// A headless Service over two pods with host names.
fn web(version: &str) -> DNSRecord {
    service_record("web", version, |fqdn| {
        json!({
            "fqdn": fqdn, "type": "Headless", "ttl": 30,
            "ipv4": ["10.244.0.4", "10.244.0.5"], "ipv6": ["fd00::4"],
            "hosts": [{"name": "web-0", "ipv4": ["10.244.0.4"], "ipv6": ["fd00::4"]},
                      {"name": "web-1", "ipv4": ["10.244.0.5"]}],
            "srv": [{"name": format!("_http._tcp.{fqdn}"), "portName": "http", "protocol": "TCP",
                     "targets": [{"host": format!("web-0.{fqdn}"), "port": 8080},
                                 {"host": format!("web-1.{fqdn}"), "port": 8080}]}]
        })
    })
}

/// A ClusterIP Service's record of `fqdn` with one address, under `family` (`ipv4` or
/// `ipv6`, whatever the address).
fn cluster_ip(name: &str, version: &str, fqdn: &str, family: &str, address: &str) -> DNSRecord {
    record(
        name,
        version,
        json!({"fqdn": fqdn, "type": "ClusterIP", "ttl": 5, family: [address]}),
    )
}

fn external(name: &str, target: &str) -> DNSRecord {
    record(
        name,
        "1",
        json!({"fqdn": fqdn(name), "type": "ExternalName", "ttl": 5, "cname": target}),
    )
}

fn table() -> Table {
    Table::new("cluster.local").expect("a valid domain")
}

fn a(name: &str, ttl: u32, ip: &str) -> Answer {
    Answer {
        name: name.into(),
        ttl,
        data: Data::A(ip.parse::<Ipv4Addr>().unwrap()),
    }
}

fn aaaa(name: &str, ttl: u32, ip: &str) -> Answer {
    Answer {
        name: name.into(),
        ttl,
        data: Data::Aaaa(ip.parse::<Ipv6Addr>().unwrap()),
    }
}

fn nodata(lookup: &Lookup) -> bool {
    lookup.status == Status::NoError && lookup.answers.is_empty()
}

#[test]
fn dns_cluster_ip_answers_a_with_the_vip_and_the_record_ttl() {
    let mut t = table();
    assert_eq!(t.apply(&hostnames("1")), Applied::Served);
    let fqdn = fqdn("hostnames");
    let got = t.lookup(&fqdn, QueryType::A);
    assert_eq!(got.status, Status::NoError);
    assert_eq!(got.answers, vec![a(&fqdn, 5, "10.200.0.7")]);
    assert!(got.additionals.is_empty());
    // No IPv6 VIP: the name exists, AAAA has no data.
    assert!(nodata(&t.lookup(&fqdn, QueryType::Aaaa)));
    assert!(nodata(&t.lookup(&fqdn, QueryType::Other)));
}

#[test]
fn dns_names_are_case_insensitive_with_or_without_the_trailing_dot() {
    let mut t = table();
    t.apply(&hostnames("1"));
    let want = vec![a(&fqdn("hostnames"), 5, "10.200.0.7")];
    for name in [
        "HostNames.Demo.SVC.Cluster.Local.",
        "hostnames.demo.svc.cluster.local.",
        "HOSTNAMES.DEMO.SVC.CLUSTER.LOCAL",
    ] {
        assert_eq!(t.lookup(name, QueryType::A).answers, want, "{name}");
    }
}

#[test]
fn dns_srv_per_named_port_with_target_addresses_as_additionals() {
    let mut t = table();
    t.apply(&hostnames("1"));
    let fqdn = fqdn("hostnames");
    let got = t.lookup(&format!("_default._tcp.{fqdn}"), QueryType::Srv);
    assert_eq!(got.status, Status::NoError);
    assert_eq!(
        got.answers,
        vec![Answer {
            name: format!("_default._tcp.{fqdn}"),
            ttl: 5,
            data: Data::Srv {
                priority: 0,
                weight: 100,
                port: 80,
                target: fqdn.clone()
            },
        }]
    );
    assert_eq!(got.additionals, vec![a(&fqdn, 5, "10.200.0.7")]);
    // The SRV name has no address; its parent `_tcp.<fqdn>` exists only as a parent.
    assert!(nodata(
        &t.lookup(&format!("_default._tcp.{fqdn}"), QueryType::A)
    ));
    assert!(nodata(&t.lookup(&format!("_tcp.{fqdn}"), QueryType::Srv)));
    // Another port name or protocol does not exist.
    assert_eq!(
        t.lookup(&format!("_other._tcp.{fqdn}"), QueryType::Srv)
            .status,
        Status::NxDomain
    );
    assert_eq!(
        t.lookup(&format!("_default._udp.{fqdn}"), QueryType::Srv)
            .status,
        Status::NxDomain
    );
}

#[test]
fn dns_headless_answers_pod_addresses_and_per_host_names() {
    let mut t = table();
    assert_eq!(t.apply(&web("1")), Applied::Served);
    let fqdn = fqdn("web");
    let web0 = format!("web-0.{fqdn}");
    let web1 = format!("web-1.{fqdn}");
    for (name, qtype, answers) in [
        (
            &fqdn,
            QueryType::A,
            vec![a(&fqdn, 30, "10.244.0.4"), a(&fqdn, 30, "10.244.0.5")],
        ),
        (&fqdn, QueryType::Aaaa, vec![aaaa(&fqdn, 30, "fd00::4")]),
        (&web0, QueryType::A, vec![a(&web0, 30, "10.244.0.4")]),
        (&web0, QueryType::Aaaa, vec![aaaa(&web0, 30, "fd00::4")]),
        (&web1, QueryType::A, vec![a(&web1, 30, "10.244.0.5")]),
    ] {
        assert_eq!(t.lookup(name, qtype).answers, answers, "{name} {qtype:?}");
    }
    assert!(nodata(&t.lookup(&web1, QueryType::Aaaa)));
    assert_eq!(
        t.lookup(&format!("web-2.{fqdn}"), QueryType::A).status,
        Status::NxDomain
    );
    // SRV: one target per host, weights sharing 100, the hosts' addresses as additionals.
    let srv = t.lookup(&format!("_http._tcp.{fqdn}"), QueryType::Srv);
    let targets: Vec<(u16, u16, String)> = srv
        .answers
        .iter()
        .map(|answer| match &answer.data {
            Data::Srv {
                weight,
                port,
                target,
                ..
            } => (*weight, *port, target.clone()),
            other => panic!("not SRV: {other:?}"),
        })
        .collect();
    assert_eq!(
        targets,
        vec![(50, 8080, web0.clone()), (50, 8080, web1.clone())]
    );
    assert_eq!(
        srv.additionals,
        vec![
            a(&web0, 30, "10.244.0.4"),
            aaaa(&web0, 30, "fd00::4"),
            a(&web1, 30, "10.244.0.5")
        ]
    );
}

#[test]
fn dns_external_name_answers_a_cname_for_every_type() {
    let mut t = table();
    assert_eq!(t.apply(&external("ext", "example.com")), Applied::Served);
    let fqdn = fqdn("ext");
    let cname = vec![Answer {
        name: fqdn.clone(),
        ttl: 5,
        data: Data::Cname("example.com".into()),
    }];
    for qtype in [
        QueryType::A,
        QueryType::Aaaa,
        QueryType::Cname,
        QueryType::Srv,
        QueryType::Any,
    ] {
        let got = t.lookup(&fqdn, qtype);
        assert_eq!(got.status, Status::NoError, "{qtype:?}");
        assert_eq!(got.answers, cname, "{qtype:?}");
    }
}

#[test]
fn dns_cname_inside_the_zone_is_followed_and_loops_end() {
    let mut t = table();
    t.apply(&hostnames("1"));
    t.apply(&external("alias", &fqdn("hostnames")));
    t.apply(&external("dangling", &fqdn("nothing")));
    t.apply(&external("loop-a", &fqdn("loop-b")));
    t.apply(&external("loop-b", &fqdn("loop-a")));
    let got = t.lookup(&fqdn("alias"), QueryType::A);
    assert_eq!(got.status, Status::NoError);
    assert_eq!(got.answers.len(), 2, "{got:?}");
    assert_eq!(got.answers[0].data, Data::Cname(fqdn("hostnames")));
    assert_eq!(got.answers[1], a(&fqdn("hostnames"), 5, "10.200.0.7"));
    // The CNAME query itself is not followed.
    assert_eq!(t.lookup(&fqdn("alias"), QueryType::Cname).answers.len(), 1);
    // A target inside the zone that does not exist: NXDOMAIN, with the CNAME.
    let got = t.lookup(&fqdn("dangling"), QueryType::A);
    assert_eq!(got.status, Status::NxDomain);
    assert_eq!(got.answers.len(), 1);
    let got = t.lookup(&fqdn("loop-a"), QueryType::A);
    assert_eq!(got.status, Status::NoError);
    assert!(got.answers.len() <= 9, "a bounded chain: {got:?}");
}

#[test]
fn dns_unknown_names_are_nxdomain_parents_nodata_others_outside() {
    let mut t = table();
    t.apply(&hostnames("1"));
    assert_eq!(
        t.lookup(&fqdn("nope"), QueryType::A).status,
        Status::NxDomain
    );
    assert_eq!(
        t.lookup("nope.other.svc.cluster.local", QueryType::A)
            .status,
        Status::NxDomain
    );
    assert_eq!(
        t.lookup(&format!("x.{}", fqdn("hostnames")), QueryType::A)
            .status,
        Status::NxDomain
    );
    // Names that exist only as parents of records.
    for parent in ["demo.svc.cluster.local", "svc.cluster.local"] {
        assert!(nodata(&t.lookup(parent, QueryType::A)), "{parent}");
    }
    // The apex: its SOA, NODATA for the rest.
    let soa = t.lookup("cluster.local.", QueryType::Soa);
    assert_eq!(soa.answers.len(), 1);
    assert!(matches!(soa.answers[0].data, Data::Soa { minimum: 5, .. }));
    assert!(nodata(&t.lookup("cluster.local", QueryType::A)));
    // Outside the cluster domain: not ours.
    for name in [
        "example.com",
        "local",
        "xcluster.local",
        "cluster.local.evil.com",
    ] {
        assert_eq!(
            t.lookup(name, QueryType::A).status,
            Status::Outside,
            "{name}"
        );
        assert!(!t.in_zone(name), "{name}");
    }
    assert!(t.in_zone("Cluster.Local."));
}

#[test]
fn dns_delete_removes_only_that_record_and_its_empty_parents() {
    let mut t = table();
    t.apply(&hostnames("1"));
    t.apply(&web("1"));
    let names_before = t.names();
    assert!(t.delete(NS, "web"));
    assert!(!t.delete(NS, "web"), "a second delete knows nothing");
    assert_eq!(
        t.lookup(&fqdn("web"), QueryType::A).status,
        Status::NxDomain
    );
    assert_eq!(
        t.lookup(&format!("web-0.{}", fqdn("web")), QueryType::A)
            .status,
        Status::NxDomain
    );
    assert_eq!(
        t.lookup(&format!("_tcp.{}", fqdn("web")), QueryType::A)
            .status,
        Status::NxDomain
    );
    assert!(t.names() < names_before);
    // The other record and the shared parents stay.
    assert_eq!(t.lookup(&fqdn("hostnames"), QueryType::A).answers.len(), 1);
    assert!(nodata(&t.lookup("demo.svc.cluster.local", QueryType::A)));
    assert!(t.delete(NS, "hostnames"));
    assert_eq!(
        t.lookup("demo.svc.cluster.local", QueryType::A).status,
        Status::NxDomain
    );
    assert_eq!(t.names(), 0, "nothing left behind");
    assert_eq!(t.records(), 0);
}

#[test]
fn dns_an_update_replaces_the_previous_answers() {
    let mut t = table();
    t.apply(&web("1"));
    let serial = t.serial();
    // web-1 went away, web-0 moved.
    let fqdn = fqdn("web");
    let updated = record(
        "web",
        "2",
        json!({"fqdn": fqdn, "type": "Headless", "ttl": 30, "ipv4": ["10.244.0.9"],
               "hosts": [{"name": "web-0", "ipv4": ["10.244.0.9"]}]}),
    );
    assert_eq!(t.apply(&updated), Applied::Served);
    assert!(t.serial() != serial, "the SOA serial moves");
    assert_eq!(
        t.lookup(&fqdn, QueryType::A).answers,
        vec![a(&fqdn, 30, "10.244.0.9")]
    );
    assert_eq!(
        t.lookup(&format!("web-1.{fqdn}"), QueryType::A).status,
        Status::NxDomain
    );
    assert_eq!(
        t.lookup(&format!("_http._tcp.{fqdn}"), QueryType::Srv)
            .status,
        Status::NxDomain
    );
    // The same resourceVersion again (a relist) changes nothing.
    assert_eq!(t.apply(&updated), Applied::Unchanged);
}

#[test]
fn dns_malformed_records_are_skipped_and_reported_the_rest_is_served() {
    let mut t = table();
    t.apply(&hostnames("1"));
    let bad_address = cluster_ip("bad", "7", &fqdn("bad"), "ipv4", "10.0.0.300");
    let Applied::Rejected(reason) = t.apply(&bad_address) else {
        panic!("accepted a bad address");
    };
    assert!(reason.contains("10.0.0.300"), "{reason}");
    assert_eq!(
        t.lookup(&fqdn("bad"), QueryType::A).status,
        Status::NxDomain
    );
    assert_eq!(t.lookup(&fqdn("hostnames"), QueryType::A).answers.len(), 1);
    let rejected = t.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].key, (NS.to_string(), "bad".to_string()));
    assert_eq!(rejected[0].version.as_deref(), Some("7"));
    assert_eq!(t.rejected_count(), 1);
    // Replayed at the same version: not reported again.
    assert_eq!(t.apply(&bad_address), Applied::Unchanged);

    // A served record that turns malformed is withdrawn, not served stale.
    let broken = cluster_ip("hostnames", "2", &fqdn("hostnames"), "ipv6", "10.0.0.1");
    assert!(matches!(t.apply(&broken), Applied::Rejected(_)));
    assert_eq!(
        t.lookup(&fqdn("hostnames"), QueryType::A).status,
        Status::NxDomain
    );
    assert_eq!(t.rejected_count(), 2);
    // Fixed: served again.
    assert_eq!(t.apply(&hostnames("3")), Applied::Served);
    assert_eq!(t.lookup(&fqdn("hostnames"), QueryType::A).answers.len(), 1);
    assert_eq!(t.rejected_count(), 1);
    assert!(t.delete(NS, "bad"));
    assert_eq!(t.rejected_count(), 0);
}

#[test]
fn dns_bad_names_are_rejected() {
    let cases = [
        json!({"fqdn": "theirs.example.com", "type": "ClusterIP", "ttl": 5}),
        json!({"fqdn": "cluster.local", "type": "ClusterIP", "ttl": 5}),
        json!({"fqdn": "a..demo.svc.cluster.local", "type": "ClusterIP", "ttl": 5}),
        json!({"fqdn": format!("{}.demo.svc.cluster.local", "x".repeat(64)), "type": "ClusterIP", "ttl": 5}),
        json!({"fqdn": "sp ace.demo.svc.cluster.local", "type": "ClusterIP", "ttl": 5}),
        json!({"fqdn": fqdn("h"), "type": "Headless", "ttl": 5,
               "hosts": [{"name": "a.b", "ipv4": ["10.0.0.1"]}]}),
        json!({"fqdn": fqdn("s"), "type": "ClusterIP", "ttl": 5,
               "srv": [{"name": "_p._tcp.elsewhere.org", "portName": "p", "protocol": "TCP",
                        "targets": [{"host": fqdn("s"), "port": 80}]}]}),
        json!({"fqdn": fqdn("s"), "type": "ClusterIP", "ttl": 5,
               "srv": [{"name": format!("_p._tcp.{}", fqdn("s")), "portName": "p", "protocol": "TCP",
                        "targets": [{"host": fqdn("s"), "port": 0}]}]}),
        json!({"fqdn": fqdn("e"), "type": "ExternalName", "ttl": 5}),
        json!({"fqdn": fqdn("e"), "type": "ExternalName", "ttl": 5, "cname": "bad name"}),
        json!({"fqdn": fqdn("e"), "type": "ExternalName", "ttl": 5, "cname": "x.org", "ipv4": ["10.0.0.1"]}),
        json!({"fqdn": fqdn("c"), "type": "ClusterIP", "ttl": 5, "cname": "x.org"}),
        json!({"fqdn": fqdn("t"), "type": "ClusterIP", "ttl": -1}),
    ];
    for spec in cases {
        let mut t = table();
        let got = t.apply(&record("r", "1", spec.clone()));
        assert!(matches!(got, Applied::Rejected(_)), "{spec}: {got:?}");
        assert_eq!(t.names(), 0, "{spec}: nothing served");
    }
}

#[test]
fn dns_two_records_with_one_name_are_both_served_until_one_goes() {
    let mut t = table();
    t.apply(&hostnames("1"));
    let twin = cluster_ip("twin", "1", &fqdn("hostnames"), "ipv4", "10.200.0.8");
    t.apply(&twin);
    assert_eq!(t.lookup(&fqdn("hostnames"), QueryType::A).answers.len(), 2);
    t.delete(NS, "twin");
    assert_eq!(
        t.lookup(&fqdn("hostnames"), QueryType::A).answers,
        vec![a(&fqdn("hostnames"), 5, "10.200.0.7")]
    );
}

#[test]
fn dns_cluster_domain_is_normalised_and_checked() {
    let mut t = Table::new("Example.Internal.").unwrap();
    assert_eq!(t.domain(), "example.internal");
    let r = cluster_ip(
        "api",
        "1",
        "api.demo.svc.example.internal",
        "ipv4",
        "10.0.0.1",
    );
    assert_eq!(t.apply(&r), Applied::Served);
    assert_eq!(
        t.lookup("API.demo.svc.Example.Internal.", QueryType::A)
            .answers
            .len(),
        1
    );
    // A record of the default domain is outside this one.
    assert!(matches!(t.apply(&hostnames("1")), Applied::Rejected(_)));
    assert!(Table::new("not a domain").is_err());
}

#[test]
fn dns_metric_labels_are_a_fixed_set() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    assert_eq!(type_label(RecordType::A), "A");
    assert_eq!(type_label(RecordType::SRV), "SRV");
    assert_eq!(type_label(RecordType::Unknown(65000)), "other");
    assert_eq!(rcode_label(ResponseCode::NXDomain), "NXDOMAIN");
    assert_eq!(rcode_label(ResponseCode::BADVERS), "other");
    assert_eq!(query_type(RecordType::AAAA), QueryType::Aaaa);
    assert_eq!(query_type(RecordType::TXT), QueryType::Txt);
    assert_eq!(query_type(RecordType::MX), QueryType::Other);
}

#[test]
fn dns_a_record_answers_only_for_names_of_its_own_namespace() {
    // The record lives in namespace `demo` (see `record`); each spec names something it does
    // not own: another namespace's Service, a name above its own Service, or the apex.
    let cases = [
        json!({"fqdn": "x.other.svc.cluster.local", "type": "ClusterIP", "ttl": 5,
               "ipv4": ["10.0.0.66"]}),
        json!({"fqdn": "demo.svc.cluster.local", "type": "ClusterIP", "ttl": 5,
               "ipv4": ["10.0.0.66"]}),
        json!({"fqdn": "svc.cluster.local", "type": "ClusterIP", "ttl": 5, "ipv4": ["10.0.0.66"]}),
        json!({"fqdn": "kubernetes.default.svc.cluster.local", "type": "ClusterIP", "ttl": 5,
               "ipv4": ["10.0.0.66"]}),
        json!({"fqdn": "a.b.demo.svc.cluster.local", "type": "ClusterIP", "ttl": 5,
               "ipv4": ["10.0.0.66"]}),
        json!({"fqdn": "x.demo.pod.cluster.local", "type": "ClusterIP", "ttl": 5,
               "ipv4": ["10.0.0.66"]}),
        json!({"fqdn": "x.demo.cluster.local", "type": "ClusterIP", "ttl": 5,
               "ipv4": ["10.0.0.66"]}),
        // Its own fqdn, but an SRV owner name in another namespace or at the apex.
        json!({"fqdn": fqdn("s"), "type": "ClusterIP", "ttl": 5, "ipv4": ["10.0.0.66"],
               "srv": [{"name": "_http._tcp.web.other.svc.cluster.local", "portName": "http",
                        "protocol": "TCP", "targets": [{"host": fqdn("s"), "port": 80}]}]}),
        json!({"fqdn": fqdn("s"), "type": "ClusterIP", "ttl": 5, "ipv4": ["10.0.0.66"],
               "srv": [{"name": "_http._tcp.cluster.local", "portName": "http",
                        "protocol": "TCP", "targets": [{"host": fqdn("s"), "port": 80}]}]}),
        // An SRV owner beside its Service rather than under it.
        json!({"fqdn": fqdn("s"), "type": "ClusterIP", "ttl": 5, "ipv4": ["10.0.0.66"],
               "srv": [{"name": "_http._tcp.t.demo.svc.cluster.local", "portName": "http",
                        "protocol": "TCP", "targets": [{"host": fqdn("s"), "port": 80}]}]}),
    ];
    for spec in cases {
        let mut t = table();
        // The other namespace's own record is served before and after the intruder.
        let theirs: DNSRecord = serde_json::from_value(json!({
            "apiVersion": "signpost.dev/v1alpha1", "kind": "DNSRecord",
            "metadata": {"name": "x", "namespace": "other", "resourceVersion": "1"},
            "spec": {"fqdn": "x.other.svc.cluster.local", "type": "ClusterIP", "ttl": 5,
                     "ipv4": ["10.0.0.1"]},
        }))
        .unwrap();
        assert_eq!(t.apply(&theirs), Applied::Served);
        let got = t.apply(&record("intruder", "1", spec.clone()));
        assert!(matches!(got, Applied::Rejected(_)), "{spec}: {got:?}");
        let Applied::Rejected(reason) = got else {
            unreachable!()
        };
        assert!(reason.contains("namespace"), "{spec}: {reason}");
        assert_eq!(
            t.lookup("x.other.svc.cluster.local", QueryType::A).answers,
            vec![a("x.other.svc.cluster.local", 5, "10.0.0.1")],
            "{spec}"
        );
        assert_eq!(t.rejected().len(), 1, "{spec}");
        let fqdn = spec["fqdn"].as_str().unwrap();
        let served = t.lookup(fqdn, QueryType::A).answers;
        assert!(
            !served
                .iter()
                .any(|a| a.data == Data::A("10.0.0.66".parse().unwrap())),
            "{spec}: served {served:?}"
        );
    }
    // Its own names are fine: the Service name, hosts and SRV names under it.
    let mut t = table();
    assert_eq!(t.apply(&web("1")), Applied::Served);
    assert_eq!(t.apply(&hostnames("1")), Applied::Served);
}

/// `signpost dns`'s HTTP server drops clients that connect and stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_http_server_disconnects_stalled_clients() {
    let metrics = std::sync::Arc::new(signpost_runtime::Metrics::new());
    signpost_runtime::testing::assert_server_drops_stalled_clients("dns HTTP server", |l| {
        super::metrics::serve(l, metrics, signpost_runtime::Synced::done())
    })
    .await;
}
