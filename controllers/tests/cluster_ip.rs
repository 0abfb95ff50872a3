//! ClusterIP mode against the local control plane (issue 30): the API server calls Signpost's
//! admission webhook (HTTPS on loopback) for every Service created in the test's namespace,
//! and the addresses Signpost chooses become the Services' own ClusterIPs, the same in
//! `spec.clusterIPs`, the ServiceIP claims and the DNSRecords.
#![cfg(feature = "integration")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use base64::Engine;
use common::{TIMEOUT, finish, init_logs, scoped_settings, start_controllers};
use ipnet::IpNet;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use signpost_controllers::ipam::cluster_ip::{
    Leader, WEBHOOK_PATH, publish_service_cidr, webhook_router,
};
use signpost_controllers::runtime::server::{serve_router_tls, tls_config};
use signpost_crds::DNSRecord;
use signpost_e2e::{
    TestNamespace, claims_in_namespace, client, fixtures, unique_cidr, unique_cidr_v6, wait_until,
};

/// The webhook on a loopback port with a fresh self-signed certificate; returns its URL and
/// the certificate (PEM) the API server is told to trust.
async fn serve_webhook(leader: Leader) -> anyhow::Result<(String, String)> {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])?;
    let dir = PathBuf::from(format!("target/cluster-ip-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    let config = tls_config(&cert, &key)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}{WEBHOOK_PATH}", listener.local_addr()?);
    tokio::spawn(serve_router_tls(listener, webhook_router(leader), config));
    Ok((url, generated.cert.pem()))
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
    Ok(())
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
                .map(|r| {
                    let addresses = r
                        .spec
                        .ipv4
                        .iter()
                        .chain(&r.spec.ipv6)
                        .filter_map(|a| a.parse().ok())
                        .collect();
                    (r.name_any(), addresses)
                })
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
    let (url, ca) = serve_webhook(leader).await?;
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
