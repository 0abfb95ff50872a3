//! The records controller against the local control plane: each test runs its own
//! controllers (IPAM, endpoints, records) scoped to its own namespace, over a CIDR no other
//! test uses.
#![cfg(feature = "integration")]

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    POD_READY_TIMEOUT, TIMEOUT, api_writes_sample, create_foreign, create_web_and_ext, finish,
    init_logs, scoped_settings, start_controllers, start_scoped, wait_reported_and_untouched,
};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::{Api, Client, ResourceExt};
use signpost_controllers::app::{self, Running, Settings};
use signpost_controllers::ipam::controller::SERVICE_NAMESPACE_LABEL;
use signpost_controllers::runtime::Metrics;
use signpost_crds::{DNSRecord, RecordType, ServiceIP};
use signpost_e2e::stateful::create_stateful_app;
use signpost_e2e::watch::{list_version, writes_until_quiet};
use signpost_e2e::{TestNamespace, client, fixtures, unique_cidr, wait_ready_pod_ips, wait_until};

async fn start_with(
    client: &Client,
    ns: &str,
    cidr: &str,
    cluster_domain: &str,
) -> anyhow::Result<(Running, Arc<Metrics>)> {
    init_logs("warn");
    let mut settings = scoped_settings(ns, &[cidr])?;
    settings.cluster_domain = cluster_domain.to_string();
    start_controllers(client, settings).await
}

async fn start(client: &Client, ns: &str, cidr: &str) -> anyhow::Result<(Running, Arc<Metrics>)> {
    start_with(client, ns, cidr, "cluster.local").await
}

/// Status of the record's `Ready` condition and its reason, if it has one.
fn ready_of(record: &DNSRecord) -> Option<(String, String)> {
    record
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Whether the status describes the record's current generation.
fn status_is_current(record: &DNSRecord) -> bool {
    let status = record.status.as_ref();
    status.and_then(|s| s.observed_generation).is_some()
        && status.and_then(|s| s.observed_generation) == record.metadata.generation
        && status.is_some_and(|s| {
            s.conditions
                .iter()
                .all(|c| c.observed_generation == record.metadata.generation)
        })
}

fn describe(record: &DNSRecord) -> String {
    format!(
        "gen {:?}, status {:?}, spec {:?}",
        record.metadata.generation, record.status, record.spec
    )
}

/// Waits until record `name` exists with a current status and `check` accepts it.
async fn wait_record(
    records: &Api<DNSRecord>,
    name: &str,
    what: &str,
    check: impl Fn(&DNSRecord) -> Result<(), String>,
) -> anyhow::Result<DNSRecord> {
    wait_until(what, TIMEOUT, || async {
        let record = records
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no DNSRecord {name} yet"))?;
        if !status_is_current(&record) {
            return Err(format!("status not current: {}", describe(&record)));
        }
        check(&record).map_err(|e| format!("{e}; saw {}", describe(&record)))?;
        Ok(record)
    })
    .await
}

fn ready_true(record: &DNSRecord) -> Result<(), String> {
    match ready_of(record) {
        Some((status, _)) if status == "True" => Ok(()),
        other => Err(format!("Ready is {other:?}")),
    }
}

/// The addresses claimed for Service `name` of `ns`.
async fn vips_of(client: &Client, ns: &str, name: &str) -> anyhow::Result<Vec<IpAddr>> {
    let api: Api<ServiceIP> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("{SERVICE_NAMESPACE_LABEL}={ns}")))
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|c| c.spec.service_ref.name == name)
        .map(|c| c.spec.address.parse())
        .collect::<Result<_, _>>()?)
}

/// `kubectl get dnsrecords -n <ns>` with the real kubectl binary from PATH.
async fn kubectl_get_dnsrecords(ns: &str) -> anyhow::Result<String> {
    let ns = ns.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .args(["get", "dnsrecords", "-n", &ns])
            .output()
    })
    .await??;
    anyhow::ensure!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test]
