//! Unit tests of the proxy's pure parts: the round-robin pool, the table's frontends and
//! pools, and the conversions from API objects.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use signpost_crds::DNSRecord;

use super::table::{Claim, Frontend, Pool, Protocol, ServiceKey, ServicePort, Slice, Table};
use super::watch::{record_vips, service_ports, slice_of, strip_service};
use signpost_core::records::cluster_ips;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| addr(a)).collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn key(name: &str) -> ServiceKey {
    ("demo".into(), name.into())
}

/// Asserts the backends the TCP frontend `vip:port` reaches, in order.
#[track_caller]
fn assert_backends(table: &Table, vip: &str, port: u16, want: &[&str]) {
    assert_eq!(table.backends(&tcp(vip, port)), addrs(want), "{vip}:{port}");
}

fn tcp(vip: &str, port: u16) -> Frontend {
    Frontend {
        addr: SocketAddr::new(ip(vip), port),
        protocol: Protocol::Tcp,
    }
}

fn port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: name.into(),
        port,
        protocol: Protocol::Tcp,
    }
}

fn slice(ports: &[(&str, u16)], ready: &[&str]) -> Slice {
    Slice {
        ipv6: ready.first().is_some_and(|a| a.contains(':')),
        ports: ports
            .iter()
            .map(|(n, p)| ((*n).to_string(), *p, Protocol::Tcp))
            .collect(),
        ready: ready.iter().map(|a| ip(a)).collect(),
    }
}

/// Publishes `vips` for `service` as Signpost does: a ServiceIP claim per VIP naming the
/// Service, then the ClusterIP DNSRecord.
fn publish(table: &mut Table, service: &ServiceKey, vips: &[&str]) {
    for vip in vips {
        table.set_claim(
            ip(vip),
            Some(Claim {
                service: service.clone(),
                uid: String::new(),
            }),
        );
    }
    table.set_record(service, Some(vips.iter().map(|v| ip(v)).collect()));
}

/// The seed's `hostnames` Service: VIP 10.200.0.7, port 80 named `default` → 9376.
fn hostnames(pods: &[&str]) -> Table {
    let mut table = Table::new();
    publish(&mut table, &key("hostnames"), &["10.200.0.7"]);
    table.set_service(&key("hostnames"), Some(vec![port("default", 80)]));
    set_hostnames_pods(&mut table, pods);
    table
}

/// Sets the `hostnames` slice to `pods` (ready, port `default` 9376); whether the table
/// changed.
fn set_hostnames_pods(table: &mut Table, pods: &[&str]) -> bool {
    let slice = slice(&[("default", 9376)], pods);
    table.set_slice(&key("hostnames"), "hostnames-abc", Some(slice))
}

fn picks(table: &mut Table, frontend: &Frontend, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            table
                .pick(frontend)
                .and_then(|p| p.backend)
                .map_or("none".into(), |b| b.to_string())
        })
        .collect()
}

fn counts(picks: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in picks {
        *out.entry(p.clone()).or_default() += 1;
    }
    out
}

// ---- Pool ----

#[test]
fn empty_pool_picks_nothing() {
    let mut pool = Pool::new(vec![]);
    assert_eq!(pool.pick(), None);
    assert_eq!(pool.peek(), None);
}

#[test]
fn pool_rotates_in_order() {
    let mut pool = Pool::new(addrs(&["10.0.0.3:1", "10.0.0.1:1", "10.0.0.2:1"]));
    let got: Vec<_> = (0..7).map(|_| pool.pick().unwrap().to_string()).collect();
    assert_eq!(
        got,
        [
            "10.0.0.1:1",
            "10.0.0.2:1",
            "10.0.0.3:1",
            "10.0.0.1:1",
            "10.0.0.2:1",
            "10.0.0.3:1",
            "10.0.0.1:1"
        ]
    );
}

#[test]
fn pool_dedups() {
    let pool = Pool::new(addrs(&["10.0.0.1:1", "10.0.0.1:1"]));
    assert_eq!(pool.backends().len(), 1);
}

