//! User journeys from the seeds, end to end: the built `signpost` binary runs as a process
//! against the cluster named by KUBECONFIG, and every outcome is read back from the API.
#![cfg(feature = "cluster")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use signpost_crds::{DNSRecord, RecordType};
use signpost_e2e::{
    SIGNPOST_SLICES, claims_in_namespace, fixtures, scale_deployment, set_pod_ready, unique_cidr,
    unique_cidr_v6, wait_until,
};

/// The first seed's journey: `hostnames` ×3 behind a Service gets Endpoints, a slice, a VIP
/// and a DNS name; readiness, scaling and deletion follow.
#[tokio::test]
async fn first_seed_hostnames_from_creation_to_deletion() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-seed").await?;
    let cidrs = vec![unique_cidr(24)];
    let cidr_nets = nets(&cidrs);
    let signpost = start_leader("seed", &ns, &cidrs).await?;
    let deployments: Api<Deployment> = ns.api();
    let services: Api<Service> = ns.api();
    let pods: Api<Pod> = ns.api();
    let mut failures = Failures::default();

    // Creation: Endpoints, slice and VIP.
    let t0 = Instant::now();
    ns.create_hostnames(3).await?;
    let seen = wait_endpoints(
        &client,
        &ns.name,
        "hostnames",
        "app=hostnames",
        "3 ready hostnames endpoints",
        |seen| seen.ready == 3 && seen.slices == 1,
    )
    .await?;
    println!(
        "[seed] Endpoints + 1 slice with 3 ready endpoints {:?} after creation ({seen:?})",
        t0.elapsed()
    );
    let ep: Endpoints = ns.api().get("hostnames").await?;
    let ports: Vec<i32> = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.ports.iter().flatten().map(|p| p.port))
        .collect();
    assert!(
        !ports.is_empty() && ports.iter().all(|p| *p == 9376),
        "Endpoints ports are 9376: {ports:?}"
    );
    let slice = slices_of(&ns.api(), "hostnames")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(slice[0].address_type, "IPv4");
    assert_eq!(
        slice[0]
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.port)
            .collect::<Vec<_>>(),
        vec![9376],
        "slice port"
    );
    let what = "hostnames holds one VIP";
    let claims = wait_vips(&client, &ns.name, &cidr_nets, "hostnames", what, CONVERGE).await?;
    println!(
        "[seed] VIP {claims:?} (inside {cidrs:?}) {:?} after creation",
        t0.elapsed()
    );
    let vip = claims[0];
    let fqdn = format!("hostnames.{}.svc.cluster.local", ns.name);
    let t_rec = Instant::now();
    let vips = [vip.to_string()];
    let record = wait_record_of(
        &client,
        &ns.name,
        "hostnames",
        &fqdn,
        RecordType::ClusterIP,
        &vips,
    )
    .await;
    if failures.check("DNSRecord hostnames", record).is_some() {
        println!(
            "[seed] DNSRecord {fqdn} → {vip} {:?} after the VIP",
            t_rec.elapsed()
        );
    }

    // A pod fails its readiness probe: it leaves the ready set, stays as not ready.
    let victim = pods
        .list(&ListParams::default().labels("app=hostnames"))
        .await?
        .items
        .remove(0);
    let victim_ip = victim
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    let t1 = Instant::now();
    set_pod_ready(&pods, &victim.name_any(), false).await?;
    let seen = wait_endpoints(
        &client,
        &ns.name,
        "hostnames",
        "app=hostnames",
        "victim not ready in slices and Endpoints",
        |seen| (seen.ready, seen.not_ready) == (2, 1),
    )
    .await?;
    println!(
        "[seed] {victim_ip} left the ready set {:?} after losing readiness ({seen:?})",
        t1.elapsed()
    );

    // Scale 3 → 10 → 1: the slices follow the pods.
    for replicas in [10, 1] {
        let t = Instant::now();
        scale_deployment(&deployments, "hostnames", replicas).await?;
        let seen = wait_endpoints(
            &client,
            &ns.name,
            "hostnames",
            "app=hostnames",
            &format!("slices and Endpoints of {replicas} pods"),
            |seen| seen.ready + seen.not_ready == replicas as usize,
        )
        .await?;
        println!(
            "[seed] scaled to {replicas}: slices and Endpoints followed {:?} after the scale ({seen:?})",
            t.elapsed()
        );
    }
    assert_quiet(
        &client,
        &ns.name,
        "seed",
        "a converged Service is not written again",
    )
    .await?;

    // Deleting the Deployment and Service leaves nothing behind.
    let t2 = Instant::now();
    deployments
        .delete("hostnames", &DeleteParams::default())
        .await?;
    services
        .delete("hostnames", &DeleteParams::default())
        .await?;
    let slices: Api<EndpointSlice> = ns.api();
    let records: Api<DNSRecord> = ns.api();
    let endpoints: Api<Endpoints> = ns.api();
    wait_until(
        "no ServiceIP, DNSRecord, EndpointSlice or Endpoints left",
        CONVERGE,
        || async {
            let claims = claims_in_namespace(&client, &ns.name)
                .await
                .map_err(|e| e.to_string())?
                .len();
            let slices = slices
                .list(&ListParams::default().labels(SIGNPOST_SLICES))
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let records = records
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let eps = endpoints
                .get_opt("hostnames")
                .await
                .map_err(|e| e.to_string())?
                .is_some();
            if (claims, slices, records, eps) == (0, 0, 0, false) {
                Ok(())
            } else {
                Err(format!(
                    "{claims} claims, {slices} slices, {records} records, Endpoints left: {eps}"
                ))
            }
        },
    )
    .await?;
    println!(
        "[seed] everything released {:?} after deleting the Deployment and Service",
        t2.elapsed()
    );
    println!(
        "[seed] api writes total: {}",
        signpost_e2e::process::metric_sum(&signpost.metrics().await?, "signpost_api_writes_total")
    );

    finish(&client, ns, vec![signpost]).await?;
    failures.finish()
}