async fn seed_service_gets_a_ready_record_with_its_vip_and_srv() -> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "rec-seed").await?;
    let cidr = unique_cidr(24);
    let (running, metrics) = start(&client, &ns.name, &cidr).await?;
    let records: Api<DNSRecord> = ns.api();

    let t0 = Instant::now();
    let service = ns
        .create_workload(
            &fixtures::hostnames_deployment(3),
            &fixtures::hostnames_service(),
        )
        .await?;
    let record = wait_record(&records, "hostnames", "hostnames Ready", ready_true).await?;
    println!(
        "records/seed: DNSRecord hostnames Ready {:?} after creating the Service",
        t0.elapsed()
    );

    let fqdn = format!("hostnames.{}.svc.cluster.local", ns.name);
    let vips = vips_of(&client, &ns.name, "hostnames").await?;
    assert_eq!(vips.len(), 1, "one ServiceIP claim: {vips:?}");
    let vip = vips[0];
    let net: IpNet = cidr.parse()?;
    assert!(net.contains(&vip), "{vip} inside the test's CIDR {cidr}");
    assert_eq!(record.spec.fqdn, fqdn);
    assert_eq!(record.spec.record_type, RecordType::ClusterIP);
    assert_eq!(record.spec.ipv4, vec![vip.to_string()]);
    assert!(record.spec.ipv6.is_empty() && record.spec.hosts.is_empty());
    assert_eq!(record.spec.ttl, 5);
    assert_eq!(record.spec.srv.len(), 1, "{:?}", record.spec.srv);
    let srv = &record.spec.srv[0];
    assert_eq!(srv.name, format!("_default._tcp.{fqdn}"));
    assert_eq!(srv.port_name, "default");
    assert_eq!(
        srv.targets
            .iter()
            .map(|t| (t.host.as_str(), t.port))
            .collect::<Vec<_>>(),
        vec![(fqdn.as_str(), 80)]
    );
    let status = record.status.clone().unwrap_or_default();
    assert_eq!(status.address_summary, Some(vip.to_string()));
    assert_eq!(
        ready_of(&record),
        Some(("True".to_string(), "Rendered".to_string()))
    );
    assert_eq!(status.observed_generation, record.metadata.generation);

    // Ownership: controlled by the Service, labelled as Signpost's.
    let owner = &record.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Service", service.uid().unwrap().as_str())
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    assert_eq!(
        record
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("signpost")
    );

    let writes = api_writes_sample(&metrics, "records").unwrap_or_default();
    println!("records/seed: {writes}");

    let table = kubectl_get_dnsrecords(&ns.name).await?;
    println!(
        "records/seed: kubectl get dnsrecords -n {}\n{table}",
        ns.name
    );
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "FQDN", "TYPE", "ADDRESSES", "AGE"]);
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..4],
        ["hostnames", fqdn.as_str(), "ClusterIP", &vip.to_string()]
    );

    finish(&client, ns, running).await
}