#[test]
fn update_keeps_the_rotation_going() {
    let mut pool = Pool::new(addrs(&["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]));
    assert_eq!(pool.pick(), Some(addr("10.0.0.1:1")));
    // 10.0.0.2 was next; a new backend elsewhere does not restart the rotation.
    assert!(pool.set(addrs(&[
        "10.0.0.1:1",
        "10.0.0.2:1",
        "10.0.0.3:1",
        "10.0.0.0:1"
    ])));
    assert_eq!(pool.pick(), Some(addr("10.0.0.2:1")));
}

#[test]
fn removing_the_next_backend_moves_to_the_one_after_it() {
    let mut pool = Pool::new(addrs(&["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]));
    assert_eq!(pool.pick(), Some(addr("10.0.0.1:1")));
    pool.set(addrs(&["10.0.0.1:1", "10.0.0.3:1"]));
    assert_eq!(pool.pick(), Some(addr("10.0.0.3:1")));
    assert_eq!(pool.pick(), Some(addr("10.0.0.1:1")));
}

#[test]
fn removing_the_last_backend_in_order_wraps() {
    let mut pool = Pool::new(addrs(&["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]));
    pool.pick();
    pool.pick();
    assert_eq!(pool.peek(), Some(addr("10.0.0.3:1")));
    pool.set(addrs(&["10.0.0.1:1", "10.0.0.2:1"]));
    assert_eq!(pool.pick(), Some(addr("10.0.0.1:1")));
}

#[test]
fn unchanged_set_is_not_a_change() {
    let mut pool = Pool::new(addrs(&["10.0.0.1:1", "10.0.0.2:1"]));
    pool.pick();
    assert!(!pool.set(addrs(&["10.0.0.2:1", "10.0.0.1:1"])));
    assert_eq!(pool.pick(), Some(addr("10.0.0.2:1")));
}

#[test]
fn pool_emptied_and_refilled_starts_at_the_first() {
    let mut pool = Pool::new(addrs(&["10.0.0.1:1", "10.0.0.2:1"]));
    pool.pick();
    pool.set(vec![]);
    assert_eq!(pool.pick(), None);
    pool.set(addrs(&["10.0.0.2:1", "10.0.0.1:1"]));
    assert_eq!(pool.pick(), Some(addr("10.0.0.1:1")));
}

// ---- Table ----

#[test]
fn three_hundred_picks_over_three_pods_are_one_hundred_each() {
    let mut table = hostnames(&["10.244.0.4", "10.244.1.38", "10.244.2.20"]);
    let got = counts(&picks(&mut table, &tcp("10.200.0.7", 80), 300));
    assert_eq!(
        got,
        BTreeMap::from([
            ("10.244.0.4:9376".to_string(), 100),
            ("10.244.1.38:9376".to_string(), 100),
            ("10.244.2.20:9376".to_string(), 100),
        ])
    );
}

#[test]
fn a_pod_leaving_the_ready_set_is_never_picked_again() {
    let mut table = hostnames(&["10.244.0.4", "10.244.1.38", "10.244.2.20"]);
    let frontend = tcp("10.200.0.7", 80);
    picks(&mut table, &frontend, 1);
    set_hostnames_pods(&mut table, &["10.244.0.4", "10.244.2.20"]);
    let got = counts(&picks(&mut table, &frontend, 100));
    assert_eq!(got.get("10.244.1.38:9376"), None);
    assert_eq!(got.values().sum::<usize>(), 100);
}

#[test]
fn scaling_up_gives_every_new_pod_its_share() {
    let mut table = hostnames(&["10.244.0.4", "10.244.1.38", "10.244.2.20"]);
    let frontend = tcp("10.200.0.7", 80);
    picks(&mut table, &frontend, 2);
    set_hostnames_pods(
        &mut table,
        &[
            "10.244.0.4",
            "10.244.1.38",
            "10.244.2.20",
            "10.244.0.9",
            "10.244.3.1",
        ],
    );
    let got = counts(&picks(&mut table, &frontend, 100));
    assert_eq!(got.len(), 5);
    assert!(got.values().all(|n| *n == 20), "{got:?}");
}

#[test]
fn no_ready_backend_picks_none_but_the_frontend_exists() {
    let mut table = hostnames(&[]);
    let frontend = tcp("10.200.0.7", 80);
    assert_eq!(table.frontends().get(&frontend), Some(&0));
    let pick = table.pick(&frontend).unwrap();
    assert_eq!(pick.backend, None);
    assert_eq!(pick.service, key("hostnames"));
}

#[test]
fn unknown_frontend_picks_nothing() {
    let mut table = hostnames(&["10.244.0.4"]);
    assert_eq!(table.pick(&tcp("10.200.0.7", 81)), None);
    assert_eq!(table.pick(&tcp("10.200.0.8", 80)), None);
}

#[test]
fn ports_are_matched_by_name_not_number() {
    let mut table = Table::new();
    let svc = key("web");
    publish(&mut table, &svc, &["10.200.0.9"]);
    table.set_service(&svc, Some(vec![port("http", 80), port("metrics", 9100)]));
    // Pods listen on different numbers per port name.
    table.set_slice(
        &svc,
        "web-1",
        Some(slice(&[("metrics", 8081), ("http", 8080)], &["10.244.0.1"])),
    );
    assert_backends(&table, "10.200.0.9", 80, &["10.244.0.1:8080"]);
    assert_backends(&table, "10.200.0.9", 9100, &["10.244.0.1:8081"]);
}

#[test]
fn unnamed_single_port_matches_the_unnamed_slice_port() {
    let mut table = Table::new();
    let svc = key("one");
    publish(&mut table, &svc, &["10.200.0.3"]);
    table.set_service(&svc, Some(vec![port("", 80)]));
    table.set_slice(&svc, "one-1", Some(slice(&[("", 8080)], &["10.244.0.1"])));
    assert_backends(&table, "10.200.0.3", 80, &["10.244.0.1:8080"]);
}

#[test]
fn slices_of_a_service_are_merged_and_pods_differ_in_port() {
    let mut table = hostnames(&["10.244.0.4"]);
    table.set_slice(
        &key("hostnames"),
        "hostnames-def",
        Some(slice(&[("default", 9377)], &["10.244.0.5"])),
    );
    assert_backends(
        &table,
        "10.200.0.7",
        80,
        &["10.244.0.4:9376", "10.244.0.5:9377"],
    );
    table.set_slice(&key("hostnames"), "hostnames-abc", None);
    assert_backends(&table, "10.200.0.7", 80, &["10.244.0.5:9377"]);
}

#[test]
fn protocols_are_kept_apart() {
    let mut table = Table::new();
    let svc = key("dns");
    publish(&mut table, &svc, &["10.200.0.10"]);
    table.set_service(
        &svc,
        Some(vec![
            ServicePort {
                name: "dns".into(),
                port: 53,
                protocol: Protocol::Udp,
            },
            ServicePort {
                name: "dns-tcp".into(),
                port: 53,
                protocol: Protocol::Tcp,
            },
        ]),
    );
    table.set_slice(
        &svc,
        "dns-1",
        Some(Slice {
            ipv6: false,
            ports: vec![
                ("dns".into(), 5353, Protocol::Udp),
                ("dns-tcp".into(), 5353, Protocol::Tcp),
            ],
            ready: vec![ip("10.244.0.2")],
        }),
    );
    assert_eq!(table.frontends().len(), 2);
    assert_backends(&table, "10.200.0.10", 53, &["10.244.0.2:5353"]);
}

#[test]
fn dual_stack_vips_use_backends_of_their_family() {
    let mut table = Table::new();
    let svc = key("dual");
    publish(&mut table, &svc, &["10.200.0.5", "fd00:200::5"]);
    table.set_service(&svc, Some(vec![port("http", 80)]));
    table.set_slice(
        &svc,
        "dual-v4",
        Some(slice(&[("http", 8080)], &["10.244.0.1"])),
    );
    table.set_slice(
        &svc,
        "dual-v6",
        Some(slice(&[("http", 8080)], &["fd00:244::1"])),
    );
    assert_backends(&table, "10.200.0.5", 80, &["10.244.0.1:8080"]);
    assert_eq!(
        table.backends(&tcp("fd00:200::5", 80)),
        [addr("[fd00:244::1]:8080")]
    );
    assert_eq!(
        table.addresses().into_iter().collect::<Vec<_>>(),
        [ip("10.200.0.5"), ip("fd00:200::5")]
    );
}

#[test]
fn a_vip_needs_both_the_record_and_the_service() {
    let mut table = Table::new();
    let svc = key("late");
    publish(&mut table, &svc, &["10.200.0.11"]);
    assert!(table.addresses().is_empty());
    assert!(table.frontends().is_empty());
    table.set_service(&svc, Some(vec![port("http", 80)]));
    assert_eq!(table.addresses().len(), 1);
    assert_eq!(table.frontends().len(), 1);
    // The Service goes first (the record is garbage-collected later): the VIP goes at once.
    table.set_service(&svc, None);
    assert!(table.addresses().is_empty());
    assert!(table.frontends().is_empty());
    assert_eq!(table.pools(), 0);
}

#[test]
fn deleting_the_record_removes_vip_frontends_and_pools() {
    let mut table = hostnames(&["10.244.0.4"]);
    assert!(table.set_record(&key("hostnames"), None));
    assert!(table.addresses().is_empty());
    assert!(table.frontends().is_empty());
    assert_eq!(table.pools(), 0);
    assert_eq!(table.pick(&tcp("10.200.0.7", 80)), None);
}

#[test]
fn cursor_survives_unrelated_changes() {
    let mut table = hostnames(&["10.244.0.4", "10.244.1.38", "10.244.2.20"]);
    let frontend = tcp("10.200.0.7", 80);
    assert_eq!(picks(&mut table, &frontend, 1), ["10.244.0.4:9376"]);
    // Another Service appears; this one's rotation continues where it was.
    publish(&mut table, &key("other"), &["10.200.0.8"]);
    table.set_service(&key("other"), Some(vec![port("default", 80)]));
    // The same slice again (a relist) is not a change.
    assert!(!set_hostnames_pods(
        &mut table,
        &["10.244.0.4", "10.244.1.38", "10.244.2.20"]
    ));
    assert_eq!(picks(&mut table, &frontend, 1), ["10.244.1.38:9376"]);
}

#[test]
fn a_vip_goes_only_to_the_service_its_claim_names() {
    let mut table = hostnames(&["10.244.0.4"]);
    let frontend = tcp("10.200.0.7", 80);
    // Another namespace (sorting before `demo`) publishes a DNSRecord with the same VIP, has a
    // Service with the same port and a slice of its own pods.
    let intruder = ("a-other".to_string(), "steal".to_string());
    table.set_record(&intruder, Some(vec![ip("10.200.0.7")]));
    table.set_service(&intruder, Some(vec![port("default", 80)]));
    table.set_slice(
        &intruder,
        "steal-1",
        Some(slice(&[("default", 1)], &["10.66.6.6"])),
    );
    assert_eq!(table.service_of(&frontend), Some(&key("hostnames")));
    assert_eq!(table.backends(&frontend), [addr("10.244.0.4:9376")]);
    assert_eq!(
        picks(&mut table, &frontend, 3),
        ["10.244.0.4:9376", "10.244.0.4:9376", "10.244.0.4:9376"]
    );
    assert!(table.conflicts().is_empty());
    // Even with the rightful record gone, the VIP is not handed to the other Service.
    table.set_record(&key("hostnames"), None);
    assert_eq!(table.service_of(&frontend), None);
    assert!(!table.addresses().contains(&ip("10.200.0.7")));
    // Once the allocator gives the VIP to the other Service (a new claim), it serves it.
    table.set_claim(
        ip("10.200.0.7"),
        Some(Claim {
            service: intruder.clone(),
            uid: String::new(),
        }),
    );
    assert_eq!(table.service_of(&frontend), Some(&intruder));
}

#[test]
fn a_claim_for_an_earlier_service_of_the_same_name_gives_no_vip() {
    let mut table = hostnames(&["10.244.0.4"]);
    let frontend = tcp("10.200.0.7", 80);
    let claim = |uid: &str| {
        Some(Claim {
            service: key("hostnames"),
            uid: uid.into(),
        })
    };
    table.set_service_uid(&key("hostnames"), Some("uid-2".into()));
    table.set_claim(ip("10.200.0.7"), claim("uid-1"));
    assert_eq!(table.service_of(&frontend), None);
    assert!(table.addresses().is_empty());
    table.set_claim(ip("10.200.0.7"), claim("uid-2"));
    assert_eq!(table.service_of(&frontend), Some(&key("hostnames")));
    assert_eq!(table.backends(&frontend), [addr("10.244.0.4:9376")]);
    // The claim released: the VIP goes.
    table.set_claim(ip("10.200.0.7"), None);
    assert!(table.frontends().is_empty());
}

/// A Service `name` with port `default` 80 → 9376, one ready pod, its own ClusterIPs `ips`
/// and a DNSRecord listing `vips`, without any claim: an address the API server chose.
fn with_cluster_ips(table: &mut Table, name: &str, ips: &[&str], vips: &[&str]) {
    let svc = key(name);
    table.set_service(&svc, Some(vec![port("default", 80)]));
    table.set_service_cluster_ips(&svc, Some(ips.iter().map(|a| ip(a)).collect()));
    table.set_slice(
        &svc,
        &format!("{name}-1"),
        Some(slice(&[("default", 9376)], &["10.244.0.9"])),
    );
    table.set_record(&svc, Some(vips.iter().map(|a| ip(a)).collect()));
}

#[test]
fn a_services_own_cluster_ip_is_served_without_a_claim() {
    let mut table = Table::new();
    with_cluster_ips(&mut table, "outside", &["10.96.0.50"], &["10.96.0.50"]);
    let frontend = tcp("10.96.0.50", 80);
    assert_eq!(table.service_of(&frontend), Some(&key("outside")));
    assert_backends(&table, "10.96.0.50", 80, &["10.244.0.9:9376"]);
    assert_eq!(
        table.addresses().into_iter().collect::<Vec<_>>(),
        [ip("10.96.0.50")]
    );
    // The same ClusterIP set again is no change; the Service losing it loses the VIP.
    let svc = key("outside");
    assert!(!table.set_service_cluster_ips(&svc, Some(vec![ip("10.96.0.50")])));
    assert!(table.set_service_cluster_ips(&svc, None));
    assert_eq!(table.service_of(&frontend), None);
    assert!(table.addresses().is_empty());
    assert_eq!(table.pools(), 0);
}

#[test]
fn a_record_listing_another_services_cluster_ip_gets_nothing() {
    let mut table = Table::new();
    with_cluster_ips(&mut table, "owner", &["10.96.0.50"], &["10.96.0.50"]);
    // Another namespace's record (sorting first) lists the owner's ClusterIP beside its own.
    let intruder = ("a-other".to_string(), "steal".to_string());
    table.set_service(&intruder, Some(vec![port("default", 80)]));
    table.set_service_cluster_ips(&intruder, Some(vec![ip("10.96.0.60")]));
    table.set_record(&intruder, Some(vec![ip("10.96.0.50"), ip("10.96.0.60")]));
    assert_eq!(
        table.service_of(&tcp("10.96.0.50", 80)),
        Some(&key("owner"))
    );
    assert_eq!(table.service_of(&tcp("10.96.0.60", 80)), Some(&intruder));
    assert!(table.conflicts().is_empty(), "{:?}", table.conflicts());
    // A DNSRecord naming an address that is nobody's ClusterIP and has no claim: not served.
    table.set_record(&intruder, Some(vec![ip("10.96.0.70")]));
    assert_eq!(table.service_of(&tcp("10.96.0.70", 80)), None);
    assert_eq!(
        table.addresses().into_iter().collect::<Vec<_>>(),
        [ip("10.96.0.50")]
    );
}

#[test]
fn a_claim_for_another_service_wins_over_a_cluster_ip() {
    // Outside ClusterIP mode Signpost's CIDR may overlap the API server's: the claim decides.
    let mut table = hostnames(&["10.244.0.4"]);
    with_cluster_ips(&mut table, "aaa", &["10.200.0.7"], &["10.200.0.7"]);
    let frontend = tcp("10.200.0.7", 80);
    assert_eq!(table.service_of(&frontend), Some(&key("hostnames")));
    assert!(table.conflicts().is_empty(), "{:?}", table.conflicts());
    // The claim released: the address is the ClusterIP's Service's at once.
    assert!(table.set_claim(ip("10.200.0.7"), None));
    assert_eq!(table.service_of(&frontend), Some(&key("aaa")));
    assert_backends(&table, "10.200.0.7", 80, &["10.244.0.9:9376"]);
    // And goes back when the allocator claims it for `hostnames` again.
    table.set_claim(
        ip("10.200.0.7"),
        Some(Claim {
            service: key("hostnames"),
            uid: String::new(),
        }),
    );
    assert_eq!(table.service_of(&frontend), Some(&key("hostnames")));
}

#[test]
fn a_cluster_ip_counts_beside_an_earlier_incarnations_claim() {
    // Recreated while Signpost was down: the old claim names the same Service with the old
    // UID; the API server gave the address to the new Service, whose ClusterIP it is.
    let mut table = Table::new();
    with_cluster_ips(&mut table, "again", &["10.200.0.9"], &["10.200.0.9"]);
    table.set_service_uid(&key("again"), Some("uid-2".into()));
    table.set_claim(
        ip("10.200.0.9"),
        Some(Claim {
            service: key("again"),
            uid: "uid-1".into(),
        }),
    );
    assert_eq!(
        table.service_of(&tcp("10.200.0.9", 80)),
        Some(&key("again"))
    );
}

#[test]
fn the_cached_service_keeps_its_ports_and_cluster_ips() {
    let mut svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "dual", "namespace": "demo", "annotations": {"a": "b"}},
        "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00:10:96::5"],
                 "selector": {"app": "web"}, "ports": [{"name": "default", "port": 80}]}
    }))
    .unwrap();
    strip_service(&mut svc);
    assert_eq!(cluster_ips(&svc), [ip("10.96.0.5"), ip("fd00:10:96::5")]);
    assert_eq!(service_ports(&svc), [port("default", 80)]);
    assert_eq!(
        svc.spec.and_then(|s| s.selector),
        None,
        "the rest is dropped"
    );
}

#[test]
fn headless_and_external_records_have_no_vip() {
    let mut table = Table::new();
    table.set_service(&key("h"), Some(vec![port("http", 80)]));
    table.set_record(&key("h"), None);
    assert!(table.addresses().is_empty());
}

// ---- Conversions ----

fn record(value: serde_json::Value) -> DNSRecord {
    serde_json::from_value(value).unwrap()
}

#[test]
fn clusterip_record_gives_its_vips() {
    let r = record(serde_json::json!({
        "apiVersion": "signpost.dev/v1alpha1", "kind": "DNSRecord",
        "metadata": {"name": "hostnames", "namespace": "demo"},
        "spec": {"fqdn": "hostnames.demo.svc.cluster.local", "type": "ClusterIP", "ttl": 5,
                 "ipv4": ["10.200.0.7", "bogus"], "ipv6": ["fd00::7"]}
    }));
    assert_eq!(record_vips(&r), Some(vec![ip("10.200.0.7"), ip("fd00::7")]));
}

#[test]
fn headless_record_gives_none() {
    let r = record(serde_json::json!({
        "apiVersion": "signpost.dev/v1alpha1", "kind": "DNSRecord",
        "metadata": {"name": "h", "namespace": "demo"},
        "spec": {"fqdn": "h.demo.svc.cluster.local", "type": "Headless", "ttl": 5,
                 "ipv4": ["10.244.0.4"]}
    }));
    assert_eq!(record_vips(&r), None);
}

#[test]
fn service_ports_default_to_tcp_and_skip_bad_ones() {
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hostnames", "namespace": "demo"},
        "spec": {"ports": [
            {"name": "default", "port": 80, "targetPort": 9376},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "bad", "port": 70000},
            {"name": "odd", "port": 81, "protocol": "QUIC"}
        ]}
    }))
    .unwrap();
    assert_eq!(
        service_ports(&svc),
        [
            port("default", 80),
            ServicePort {
                name: "dns".into(),
                port: 53,
                protocol: Protocol::Udp
            }
        ]
    );
}

