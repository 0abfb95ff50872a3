//! `signpost dns` answers every record kind of the Kubernetes DNS-Based Service Discovery
//! specification (schema 1.1.0), asked with the real `dig` against the local control plane:
//! `dns-version` TXT, A/AAAA/SRV/PTR of ClusterIP and headless Services (IPv4 and IPv6),
//! generated host names, NXDOMAIN for a headless Service without ready endpoints, the
//! ExternalName CNAME, case-insensitivity, answer rotation, the programming-latency histogram,
//! and SERVFAIL before the first list of DNSRecords.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{
    TIMEOUT, create_web_and_ext, dig, http_get, init_logs, scoped_settings, start_controllers,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use signpost_crds::DNSRecord;
use signpost_dns as dns;
use signpost_e2e::{TestNamespace, client, fixtures, set_pod_ready, unique_cidr, wait_until};

const LOG_FILTER: &str = "warn,hickory_server=error";
/// The IPv6 ranges of the hand-written records (the local control plane is IPv4-only).
const V6_SERVICES: &str = "fd00:96::/108";
const V6_PODS: &str = "fd00:244::/64";

/// `dig +short`: the answer data in the order served.
async fn short_unsorted(server: SocketAddr, args: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    Ok(dig(server, &all)
        .await
        .map_err(anyhow::Error::msg)?
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect())
}

/// `dig +short`, sorted.
async fn short(server: SocketAddr, args: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut lines = short_unsorted(server, args).await?;
    lines.sort();
    Ok(lines)
}

/// The `status:` of `dig <args>` (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...) and whether the
/// answer is authoritative.
async fn status(server: SocketAddr, args: &[&str]) -> anyhow::Result<(String, bool)> {
    let out = dig(server, args).await.map_err(anyhow::Error::msg)?;
    let status = out
        .lines()
        .find_map(|l| l.find("status: ").map(|at| l[at + 8..].to_owned()))
        .and_then(|s| s.split(',').next().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("no status in {out}"))?;
    let aa = out
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .is_some_and(|f| {
            f.split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .any(|x| x == "aa")
        });
    Ok((status, aa))
}