#[tokio::test]
async fn headless_service_gets_host_records_and_external_name_a_cname() -> anyhow::Result<()> {
    let (client, ns, running, _) = start_scoped("rec-headless").await?;
    let records: Api<DNSRecord> = ns.api();

    let t0 = Instant::now();
    let ips = create_web_and_ext(&ns, POD_READY_TIMEOUT).await?;
    let fqdn = format!("web.{}.svc.cluster.local", ns.name);
    let record = wait_record(&records, "web", "web with both pods", |r| {
        ready_true(r)?;
        let hosts: Vec<&str> = r.spec.hosts.iter().map(|h| h.name.as_str()).collect();
        if hosts != ["web-0", "web-1"] {
            return Err(format!("hosts {hosts:?}"));
        }
        let addresses: BTreeSet<String> = r.spec.ipv4.iter().cloned().collect();
        if addresses != ips {
            return Err(format!("addresses {addresses:?}, pods {ips:?}"));
        }
        Ok(())
    })
    .await?;
    println!(
        "records/headless: DNSRecord web with 2 host records {:?} after creating the pods",
        t0.elapsed()
    );
    assert_eq!(record.spec.record_type, RecordType::Headless);
    assert_eq!(record.spec.fqdn, fqdn);
    for host in &record.spec.hosts {
        assert_eq!(host.ipv4.len(), 1, "{host:?}");
        assert!(ips.contains(&host.ipv4[0]), "{host:?} has a pod IP");
    }
    assert_ne!(record.spec.hosts[0].ipv4, record.spec.hosts[1].ipv4);
    let srv = &record.spec.srv;
    assert_eq!(srv.len(), 1, "{srv:?}");
    assert_eq!(srv[0].name, format!("_http._tcp.{fqdn}"));
    let targets: Vec<(String, i32)> = srv[0]
        .targets
        .iter()
        .map(|t| (t.host.clone(), t.port))
        .collect();
    assert_eq!(
        targets,
        vec![
            (format!("web-0.{fqdn}"), 8080),
            (format!("web-1.{fqdn}"), 8080)
        ]
    );
    let summary = record
        .status
        .as_ref()
        .and_then(|s| s.address_summary.clone());
    // Both addresses, in numeric order (as in spec.ipv4), not string order.
    let mut numeric: Vec<IpAddr> = ips.iter().map(|ip| ip.parse()).collect::<Result<_, _>>()?;
    numeric.sort();
    let numeric: Vec<String> = numeric.iter().map(IpAddr::to_string).collect();
    assert_eq!(record.spec.ipv4, numeric);
    assert_eq!(summary, Some(numeric.join(",")));

    let ext = wait_record(&records, "ext", "ext CNAME", ready_true).await?;
    println!(
        "records/headless: DNSRecord ext (ExternalName) Ready {:?} after creating the Services",
        t0.elapsed()
    );
    assert_eq!(ext.spec.record_type, RecordType::ExternalName);
    assert_eq!(ext.spec.cname.as_deref(), Some("example.com"));
    assert!(ext.spec.ipv4.is_empty() && ext.spec.ipv6.is_empty() && ext.spec.hosts.is_empty());
    assert_eq!(
        ext.status
            .as_ref()
            .and_then(|s| s.address_summary.as_deref()),
        Some("example.com")
    );

    finish(&client, ns, running).await
}

#[tokio::test]
async fn deleting_the_service_removes_its_record_and_the_cluster_domain_is_honoured()
-> anyhow::Result<()> {
    let client = client().await?;
    // A cluster domain that is not a DNS name stops start-up.
    let mut bad = Settings::new(vec![unique_cidr(24).parse()?]);
    bad.cluster_domain = "not a domain".into();
    let refused = app::start(client.clone(), bad, Arc::new(Metrics::new()));
    let error = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("--cluster-domain"), "start refused: {error}");

    let ns = TestNamespace::create(&client, "rec-domain").await?;
    let (running, _) = start_with(&client, &ns.name, &unique_cidr(24), "Example.Internal.").await?;
    let services: Api<Service> = ns.api();
    let records: Api<DNSRecord> = ns.api();
    let t0 = Instant::now();
    ns.create_object(&fixtures::app_service("api", 443, 8443))
        .await?;
    let record = wait_record(&records, "api", "api Ready", ready_true).await?;
    println!(
        "records/domain: DNSRecord api Ready {:?} after creating the Service",
        t0.elapsed()
    );
    assert_eq!(
        record.spec.fqdn,
        format!("api.{}.svc.example.internal", ns.name)
    );
    assert_eq!(
        record.spec.srv[0].name,
        format!("_default._tcp.api.{}.svc.example.internal", ns.name)
    );

    let t1 = Instant::now();
    services.delete("api", &DeleteParams::default()).await?;
    wait_until("DNSRecord api gone", TIMEOUT, || async {
        match records.get_opt("api").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(r) => Err(format!("still there: {}", describe(&r))),
        }
    })
    .await?;
    println!(
        "records/domain: DNSRecord api gone {:?} after deleting the Service",
        t1.elapsed()
    );

    finish(&client, ns, running).await
}