#[test]
fn slice_gives_ready_first_addresses_and_named_ports() {
    let s: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hostnames-abc", "namespace": "demo",
                     "labels": {"kubernetes.io/service-name": "hostnames"}},
        "addressType": "IPv4",
        "ports": [{"name": "default", "port": 9376, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.0.4"], "conditions": {"ready": true}},
            {"addresses": ["10.244.1.38"], "conditions": {"ready": false, "serving": true}},
            {"addresses": ["10.244.2.20", "10.244.2.21"]},
            {"addresses": ["10.244.3.3"], "conditions": {"ready": false, "terminating": true}}
        ]
    }))
    .unwrap();
    let (service, name, data) = slice_of(&s).unwrap();
    assert_eq!(service, key("hostnames"));
    assert_eq!(name, "hostnames-abc");
    assert_eq!(
        data,
        Some(Slice {
            ipv6: false,
            ports: vec![("default".into(), 9376, Protocol::Tcp)],
            ready: vec![ip("10.244.0.4"), ip("10.244.2.20")],
        })
    );
}

#[test]
fn slice_without_service_label_is_ignored_and_fqdn_gives_none() {
    let unlabelled: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "x", "namespace": "demo"},
        "addressType": "IPv4", "endpoints": []
    }))
    .unwrap();
    assert_eq!(slice_of(&unlabelled), None);
    let fqdn: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "y", "namespace": "demo",
                     "labels": {"kubernetes.io/service-name": "ext"}},
        "addressType": "FQDN", "endpoints": [{"addresses": ["example.com"]}]
    }))
    .unwrap();
    assert_eq!(slice_of(&fqdn), Some((key("ext"), "y".into(), None)));
}