/// The third seed: `my-app-svc` and `your-app-svc`, each in front of its own pods, each with
/// its own VIP and DNS name.
#[tokio::test]
async fn third_seed_two_services_get_distinct_vips_and_records() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-seed3").await?;
    let cidrs = vec![unique_cidr(24)];
    let cidr_nets = nets(&cidrs);
    let signpost = start_leader("seed3", &ns, &cidrs).await?;
    let mut failures = Failures::default();

    let t0 = Instant::now();
    for app in ["my-app", "your-app"] {
        ns.create_workload(
            &fixtures::app_deployment(app, 2, 8080),
            &fixtures::service_selecting(&format!("{app}-svc"), app, 8080),
        )
        .await?;
    }
    let claims = wait_claims(
        &client,
        &ns.name,
        &cidr_nets,
        "two Services, one VIP each",
        |claims| claims.len() == 2,
    )
    .await?;
    let my = claims["my-app-svc"][0];
    let your = claims["your-app-svc"][0];
    assert_ne!(my, your, "distinct VIPs");
    println!(
        "[seed3] my-app-svc {my}, your-app-svc {your} {:?} after creation",
        t0.elapsed()
    );

    for app in ["my-app", "your-app"] {
        let service = format!("{app}-svc");
        let seen = wait_endpoints(
            &client,
            &ns.name,
            &service,
            &format!("app={app}"),
            &format!("{service} endpoints are its own 2 pods"),
            |seen| seen.ready == 2,
        )
        .await?;
        println!(
            "[seed3] {service} endpoints converged {:?} after creation ({seen:?})",
            t0.elapsed()
        );
    }
    // Each Service's endpoints are only its own app's pods.
    let pods: Api<Pod> = ns.api();
    let my_ips = ready_pod_ips(&pods, "app=my-app").await?;
    let your_ips = ready_pod_ips(&pods, "app=your-app").await?;
    let my_slices: BTreeSet<String> = slice_readiness(
        &slices_of(&ns.api(), "my-app-svc")
            .await
            .map_err(anyhow::Error::msg)?,
    )
    .into_keys()
    .collect();
    assert_eq!(my_slices, my_ips, "my-app-svc lists my-app's pods");
    assert!(my_slices.is_disjoint(&your_ips), "and none of your-app's");

    for (service, vip) in [("my-app-svc", my), ("your-app-svc", your)] {
        let fqdn = format!("{service}.{}.svc.cluster.local", ns.name);
        let vips = [vip.to_string()];
        let record = wait_record_of(
            &client,
            &ns.name,
            service,
            &fqdn,
            RecordType::ClusterIP,
            &vips,
        )
        .await;
        let done = format!("[seed3] DNSRecord {fqdn} → {vip}");
        failures.check_after(&format!("DNSRecord {service}"), record, &done, t0);
    }

    finish(&client, ns, vec![signpost]).await?;
    failures.finish()
}

