//! ClusterIP mode against the local control plane (issue 30): the API server calls Signpost's
//! admission webhook (HTTPS on loopback) for every Service created in the test's namespace,
//! and the addresses Signpost chooses become the Services' own ClusterIPs, the same in
//! `spec.clusterIPs`, the ServiceIP claims and the DNSRecords.
#![cfg(feature = "integration")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use common::{TIMEOUT, dig, finish, init_logs, scoped_settings, start_controllers, start_dns};
use ipnet::IpNet;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use signpost_controllers::app::Settings;
use signpost_controllers::ipam::cluster_ip::{
    Leader, WEBHOOK_PATH, publish_service_cidr, webhook_router,
};
use signpost_controllers::runtime::server::{serve_router_tls, tls_config};
use signpost_crds::DNSRecord;
use signpost_e2e::{
    TestNamespace, claims_in_namespace, client, fixtures, unique_cidr, unique_cidr_v6, wait_until,
};

/// ServiceCIDRs are cluster-wide: a Service the API server gives an address itself (no webhook
/// registered, or one that let the create through) may take it from another test's CIDR, and a
/// test that counts the free addresses of its small CIDR would then find one gone. The tests of
/// this file run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The webhook on a loopback port with a fresh self-signed certificate; returns its URL, the
/// certificate (PEM) the API server is told to trust, and the server's task.
async fn serve_webhook(
    leader: Leader,
) -> anyhow::Result<(String, String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])?;
    // Cargo's scratch directory for integration tests (under the workspace's target/), not
    // one relative to the crate, where the files would land in the source tree.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cluster-ip-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    let config = tls_config(&cert, &key)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}{WEBHOOK_PATH}", listener.local_addr()?);
    let task = tokio::spawn(serve_router_tls(listener, webhook_router(leader), config));
    Ok((url, generated.cert.pem(), task))
}

/// Registers the webhook for Services of `namespace` only, so the tests that run beside this
/// one are not affected; as the chart does, failures are ignored after a short timeout.
async fn register_webhook(
    client: &Client,
    name: &str,
    namespace: &str,
    url: &str,
    ca_pem: &str,
) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "services.signpost.dev",
            "clientConfig": {"url": url, "caBundle": ca},
            "rules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["services"],
            }],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "sideEffects": "NoneOnDryRun",
            "admissionReviewVersions": ["v1"],
        }],
    }))?;
    api.create(&PostParams::default(), &config).await?;
    // The API server starts calling a new webhook a moment after it is created: wait until a
    // probe Service (created, then deleted) gets an address the webhook chose, a Service's
    // ClusterIP being in the API server's own range (10.96.0.0/16) otherwise. Not a dry run:
    // the webhook leaves those to the API server.
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let probe = fixtures::service_selecting("webhook-probe", "none", 80);
    wait_until("the API server calls the webhook", TIMEOUT, || async {
        let created = services
            .create(&PostParams::default(), &probe)
            .await
            .map_err(|e| e.to_string())?;
        services
            .delete("webhook-probe", &DeleteParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ips = cluster_ips(&created);
        let theirs: IpNet = "10.96.0.0/16".parse().expect("a CIDR");
        if ips.iter().any(|a| theirs.contains(a)) || ips.is_empty() {
            Err(format!("not yet: {ips:?}"))
        } else {
            Ok(())
        }
    })
    .await?;
    // The probe's claim and IPAddress are gone before the test counts its own.
    let addresses: Api<IPAddress> = Api::all(client.clone());
    wait_until("the probe's address is released", TIMEOUT, || async {
        let claims = claims_in_namespace(client, namespace)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(claim) = claims
            .iter()
            .find(|c| c.spec.service_ref.name == "webhook-probe")
        {
            return Err(format!("still claimed: {}", claim.spec.address));
        }
        let recorded = addresses
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let probe_parent = |a: &IPAddress| {
            let parent = &a.spec.parent_ref;
            (parent.namespace.as_deref() == Some(namespace) && parent.name == "webhook-probe")
                .then(|| a.name_any())
        };
        match recorded.items.iter().find_map(probe_parent) {
            Some(name) => Err(format!("IPAddress {name} still names the probe")),
            None => Ok(()),
        }
    })
    .await
}