#[tokio::test]
async fn a_service_without_its_vip_is_not_ready_until_it_gets_one() -> anyhow::Result<()> {
    let (client, ns, running, _) = start_scoped("rec-pending").await?;
    let services: Api<Service> = ns.api();
    let records: Api<DNSRecord> = ns.api();
    // An address outside the CIDR is refused, never replaced: the Service has no VIP.
    let mut service = fixtures::app_service("late", 80, 8080);
    service
        .annotations_mut()
        .insert("signpost.dev/cluster-ip".into(), "192.0.2.1".into());
    let t0 = Instant::now();
    services.create(&PostParams::default(), &service).await?;
    let pending = wait_record(
        &records,
        "late",
        "late AddressPending",
        |r| match ready_of(r) {
            Some((status, reason)) if status == "False" && reason == "AddressPending" => Ok(()),
            other => Err(format!("Ready is {other:?}")),
        },
    )
    .await?;
    println!(
        "records/pending: DNSRecord late AddressPending {:?} after creating the Service",
        t0.elapsed()
    );
    assert_eq!(
        pending
            .status
            .as_ref()
            .and_then(|s| s.address_summary.as_deref()),
        Some("<pending>")
    );
    assert!(pending.spec.ipv4.is_empty());

    let t1 = Instant::now();
    services
        .patch(
            "late",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"annotations": {"signpost.dev/cluster-ip": null}}}),
            ),
        )
        .await?;
    let ready = wait_record(&records, "late", "late Ready", ready_true).await?;
    println!(
        "records/pending: DNSRecord late Ready {:?} after dropping the refused request",
        t1.elapsed()
    );
    assert_eq!(ready.spec.ipv4.len(), 1);
    assert!(ready.metadata.generation > pending.metadata.generation);

    finish(&client, ns, running).await
}

#[tokio::test]
async fn restart_with_nothing_changed_writes_nothing_and_foreign_records_are_left_alone()
-> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "rec-restart").await?;
    let services: Api<Service> = ns.api();
    let records: Api<DNSRecord> = ns.api();
    let pods: Api<Pod> = ns.api();
    // A DNSRecord someone else wrote, for an existing Service.
    let foreign: DNSRecord = serde_json::from_value(serde_json::json!({
        "apiVersion": "signpost.dev/v1alpha1", "kind": "DNSRecord",
        "metadata": {"name": "theirs"},
        "spec": {"fqdn": "theirs.example.com", "type": "ClusterIP", "ttl": 30, "ipv4": ["192.0.2.30"]}
    }))?;
    let foreign = create_foreign(&ns, &records, &foreign).await?;

    let cidr = unique_cidr(24);
    let (running, _) = start(&client, &ns.name, &cidr).await?;
    let t0 = Instant::now();
    services
        .create(&PostParams::default(), &fixtures::hostnames_service())
        .await?;
    create_stateful_app(&ns, "db", 2).await?;
    wait_ready_pod_ips(&pods, "app=db", 2, POD_READY_TIMEOUT).await?;
    wait_record(&records, "hostnames", "hostnames Ready", ready_true).await?;
    wait_record(&records, "db", "db with both hosts", |r| {
        ready_true(r)?;
        if r.spec.hosts.len() == 2 {
            Ok(())
        } else {
            Err(format!("{} hosts", r.spec.hosts.len()))
        }
    })
    .await?;
    println!(
        "records/restart: converged {:?} after creating the Services",
        t0.elapsed()
    );
    wait_reported_and_untouched(
        &client,
        &ns.name,
        &records,
        &foreign,
        "DNSRecordManagedElsewhere",
    )
    .await?;
    running.shut_down().await;

    let version = list_version(&records, &ListParams::default()).await?;
    let started = Instant::now();
    let (running, metrics) = start(&client, &ns.name, &cidr).await?;
    println!(
        "records/restart: restarted controllers ready in {:?}",
        started.elapsed()
    );
    // Watching from the version listed before the restart replays every write since, however
    // long start-up took; the quiet period starts once the controllers are ready.
    let written = writes_until_quiet(
        &records,
        &WatchParams::default(),
        &version,
        Duration::from_secs(3),
    )
    .await?;
    for name in &written {
        println!("records/restart: write seen on {name}");
    }
    let writes = written.len();
    println!("records/restart: {writes} DNSRecord writes after the restart");
    assert_eq!(
        writes, 0,
        "no DNSRecord writes after a restart with nothing changed"
    );
    assert!(
        api_writes_sample(&metrics, "records").is_none(),
        "no records writes counted"
    );
    finish(&client, ns, running).await
}
