//! Table-driven tests of `render`: each case is a Service, its VIPs and slices, and the
//! record, state and summary it must produce.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ObjectReference, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use signpost_crds::dns_record::{
    DNSRecordSpec, HostRecord, MAX_ADDRESSES, Protocol, RecordType, SrvRecord, SrvTarget,
};

use super::*;

// ---- fixtures -------------------------------------------------------------------------------

/// A Service in namespace `demo`, ClusterIP type, no ports.
fn svc(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("demo".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec_mut(s: &mut Service) -> &mut ServiceSpec {
    s.spec.get_or_insert_with(Default::default)
}

fn with_port(mut s: Service, name: Option<&str>, port: i32, protocol: &str) -> Service {
    spec_mut(&mut s)
        .ports
        .get_or_insert_with(Vec::new)
        .push(ServicePort {
            name: name.map(Into::into),
            port,
            protocol: Some(protocol.into()),
            ..Default::default()
        });
    s
}

fn headless(mut s: Service) -> Service {
    spec_mut(&mut s).cluster_ip = Some("None".into());
    s
}

/// The ClusterIP record of `hostnames` with these VIPs, and its `default` SRV record when
/// `with_srv` (the Service names its port).
fn hostnames_record(ipv4: &[&str], ipv6: &[&str], with_srv: bool) -> DNSRecordSpec {
    DNSRecordSpec {
        ipv4: strings(ipv4),
        ipv6: strings(ipv6),
        srv: if with_srv {
            vec![srv(SRV, "default", &[(FQDN, 80)])]
        } else {
            vec![]
        },
        ..record(FQDN, RecordType::ClusterIP)
    }
}

/// A headless `web` Service, port `http` 80, as a StatefulSet's governing Service.
fn web() -> Service {
    headless(with_port(svc("web"), Some("http"), 80, "TCP"))
}

/// The record of [`web`] with pods `web-0` (10.244.0.5, `http` on 8080) and `web-1`
/// (10.244.1.9, `http` on `web1_port`).
fn web_record(web1_port: i32) -> DNSRecordSpec {
    DNSRecordSpec {
        ipv4: strings(&["10.244.0.5", "10.244.1.9"]),
        hosts: vec![
            host("web-0", &["10.244.0.5"], &[]),
            host("web-1", &["10.244.1.9"], &[]),
        ],
        srv: vec![pod_srv(
            "web",
            "http",
            &[("web-0", 8080), ("web-1", web1_port)],
        )],
        ..record("web.demo.svc.cluster.local", RecordType::Headless)
    }
}

/// The first seed's `hostnames` Service: port `default` 80 → 9376.
fn hostnames() -> Service {
    with_port(svc("hostnames"), Some("default"), 80, "TCP")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A ready endpoint (conditions unset, which the API defines as ready).
fn ep(address: &str) -> Endpoint {
    Endpoint {
        addresses: vec![address.into()],
        ..Default::default()
    }
}

fn ready(mut e: Endpoint, ready: bool) -> Endpoint {
    e.conditions = Some(EndpointConditions {
        ready: Some(ready),
        ..Default::default()
    });
    e
}

fn named(mut e: Endpoint, hostname: &str) -> Endpoint {
    e.hostname = Some(hostname.into());
    e
}

fn pod(mut e: Endpoint, uid: &str) -> Endpoint {
    e.target_ref = Some(ObjectReference {
        kind: Some("Pod".into()),
        uid: Some(uid.into()),
        ..Default::default()
    });
    e
}

fn slice(address_type: &str, ports: &[(&str, i32)], endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        address_type: address_type.into(),
        endpoints: Some(endpoints),
        ports: Some(
            ports
                .iter()
                .map(|(name, port)| EndpointPort {
                    name: Some(name.to_string()),
                    port: Some(*port),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        metadata: ObjectMeta::default(),
    }
}

fn record(fqdn: &str, record_type: RecordType) -> DNSRecordSpec {
    DNSRecordSpec {
        fqdn: fqdn.into(),
        record_type,
        ttl: 30,
        ipv4: vec![],
        ipv6: vec![],
        hosts: vec![],
        srv: vec![],
        cname: None,
    }
}

fn srv(name: &str, port_name: &str, targets: &[(&str, i32)]) -> SrvRecord {
    SrvRecord {
        name: name.into(),
        port_name: port_name.into(),
        protocol: Protocol::TCP,
        targets: targets
            .iter()
            .map(|(host, port)| SrvTarget {
                host: host.to_string(),
                port: *port,
            })
            .collect(),
    }
}

/// The SRV record of a headless Service's port in namespace `demo`: one target per pod
/// host name, each under the Service's name.
fn pod_srv(service: &str, port_name: &str, targets: &[(&str, i32)]) -> SrvRecord {
    let fqdn = format!("{service}.demo.svc.cluster.local");
    let targets: Vec<(String, i32)> = targets
        .iter()
        .map(|(host, port)| (format!("{host}.{fqdn}"), *port))
        .collect();
    let targets: Vec<(&str, i32)> = targets.iter().map(|(h, p)| (h.as_str(), *p)).collect();
    srv(&format!("_{port_name}._tcp.{fqdn}"), port_name, &targets)
}

fn host(name: &str, ipv4: &[&str], ipv6: &[&str]) -> HostRecord {
    HostRecord {
        name: name.into(),
        ipv4: strings(ipv4),
        ipv6: strings(ipv6),
    }
}

const FQDN: &str = "hostnames.demo.svc.cluster.local";
const SRV: &str = "_default._tcp.hostnames.demo.svc.cluster.local";

/// The three `hostnames` pods of the first seed, IPv4 only, without hostnames.
fn seed_pods() -> Vec<Endpoint> {
    vec![
        pod(ep("10.244.2.20"), "c"),
        pod(ep("10.244.0.4"), "a"),
        pod(ep("10.244.1.38"), "b"),
    ]
}

// ---- the table ------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    service: Service,
    vips: Vec<IpAddr>,
    slices: Vec<EndpointSlice>,
    domain: &'static str,
    want: DNSRecordSpec,
    state: RecordState,
    summary: &'static str,
}

/// A case with what most cases share: no VIPs, no slices, the default cluster domain, and a
/// complete record; the builder methods below say where a case differs.
fn case(name: &'static str, service: Service) -> Case {
    Case {
        name,
        service,
        vips: vec![],
        slices: vec![],
        domain: "cluster.local",
        want: record("", RecordType::ClusterIP),
        state: RecordState::Complete,
        summary: "",
    }
}

impl Case {
    fn vips(mut self, vips: Vec<IpAddr>) -> Self {
        self.vips = vips;
        self
    }

    fn slices(mut self, slices: Vec<EndpointSlice>) -> Self {
        self.slices = slices;
        self
    }

    fn domain(mut self, domain: &'static str) -> Self {
        self.domain = domain;
        self
    }

    fn state(mut self, state: RecordState) -> Self {
        self.state = state;
        self
    }

    fn want(mut self, want: DNSRecordSpec, summary: &'static str) -> Self {
        self.want = want;
        self.summary = summary;
        self
    }
}

fn cases() -> Vec<Case> {
    vec![
        case("seed hostnames ClusterIP", hostnames())
            .vips(ips(&["10.200.0.7"]))
            .slices(vec![slice("IPv4", &[("default", 9376)], seed_pods())])
            .want(hostnames_record(&["10.200.0.7"], &[], true), "10.200.0.7"),
        case(
            "no named ports, no SRV",
            with_port(svc("hostnames"), None, 80, "TCP"),
        )
        .vips(ips(&["10.200.0.7"]))
        .want(hostnames_record(&["10.200.0.7"], &[], false), "10.200.0.7"),
        case("IPv6 only", hostnames())
            .vips(ips(&["fd00::7"]))
            .want(hostnames_record(&[], &["fd00::7"], true), "fd00::7"),
        case("dual stack, VIPs in any order and repeated", hostnames())
            .vips(ips(&["fd00::7", "10.200.0.7", "fd00:0::7"]))
            .want(
                hostnames_record(&["10.200.0.7"], &["fd00::7"], true),
                "10.200.0.7,fd00::7",
            ),
        case("ClusterIP without VIP yet", hostnames())
            .state(RecordState::AddressPending { have: 0, want: 1 })
            .want(hostnames_record(&[], &[], true), "<pending>"),
        case("RequireDualStack with one family", {
            let mut s = svc("hostnames");
            spec_mut(&mut s).ip_family_policy = Some("RequireDualStack".into());
            s
        })
        .vips(ips(&["10.200.0.7"]))
        .state(RecordState::AddressPending { have: 1, want: 2 })
        .want(hostnames_record(&["10.200.0.7"], &[], false), "10.200.0.7"),
        case("NodePort and LoadBalancer get VIPs like ClusterIP", {
            let mut s = svc("hostnames");
            spec_mut(&mut s).type_ = Some("LoadBalancer".into());
            s
        })
        .vips(ips(&["10.200.0.7"]))
        .want(hostnames_record(&["10.200.0.7"], &[], false), "10.200.0.7"),
        case("custom cluster domain, trailing dot tolerated", hostnames())
            .vips(ips(&["10.200.0.7"]))
            .domain("Example.Internal.")
            .want(
                DNSRecordSpec {
                    ipv4: strings(&["10.200.0.7"]),
                    srv: vec![srv(
                        "_default._tcp.hostnames.demo.svc.example.internal",
                        "default",
                        &[("hostnames.demo.svc.example.internal", 80)],
                    )],
                    ..record("hostnames.demo.svc.example.internal", RecordType::ClusterIP)
                },
                "10.200.0.7",
            ),
        case(
            "several ports: SRV sorted by owner, UDP label lowercase",
            with_port(
                with_port(
                    with_port(svc("dns"), Some("dns"), 53, "UDP"),
                    Some("dns-tcp"),
                    53,
                    "TCP",
                ),
                Some("metrics"),
                9153,
                "TCP",
            ),
        )
        .vips(ips(&["10.200.0.10"]))
        .want(
            DNSRecordSpec {
                ipv4: strings(&["10.200.0.10"]),
                srv: vec![
                    srv(
                        "_dns-tcp._tcp.dns.demo.svc.cluster.local",
                        "dns-tcp",
                        &[("dns.demo.svc.cluster.local", 53)],
                    ),
                    SrvRecord {
                        protocol: Protocol::UDP,
                        ..srv(
                            "_dns._udp.dns.demo.svc.cluster.local",
                            "dns",
                            &[("dns.demo.svc.cluster.local", 53)],
                        )
                    },
                    srv(
                        "_metrics._tcp.dns.demo.svc.cluster.local",
                        "metrics",
                        &[("dns.demo.svc.cluster.local", 9153)],
                    ),
                ],
                ..record("dns.demo.svc.cluster.local", RecordType::ClusterIP)
            },
            "10.200.0.10",
        ),
        case(
            "headless, pods without hostnames get dashed names",
            headless(hostnames()),
        )
        .vips(ips(&["10.200.0.7"])) // ignored for headless
        .slices(vec![slice("IPv4", &[("default", 9376)], seed_pods())])
        .want(
            DNSRecordSpec {
                ipv4: strings(&["10.244.0.4", "10.244.1.38", "10.244.2.20"]),
                hosts: vec![
                    host("10-244-0-4", &["10.244.0.4"], &[]),
                    host("10-244-1-38", &["10.244.1.38"], &[]),
                    host("10-244-2-20", &["10.244.2.20"], &[]),
                ],
                srv: vec![pod_srv(
                    "hostnames",
                    "default",
                    &[
                        ("10-244-0-4", 9376),
                        ("10-244-1-38", 9376),
                        ("10-244-2-20", 9376),
                    ],
                )],
                ..record(FQDN, RecordType::Headless)
            },
            "10.244.0.4 +2 more",
        ),
        case("headless, pods with hostname + subdomain", web())
            .slices(vec![slice(
                "IPv4",
                &[("http", 8080)],
                vec![
                    named(pod(ep("10.244.1.9"), "w1"), "web-1"),
                    named(pod(ep("10.244.0.5"), "w0"), "web-0"),
                ],
            )])
            .want(web_record(8080), "10.244.0.5,10.244.1.9"),
        case(
            "headless dual stack: one host per pod, by hostname or by UID",
            web(),
        )
        .slices(vec![
            slice(
                "IPv6",
                &[("http", 8080)],
                vec![
                    named(pod(ep("fd00:10:244::5"), "w0"), "web-0"),
                    pod(ep("fd00:10:244::9"), "anon"),
                ],
            ),
            slice(
                "IPv4",
                &[("http", 8080)],
                vec![
                    named(pod(ep("10.244.0.5"), "w0"), "web-0"),
                    pod(ep("10.244.1.9"), "anon"),
                ],
            ),
        ])
        .want(
            DNSRecordSpec {
                ipv4: strings(&["10.244.0.5", "10.244.1.9"]),
                ipv6: strings(&["fd00:10:244::5", "fd00:10:244::9"]),
                hosts: vec![
                    host("10-244-1-9", &["10.244.1.9"], &["fd00:10:244::9"]),
                    host("web-0", &["10.244.0.5"], &["fd00:10:244::5"]),
                ],
                srv: vec![pod_srv(
                    "web",
                    "http",
                    &[("10-244-1-9", 8080), ("web-0", 8080)],
                )],
                ..record("web.demo.svc.cluster.local", RecordType::Headless)
            },
            "10.244.0.5 +3 more",
        ),
        case(
            "headless: not-ready endpoints excluded, unset ready counts as ready",
            headless(hostnames()),
        )
        .slices(vec![slice(
            "IPv4",
            &[("default", 9376)],
            vec![
                ready(ep("10.244.0.4"), true),
                ready(ep("10.244.1.38"), false),
                ep("10.244.2.20"),
            ],
        )])
        .want(
            DNSRecordSpec {
                ipv4: strings(&["10.244.0.4", "10.244.2.20"]),
                hosts: vec![
                    host("10-244-0-4", &["10.244.0.4"], &[]),
                    host("10-244-2-20", &["10.244.2.20"], &[]),
                ],
                srv: vec![pod_srv(
                    "hostnames",
                    "default",
                    &[("10-244-0-4", 9376), ("10-244-2-20", 9376)],
                )],
                ..record(FQDN, RecordType::Headless)
            },
            "10.244.0.4,10.244.2.20",
        ),
        case(
            "headless publishNotReadyAddresses includes not-ready endpoints",
            {
                let mut s = headless(svc("hostnames"));
                spec_mut(&mut s).publish_not_ready_addresses = Some(true);
                s
            },
        )
        .slices(vec![slice(
            "IPv4",
            &[],
            vec![ready(ep("10.244.1.38"), false), ep("10.244.0.4")],
        )])
        .want(
            DNSRecordSpec {
                ipv4: strings(&["10.244.0.4", "10.244.1.38"]),
                hosts: vec![
                    host("10-244-0-4", &["10.244.0.4"], &[]),
                    host("10-244-1-38", &["10.244.1.38"], &[]),
                ],
                ..record(FQDN, RecordType::Headless)
            },
            "10.244.0.4,10.244.1.38",
        ),
        case(
            "headless: duplicates across slices collapse, FQDN slices ignored",
            headless(hostnames()),
        )
        .slices(vec![
            slice(
                "IPv4",
                &[("default", 9376)],
                vec![pod(ep("10.244.0.4"), "a")],
            ),
            slice(
                "IPv4",
                &[("default", 9376)],
                vec![pod(ep("10.244.0.4"), "a")],
            ),
            slice("FQDN", &[("default", 9376)], vec![ep("example.com")]),
        ])
        .want(
            DNSRecordSpec {
                ipv4: strings(&["10.244.0.4"]),
                hosts: vec![host("10-244-0-4", &["10.244.0.4"], &[])],
                srv: vec![pod_srv("hostnames", "default", &[("10-244-0-4", 9376)])],
                ..record(FQDN, RecordType::Headless)
            },
            "10.244.0.4",
        ),
        case("headless: pods differ in the named port's number", web())
            .slices(vec![
                slice(
                    "IPv4",
                    &[("http", 8080)],
                    vec![named(ep("10.244.0.5"), "web-0")],
                ),
                slice(
                    "IPv4",
                    &[("http", 9090)],
                    vec![named(ep("10.244.1.9"), "web-1")],
                ),
            ])
            .want(web_record(9090), "10.244.0.5,10.244.1.9"),
        case(
            "headless without ready endpoints is complete and empty",
            headless(hostnames()),
        )
        .slices(vec![slice(
            "IPv4",
            &[("default", 9376)],
            vec![ready(ep("10.244.0.4"), false)],
        )])
        .want(
            DNSRecordSpec {
                srv: vec![srv(SRV, "default", &[])],
                ..record(FQDN, RecordType::Headless)
            },
            "<none>",
        ),
        case(
            "headless IPv6 pod without hostname",
            headless(svc("hostnames")),
        )
        .slices(vec![slice("IPv6", &[], vec![ep("fd00::7")])])
        .want(
            DNSRecordSpec {
                ipv6: strings(&["fd00::7"]),
                hosts: vec![host("fd00--7", &[], &["fd00::7"])],
                ..record(FQDN, RecordType::Headless)
            },
            "fd00::7",
        ),
        case("ExternalName with trailing dot, mixed case", {
            let mut s = with_port(svc("ext"), Some("https"), 443, "TCP");
            let spec = spec_mut(&mut s);
            spec.type_ = Some("ExternalName".into());
            spec.external_name = Some("Example.COM.".into());
            s
        })
        .vips(ips(&["10.200.0.7"])) // ignored
        .want(
            DNSRecordSpec {
                cname: Some("example.com".into()),
                ..record("ext.demo.svc.cluster.local", RecordType::ExternalName)
            },
            "example.com",
        ),
    ]
}

#[test]
fn table() {
    for case in cases() {
        let got = render(&case.service, &case.vips, &case.slices, case.domain, 30)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got.spec, case.want, "{}", case.name);
        assert_eq!(got.state, case.state, "{}", case.name);
        assert_eq!(got.address_summary, case.summary, "{}", case.name);
        assert_eq!(got.omitted, Omitted::default(), "{}", case.name);
        assert_eq!(
            got.is_ready(),
            !matches!(case.state, RecordState::AddressPending { .. }),
            "{}",
            case.name
        );
    }
}

#[test]
fn conditions() {
    let ok = render(
        &hostnames(),
        &ips(&["10.200.0.7"]),
        &[],
        "cluster.local",
        30,
    )
    .unwrap();
    assert_eq!(
        (ok.is_ready(), ok.reason(), ok.message().as_str()),
        (true, "Rendered", "record is complete")
    );

    let pending = render(&hostnames(), &[], &[], "cluster.local", 30).unwrap();
    assert!(!pending.is_ready());
    assert_eq!(pending.reason(), "AddressPending");
    assert_eq!(
        pending.message(),
        "waiting for virtual IPs: 0 of 1 allocated"
    );
}

#[test]
fn ttl_is_clamped() {
    let r = render(&hostnames(), &[], &[], "cluster.local", u32::MAX).unwrap();
    assert_eq!(r.spec.ttl, MAX_TTL);
    let r = render(&hostnames(), &[], &[], "cluster.local", 5).unwrap();
    assert_eq!(r.spec.ttl, 5);
}

#[test]
fn errors() {
    let mut no_ns = hostnames();
    no_ns.metadata.namespace = None;
    assert!(matches!(
        render(&no_ns, &[], &[], "cluster.local", 30),
        Err(RenderError::InvalidServiceName {
            field: "namespace",
            ..
        })
    ));
    assert!(matches!(
        render(&hostnames(), &[], &[], "", 30),
        Err(RenderError::InvalidClusterDomain(_))
    ));
    let mut ext = svc("ext");
    spec_mut(&mut ext).type_ = Some("ExternalName".into());
    for name in [None, Some("."), Some("a..b")] {
        spec_mut(&mut ext).external_name = name.map(Into::into);
        assert!(matches!(
            render(&ext, &[], &[], "cluster.local", 30),
            Err(RenderError::InvalidExternalName(_))
        ));
    }
}

#[test]
fn invalid_inputs_are_ignored_and_counted() {
    let s = with_port(headless(hostnames()), Some("Bad_Name"), 81, "TCP");
    let slices = [slice(
        "IPv4",
        &[("default", 9376)],
        vec![
            ep("10.244.0.4"),
            ep("not-an-ip"),
            ep("::ffff:10.0.0.1"),
            named(ep("10.244.0.5"), "Not_A_Label"),
        ],
    )];
    let r = render(&s, &[], &slices, "cluster.local", 30).unwrap();
    assert_eq!(r.spec.ipv4, strings(&["10.244.0.4", "10.244.0.5"]));
    assert_eq!(r.spec.ipv6, Vec::<String>::new());
    // The bad hostname falls back to the dashed address.
    assert_eq!(r.spec.hosts[1].name, "10-244-0-5");
    assert_eq!(r.spec.srv.len(), 1);
    // Bad port name, unparsable address, IPv4-mapped address, bad hostname.
    assert_eq!(
        r.omitted,
        Omitted {
            invalid: 4,
            ..Default::default()
        }
    );
    assert_eq!(r.state, RecordState::Complete);
    assert_eq!(r.message(), "record is complete; ignored 4 invalid entries");
}

#[test]
fn truncation_is_deterministic_and_reported() {
    let n = MAX_ADDRESSES + 3;
    let endpoints: Vec<Endpoint> = (0..n)
        .rev()
        .map(|i| ep(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff)))
        .collect();
    let slices = [slice("IPv4", &[("default", 9376)], endpoints)];
    let r = render(&headless(hostnames()), &[], &slices, "cluster.local", 30).unwrap();
    assert_eq!(r.spec.ipv4.len(), MAX_ADDRESSES);
    assert_eq!(r.spec.ipv4.first().map(String::as_str), Some("10.0.0.0"));
    assert_eq!(r.spec.hosts.len(), MAX_HOSTS);
    assert_eq!(r.spec.srv[0].targets.len(), MAX_HOSTS.min(MAX_SRV_TARGETS));
    assert_eq!(
        r.omitted,
        Omitted {
            ipv4: 3,
            hosts: 3,
            ..Default::default()
        }
    );
    assert_eq!(r.state, RecordState::Truncated);
    assert!(r.is_ready());
    assert_eq!(r.reason(), "Truncated");
    assert_eq!(
        r.message(),
        "record is truncated to the DNSRecord size limits; left out 3 IPv4 addresses, 3 hosts"
    );
    assert_eq!(r.address_summary, format!("10.0.0.0 +{} more", n - 1));
    // Every SRV target names a host that is in the record.
    let hosts: std::collections::BTreeSet<String> = r
        .spec
        .hosts
        .iter()
        .map(|h| format!("{}.{FQDN}", h.name))
        .collect();
    assert!(
        r.spec.srv[0]
            .targets
            .iter()
            .all(|t| hosts.contains(&t.host))
    );
}

#[test]
fn host_address_bound() {
    // Twenty endpoints claiming one hostname: one host, sixteen addresses.
    let endpoints = (1..=20)
        .map(|i| named(ep(&format!("10.244.0.{i}")), "web-0"))
        .collect();
    let r = render(
        &headless(svc("web")),
        &[],
        &[slice("IPv4", &[], endpoints)],
        "cluster.local",
        30,
    )
    .unwrap();
    assert_eq!(r.spec.hosts.len(), 1);
    assert_eq!(r.spec.hosts[0].ipv4.len(), MAX_HOST_ADDRESSES);
    assert_eq!(r.spec.ipv4.len(), 20);
    assert_eq!(
        r.omitted,
        Omitted {
            host_addresses: 4,
            ..Default::default()
        }
    );
}

// ---- properties -----------------------------------------------------------------------------

fn arb_endpoint() -> impl Strategy<Value = (Endpoint, bool)> {
    (
        prop_oneof![
            (0u8..6).prop_map(|i| format!("10.244.0.{i}")),
            (0u8..6).prop_map(|i| format!("fd00::{i}")),
        ],
        proptest::option::of(prop_oneof![Just("web-0"), Just("web-1")]),
        proptest::option::of(prop_oneof![Just("uid-a"), Just("uid-b"), Just("uid-c")]),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(|(addr, hostname, uid, is_ready, second_slice)| {
            let mut e = ep(&addr);
            e.hostname = hostname.map(Into::into);
            if let Some(uid) = uid {
                e = pod(e, uid);
            }
            if let Some(r) = is_ready {
                e = ready(e, r);
            }
            (e, second_slice)
        })
}

proptest! {
    /// Slices and endpoints in any order render the same record, and every name in it is
    /// one the CRD schema admits.
    #[test]
    fn order_does_not_matter(endpoints in proptest::collection::vec(arb_endpoint(), 0..24), pnr in any::<bool>()) {
        let mut service = web();
        spec_mut(&mut service).publish_not_ready_addresses = Some(pnr);
        let (a, b): (Vec<_>, Vec<_>) = endpoints.into_iter().partition(|(_, second)| *second);
        let a: Vec<Endpoint> = a.into_iter().map(|(e, _)| e).collect();
        let b: Vec<Endpoint> = b.into_iter().map(|(e, _)| e).collect();
        let forward = [slice("IPv4", &[("http", 8080)], a.clone()), slice("IPv6", &[("http", 8080)], b.clone())];
        let backward = [
            slice("IPv6", &[("http", 8080)], b.into_iter().rev().collect()),
            slice("IPv4", &[("http", 8080)], a.into_iter().rev().collect()),
        ];
        let x = render(&service, &[], &forward, "cluster.local", 30).unwrap();
        let y = render(&service, &[], &backward, "cluster.local", 30).unwrap();
        prop_assert_eq!(&x, &y);
        for h in &x.spec.hosts {
            prop_assert!(is_dns_label(&h.name), "{}", h.name);
        }
        let mut names: Vec<&str> = x.spec.hosts.iter().map(|h| h.name.as_str()).collect();
        let len = names.len();
        names.dedup();
        prop_assert_eq!(names.len(), len, "host names sorted and unique");
        prop_assert!(x.spec.ipv4.windows(2).all(|w| w[0].parse::<IpAddr>().unwrap() < w[1].parse::<IpAddr>().unwrap()));
        prop_assert!(x.spec.ipv6.windows(2).all(|w| w[0].parse::<IpAddr>().unwrap() < w[1].parse::<IpAddr>().unwrap()));
    }
}