/// `signpost proxy`'s HTTP server drops clients that connect and stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_http_server_disconnects_stalled_clients() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let metrics = Arc::new(signpost_runtime::Metrics::new());
    let ready = Arc::new(AtomicBool::new(true));
    signpost_runtime::testing::assert_server_drops_stalled_clients("proxy HTTP server", |l| {
        super::metrics::serve(l, metrics, ready)
    })
    .await;
}

#[test]
fn a_service_ip_claim_gives_its_vip_to_its_service_ref() {
    let claim: signpost_crds::ServiceIP = serde_json::from_value(serde_json::json!({
        "apiVersion": "signpost.dev/v1alpha1", "kind": "ServiceIP",
        "metadata": {"name": "10.200.0.7"},
        "spec": {"address": "10.200.0.7", "cidr": "10.200.0.0/16",
                 "serviceRef": {"namespace": "demo", "name": "hostnames", "uid": "u-1"}},
    }))
    .unwrap();
    assert_eq!(
        super::watch::claim_of(&claim),
        Some((
            ip("10.200.0.7"),
            Claim {
                service: key("hostnames"),
                uid: "u-1".into()
            }
        ))
    );
}

// ---- Data plane limits (loopback: the "VIP" is 127.0.0.1) ----

/// A backend on 127.0.0.1 that holds every connection until its client closes; sends the
/// number of connections accepted so far on `accepted`.
async fn holding_backend(
    accepted: tokio::sync::watch::Sender<usize>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            n += 1;
            accepted.send_replace(n);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while matches!(stream.read(&mut buf).await, Ok(k) if k > 0) {}
            });
        }
    });
    (at, task)
}

