//! IPAM against the local control plane: each test runs its own controller scoped to its own
//! namespace, over a CIDR no other test uses (claims are cluster-wide, named by address).
#![cfg(feature = "integration")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use common::{TIMEOUT, finish, init_logs, scoped_settings, start_controllers};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use signpost_controllers::app::Running;
use signpost_controllers::ipam::controller::SERVICE_NAMESPACE_LABEL;
use signpost_crds::ServiceIP;
use signpost_e2e::{
    TestNamespace, client, create_all_at_once, unique_cidr, wait_events, wait_for_count, wait_until,
};

async fn start(client: &Client, ns: &str, cidrs: &[&str]) -> anyhow::Result<Running> {
    init_logs("warn");
    let (running, _) = start_controllers(client, scoped_settings(ns, cidrs)?).await?;
    Ok(running)
}

fn service(name: &str, spec: serde_json::Value, annotation: Option<&str>) -> Service {
    let mut meta = serde_json::json!({"name": name});
    if let Some(value) = annotation {
        meta["annotations"] = serde_json::json!({"signpost.dev/cluster-ip": value});
    }
    let mut spec = spec;
    if spec.get("ports").is_none() {
        spec["ports"] = serde_json::json!([{"name": "default", "port": 80, "targetPort": 9376}]);
    }
    serde_json::from_value(serde_json::json!({"metadata": meta, "spec": spec})).unwrap()
}

/// Claims held in namespace `ns`, by Service name.
async fn claims_in(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, Vec<ServiceIP>>> {
    let api: Api<ServiceIP> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("{SERVICE_NAMESPACE_LABEL}={ns}")))
        .await?;
    let mut by_service: BTreeMap<String, Vec<ServiceIP>> = BTreeMap::new();
    for claim in list.items {
        by_service
            .entry(claim.spec.service_ref.name.clone())
            .or_default()
            .push(claim);
    }
    Ok(by_service)
}

fn addresses(claims: &[ServiceIP]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = claims
        .iter()
        .map(|c| c.spec.address.parse().unwrap())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn two_hundred_concurrent_services_get_distinct_addresses_that_survive_a_restart()
-> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "ipam-200").await?;
    let cidr_text = unique_cidr(20);
    let cidr: IpNet = cidr_text.parse()?;
    let running = start(&client, &ns.name, &[&cidr_text]).await?;
    let services: Api<Service> = ns.api();

    let start_time = Instant::now();
    let created = create_all_at_once(
        &services,
        (0..200).map(|i| service(&format!("svc-{i}"), serde_json::json!({}), None)),
    )
    .await?;
    let uids: BTreeMap<String, String> = created
        .iter()
        .map(|s| (s.name_any(), s.uid().unwrap()))
        .collect();

    let held = wait_until("200 Services with one claim each", TIMEOUT, || async {
        let claims = claims_in(&client, &ns.name)
            .await
            .map_err(|e| e.to_string())?;
        let done = claims.values().filter(|c| c.len() == 1).count();
        if claims.len() == 200 && done == 200 {
            Ok(claims)
        } else {
            Err(format!(
                "{} services with claims, {done} with exactly one",
                claims.len()
            ))
        }
    })
    .await?;
    println!("200 Services allocated in {:?}", start_time.elapsed());

    let mut all = BTreeSet::new();
    for (name, claims) in &held {
        let claim = &claims[0];
        let address: IpAddr = claim.spec.address.parse()?;
        assert!(cidr.contains(&address), "{address} outside {cidr}");
        assert!(all.insert(address), "{address} handed out twice");
        assert_eq!(
            Some(&claim.spec.service_ref.uid),
            uids.get(name),
            "claim of {name} names its UID"
        );
    }
    assert_eq!(all.len(), 200);

    // Restart: the new controller rebuilds from the claims and changes nothing.
    running.shut_down().await;
    let running = start(&client, &ns.name, &[&cidr_text]).await?;
    let after = claims_in(&client, &ns.name).await?;
    let before_map: BTreeMap<&String, Vec<IpAddr>> =
        held.iter().map(|(k, v)| (k, addresses(v))).collect();
    let after_map: BTreeMap<&String, Vec<IpAddr>> =
        after.iter().map(|(k, v)| (k, addresses(v))).collect();
    assert_eq!(
        before_map, after_map,
        "a restart must not change any address"
    );

    let deletes = (0..200).map(|i| {
        let services = services.clone();
        async move {
            services
                .delete(&format!("svc-{i}"), &DeleteParams::default())
                .await
        }
    });
    futures::future::try_join_all(deletes).await?;
    wait_for_count(
        "every claim released",
        TIMEOUT,
        0,
        "services still hold claims",
        || async {
            let claims = claims_in(&client, &ns.name).await;
            Ok(claims.map_err(|e| e.to_string())?.len())
        },
    )
    .await?;
    finish(&client, ns, running).await
}