/// Waits until `dig +short <args>` (sorted) is `want`.
async fn wait_short(server: SocketAddr, args: &[&str], want: &[String]) -> anyhow::Result<()> {
    wait_until(&format!("dig {args:?} = {want:?}"), TIMEOUT, || async {
        let got = short(server, args).await.map_err(|e| e.to_string())?;
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

async fn wait_status(server: SocketAddr, args: &[&str], want: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wait_until(&format!("dig {args:?}: {want}"), TIMEOUT, || async {
        let (got, _) = status(server, args).await.map_err(|e| e.to_string())?;
        if got == want { Ok(()) } else { Err(got) }
    })
    .await?;
    Ok(started.elapsed())
}

/// The value of the sample `series` (name and labels, as written) in Prometheus text; 0 when
/// there is none.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The PTR owner name of `ip`, as `dig -x` builds it.
fn ptr(ip: &str) -> String {
    dns::reverse::ptr_name(ip.parse::<IpAddr>().expect("an address"))
}

async fn start_dns(client: &Client, ns: &str, reverse: &[String]) -> anyhow::Result<dns::Running> {
    let mut config = dns::Config::new();
    config.listen = "127.0.0.1:0".parse()?;
    config.metrics_addr = Some("127.0.0.1:0".parse()?);
    config.namespace = Some(ns.to_string());
    config.reverse_cidrs = reverse
        .iter()
        .map(|c| c.parse().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let mut running = dns::start(client.clone(), config).await?;
    tokio::time::timeout(TIMEOUT, running.wait_ready()).await?;
    Ok(running)
}

/// A DNSRecord written by hand (as another publisher would): IPv6 data the IPv4-only local
/// control plane cannot produce, and a Service of three addresses for rotation.
async fn create_record(
    ns: &TestNamespace,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    let record: DNSRecord = serde_json::from_value(serde_json::json!({
        "apiVersion": "signpost.dev/v1alpha1", "kind": "DNSRecord",
        "metadata": {"name": name}, "spec": spec,
    }))?;
    let records: Api<DNSRecord> = ns.api();
    records.create(&PostParams::default(), &record).await?;
    Ok(())
}

#[tokio::test]
async fn every_record_kind_of_the_specification_is_answered() -> anyhow::Result<()> {
    init_logs(LOG_FILTER);
    let client = client().await?;
    let ns = TestNamespace::create(&client, "dns-spec").await?;
    let service_cidr = unique_cidr(24);
    let (controllers, _) =
        start_controllers(&client, scoped_settings(&ns.name, &[&service_cidr])?).await?;
    let pods: Api<Pod> = ns.api();

    // Workloads first: the pod range is read from the pods' addresses.
    ns.create_hostnames(2).await?;
    let web_ips = create_web_and_ext(&ns, TIMEOUT).await?;
    ns.create_object(&fixtures::headless_service("anon", "hostnames", 9376))
        .await?;
    ns.create_object(&fixtures::headless_service(
        "nobody",
        "nothing-has-this-label",
        80,
    ))
    .await?;
    let pod_cidrs: BTreeSet<String> = web_ips
        .iter()
        .map(|ip| {
            let o: Vec<&str> = ip.split('.').collect();
            format!("{}.{}.0.0/16", o[0], o[1])
        })
        .collect();
    let mut reverse: Vec<String> = vec![service_cidr.clone(), V6_SERVICES.into(), V6_PODS.into()];
    reverse.extend(pod_cidrs.iter().cloned());
    let server = start_dns(&client, &ns.name, &reverse).await?;
    let at = server.dns_addr;
    println!("dns_spec: {at}, reverse ranges {reverse:?}");
    let zone = format!("{}.svc.cluster.local", ns.name);

    // §2.2 dns-version.
    let version = short(at, &["dns-version.cluster.local", "TXT"]).await?;
    assert_eq!(version, ["\"1.1.0\""]);
    assert_eq!(
        status(at, &["dns-version.cluster.local", "TXT"]).await?,
        ("NOERROR".into(), true)
    );

    // §2.3 ClusterIP: A, SRV, PTR; any case.
    let hostnames = format!("hostnames.{zone}");
    let vip = wait_until("hostnames has its VIP", TIMEOUT, || async {
        let got = short(at, &[&hostnames, "A"])
            .await
            .map_err(|e| e.to_string())?;
        if got.len() == 1 {
            Ok(got[0].clone())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await?;
    assert_eq!(
        short(at, &[&hostnames.to_uppercase(), "A"]).await?,
        [vip.as_str()]
    );
    assert_eq!(
        short(at, &[&format!("_default._tcp.{hostnames}"), "SRV"]).await?,
        [format!("0 100 80 {hostnames}.")]
    );
    assert_eq!(short(at, &["-x", &vip]).await?, [format!("{hostnames}.")]);
    assert_eq!(
        short(at, &[&ptr(&vip).to_uppercase(), "PTR"]).await?,
        [format!("{hostnames}.")]
    );
    println!("dns_spec: ClusterIP {hostnames} A {vip}, SRV, PTR ok");

    // §2.4 headless with pod host names: A, per-host A, N×M SRV, PTR per endpoint.
    let web = format!("web.{zone}");
    let want: Vec<String> = web_ips.iter().cloned().collect();
    wait_short(at, &[&web, "A"], &want).await?;
    let mut host_ptrs = Vec::new();
    for host in ["web-0", "web-1"] {
        let name = format!("{host}.{web}");
        let got = short(at, &[&name, "A"]).await?;
        assert_eq!(got.len(), 1, "{name}: {got:?}");
        assert_eq!(short(at, &["-x", &got[0]]).await?, [format!("{name}.")]);
        host_ptrs.push((got[0].clone(), name));
    }
    assert_eq!(
        short(at, &[&format!("_http._tcp.{web}"), "SRV"]).await?,
        [
            format!("0 50 8080 web-0.{web}."),
            format!("0 50 8080 web-1.{web}.")
        ]
    );
    println!("dns_spec: headless {web}: A {want:?}, PTR {host_ptrs:?}");

    // Headless over pods without a hostname: generated host names (the address, dashed).
    let anon = format!("anon.{zone}");
    let hostnames_pods: Vec<String> = pods
        .list(&ListParams::default().labels("app=hostnames"))
        .await?
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    let mut anon_want = hostnames_pods.clone();
    anon_want.sort();
    wait_short(at, &[&anon, "A"], &anon_want).await?;
    let mut srv_want = Vec::new();
    for ip in &anon_want {
        let host = format!("{}.{anon}", ip.replace('.', "-"));
        assert_eq!(short(at, &[&host, "A"]).await?, [ip.as_str()]);
        assert_eq!(short(at, &["-x", ip]).await?, [format!("{host}.")]);
        srv_want.push(format!("0 50 9376 {host}."));
    }
    srv_want.sort();
    assert_eq!(
        short(at, &[&format!("_default._tcp.{anon}"), "SRV"]).await?,
        srv_want
    );
    println!("dns_spec: generated host names under {anon} for {anon_want:?}");

    // §2.4.1 no ready endpoints → NXDOMAIN (a selector matching nothing; then web's pods
    // turned not ready).
    assert_eq!(
        status(at, &[&format!("nobody.{zone}"), "A"]).await?,
        ("NXDOMAIN".into(), true)
    );
    set_pod_ready(&pods, "web-0", false).await?;
    set_pod_ready(&pods, "web-1", false).await?;
    let took = wait_status(at, &[&web, "A"], "NXDOMAIN").await?;
    assert_eq!(
        status(at, &[&format!("_http._tcp.{web}"), "SRV"]).await?.0,
        "NXDOMAIN"
    );
    for (ip, _) in &host_ptrs {
        assert_eq!(status(at, &["-x", ip]).await?, ("NXDOMAIN".into(), true));
    }
    println!("dns_spec: {web} NXDOMAIN {took:?} after its last pod went unready");

    // §2.5 ExternalName.
    let ext = format!("ext.{zone}");
    assert_eq!(short(at, &[&ext, "CNAME"]).await?, ["example.com."]);

    // IPv6: AAAA and ip6.arpa PTR for a ClusterIP and a headless record.
    create_record(
        &ns,
        "v6",
        serde_json::json!({
        "fqdn": format!("v6.{zone}"), "type": "ClusterIP", "ttl": 5, "ipv6": ["fd00:96::a"]}),
    )
    .await?;
    create_record(
        &ns,
        "v6h",
        serde_json::json!({
        "fqdn": format!("v6h.{zone}"), "type": "Headless", "ttl": 5, "ipv6": ["fd00:244::4"],
        "hosts": [{"name": "db-0", "ipv6": ["fd00:244::4"]}]}),
    )
    .await?;
    wait_short(at, &[&format!("v6.{zone}"), "AAAA"], &["fd00:96::a".into()]).await?;
    assert_eq!(
        short(at, &["-x", "fd00:96::a"]).await?,
        [format!("v6.{zone}.")]
    );
    wait_short(
        at,
        &[&format!("v6h.{zone}"), "AAAA"],
        &["fd00:244::4".into()],
    )
    .await?;
    assert_eq!(
        short(at, &[&format!("db-0.v6h.{zone}"), "AAAA"]).await?,
        ["fd00:244::4"]
    );
    assert_eq!(
        short(at, &["-x", "fd00:244::4"]).await?,
        [format!("db-0.v6h.{zone}.")]
    );
    println!("dns_spec: AAAA and ip6.arpa PTR ok");

    // Reverse names: unknown inside the ranges → NXDOMAIN (authoritative); outside → REFUSED.
    let unknown = if vip.ends_with(".250") {
        vip.replace(".250", ".251")
    } else {
        let mut o: Vec<&str> = vip.split('.').collect();
        o[3] = "250";
        o.join(".")
    };
    assert_eq!(
        status(at, &["-x", &unknown]).await?,
        ("NXDOMAIN".into(), true)
    );
    assert_eq!(
        status(at, &["-x", "fd00:96::ffff"]).await?,
        ("NXDOMAIN".into(), true)
    );
    assert_eq!(status(at, &["-x", "8.8.8.8"]).await?.0, "REFUSED");

    // Rotation: three addresses, each first once in three answers.
    create_record(
        &ns,
        "three",
        serde_json::json!({
        "fqdn": format!("three.{zone}"), "type": "ClusterIP", "ttl": 5,
        "ipv4": ["10.1.0.1", "10.1.0.2", "10.1.0.3"]}),
    )
    .await?;
    let three = format!("three.{zone}");
    wait_short(
        at,
        &[&three, "A"],
        &["10.1.0.1".into(), "10.1.0.2".into(), "10.1.0.3".into()],
    )
    .await?;
    let mut firsts = BTreeSet::new();
    for _ in 0..3 {
        let got = short_unsorted(at, &[&three, "A"]).await?;
        firsts.insert(got[0].clone());
    }
    assert_eq!(firsts.len(), 3, "every address first once: {firsts:?}");

    // Programming latency: the headless changes above were observed.
    let (_, metrics) = http_get(server.metrics_addr.expect("metrics"), "/metrics").await?;
    let headless = |part: &str| {
        let series = format!(
            "signpost_dns_programming_duration_seconds_{part}{{service_kind=\"headless\"}}"
        );
        sample(&metrics, &series)
    };
    let (count, sum) = (headless("count"), headless("sum"));
    println!(
        "dns_spec: programming latency headless: {count} samples, mean {:.3} s",
        sum / count.max(1.0)
    );
    assert!(
        count >= 1.0,
        "no headless programming-latency sample:\n{metrics}"
    );
    assert!(sum / count < 30.0, "mean latency {sum}/{count}");

    server.shut_down().await;
    controllers.shut_down().await;
    ns.delete().await?;
    Ok(())
}

#[tokio::test]
async fn servfail_before_the_first_list_then_what_it_has_after_the_startup_timeout()
-> anyhow::Result<()> {
    init_logs(LOG_FILTER);
    // An API server that never answers: the list never comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", silent.local_addr()?);
    let config = kube::Config::new(url.parse()?);
    let client = Client::try_from(config)?;
    let mut dns_config = dns::Config::new();
    dns_config.listen = "127.0.0.1:0".parse()?;
    dns_config.metrics_addr = None;
    dns_config.startup_timeout = Duration::from_secs(3);
    dns_config.reverse_cidrs = vec!["10.96.0.0/12".parse().map_err(anyhow::Error::msg)?];
    let started = Instant::now();
    let server = dns::start(client, dns_config).await?;
    let at = server.dns_addr;

    for args in [
        &["hostnames.default.svc.cluster.local", "A"][..],
        &["-x", "10.96.0.10"],
        &["dns-version.cluster.local", "TXT"],
    ] {
        let (got, _) = status(at, args).await?;
        assert_eq!(got, "SERVFAIL", "{args:?} before the list");
    }
    // Outside the zone nothing changes: REFUSED without --upstream.
    assert_eq!(status(at, &["example.com", "A"]).await?.0, "REFUSED");
    assert!(!server.is_serving());
    println!(
        "dns_spec: SERVFAIL before the list ({:?} after start)",
        started.elapsed()
    );

    // After the timeout, what it has: nothing, so NXDOMAIN; dns-version answers.
    let took = wait_status(
        at,
        &["hostnames.default.svc.cluster.local", "A"],
        "NXDOMAIN",
    )
    .await?;
    let since_start = started.elapsed();
    println!("dns_spec: NXDOMAIN {since_start:?} after start ({took:?} of polling)");
    assert!(
        since_start >= Duration::from_secs(3),
        "served before the timeout: {since_start:?}"
    );
    assert!(server.is_serving());
    assert_eq!(
        short(at, &["dns-version.cluster.local", "TXT"]).await?,
        ["\"1.1.0\""]
    );
    server.shut_down().await;
    drop(silent);
    Ok(())
}
