//! `signpost dns` against the local control plane, queried with the real `dig`: each test runs
//! its own controllers (scoped to its namespace, over a CIDR no other test uses) and its own
//! DNS server on a free loopback port.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    TIMEOUT, create_web_and_ext, dig, http_get, init_logs, scoped_settings, start_controllers,
    start_dns,
};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use signpost_controllers::app::Running;
use signpost_crds::DNSRecord;
use signpost_dns as dns;
use signpost_e2e::{
    TestNamespace, client, delete_namespace_and_claims, install_crds, set_pod_ready, unique_cidr,
    wait_events, wait_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The tests' log filter unless `RUST_LOG` says otherwise.
const LOG_FILTER: &str = "warn,hickory_server=error";
/// How soon a change must be served.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

async fn start(client: &Client, ns: &str) -> anyhow::Result<(Running, dns::Running)> {
    init_logs(LOG_FILTER);
    let (controllers, _) =
        start_controllers(client, scoped_settings(ns, &[&unique_cidr(24)])?).await?;
    let server = start_dns(client, ns, "cluster.local", None).await?;
    Ok((controllers, server))
}

/// A fresh namespace `<prefix>-…` and a DNS server for it alone, without controllers: for
/// tests that write DNSRecords by hand, as another publisher would.
async fn start_dns_alone(prefix: &str) -> anyhow::Result<(Client, TestNamespace, dns::Running)> {
    init_logs(LOG_FILTER);
    let client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    let server = start_dns(&client, &ns.name, "cluster.local", None).await?;
    Ok((client, ns, server))
}

/// `dig +short <name> <type> [extra]`: the answer data, one per line, sorted.
async fn short(
    server: SocketAddr,
    name: &str,
    qtype: &str,
    extra: &[&str],
) -> Result<Vec<String>, String> {
    let mut args = vec!["+short", name, qtype];
    args.extend_from_slice(extra);
    let out = dig(server, &args).await?;
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect();
    lines.sort();
    Ok(lines)
}

/// One parsed `dig` response.
#[derive(Debug)]
struct Response {
    status: String,
    flags: Vec<String>,
    answers: Vec<Vec<String>>,
    authority: Vec<Vec<String>>,
    additional: Vec<Vec<String>>,
}

/// `dig <name> <type> [extra]` with the header and sections, parsed.
async fn query(
    server: SocketAddr,
    name: &str,
    qtype: &str,
    extra: &[&str],
) -> Result<Response, String> {
    let mut args = vec![
        "+noall",
        "+comments",
        "+answer",
        "+authority",
        "+additional",
        name,
        qtype,
    ];
    args.extend_from_slice(extra);
    let out = dig(server, &args).await?;
    let mut response = Response {
        status: String::new(),
        flags: Vec::new(),
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let mut section = "";
    for line in out.lines() {
        if let Some(at) = line.find("status: ") {
            response.status = line[at + 8..]
                .split(',')
                .next()
                .unwrap_or_default()
                .to_string();
        }
        if let Some(flags) = line.strip_prefix(";; flags: ") {
            response.flags = flags
                .split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        }
        if line.starts_with(";; ") && line.ends_with("SECTION:") {
            section = if line.contains("ANSWER") {
                "answer"
            } else if line.contains("AUTHORITY") {
                "authority"
            } else if line.contains("ADDITIONAL") {
                "additional"
            } else {
                ""
            };
            continue;
        }
        if line.is_empty() {
            section = "";
            continue;
        }
        if line.starts_with(';') {
            continue;
        }
        let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match section {
            "answer" => response.answers.push(fields),
            "authority" => response.authority.push(fields),
            "additional" => response.additional.push(fields),
            _ => {}
        }
    }
    if response.status.is_empty() {
        return Err(format!("no status line in: {out}"));
    }
    Ok(response)
}

/// Waits until `dig` reports `status` for `name`, and returns how long that took.
async fn wait_status(
    server: SocketAddr,
    name: &str,
    status: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wait_until(&format!("{status} for {name}"), timeout, || async {
        let response = query(server, name, "A", &[]).await?;
        if response.status == status {
            Ok(())
        } else {
            Err(format!("{response:?}"))
        }
    })
    .await?;
    Ok(started.elapsed())
}

/// The value of the first sample line of `/metrics` starting with `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn seed_service_resolves_to_its_vip_with_srv_and_is_nxdomain_once_deleted()
-> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "dns-seed").await?;
    let (controllers, server) = start(&client, &ns.name).await?;
    let at = server.dns_addr;
    let services: Api<Service> = ns.api();
    let records: Api<DNSRecord> = ns.api();

    let t0 = Instant::now();
    ns.create_hostnames(3).await?;
    let fqdn = format!("hostnames.{}.svc.cluster.local", ns.name);
    let vip = wait_until("DNSRecord hostnames with a VIP", TIMEOUT, || async {
        let record = records
            .get_opt("hostnames")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no DNSRecord yet")?;
        record
            .spec
            .ipv4
            .first()
            .cloned()
            .ok_or_else(|| format!("no address yet: {:?}", record.spec))
    })
    .await?;
    let t_record = Instant::now();
    wait_until("dig A answers the VIP", TIMEOUT, || async {
        let got = short(at, &fqdn, "A", &[]).await?;
        if got == [vip.clone()] {
            Ok(())
        } else {
            Err(format!("dig +short: {got:?}"))
        }
    })
    .await?;
    println!(
        "dns/seed: {fqdn} A {vip}: served {:?} after the DNSRecord had it, {:?} after creating the Service",
        t_record.elapsed(),
        t0.elapsed()
    );

    // The same over TCP, and in any case.
    assert_eq!(
        short(at, &fqdn, "A", &["+tcp"])
            .await
            .map_err(anyhow::Error::msg)?,
        std::slice::from_ref(&vip)
    );
    let shouting = fqdn.to_uppercase();
    assert_eq!(
        short(at, &shouting, "A", &[])
            .await
            .map_err(anyhow::Error::msg)?,
        std::slice::from_ref(&vip)
    );

    // Authoritative, with the record's TTL.
    let a = query(at, &fqdn, "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    println!("dns/seed: dig A: {a:?}");
    assert_eq!(a.status, "NOERROR");
    assert!(a.flags.contains(&"aa".to_string()), "{a:?}");
    assert!(
        !a.flags.contains(&"ra".to_string()),
        "no upstream, no recursion: {a:?}"
    );
    assert_eq!(a.answers.len(), 1);
    assert_eq!(a.answers[0][1], "5", "TTL from the DNSRecord: {a:?}");

    // SRV of the named port, with the target's address in the additional section.
    let srv_name = format!("_default._tcp.{fqdn}");
    let srv = short(at, &srv_name, "SRV", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    println!("dns/seed: dig +short SRV {srv_name}: {srv:?}");
    assert_eq!(srv, [format!("0 100 80 {fqdn}.")]);
    let srv = query(at, &srv_name, "SRV", &["+tcp"])
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        srv.additional
            .iter()
            .any(|rr| rr[0] == format!("{fqdn}.") && rr[3] == "A" && rr[4] == vip),
        "the target's A in the additional section: {srv:?}"
    );

    // No such name; a name that exists only as a parent; a name that is not ours.
    let missing = query(at, &format!("nope.{}.svc.cluster.local", ns.name), "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    println!("dns/seed: dig nope: {missing:?}");
    assert_eq!(missing.status, "NXDOMAIN");
    assert!(
        missing.authority.iter().any(|rr| rr[3] == "SOA"),
        "the SOA for negative caching: {missing:?}"
    );
    let parent = query(at, &format!("{}.svc.cluster.local", ns.name), "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(parent.status, "NOERROR", "{parent:?}");
    assert!(parent.answers.is_empty(), "NODATA: {parent:?}");
    let aaaa = query(at, &fqdn, "AAAA", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        (aaaa.status.as_str(), aaaa.answers.len()),
        ("NOERROR", 0),
        "{aaaa:?}"
    );
    let outside = query(at, "example.com", "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(outside.status, "REFUSED", "{outside:?}");

    // Health, readiness and metrics.
    let metrics_addr = server.metrics_addr.expect("a metrics server");
    assert_eq!(http_get(metrics_addr, "/healthz").await?.0, 200);
    assert_eq!(http_get(metrics_addr, "/readyz").await?.0, 200);
    let (code, metrics) = http_get(metrics_addr, "/metrics").await?;
    assert_eq!(code, 200);
    let a_noerror = sample(
        &metrics,
        "signpost_dns_queries_total{type=\"A\",rcode=\"NOERROR\"}",
    );
    let nx = sample(
        &metrics,
        "signpost_dns_queries_total{type=\"A\",rcode=\"NXDOMAIN\"}",
    );
    let refused = sample(
        &metrics,
        "signpost_dns_queries_total{type=\"A\",rcode=\"REFUSED\"}",
    );
    println!("dns/seed: metrics A/NOERROR {a_noerror:?}, A/NXDOMAIN {nx:?}, A/REFUSED {refused:?}");
    assert!(a_noerror.is_some_and(|n| n >= 3.0), "{metrics}");
    assert!(nx.is_some_and(|n| n >= 1.0) && refused.is_some_and(|n| n >= 1.0));
    assert!(metrics.contains("signpost_dns_query_duration_seconds_bucket{"));
    assert_eq!(sample(&metrics, "signpost_dns_records "), Some(1.0));

    // The Service goes: NXDOMAIN soon after.
    services
        .delete("hostnames", &DeleteParams::default())
        .await?;
    let took = wait_status(at, &fqdn, "NXDOMAIN", TIMEOUT).await?;
    println!("dns/seed: {fqdn} NXDOMAIN {took:?} after deleting the Service");
    assert!(took < SERVED_WITHIN, "NXDOMAIN only after {took:?}");

    delete_namespace_and_claims(&client, ns).await?;
    server.shut_down().await;
    controllers.shut_down().await;
    Ok(())
}

#[tokio::test]
async fn headless_service_answers_ready_pods_and_host_names_external_name_a_cname()
-> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "dns-headless").await?;
    let (controllers, server) = start(&client, &ns.name).await?;
    let at = server.dns_addr;
    let pods: Api<Pod> = ns.api();

    let ips = create_web_and_ext(&ns, TIMEOUT).await?;
    let fqdn = format!("web.{}.svc.cluster.local", ns.name);
    let t0 = Instant::now();
    wait_until("dig A web: one address per ready pod", TIMEOUT, || async {
        let got: BTreeSet<String> = short(at, &fqdn, "A", &[]).await?.into_iter().collect();
        if got == ips {
            Ok(())
        } else {
            Err(format!("dig {got:?}, pods {ips:?}"))
        }
    })
    .await?;
    println!(
        "dns/headless: {fqdn} A {ips:?} {:?} after both pods were ready",
        t0.elapsed()
    );

    // Per-pod host names, and SRV targets naming them.
    let mut host_ips = std::collections::BTreeMap::new();
    for host in ["web-0", "web-1"] {
        let name = format!("{host}.{fqdn}");
        let got = wait_until(&format!("dig A {name}"), TIMEOUT, || async {
            let got = short(at, &name, "A", &["+tcp"]).await?;
            if got.len() == 1 {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await?;
        println!("dns/headless: {name} A {got:?}");
        assert!(ips.contains(&got[0]), "{name}: {got:?} is a pod IP");
        host_ips.insert(host, got[0].clone());
    }
    let distinct: BTreeSet<String> = host_ips.values().cloned().collect();
    assert_eq!(distinct, ips, "each host its own pod: {host_ips:?}");
    let srv = short(at, &format!("_http._tcp.{fqdn}"), "SRV", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    println!("dns/headless: SRV _http._tcp.{fqdn}: {srv:?}");
    assert_eq!(
        srv,
        [
            format!("0 50 8080 web-0.{fqdn}."),
            format!("0 50 8080 web-1.{fqdn}.")
        ]
    );

    // A pod that stops being ready leaves the answer.
    set_pod_ready(&pods, "web-1", false).await?;
    let t1 = Instant::now();
    let web1 = format!("web-1.{fqdn}");
    let remaining = wait_until(
        "web-1 gone from dig A web and its host name",
        TIMEOUT,
        || async {
            let got = short(at, &fqdn, "A", &[]).await?;
            let host = query(at, &web1, "A", &[]).await?.status;
            if got.len() == 1 && host == "NXDOMAIN" {
                Ok(got)
            } else {
                Err(format!("web A {got:?}, {web1} {host}"))
            }
        },
    )
    .await?;
    println!(
        "dns/headless: {fqdn} A {remaining:?} {:?} after web-1 became not ready",
        t1.elapsed()
    );
    assert_eq!(remaining, [host_ips["web-0"].clone()]);

    // ExternalName: a CNAME, for the CNAME query and for an A query.
    let ext = format!("ext.{}.svc.cluster.local", ns.name);
    wait_until("dig CNAME ext", TIMEOUT, || async {
        let got = short(at, &ext, "CNAME", &[]).await?;
        if got == ["example.com."] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await?;
    let a = query(at, &ext, "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    println!("dns/headless: dig A {ext}: {a:?}");
    assert_eq!(a.status, "NOERROR");
    assert_eq!(a.answers.len(), 1, "{a:?}");
    assert_eq!(a.answers[0][3], "CNAME");
    assert_eq!(a.answers[0][4], "example.com.");

    delete_namespace_and_claims(&client, ns).await?;
    server.shut_down().await;
    controllers.shut_down().await;
    Ok(())
}

/// Writes the DNSRecord `name` with `spec` by hand, as a publisher other than Signpost would.
async fn create_record(
    records: &Api<DNSRecord>,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    let record: DNSRecord = serde_json::from_value(serde_json::json!({
        "apiVersion": "signpost.dev/v1alpha1", "kind": "DNSRecord",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    records.create(&PostParams::default(), &record).await?;
    Ok(())
}

#[tokio::test]
async fn large_answers_truncate_over_udp_malformed_records_are_reported_upstream_forwards()
-> anyhow::Result<()> {
    // No controllers: the records are written by hand, as another publisher would.
    let (client, ns, server) = start_dns_alone("dns-direct").await?;
    let at = server.dns_addr;
    let records: Api<DNSRecord> = ns.api();

    let big = format!("big.{}.svc.cluster.local", ns.name);
    let addresses: Vec<String> = (1..=120)
        .map(|i| format!("10.99.{}.{}", i / 100, i % 100 + 1))
        .collect();
    create_record(
        &records,
        "big",
        serde_json::json!({"fqdn": big, "type": "ClusterIP", "ttl": 5, "ipv4": addresses}),
    )
    .await?;
    // An SRV owner name the schema lets through but DNS cannot carry.
    let broken = format!("broken.{}.svc.cluster.local", ns.name);
    create_record(
        &records,
        "broken",
        serde_json::json!({"fqdn": broken, "type": "ClusterIP", "ttl": 5, "ipv4": ["10.99.9.9"],
            "srv": [{"name": "not a name", "portName": "p", "protocol": "TCP",
                     "targets": [{"host": broken, "port": 80}]}]}),
    )
    .await?;

    // Over UDP alone (+ignore: no retry over TCP) the answer is cut and flagged.
    let udp = wait_until("a truncated UDP answer", TIMEOUT, || async {
        let r = query(at, &big, "A", &["+ignore", "+notcp"]).await?;
        if r.flags.contains(&"tc".to_string()) {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await?;
    println!(
        "dns/direct: 120 A records over UDP: flags {:?}, {} answers",
        udp.flags,
        udp.answers.len()
    );
    assert!(udp.answers.len() < 120);
    // dig retries over TCP on TC by default; +tcp asks over TCP at once.
    assert_eq!(
        short(at, &big, "A", &[])
            .await
            .map_err(anyhow::Error::msg)?
            .len(),
        120
    );
    let tcp = query(at, &big, "A", &["+tcp"])
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(tcp.answers.len(), 120);
    assert!(!tcp.flags.contains(&"tc".to_string()));

    // The malformed record is not served, the rest is; a Warning Event and a metric say why.
    assert_eq!(
        query(at, &broken, "A", &[])
            .await
            .map_err(anyhow::Error::msg)?
            .status,
        "NXDOMAIN"
    );
    let events = wait_events(&client, &ns.name, "broken", "InvalidDNSRecord", TIMEOUT).await?;
    println!("dns/direct: Event on broken: {:?}", events[0].note);
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    let metrics_addr = server.metrics_addr.expect("a metrics server");
    let (_, metrics) = http_get(metrics_addr, "/metrics").await?;
    assert_eq!(
        sample(
            &metrics,
            "signpost_problems_total{controller=\"dns\",reason=\"InvalidDNSRecord\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "signpost_dns_rejected_records "),
        Some(1.0)
    );

    // Names outside a server's domain go to its upstream: a second server, authoritative for
    // another domain (and reading a namespace without records), forwards to the first.
    let front = start_dns(
        &client,
        &format!("{}-none", ns.name),
        "other.test",
        Some(at),
    )
    .await?;
    let forwarded = short(front.dns_addr, &big, "A", &["+tcp"])
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(forwarded.len(), 120, "the upstream's whole answer");
    let forwarded_udp = short(front.dns_addr, &big, "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        forwarded_udp.len(),
        120,
        "truncated over UDP, complete over TCP"
    );
    let nx = query(front.dns_addr, &broken, "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(nx.status, "NXDOMAIN", "the upstream's rcode: {nx:?}");
    let own = query(front.dns_addr, "x.other.test", "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        own.status, "NXDOMAIN",
        "its own zone stays its own: {own:?}"
    );
    assert!(
        own.flags.contains(&"ra".to_string()),
        "with an upstream, recursion is available: {own:?}"
    );
    let (_, front_metrics) = http_get(front.metrics_addr.expect("metrics"), "/metrics").await?;
    println!(
        "dns/direct: forwarded ok {:?}",
        sample(
            &front_metrics,
            "signpost_dns_upstream_queries_total{result=\"ok\"}"
        )
    );
    front.shut_down().await;

    // A record deleted: NXDOMAIN as soon as the watch tells.
    records.delete("big", &DeleteParams::default()).await?;
    let took = wait_status(at, &big, "NXDOMAIN", TIMEOUT).await?;
    println!("dns/direct: {big} NXDOMAIN {took:?} after deleting its DNSRecord");
    assert!(took < SERVED_WITHIN, "NXDOMAIN only after {took:?}");

    delete_namespace_and_claims(&client, ns).await?;
    server.shut_down().await;
    Ok(())
}

/// A raw query for `name`/`qtype` with ID `id`, advertising an EDNS buffer of `edns` bytes.
fn raw_query(id: u16, name: &str, qtype: hickory_proto::rr::RecordType, edns: u16) -> Vec<u8> {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::Name;
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(format!("{name}.")).expect("a name"),
        qtype,
    ));
    let mut opt = Edns::new();
    opt.set_max_payload(edns);
    message.set_edns(opt);
    message.to_vec().expect("an encodable query")
}

/// Sends `query` over TCP (length-prefixed) and returns the raw reply.
async fn tcp_exchange(at: SocketAddr, query: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(at).await?;
    let len = u16::try_from(query.len())?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(query).await?;
    let len = stream.read_u16().await?;
    let mut reply = vec![0; usize::from(len)];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

/// Open file descriptors of this process (the DNS server runs in it).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

#[tokio::test]
async fn a_record_naming_another_namespace_is_not_served_and_gets_a_warning() -> anyhow::Result<()>
{
    let (client, ns, server) = start_dns_alone("dns-intruder").await?;
    let at = server.dns_addr;
    let records: Api<DNSRecord> = ns.api();
    // A name of another namespace, and a name of its own for comparison.
    let theirs = "kubernetes.default.svc.cluster.local";
    let own = format!("mine.{}.svc.cluster.local", ns.name);
    create_record(
        &records,
        "intruder",
        serde_json::json!({"fqdn": theirs, "type": "ClusterIP", "ttl": 5,
                           "ipv4": ["10.99.6.6"]}),
    )
    .await?;
    create_record(
        &records,
        "mine",
        serde_json::json!({"fqdn": own, "type": "ClusterIP", "ttl": 5,
                           "ipv4": ["10.99.7.7"]}),
    )
    .await?;
    wait_status(at, &own, "NOERROR", TIMEOUT).await?;
    let answer = query(at, theirs, "A", &[])
        .await
        .map_err(anyhow::Error::msg)?;
    println!("dns/intruder: {theirs} A → {answer:?}");
    assert_eq!(answer.status, "NXDOMAIN", "{answer:?}");
    assert!(answer.answers.is_empty(), "{answer:?}");
    let events = wait_events(&client, &ns.name, "intruder", "InvalidDNSRecord", TIMEOUT).await?;
    println!("dns/intruder: Event: {:?}", events[0].note);
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert!(
        events[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("namespace")),
        "{:?}",
        events[0].note
    );
    delete_namespace_and_claims(&client, ns).await?;
    server.shut_down().await;
    Ok(())
}

#[tokio::test]
async fn udp_answers_are_capped_at_1232_bytes_whatever_the_client_advertises() -> anyhow::Result<()>
{
    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType;
    let (client, ns, server) = start_dns_alone("dns-amplify").await?;
    let at = server.dns_addr;
    let records: Api<DNSRecord> = ns.api();
    let many = format!("many.{}.svc.cluster.local", ns.name);
    let addresses: Vec<String> = (0..300)
        .map(|i| format!("10.98.{}.{}", i / 200, i % 200 + 1))
        .collect();
    create_record(
        &records,
        "many",
        serde_json::json!({"fqdn": many, "type": "Headless", "ttl": 5,
                           "ipv4": addresses}),
    )
    .await?;
    wait_status(at, &many, "NOERROR", TIMEOUT).await?;

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(at).await?;
    socket
        .send(&raw_query(7, &many, RecordType::A, 65_535))
        .await?;
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await??;
    let reply = Message::from_vec(&buf[..n])?;
    println!(
        "dns/amplify: UDP, EDNS 65535, 300 A records: {n} bytes, tc={}, {} answers",
        reply.metadata.truncation,
        reply.answers.len()
    );
    assert!(n <= 1232, "a {n}-byte UDP answer");
    assert!(reply.metadata.truncation, "the client must be sent to TCP");

    let tcp = tcp_exchange(at, &raw_query(8, &many, RecordType::A, 65_535)).await?;
    let reply = Message::from_vec(&tcp)?;
    println!(
        "dns/amplify: TCP: {} bytes, {} answers",
        tcp.len(),
        reply.answers.len()
    );
    assert_eq!(reply.answers.len(), 300);
    assert!(!reply.metadata.truncation);

    delete_namespace_and_claims(&client, ns).await?;
    server.shut_down().await;
    Ok(())
}

#[tokio::test]
async fn a_black_holed_upstream_holds_a_bounded_number_of_sockets() -> anyhow::Result<()> {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RecordType;
    const QUERIES: u16 = 2_000;
    init_logs(LOG_FILTER);
    let client = client().await?;
    install_crds(&client).await?;
    // An upstream that reads every query and never answers.
    let hole = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let hole_addr = hole.local_addr()?;
    let sink = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while hole.recv_from(&mut buf).await.is_ok() {}
    });
    let ns = format!("dns-hole-{}", std::process::id());
    let server = start_dns(&client, &ns, "cluster.local", Some(hole_addr)).await?;
    let at = server.dns_addr;
    let before = open_fds();

    let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
    socket.connect(at).await?;
    let replies = {
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut got: Vec<(Instant, u16, ResponseCode)> = Vec::new();
            let mut buf = vec![0u8; 65_535];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(6), socket.recv(&mut buf)).await
            {
                if let Ok(reply) = Message::from_vec(&buf[..n]) {
                    got.push((
                        Instant::now(),
                        reply.metadata.id,
                        reply.metadata.response_code,
                    ));
                }
            }
            got
        })
    };
    let sent = Instant::now();
    for id in 0..QUERIES {
        let name = format!("q{id}.example.org");
        socket
            .send(&raw_query(id, &name, RecordType::A, 1232))
            .await?;
        // Paced a little (about 100 ms for all), so that the kernel's socket buffers, not the
        // server, do not drop queries or replies.
        if id % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let sending = sent.elapsed();
    // Sample the descriptors while the queries are pending.
    let mut peak = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(open_fds());
    }
    let replies = replies.await?;
    let servfail_fast = replies
        .iter()
        .filter(|(when, _, code)| {
            *code == ResponseCode::ServFail && when.duration_since(sent) < Duration::from_secs(1)
        })
        .count();
    let servfail = replies
        .iter()
        .filter(|(_, _, code)| *code == ResponseCode::ServFail)
        .count();
    println!(
        "dns/black-hole: {QUERIES} queries sent in {sending:?}; fds {before} before, peak {peak} \
         (+{}); {} replies, {servfail} SERVFAIL, {servfail_fast} of them within 1 s",
        peak.saturating_sub(before),
        replies.len()
    );
    assert!(
        peak <= before + 256 + 64,
        "{} descriptors held for a black-holed upstream",
        peak - before
    );
    assert!(
        servfail_fast >= usize::from(QUERIES) - 256 - 64,
        "only {servfail_fast} queries shed at once"
    );
    assert_eq!(servfail, usize::from(QUERIES), "every query is answered");
    sink.abort();
    server.shut_down().await;
    Ok(())
}