fn cluster_ips(service: &Service) -> Vec<IpAddr> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ips.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// The A and AAAA addresses a DNSRecord lists.
fn record_addresses(record: &DNSRecord) -> BTreeSet<IpAddr> {
    record
        .spec
        .ipv4
        .iter()
        .chain(&record.spec.ipv6)
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// Waits until every Service of `services` has claims and a DNSRecord holding exactly its
/// `spec.clusterIPs`, each inside `cidrs`.
async fn wait_consistent(
    client: &Client,
    ns: &TestNamespace,
    services: &[Service],
    cidrs: &[IpNet],
) -> anyhow::Result<()> {
    let records: Api<DNSRecord> = ns.api();
    wait_until(
        "claims and records equal the ClusterIPs",
        TIMEOUT,
        || async {
            let claims = claims_in_namespace(client, &ns.name)
                .await
                .map_err(|e| e.to_string())?;
            let mut claimed: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
            for claim in &claims {
                let address = claim.spec.address.parse().map_err(|_| "an address")?;
                claimed
                    .entry(claim.spec.service_ref.name.clone())
                    .or_default()
                    .insert(address);
            }
            let listed = records
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let recorded: BTreeMap<String, BTreeSet<IpAddr>> = listed
                .items
                .iter()
                .map(|r| (r.name_any(), record_addresses(r)))
                .collect();
            for service in services {
                let name = service.name_any();
                let want: BTreeSet<IpAddr> = cluster_ips(service).into_iter().collect();
                if want.is_empty() || !want.iter().all(|a| cidrs.iter().any(|c| c.contains(a))) {
                    return Err(format!("{name}: ClusterIPs {want:?} not all in {cidrs:?}"));
                }
                if claimed.get(&name) != Some(&want) {
                    return Err(format!(
                        "{name}: claims {:?}, ClusterIPs {want:?}",
                        claimed.get(&name)
                    ));
                }
                if recorded.get(&name) != Some(&want) {
                    return Err(format!(
                        "{name}: DNSRecord {:?}, ClusterIPs {want:?}",
                        recorded.get(&name)
                    ));
                }
            }
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn services_get_signposts_addresses_as_their_cluster_ips() -> anyhow::Result<()> {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    init_logs("signpost=info,warn");
    let client = client().await?;
    let ns = TestNamespace::create(&client, "cluster-ip").await?;
    let (v4, v6) = (unique_cidr(22), unique_cidr_v6());
    let cidrs: Vec<IpNet> = vec![v4.parse()?, v6.parse()?];
    let mut settings = scoped_settings(&ns.name, &[&v4, &v6])?;
    settings.cluster_ip_mode = true;
    let (running, _) = start_controllers(&client, settings).await?;
    let cidr_name = format!("signpost-{}", ns.name);
    publish_service_cidr(&client, &cidr_name, &cidrs).await?;
    let leader = Leader::default();
    leader.set(Some(running.ipam()));
    let (url, ca, _webhook) = serve_webhook(leader).await?;
    register_webhook(&client, &ns.name, &ns.name, &url, &ca).await?;

    let services: Api<Service> = ns.api();
    let requested: IpAddr = cidrs[0].hosts().nth(200).expect("a host");
    let set_by_user: IpAddr = cidrs[0].hosts().nth(300).expect("a host");
    let shapes = [
        fixtures::service_selecting("single", "web", 8080),
        fixtures::dual_stack_service("dual", "web", 8080),
        fixtures::requesting_address(
            fixtures::service_selecting("annotated", "web", 8080),
            &requested.to_string(),
        ),
        fixtures::service_with_spec(
            "fixed",
            serde_json::json!({"clusterIP": set_by_user.to_string(), "ports": [{"port": 80}]}),
        ),
    ];
    let mut created = Vec::new();
    for service in &shapes {
        created.push(services.create(&PostParams::default(), service).await?);
    }
    let of = |name: &str| {
        created
            .iter()
            .find(|s| s.name_any() == name)
            .map(cluster_ips)
    };
    assert_eq!(
        of("annotated"),
        Some(vec![requested]),
        "the annotation's address"
    );
    assert_eq!(of("fixed"), Some(vec![set_by_user]), "the user's address");
    assert_eq!(
        of("dual").map(|a| a.len()),
        Some(2),
        "one address per family"
    );
    wait_consistent(&client, &ns, &created, &cidrs).await?;

    // 500 Services created at once by 5 clients: 500 distinct addresses, no failed create.
    let mut tasks = Vec::new();
    for client_no in 0..5 {
        let client = Client::try_default().await?;
        let api: Api<Service> = Api::namespaced(client, &ns.name);
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..100 {
                let name = format!("many-{client_no}-{i}");
                let service = fixtures::service_selecting(&name, "web", 8080);
                made.push(api.create(&PostParams::default(), &service).await?);
            }
            anyhow::Ok(made)
        }));
    }
    let mut many = Vec::new();
    for task in tasks {
        many.extend(task.await??);
    }
    let distinct: BTreeSet<IpAddr> = many.iter().flat_map(cluster_ips).collect();
    assert_eq!(many.len(), 500);
    assert_eq!(distinct.len(), 500, "500 Services, 500 distinct addresses");
    wait_consistent(&client, &ns, &many, &cidrs).await?;

    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(&ns.name, &DeleteParams::default())
        .await?;
    let name = ns.name.clone();
    finish(&client, ns, running).await?;
    Api::<ServiceCIDR>::all(client.clone())
        .delete(&format!("signpost-{name}"), &DeleteParams::default())
        .await?;
    Ok(())
}

/// Signpost in ClusterIP mode over `cidrs` for the Services of `ns`: controllers, ServiceCIDR,
/// webhook; returns the controllers and the webhook's task.
async fn start_cluster_ip_mode(
    client: &Client,
    ns: &TestNamespace,
    cidrs: &[&str],
    tweak: impl FnOnce(&mut Settings),
) -> anyhow::Result<(
    signpost_controllers::app::Running,
    tokio::task::JoinHandle<std::io::Result<()>>,
    String,
)> {
    let mut settings = scoped_settings(&ns.name, cidrs)?;
    settings.cluster_ip_mode = true;
    tweak(&mut settings);
    let nets: Vec<IpNet> = cidrs.iter().map(|c| c.parse()).collect::<Result<_, _>>()?;
    let (running, _) = start_controllers(client, settings).await?;
    publish_service_cidr(client, &format!("signpost-{}", ns.name), &nets).await?;
    let leader = Leader::default();
    leader.set(Some(running.ipam()));
    let (url, ca, webhook) = serve_webhook(leader).await?;
    Ok((running, webhook, format!("{url}\n{ca}")))
}

/// A test's start: its namespace (named from `prefix`) and Signpost in ClusterIP mode over
/// `cidr` (see [`start_cluster_ip_mode`]), with `tweak`'s settings.
async fn begin(
    prefix: &str,
    cidr: &str,
    tweak: impl FnOnce(&mut Settings),
) -> anyhow::Result<(
    Client,
    TestNamespace,
    signpost_controllers::app::Running,
    tokio::task::JoinHandle<std::io::Result<()>>,
    String,
)> {
    init_logs("signpost=info,warn");
    let client = client().await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    let (running, webhook, registration) =
        start_cluster_ip_mode(&client, &ns, &[cidr], tweak).await?;
    Ok((client, ns, running, webhook, registration))
}

async fn end_cluster_ip_mode(
    client: &Client,
    ns: TestNamespace,
    running: signpost_controllers::app::Running,
) -> anyhow::Result<()> {
    let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(&ns.name, &DeleteParams::default())
        .await;
    let name = ns.name.clone();
    finish(client, ns, running).await?;
    Api::<ServiceCIDR>::all(client.clone())
        .delete(&format!("signpost-{name}"), &DeleteParams::default())
        .await?;
    Ok(())
}

async fn create_ip_address(client: &Client, address: &str) -> anyhow::Result<()> {
    let api: Api<IPAddress> = Api::all(client.clone());
    let object: IPAddress = serde_json::from_value(serde_json::json!({
        "metadata": {"name": address},
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "reserved-by-hand"}},
    }))?;
    api.create(&PostParams::default(), &object).await?;
    Ok(())
}