#[tokio::test]
async fn an_exhausted_range_reports_and_allocates_once_space_frees() -> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "ipam-full").await?;
    let running = start(&client, &ns.name, &[&unique_cidr(29)]).await?;
    let services: Api<Service> = ns.api();
    for i in 0..6 {
        ns.create_object(&service(&format!("svc-{i}"), serde_json::json!({}), None))
            .await?;
    }
    wait_for_count("6 claims", TIMEOUT, 6, "claims", || async {
        let claims = claims_in(&client, &ns.name).await;
        Ok(claims.map_err(|e| e.to_string())?.len())
    })
    .await?;
    ns.create_object(&service("seventh", serde_json::json!({}), None))
        .await?;
    let start_time = Instant::now();
    wait_events(&client, &ns.name, "seventh", "ClusterIPExhausted", TIMEOUT).await?;
    assert!(
        !claims_in(&client, &ns.name).await?.contains_key("seventh"),
        "no address while the range is full"
    );

    services.delete("svc-3", &DeleteParams::default()).await?;
    let claims = wait_until("seventh gets the freed address", TIMEOUT, || async {
        let claims = claims_in(&client, &ns.name)
            .await
            .map_err(|e| e.to_string())?;
        match claims.get("seventh") {
            Some(c) => Ok(c.clone()),
            None => Err(format!(
                "services with claims: {:?}",
                claims.keys().collect::<Vec<_>>()
            )),
        }
    })
    .await?;
    println!(
        "seventh Service got {} {:?} after the range was full",
        claims[0].spec.address,
        start_time.elapsed()
    );
    finish(&client, ns, running).await
}

#[tokio::test]
async fn dual_stack_and_single_stack_ipv6_services_get_their_families() -> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "ipam-ds").await?;
    let running = start(&client, &ns.name, &[&unique_cidr(24), "fd00:10:203::/64"]).await?;
    let services: Api<Service> = ns.api();
    services
        .create(&PostParams::default(), &service("both", serde_json::json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}), None))
        .await?;
    services
        .create(
            &PostParams::default(),
            &service(
                "six",
                serde_json::json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
                None,
            ),
        )
        .await?;
    let claims = wait_until("both: 2 claims, six: 1 claim", TIMEOUT, || async {
        let claims = claims_in(&client, &ns.name)
            .await
            .map_err(|e| e.to_string())?;
        let count = |n: &str| claims.get(n).map_or(0, Vec::len);
        if count("both") == 2 && count("six") == 1 {
            Ok(claims)
        } else {
            Err(format!("both={} six={}", count("both"), count("six")))
        }
    })
    .await?;
    let both = addresses(&claims["both"]);
    assert!(
        both[0].is_ipv4() && both[1].is_ipv6(),
        "one address of each family: {both:?}"
    );
    let six = addresses(&claims["six"]);
    assert!(six[0].is_ipv6(), "only IPv6: {six:?}");
    assert!("fd00:10:203::/64".parse::<IpNet>()?.contains(&six[0]));
    finish(&client, ns, running).await
}

#[tokio::test]
async fn requested_addresses_are_honoured_or_refused_never_replaced() -> anyhow::Result<()> {
    let client = client().await?;
    let ns = TestNamespace::create(&client, "ipam-req").await?;
    let cidr: IpNet = unique_cidr(24).parse()?;
    let wanted = cidr.hosts().nth(8).unwrap().to_string();
    let running = start(&client, &ns.name, &[&cidr.to_string()]).await?;
    ns.create_object(&service("wants-9", serde_json::json!({}), Some(&wanted)))
        .await?;
    let claims = wait_until("wants-9 holds the requested address", TIMEOUT, || async {
        let claims = claims_in(&client, &ns.name)
            .await
            .map_err(|e| e.to_string())?;
        claims
            .get("wants-9")
            .cloned()
            .ok_or_else(|| "no claim yet".to_string())
    })
    .await?;
    assert_eq!(addresses(&claims), vec![wanted.parse::<IpAddr>()?]);

    ns.create_object(&service("also-9", serde_json::json!({}), Some(&wanted)))
        .await?;
    ns.create_object(&service(
        "outside",
        serde_json::json!({}),
        Some("10.99.0.1"),
    ))
    .await?;
    ns.create_object(&service(
        "garbage",
        serde_json::json!({}),
        Some("not-an-ip"),
    ))
    .await?;
    for (name, reason) in [
        ("also-9", "ClusterIPTaken"),
        ("outside", "ClusterIPInvalid"),
        ("garbage", "ClusterIPInvalid"),
    ] {
        wait_events(&client, &ns.name, name, reason, TIMEOUT).await?;
    }
    let claims = claims_in(&client, &ns.name).await?;
    assert_eq!(
        claims.keys().collect::<Vec<_>>(),
        vec!["wants-9"],
        "refused requests get no other address"
    );
    finish(&client, ns, running).await
}