/// A headless Service gets no VIP and a record of its pods; an ExternalName Service gets no
/// VIP and a CNAME record.
#[tokio::test]
async fn headless_and_external_name_services_get_no_vip() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-novip").await?;
    let cidrs = vec![unique_cidr(24)];
    let cidr_nets = nets(&cidrs);
    let signpost = start_leader("novip", &ns, &cidrs).await?;
    let mut failures = Failures::default();

    let t0 = Instant::now();
    ns.create_workload(
        &fixtures::app_deployment("db", 3, 5432),
        &fixtures::headless_service("db", "db", 5432),
    )
    .await?;
    ns.create_object(&fixtures::external_name_service(
        "search",
        "search.example.com",
    ))
    .await?;
    // A ClusterIP Service created last: once it holds its VIP, IPAM has seen the other two.
    ns.create_object(&fixtures::app_service("sentinel", 80, 5432))
        .await?;
    let seen = wait_ready_endpoints(&client, &ns.name, "db", 3).await?;
    println!(
        "[novip] headless db endpoints {:?} after creation ({seen:?})",
        t0.elapsed()
    );
    let claims = wait_claim_of(&client, &ns.name, &cidr_nets, "sentinel").await?;
    assert_eq!(
        claims.keys().collect::<Vec<_>>(),
        vec!["sentinel"],
        "only the ClusterIP Service holds a VIP"
    );
    no_claims_during(&client, &ns.name, &["db", "search"], Duration::from_secs(2)).await?;
    println!("[novip] no VIP for db (headless) or search (ExternalName) over a 2 s quiet period");

    let pods: Api<Pod> = ns.api();
    let pod_ips = sorted(ready_pod_ips(&pods, "app=db").await?);
    let fqdn = format!("db.{}.svc.cluster.local", ns.name);
    let record = wait_record_of(
        &client,
        &ns.name,
        "db",
        &fqdn,
        RecordType::Headless,
        &pod_ips,
    )
    .await;
    if failures.check("DNSRecord db (Headless)", record).is_some() {
        println!(
            "[novip] DNSRecord {fqdn} → {pod_ips:?} {:?} after creation",
            t0.elapsed()
        );
    }
    let fqdn = format!("search.{}.svc.cluster.local", ns.name);
    let record = wait_record(&client, &ns.name, "search", "ExternalName record", |r| {
        if r.spec.fqdn == fqdn
            && r.spec.record_type == RecordType::ExternalName
            && r.spec.cname.as_deref() == Some("search.example.com")
            && r.spec.ipv4.is_empty()
            && r.spec.ipv6.is_empty()
        {
            Ok(())
        } else {
            Err(format!(
                "want {fqdn} CNAME search.example.com, no addresses"
            ))
        }
    })
    .await;
    let done = format!("[novip] DNSRecord {fqdn} CNAME search.example.com");
    failures.check_after("DNSRecord search (ExternalName)", record, &done, t0);

    finish(&client, ns, vec![signpost]).await?;
    failures.finish()
}

/// Dual stack: a `RequireDualStack` Service gets one VIP from each of Signpost's two CIDRs.
#[tokio::test]
async fn require_dual_stack_service_gets_one_vip_per_family() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-ds").await?;
    let cidrs = vec![unique_cidr(24), unique_cidr_v6()];
    let cidr_nets = nets(&cidrs);
    let signpost = start_leader("ds", &ns, &cidrs).await?;
    let mut failures = Failures::default();

    let t0 = Instant::now();
    let created = ns
        .create_workload(
            &fixtures::app_deployment("both", 2, 8080),
            &fixtures::dual_stack_service("both", "both", 8080),
        )
        .await?;
    let families = created
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.clone())
        .unwrap_or_default();
    assert_eq!(
        families,
        vec!["IPv4", "IPv6"],
        "the API server is dual-stack"
    );
    let what = "one VIP per family";
    let claims = wait_vips(&client, &ns.name, &cidr_nets, "both", what, CONVERGE).await?;
    println!(
        "[ds] VIPs {claims:?} from {cidrs:?} {:?} after creation",
        t0.elapsed()
    );
    assert!(claims[0].is_ipv4() && claims[1].is_ipv6(), "{claims:?}");
    assert!(cidr_nets[0].contains(&claims[0]) && cidr_nets[1].contains(&claims[1]));

    let seen = wait_ready_endpoints(&client, &ns.name, "both", 2).await?;
    println!(
        "[ds] endpoints {:?} after creation ({seen:?}; the fake pods are IPv4 only)",
        t0.elapsed()
    );

    let (v4, v6) = (claims[0].to_string(), claims[1].to_string());
    let record = wait_record(&client, &ns.name, "both", "A and AAAA of the VIPs", |r| {
        if r.spec.ipv4 == vec![v4.clone()] && r.spec.ipv6 == vec![v6.clone()] {
            Ok(())
        } else {
            Err(format!("want ipv4 [{v4}] ipv6 [{v6}]"))
        }
    })
    .await;
    let done = format!("[ds] DNSRecord both → {v4}, {v6}");
    failures.check_after("DNSRecord both (dual stack)", record, &done, t0);

    finish(&client, ns, vec![signpost]).await?;
    failures.finish()
}