#[tokio::test]
async fn addresses_held_by_ip_address_objects_are_never_handed_out() -> anyhow::Result<()> {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    // A /29: six usable addresses, three of them held by IPAddress objects made by hand.
    let cidr = unique_cidr(29);
    let (client, ns, running, _webhook, registration) =
        begin("cluster-ip-held", &cidr, |_| {}).await?;
    let net: IpNet = cidr.parse()?;
    let hosts: Vec<IpAddr> = net.hosts().collect();
    let (url, ca) = registration.split_once('\n').expect("url and CA");
    let by_hand: Vec<String> = hosts[..3].iter().map(ToString::to_string).collect();
    for address in &by_hand {
        create_ip_address(&client, address).await?;
    }
    // The IPAM controller has seen them before the webhook is asked.
    wait_until("the IPAddress objects are seen", TIMEOUT, || async {
        let used = used(&running);
        if used >= 3 {
            Ok(())
        } else {
            Err(format!("{used} used"))
        }
    })
    .await?;
    register_webhook(&client, &ns.name, &ns.name, url, ca).await?;
    // The webhook's probe took one of the three and gave it back.
    wait_used(&running, 3, "only the held addresses are in use").await?;

    let mut given = BTreeSet::new();
    for i in 0..3 {
        let name = format!("s{i}");
        let created = ns
            .create_object(&fixtures::service_selecting(&name, "web", 8080))
            .await?;
        given.extend(cluster_ips(&created));
    }
    let rest: BTreeSet<IpAddr> = hosts[3..].iter().copied().collect();
    assert_eq!(
        given, rest,
        "the three addresses nobody holds, and only those"
    );
    // Full: the API server allocates from its own range, and the create still succeeds.
    let overflow = ns
        .create_object(&fixtures::service_selecting("s3", "web", 8080))
        .await?;
    assert!(
        cluster_ips(&overflow).iter().all(|a| !net.contains(a)),
        "{:?}",
        cluster_ips(&overflow)
    );

    let api: Api<IPAddress> = Api::all(client.clone());
    for address in &by_hand {
        api.delete(address, &DeleteParams::default()).await?;
    }
    end_cluster_ip_mode(&client, ns, running).await
}