/// A table whose frontend 127.0.0.1:`port` leads to `backend`.
fn loopback_table(port: u16, backend: SocketAddr) -> Table {
    let mut table = Table::new();
    let svc = key("limited");
    publish(&mut table, &svc, &["127.0.0.1"]);
    table.set_service(&svc, Some(vec![self::port("", port)]));
    table.set_slice(
        &svc,
        "limited-1",
        Some(Slice {
            ipv6: false,
            ports: vec![(String::new(), backend.port(), Protocol::Tcp)],
            ready: vec![backend.ip()],
        }),
    );
    table
}

async fn wait_accepted(accepted: &mut tokio::sync::watch::Receiver<usize>, n: usize) {
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        accepted.wait_for(|k| *k >= n),
    )
    .await
    .unwrap_or_else(|_| panic!("the backend never got {n} connections"))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once_and_counted() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (accepted_tx, mut accepted) = tokio::sync::watch::channel(0);
    let (backend, backend_task) = holding_backend(accepted_tx).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let table = Arc::new(Mutex::new(loopback_table(at.port(), backend)));
    let mut registry = signpost_runtime::Metrics::new();
    let metrics = super::metrics::ProxyMetrics::register(&mut registry);
    let limit = Arc::new(tokio::sync::Semaphore::new(3));
    let frontend = tcp("127.0.0.1", at.port());
    let proxy = tokio::spawn(super::server::accept_loop(
        listener,
        frontend,
        table,
        metrics.clone(),
        limit,
    ));

    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = tokio::net::TcpStream::connect(at).await.unwrap();
        client.write_all(b"x").await.unwrap();
        clients.push(client);
    }
    wait_accepted(&mut accepted, 3).await;

    // The fourth is closed at once, never reaches the backend, and is counted.
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        let mut fourth = tokio::net::TcpStream::connect(at).await?;
        let mut buf = [0u8; 8];
        fourth.read(&mut buf).await
    })
    .await;
    println!(
        "proxy limit: 4th connection over a limit of 3 → {closed:?} after {:?}",
        started.elapsed()
    );
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the fourth connection was not closed: {closed:?}"
    );
    assert_eq!(*accepted.borrow(), 3, "the fourth reached the backend");
    assert_eq!(metrics.over_limit.get(), 1);
    assert!(
        registry
            .encode()
            .contains("signpost_proxy_connections_over_limit_total 1"),
        "{}",
        registry.encode()
    );

    // One of the three ends: a new connection is proxied again.
    drop(clients.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Until the ended connection's permit is back, new ones are still reset.
        assert!(
            Instant::now() < deadline,
            "no room after a connection ended"
        );
        let Ok(mut client) = tokio::net::TcpStream::connect(at).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = client.write_all(b"x").await;
        let reached =
            tokio::time::timeout(Duration::from_millis(200), accepted.wait_for(|k| *k >= 4))
                .await
                .is_ok();
        if reached {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection ended"
        );
    }
    proxy.abort();
    backend_task.abort();
}

#[test]
fn backend_series_go_from_metrics_when_the_backend_leaves() {
    let mut table = hostnames(&["10.244.0.4", "10.244.1.38"]);
    let mut registry = signpost_runtime::Metrics::new();
    let metrics = super::metrics::ProxyMetrics::register(&mut registry);
    for backend in ["10.244.0.4:9376", "10.244.1.38:9376"] {
        metrics.connected("demo/hostnames", "default", backend);
    }
    let text = registry.encode();
    assert!(text.contains("backend=\"10.244.0.4:9376\""), "{text}");
    assert!(text.contains("backend=\"10.244.1.38:9376\""), "{text}");

    set_hostnames_pods(&mut table, &["10.244.0.4"]);
    super::server::forget_gone_backends(&table, &metrics);
    let text = registry.encode();
    assert!(text.contains("backend=\"10.244.0.4:9376\""), "{text}");
    assert!(
        !text.contains("10.244.1.38"),
        "a gone backend's series: {text}"
    );

    // The Service goes: its last backend's series too.
    table.set_service(&key("hostnames"), None);
    super::server::forget_gone_backends(&table, &metrics);
    assert!(!registry.encode().contains("10.244.0.4"));
}