#[tokio::test]
async fn services_created_while_signpost_is_down_are_adopted() -> anyhow::Result<()> {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let cidr = unique_cidr(24);
    let (client, ns, running, webhook, registration) =
        begin("cluster-ip-down", &cidr, |_| {}).await?;
    let net: IpNet = cidr.parse()?;
    let (url, ca) = registration.split_once('\n').expect("url and CA");
    register_webhook(&client, &ns.name, &ns.name, url, ca).await?;
    let services: Api<Service> = ns.api();
    let before = ns
        .create_object(&fixtures::service_selecting("before", "web", 8080))
        .await?;
    wait_consistent(&client, &ns, std::slice::from_ref(&before), &[net]).await?;

    // Every replica stopped: the webhook does not answer, Services are still created.
    webhook.abort();
    running.shut_down().await;
    let chosen: IpAddr = net.hosts().nth(100).expect("a host");
    let while_down = services
        .create(
            &PostParams::default(),
            &fixtures::service_with_spec(
                "while-down",
                serde_json::json!({"clusterIP": chosen.to_string(), "ports": [{"port": 80}]}),
            ),
        )
        .await?;
    let plain = ns
        .create_object(&fixtures::service_selecting("plain", "web", 8080))
        .await?;
    assert_eq!(cluster_ips(&while_down), vec![chosen]);
    // The API server chose `plain`'s address from any ServiceCIDR, Signpost's included.
    let plain_in_cidr = cluster_ips(&plain).iter().all(|a| net.contains(a));

    // Signpost returns: the Services with an address in its CIDR are adopted (claimed, in
    // their DNSRecords), nothing gets a second address, and new Services get Signpost's again.
    let (running, _webhook, registration) =
        start_cluster_ip_mode(&client, &ns, &[&cidr], |_| {}).await?;
    let (url, ca) = registration.split_once('\n').expect("url and CA");
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(&ns.name, &DeleteParams::default())
        .await?;
    register_webhook(&client, &ns.name, &ns.name, url, ca).await?;
    let after = ns
        .create_object(&fixtures::service_selecting("after", "web", 8080))
        .await?;
    let mut ours = vec![before, while_down, after];
    if plain_in_cidr {
        ours.push(plain.clone());
    }
    wait_consistent(&client, &ns, &ours, &[net]).await?;
    // `plain` too, wherever the API server chose its address: its record is its ClusterIP.
    wait_records_are_cluster_ips(&ns, 4).await?;
    let claims = claims_in_namespace(&client, &ns.name).await?;
    assert_eq!(
        claims.len(),
        ours.len(),
        "one claim per Service with an address in the CIDR, no second address"
    );
    let now = services.get("plain").await?;
    assert_eq!(
        cluster_ips(&now),
        cluster_ips(&plain),
        "a Service keeps its address"
    );
    end_cluster_ip_mode(&client, ns, running).await
}

/// Whether a ServiceCIDR is neither being deleted nor reporting a `Ready` condition other than
/// `True`: one the API server's dry-run check can pick without failing.
fn service_cidr_settled(cidr: &ServiceCIDR) -> bool {
    let ready = cidr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_none_or(|conditions| {
            conditions
                .iter()
                .all(|c| c.type_ != "Ready" || c.status == "True")
        });
    cidr.metadata.deletion_timestamp.is_none() && ready
}

/// The addresses of `cidr` in use (claimed, held at admission or marked by an IPAddress).
fn used(running: &signpost_controllers::app::Running) -> u64 {
    running.ipam().usage().iter().map(|u| u.used).sum()
}

/// Waits until exactly `want` addresses of the CIDR are in use.
async fn wait_used(
    running: &signpost_controllers::app::Running,
    want: u64,
    what: &str,
) -> anyhow::Result<()> {
    wait_until(what, TIMEOUT, || async {
        match used(running) {
            n if n == want => Ok(()),
            n => Err(format!("{n} addresses in use, want {want}")),
        }
    })
    .await
}

#[tokio::test]
async fn dry_runs_hold_nothing_refusals_expire_and_released_addresses_wait() -> anyhow::Result<()> {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    // A /29: six usable addresses, so every one of them can be watched. A repair period of 2 s
    // ends the hold of a create the API server refused after admission.
    let cidr = unique_cidr(29);
    let (client, ns, running, _webhook, registration) = begin("cluster-ip-paths", &cidr, |s| {
        s.repair_interval = Duration::from_secs(2);
    })
    .await?;
    let net: IpNet = cidr.parse()?;
    let (url, ca) = registration.split_once('\n').expect("url and CA");
    register_webhook(&client, &ns.name, &ns.name, url, ca).await?;
    let services: Api<Service> = ns.api();
    let service = |name: &str| fixtures::service_selecting(name, "web", 8080);

    // Dry runs are left to the API server: each one succeeds, and none holds an address. The
    // API server checks a dry run's address against one of its ServiceCIDRs picked at random:
    // one of Signpost's would fail about half of them, and so would a ServiceCIDR that is not
    // ready (an earlier test's, being deleted), which the test waits out first.
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_used(&running, 0, "the probe's address is released").await?;
    let service_cidrs: Api<ServiceCIDR> = Api::all(client.clone());
    wait_until("every ServiceCIDR is ready", 2 * TIMEOUT, || async {
        let listed = service_cidrs
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let not_ready: Vec<String> = listed
            .items
            .iter()
            .filter(|c| !service_cidr_settled(c))
            .map(|c| c.name_any())
            .collect();
        if not_ready.is_empty() {
            Ok(())
        } else {
            Err(format!("not ready: {not_ready:?}"))
        }
    })
    .await?;
    for _ in 0..10 {
        services.create(&dry_run, &service("dry")).await?;
    }
    assert_eq!(used(&running), 0, "a dry run holds no address");

    // A create the API server refuses after the webhook chose (the name exists already) holds
    // its address until the repair pass ends the hold: no claim, and free again.
    let kept = services
        .create(&PostParams::default(), &service("kept"))
        .await?;
    let refused = services
        .create(&PostParams::default(), &service("kept"))
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 409),
        "{refused:?}"
    );
    wait_used(&running, 1, "the refused create's hold to end").await?;
    wait_consistent(&client, &ns, std::slice::from_ref(&kept), &[net]).await?;
    assert_eq!(claims_in_namespace(&client, &ns.name).await?.len(), 1);

    // Released addresses wait: with the CIDR full, two Services are deleted one after the
    // other, and the next Service gets the address released first, although next-fit (from
    // the address after the last one given) would meet the other one first.
    let mut last = kept;
    for i in 0..5 {
        last = services
            .create(&PostParams::default(), &service(&format!("s{i}")))
            .await?;
    }
    let all = services.list(&Default::default()).await?.items;
    let holders: BTreeMap<IpAddr, String> = all
        .iter()
        .flat_map(|s| cluster_ips(s).into_iter().map(move |a| (a, s.name_any())))
        .collect();
    assert_eq!(holders.len(), 6, "the CIDR is full: {holders:?}");
    let hosts: Vec<IpAddr> = net.hosts().collect();
    let cursor = hosts
        .iter()
        .position(|h| cluster_ips(&last).contains(h))
        .expect("the last Service's address is a host of the CIDR");
    // Next-fit's order from there: it meets `met_first` before `met_later`.
    let met_first = hosts[(cursor + 1) % hosts.len()];
    let met_later = hosts[(cursor + 3) % hosts.len()];
    for (address, left) in [(met_later, 5), (met_first, 4)] {
        services
            .delete(&holders[&address], &DeleteParams::default())
            .await?;
        wait_used(&running, left, "the deleted Service's address is released").await?;
    }
    let next = services
        .create(&PostParams::default(), &service("next"))
        .await?;
    assert_eq!(
        cluster_ips(&next),
        vec![met_later],
        "the address released first ({met_later}), not the one next-fit meets first ({met_first})"
    );
    end_cluster_ip_mode(&client, ns, running).await
}

/// The CIDRs of the cluster's default ServiceCIDR (`kubernetes`: the API server's
/// `--service-cluster-ip-range`), where the API server allocates when no webhook chooses.
async fn default_service_cidrs(client: &Client) -> anyhow::Result<Vec<IpNet>> {
    let cidr = Api::<ServiceCIDR>::all(client.clone())
        .get("kubernetes")
        .await?;
    let cidrs = cidr.spec.and_then(|s| s.cidrs).unwrap_or_default();
    Ok(cidrs.iter().map(|c| c.parse()).collect::<Result<_, _>>()?)
}

/// Creates the dual-stack Service `name` (one stack when the cluster has one) with addresses
/// of the cluster's default ServiceCIDRs set by hand, as another ServiceCIDR's allocator
/// would, trying the next addresses while one is taken; a run's first try is spread by its
/// namespace's name.
async fn create_outside(
    ns: &TestNamespace,
    name: &str,
    defaults: &[IpNet],
) -> anyhow::Result<Service> {
    let seed = ns
        .name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31) + u64::from(b));
    let mut last = String::new();
    for attempt in 0..20u64 {
        let addresses: Vec<String> = defaults
            .iter()
            .map(|net| {
                let room = net.hosts().take(60_000).count() as u64;
                let index = 1_000.min(room / 2) + (seed + attempt) % (room / 2).max(1);
                net.hosts().nth(index as usize).map(|a| a.to_string())
            })
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow::anyhow!("no host in {defaults:?}"))?;
        let spec = serde_json::json!({
            "ipFamilyPolicy": if addresses.len() > 1 { "RequireDualStack" } else { "SingleStack" },
            "clusterIP": addresses[0],
            "clusterIPs": addresses,
            "ports": [{"port": 80}],
        });
        match ns
            .create_object(&fixtures::service_with_spec(name, spec))
            .await
        {
            Ok(created) => return Ok(created),
            // Taken by another Service: the next address.
            Err(error) if format!("{error:#}").contains("already allocated") => {
                last = format!("{addresses:?}: {error:#}");
            }
            Err(error) => return Err(error),
        }
    }
    anyhow::bail!("{name}: no free address in {defaults:?}; last: {last}")
}

/// Waits until every Service of `ns` with ClusterIPs has a DNSRecord listing exactly those
/// addresses (the CLUSTER-IP column of `kubectl get svc`); returns the Services, at least
/// `services` of them.
async fn wait_records_are_cluster_ips(
    ns: &TestNamespace,
    services: usize,
) -> anyhow::Result<Vec<Service>> {
    let (api, records): (Api<Service>, Api<DNSRecord>) = (ns.api(), ns.api());
    wait_until(
        "every record lists its Service's ClusterIPs",
        TIMEOUT,
        || async {
            let listed = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            if listed.items.len() < services {
                return Err(format!("{} of {services} Services", listed.items.len()));
            }
            let recorded: BTreeMap<String, BTreeSet<IpAddr>> = records
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .map(|r| (r.name_any(), record_addresses(r)))
                .collect();
            let mut seen = Vec::new();
            for service in &listed.items {
                let name = service.name_any();
                let want: BTreeSet<IpAddr> = cluster_ips(service).into_iter().collect();
                if want.is_empty() {
                    continue;
                }
                let got = recorded.get(&name);
                if got != Some(&want) {
                    return Err(format!("{name}: DNSRecord {got:?}, ClusterIPs {want:?}"));
                }
                seen.push(format!("{name} {want:?}"));
            }
            println!("records = ClusterIPs: {}", seen.join(", "));
            Ok(listed.items)
        },
    )
    .await
}

#[tokio::test]
async fn records_list_cluster_ips_outside_signposts_cidrs() -> anyhow::Result<()> {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let cidr = unique_cidr(24);
    let (client, ns, running, _webhook, registration) =
        begin("cluster-ip-outside", &cidr, |_| {}).await?;
    let net: IpNet = cidr.parse()?;
    let defaults = default_service_cidrs(&client).await?;
    anyhow::ensure!(
        !defaults.is_empty(),
        "the cluster has no default ServiceCIDR"
    );

    // No webhook registered yet: addresses Signpost did not choose. One set by hand in the
    // cluster's default ServiceCIDRs (dual-stack where the cluster is), one the API server
    // picks (from any ServiceCIDR, perhaps Signpost's), and a headless Service.
    let outside = create_outside(&ns, "outside", &defaults).await?;
    let picked = ns
        .create_object(&fixtures::service_selecting("picked", "web", 8080))
        .await?;
    ns.create_object(&fixtures::headless_service("headless", "web", 8080))
        .await?;
    let outside_ips = cluster_ips(&outside);
    assert_eq!(outside_ips.len(), defaults.len(), "{outside_ips:?}");
    assert!(
        outside_ips.iter().all(|a| !net.contains(a)),
        "{outside_ips:?} outside {net}"
    );
    println!(
        "outside: {outside_ips:?}; picked by the API server: {:?}",
        cluster_ips(&picked)
    );

    // With the webhook, a Service gets Signpost's address; every record is its ClusterIPs.
    let (url, ca) = registration.split_once('\n').expect("url and CA");
    register_webhook(&client, &ns.name, &ns.name, url, ca).await?;
    let inside = ns
        .create_object(&fixtures::service_selecting("inside", "web", 8080))
        .await?;
    assert!(
        cluster_ips(&inside).iter().all(|a| net.contains(a)),
        "{:?}",
        cluster_ips(&inside)
    );
    let services = wait_records_are_cluster_ips(&ns, 4).await?;
    // Claims only for the addresses in Signpost's CIDR: `inside`'s (and `picked`'s if the API
    // server chose from it), none for `outside`.
    let want: BTreeSet<IpAddr> = services
        .iter()
        .flat_map(cluster_ips)
        .filter(|a| net.contains(a))
        .collect();
    assert!(want.contains(&cluster_ips(&inside)[0]), "{want:?}");
    wait_until("claims only in Signpost's CIDR", TIMEOUT, || async {
        let claims = claims_in_namespace(&client, &ns.name)
            .await
            .map_err(|e| e.to_string())?;
        let claimed: BTreeSet<IpAddr> = claims
            .iter()
            .filter_map(|c| c.spec.address.parse().ok())
            .collect();
        if claimed == want {
            Ok(())
        } else {
            Err(format!("claims {claimed:?}, want {want:?}"))
        }
    })
    .await?;
    let records: Api<DNSRecord> = ns.api();
    wait_until("the record of `outside` is ready", TIMEOUT, || async {
        let record = records.get("outside").await.map_err(|e| e.to_string())?;
        let ready = record
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.status.as_str(), c.reason.as_str()));
        match ready {
            Some(("True", "Rendered")) => Ok(()),
            _ => Err(format!("status {:?}", record.status)),
        }
    })
    .await?;

    // `signpost dns` answers the name with those addresses.
    let server = start_dns(&client, &ns.name, "cluster.local", None).await?;
    let name = format!("outside.{}.svc.cluster.local", ns.name);
    for (qtype, ipv6) in [("A", false), ("AAAA", true)] {
        let want: Vec<String> = outside_ips
            .iter()
            .filter(|a| a.is_ipv6() == ipv6)
            .map(ToString::to_string)
            .collect();
        let answer = dig(server.dns_addr, &["+short", &name, qtype])
            .await
            .map_err(anyhow::Error::msg)?;
        let got: Vec<&str> = answer.lines().collect();
        assert_eq!(got, want, "dig {name} {qtype}");
        println!("dig {name} {qtype}: {got:?}");
    }
    end_cluster_ip_mode(&client, ns, running).await
}
