//! Faults end to end: Signpost killed with SIGKILL in the middle of work, and leader failover
//! between two processes sharing a Lease. Every invariant is read back from the API.
#![cfg(feature = "cluster")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use common::*;
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, ResourceExt};
use signpost_crds::ServiceIP;
use signpost_e2e::process::{FAST_LEASE, Relay, Signpost, SignpostOptions};
use signpost_e2e::watch::list_version;
use signpost_e2e::{
    SERVICE_NAMESPACE_LABEL, TestNamespace, create_all_at_once, fixtures, pod_is_ready,
    set_pod_ready, unique_cidr, wait_until,
};

/// The options of process `name` among those of the test that contend for Lease `lease`,
/// with short lease timing so that a failover is quick.
fn contender(ns: &TestNamespace, cidrs: &[String], lease: &str, name: &str) -> SignpostOptions {
    scoped_options(name, ns, cidrs)
        .lease_name(lease)
        .lease_timing(FAST_LEASE)
}

/// SIGKILL while 100 Services are being created (at about 30 claims), then a restart: every
/// Service ends with exactly one claim, no address is held twice, no claim outlives its
/// Service, and every Service's endpoints converge.
#[tokio::test]
async fn kill_9_while_creating_100_services_then_restart_converges() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-kill").await?;
    let cidrs = vec![unique_cidr(24)];
    let cidr_nets = nets(&cidrs);
    let options = scoped_options("kill", &ns, &cidrs).lease_timing(FAST_LEASE);
    let mut first = start_leading(options.clone()).await?;
    let deployments: Api<Deployment> = ns.api();
    let services: Api<Service> = ns.api();
    ns.create_object(&fixtures::app_deployment("backend", 3, 8080))
        .await?;
    wait_deployment_ready(&deployments, "backend", 3, CONVERGE).await?;

    // Watch the namespace's claims from before the first create, to kill at the 30th.
    let claims_api: Api<ServiceIP> = Api::all(client.clone());
    let selector = format!("{SERVICE_NAMESPACE_LABEL}={}", ns.name);
    let version = list_version(&claims_api, &ListParams::default().labels(&selector)).await?;
    let stream = claims_api
        .watch(
            &WatchParams::default().labels(&selector).timeout(120),
            &version,
        )
        .await?;
    futures::pin_mut!(stream);

    let t0 = Instant::now();
    let creates = tokio::spawn({
        let services = services.clone();
        async move {
            let hundred_services =
                (0..100).map(|i| fixtures::service_selecting(&format!("svc-{i}"), "backend", 8080));
            create_all_at_once(&services, hundred_services).await
        }
    });
    let mut added = 0;
    while added < 30 {
        match tokio::time::timeout(CONVERGE, stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(_)))) => added += 1,
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => anyhow::bail!("claims watch ended after {added} claims"),
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => anyhow::bail!("only {added} claims after {CONVERGE:?}"),
        }
    }
    first.kill9().await?;
    let at_kill = t0.elapsed();
    let created = creates.await??;
    let held = signpost_e2e::claims_in_namespace(&client, &ns.name)
        .await?
        .len();
    println!(
        "[kill] SIGKILL at the 30th claim ADDED event, {at_kill:?} after the first create; all 100 Services created {:?} after the first; {held} claims exist after the kill",
        t0.elapsed()
    );
    let uids: BTreeSet<String> = created.iter().filter_map(|s| s.uid()).collect();
    assert_eq!(uids.len(), 100);

    // Restart with the same flags: it waits for the dead leader's lease to expire, then
    // rebuilds from the claims and finishes the work.
    let t1 = Instant::now();
    let second = start_leading(options).await?;
    let leading_after = t1.elapsed();
    let claims = wait_until(
        "100 Services, one claim each, consistent",
        CONVERGE,
        || async {
            let claims = check_claims(&client, &ns.name, &cidr_nets).await?;
            if claims.len() == 100 {
                Ok(claims)
            } else {
                Err(format!("{} Services hold claims", claims.len()))
            }
        },
    )
    .await?;
    let claims_after = t1.elapsed();
    let addresses: BTreeSet<_> = claims.values().flatten().collect();
    assert_eq!(addresses.len(), 100, "0 duplicate addresses");
    // Every remaining claim names a live Service UID (check_claims checked it against the
    // API's Services; check against the UIDs the creates returned, too).
    let live: Vec<ServiceIP> = signpost_e2e::claims_in_namespace(&client, &ns.name).await?;
    let orphans: Vec<_> = live
        .iter()
        .filter(|c| !uids.contains(&c.spec.service_ref.uid))
        .map(|c| c.spec.address.clone())
        .collect();
    assert!(
        orphans.is_empty(),
        "claims without a live Service: {orphans:?}"
    );
    println!(
        "[kill] restarted process leading {leading_after:?} after spawn (lease {:?}); 100 Services × 1 claim, 0 duplicates, 0 orphans {claims_after:?} after the restart",
        FAST_LEASE.lease_duration
    );

    wait_until("100 Services' endpoints converged", CONVERGE, || async {
        // Services are checked in order, so svc-i failing means i were done.
        for i in 0..100 {
            let seen =
                endpoints_match_pods(&client, &ns.name, &format!("svc-{i}"), "app=backend", 100)
                    .await
                    .map_err(|e| format!("svc-{i}: {e}; {i} done"))?;
            if seen.ready != 3 || seen.slices != 1 {
                return Err(format!("svc-{i}: {seen:?}; {i} done"));
            }
        }
        Ok(())
    })
    .await?;
    println!(
        "[kill] all 100 Services have Endpoints and one slice of 3 ready pods {:?} after the restart",
        t1.elapsed()
    );
    assert_quiet(&client, &ns.name, "kill", "converged means no more writes").await?;

    finish(&client, ns, vec![second]).await
}

/// Waits (30 s at most) until `process`, called `name` in the test, leads, whether or not its
/// caches have synced: the moment a takeover is timed to. A timeout shows its `/readyz`.
async fn wait_leads(process: &Signpost, name: &str, what: &str) -> anyhow::Result<()> {
    wait_until(what, Duration::from_secs(30), || async {
        if process.is_leading().await {
            Ok(())
        } else {
            Err(format!("{name} /readyz {:?}", process.readyz().await.ok()))
        }
    })
    .await
}

/// Waits until the churn has made `at_least` readiness flips since it started.
async fn wait_flips(flips: &AtomicUsize, at_least: usize, what: &str) -> anyhow::Result<()> {
    wait_until(what, CONVERGE, || async {
        let n = flips.load(Ordering::Relaxed);
        if n >= at_least {
            Ok(())
        } else {
            Err(format!("{n} flips"))
        }
    })
    .await
}

/// Two processes share a Lease: exactly one leads. SIGKILL of the leader while pods churn →
/// the other leads within lease duration + retry period and the slices converge to the final
/// readiness; SIGTERM of the leader → the standby leads within 2 s.
#[tokio::test]
async fn leader_failover_on_kill_9_and_on_sigterm() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-lead").await?;
    let cidrs = vec![unique_cidr(24)];
    let lease = signpost_e2e::unique_name("lease");
    let options = |name: &str| contender(&ns, &cidrs, &lease, name);
    let mut a = start_leading(options("a")).await?;
    let mut b = Signpost::start(options("b")).await?;
    let (a_leads, b_leads) = (a.is_leading().await, b.is_leading().await);
    println!(
        "[lead] a leading: {a_leads}, b leading: {b_leads} (b /readyz: {:?})",
        b.readyz().await?
    );
    assert!(a_leads && !b_leads, "exactly one leader");

    let pods: Api<Pod> = ns.api();
    ns.create_app("churn", 6).await?;
    wait_ready_endpoints(&client, &ns.name, "churn", 6).await?;
    let names: Vec<String> = pods
        .list(&ListParams::default().labels("app=churn"))
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();

    // Churn: flip the readiness of 3 pods in turn, paced at 10 flips per second, until told to
    // stop; each flip is a change the controllers must reflect.
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicUsize::new(0));
    let churn = tokio::spawn({
        let (pods, stop, flips) = (pods.clone(), stop.clone(), flips.clone());
        let victims: Vec<String> = names[..3].to_vec();
        async move {
            let mut pace = tokio::time::interval(Duration::from_millis(100));
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let victim = &victims[i % victims.len()];
                let ready = (i / victims.len()) % 2 == 1;
                set_pod_ready(&pods, victim, ready).await?;
                flips.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(i)
        }
    });
    // Let the churn run against the leader, then kill it mid-churn.
    wait_flips(&flips, 10, "churn under way (10 flips)").await?;
    let killed = Instant::now();
    a.kill9().await?;
    wait_leads(&b, "b", "b leads after a was killed").await?;
    let takeover = killed.elapsed();
    let bound = FAST_LEASE.lease_duration + FAST_LEASE.retry_period;
    println!(
        "[lead] SIGKILL of the leader: b leads {takeover:?} later (bound: lease {:?} + retry {:?} = {bound:?})",
        FAST_LEASE.lease_duration, FAST_LEASE.retry_period
    );
    b.wait_leading(CONVERGE).await?;
    // Keep churning a little under the new leader, then stop and check the final state.
    let at_takeover = flips.load(Ordering::Relaxed);
    wait_flips(
        &flips,
        at_takeover + 10,
        "10 more flips under the new leader",
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    let total_flips = churn.await??;
    let t_final = Instant::now();
    let final_ready = pods
        .list(&ListParams::default().labels("app=churn"))
        .await?
        .items
        .iter()
        .filter(|p| pod_is_ready(p))
        .count();
    let seen = wait_endpoints(
        &client,
        &ns.name,
        "churn",
        "app=churn",
        "slices and Endpoints match the final readiness",
        |_| true,
    )
    .await?;
    println!(
        "[lead] {total_flips} readiness flips; final readiness ({final_ready} of 6 ready) reflected {:?} after the churn stopped ({seen:?})",
        t_final.elapsed()
    );
    assert_eq!(seen.ready, final_ready);
    assert!(
        takeover <= bound,
        "takeover after SIGKILL took {takeover:?}, more than lease duration + retry period ({bound:?})"
    );

    // A fresh standby, then SIGTERM of the leader: it releases the lease on the way out.
    let mut c = Signpost::start(options("c")).await?;
    assert!(
        !c.is_leading().await,
        "c stands by while b leads: {:?}",
        c.readyz().await?
    );
    let termed = Instant::now();
    b.signal_term()?;
    wait_leads(&c, "c", "c leads after b got SIGTERM").await?;
    let handover = termed.elapsed();
    let b_status = b.wait_exit(Duration::from_secs(20)).await;
    println!(
        "[lead] SIGTERM of the leader: c leads {handover:?} later; b exited with {b_status:?}"
    );
    assert!(
        b_status.is_some_and(|s| s.success()),
        "b exits cleanly on SIGTERM: {b_status:?}"
    );
    c.wait_leading(CONVERGE).await?;
    // The new leader reconciles: one more readiness change shows up (pod 4 never churned, so
    // it was ready).
    let t = Instant::now();
    set_pod_ready(&pods, &names[4], false).await?;
    let seen = wait_endpoints(
        &client,
        &ns.name,
        "churn",
        "app=churn",
        "c reflects a readiness change",
        |seen| seen.ready + 1 == final_ready,
    )
    .await?;
    println!(
        "[lead] after the hand-over, a readiness change reached the slices {:?} later ({seen:?})",
        t.elapsed()
    );
    assert!(
        handover <= Duration::from_secs(2),
        "hand-over after SIGTERM took {handover:?}, more than 2 s"
    );

    finish(&client, ns, vec![c]).await
}

/// A leader cut off from the API server by a relay that stops answering (a frozen process, not
/// a closed port: its requests hang instead of failing) must stop leading before its lease can
/// expire, so it has stopped writing before the standby, which reaches the API server
/// directly, may take over. Nothing the old leader sent into the frozen relay may change the
/// outcome once the relay runs again.
#[tokio::test]
async fn a_leader_behind_a_frozen_relay_stops_before_the_standby_leads() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-frozen").await?;
    let cidrs = vec![unique_cidr(24)];
    let lease = signpost_e2e::unique_name("lease");
    let relay = Relay::to_api_server().await?;
    let options = |name: &str| contender(&ns, &cidrs, &lease, name);
    let via_relay = relay.kubeconfig(&log_name("a", &ns.name))?;
    let mut a = start_leading(
        options("a")
            .arg("--kubeconfig")
            .arg(via_relay.display().to_string()),
    )
    .await?;
    let mut b = Signpost::start(options("b")).await?;
    assert!(!b.is_leading().await, "b stands by while a leads");

    // a renewed at most one retry period before the freeze.
    relay.freeze()?;
    let frozen = Instant::now();
    let (mut a_stopped, mut b_leads) = (None, None);
    while a_stopped.is_none() || b_leads.is_none() {
        if a_stopped.is_none() && a.exit_status().is_some() {
            a_stopped = Some(frozen.elapsed());
        }
        if b_leads.is_none() && b.is_leading().await {
            b_leads = Some(frozen.elapsed());
        }
        if frozen.elapsed() > Duration::from_secs(40) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "[frozen] after the relay froze: a stopped after {a_stopped:?}, b leads after {b_leads:?} \
         (lease {:?}, renew deadline {:?}); a's log:\n{}",
        FAST_LEASE.lease_duration,
        FAST_LEASE.renew_deadline,
        a.log_tail(5)
    );
    let a_stopped = a_stopped.context("a kept leading for 40 s behind the frozen relay")?;
    let b_leads = b_leads.context("b never took over")?;
    assert!(
        a_stopped < b_leads,
        "a stopped ({a_stopped:?}) only after b led ({b_leads:?})"
    );
    assert!(
        a_stopped < FAST_LEASE.lease_duration,
        "a stopped {a_stopped:?} after the freeze, later than the lease duration after its last renewal"
    );
    assert!(
        !a.exit_status().is_some_and(|s| s.success()),
        "a exits with an error when it loses leadership"
    );

    // What a sent into the relay goes through now; the lease must stay b's.
    b.wait_leading(CONVERGE).await?;
    let leases: Api<Lease> = ns.api();
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    let before = holder(leases.get(&lease).await?);
    relay.thaw()?;
    ns.create_object(&fixtures::app_service("after", 80, 8080))
        .await?;
    wait_claimed_address(
        &client,
        &ns.name,
        "after",
        "b gives the new Service an address",
    )
    .await?;
    let after = holder(leases.get(&lease).await?);
    assert_eq!(
        before, after,
        "the lease changed hands after the relay thawed"
    );
    assert!(
        after.ends_with(&format!("_{}", b.pid())),
        "b (pid {}) holds the lease: {after:?}",
        b.pid()
    );
    drop(relay);
    finish(&client, ns, vec![b]).await
}

/// One step of the chaos churn on Service `name`, chosen by `round` and the name's number.
async fn chaos_step(
    services: &Api<Service>,
    name: &str,
    round: usize,
    i: usize,
) -> anyhow::Result<()> {
    let exists = services.get_opt(name).await?;
    let clusterip = || fixtures::service_selecting(name, "chaos", 8080);
    let Some(service) = exists else {
        services
            .create(&PostParams::default(), &clusterip())
            .await?;
        return Ok(());
    };
    let external = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    let patch = |spec: serde_json::Value| {
        let services = services.clone();
        async move {
            services
                .patch(
                    name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(serde_json::json!({"spec": spec})),
                )
                .await
        }
    };
    match (external, (round + i) % 4) {
        (true, _) => {
            patch(serde_json::json!({"type": "ClusterIP", "externalName": null})).await?;
        }
        (false, 0) => {
            services.delete(name, &Default::default()).await?;
        }
        (false, 1) => {
            // Deleted and re-created under the same name: a new UID.
            services.delete(name, &Default::default()).await?;
            let deleted = Instant::now();
            while services.get_opt(name).await?.is_some() {
                anyhow::ensure!(deleted.elapsed() < CONVERGE, "{name} was not deleted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            services
                .create(&PostParams::default(), &clusterip())
                .await?;
        }
        (false, 2) => {
            patch(serde_json::json!({
                "type": "ExternalName", "externalName": "chaos.example.com",
                "clusterIP": null, "clusterIPs": null,
            }))
            .await?;
        }
        (false, _) => {}
    }
    Ok(())
}

/// Chaos: two replicas; the leader killed with SIGKILL eight times (a fresh replica started
/// after each kill, so two always run) while 300 Services are created, deleted, re-created
/// under the same name and switched to ExternalName and back. At every sample no Service
/// holds two claims of one family. Within two minutes of the last kill every ClusterIP
/// Service has exactly one claim with its current UID, no claim lacks a live Service, and
/// every selector Service's slices and Endpoints match its pods.
#[tokio::test]
async fn chaos_eight_leader_kills_during_300_service_changes() -> anyhow::Result<()> {
    const SERVICES: usize = 300;
    const KILLS: usize = 8;
    let (client, ns) = setup("e2e-chaos").await?;
    let cidrs = vec![unique_cidr(22)];
    let lease = signpost_e2e::unique_name("lease");
    let options = |name: &str| contender(&ns, &cidrs, &lease, name);
    ns.create_object(&fixtures::app_deployment("chaos", 3, 8080))
        .await?;
    let mut replicas = vec![
        start_leading(options("r0")).await?,
        Signpost::start(options("r1")).await?,
    ];

    let services: Api<Service> = ns.api();
    let stop = Arc::new(AtomicBool::new(false));
    let steps = Arc::new(AtomicUsize::new(0));
    let churn = tokio::spawn({
        let (services, stop, steps) = (services.clone(), stop.clone(), steps.clone());
        async move {
            let mut round = 0;
            // At least three passes (create; delete, re-create, switch; and back), and on
            // until the kills are over.
            while round < 3 || !stop.load(Ordering::Relaxed) {
                for i in 0..SERVICES {
                    chaos_step(&services, &format!("s{i}"), round, i).await?;
                    steps.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
            anyhow::Ok(round)
        }
    });
    // The sampler: no Service UID holds two claims of one family at any moment.
    let sampler = tokio::spawn({
        let (client, namespace, stop) = (client.clone(), ns.name.clone(), stop.clone());
        async move {
            let mut samples = 0usize;
            let mut doubles = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let claims = signpost_e2e::claims_in_namespace(&client, &namespace).await?;
                let mut held: std::collections::HashMap<(String, bool), Vec<String>> =
                    Default::default();
                for c in &claims {
                    held.entry((c.spec.service_ref.uid.clone(), c.spec.address.contains(':')))
                        .or_default()
                        .push(c.spec.address.clone());
                }
                doubles.extend(held.into_iter().filter(|(_, a)| a.len() > 1));
                samples += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok((samples, doubles))
        }
    });

    for kill in 0..KILLS {
        // Wait for a leader among the replicas, then kill it mid-churn.
        let leader = wait_until("a leader", CONVERGE, || async {
            for (i, r) in replicas.iter().enumerate() {
                if r.is_leading().await {
                    return Ok(i);
                }
            }
            Err(format!("{} replicas, none leading", replicas.len()))
        })
        .await?;
        let mut victim = replicas.remove(leader);
        victim.kill9().await?;
        println!(
            "[chaos] kill {} of {KILLS}: {} killed after {} churn steps",
            kill + 1,
            victim.options.name,
            steps.load(Ordering::Relaxed)
        );
        // r0 and r1 were the first two.
        replicas.push(Signpost::start(options(&format!("r{}", kill + 2))).await?);
    }
    let last_kill = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let rounds = churn.await??;
    let (samples, doubles) = sampler.await??;
    println!(
        "[chaos] {} churn steps in {rounds} rounds; {samples} samples, Services holding two claims of one family: {doubles:?}",
        steps.load(Ordering::Relaxed)
    );
    assert!(
        doubles.is_empty(),
        "a Service held two claims of one family: {doubles:?}"
    );

    let converged = wait_until(
        "every Service's claim, slices and Endpoints current",
        Duration::from_secs(120),
        || async {
            let live = services
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let claims = signpost_e2e::claims_in_namespace(&client, &ns.name)
                .await
                .map_err(|e| e.to_string())?;
            let uids: BTreeSet<String> = live.items.iter().filter_map(|s| s.uid()).collect();
            if let Some(orphan) = claims
                .iter()
                .find(|c| !uids.contains(&c.spec.service_ref.uid))
            {
                return Err(format!(
                    "claim {} of a Service that is gone",
                    orphan.spec.address
                ));
            }
            let mut clusterip = 0;
            for service in &live.items {
                let spec = service.spec.as_ref();
                if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
                    continue;
                }
                clusterip += 1;
                let uid = service.uid().unwrap_or_default();
                let held = claims
                    .iter()
                    .filter(|c| c.spec.service_ref.uid == uid)
                    .count();
                if held != 1 {
                    return Err(format!("{} holds {held} claims", service.name_any()));
                }
                endpoints_match_pods(&client, &ns.name, &service.name_any(), "app=chaos", 100)
                    .await
                    .map_err(|e| format!("{}: {e}", service.name_any()))?;
            }
            Ok(clusterip)
        },
    )
    .await?;
    println!(
        "[chaos] {converged} ClusterIP Services with one current claim and matching endpoints, {:?} after the last kill",
        last_kill.elapsed()
    );
    finish(&client, ns, replicas).await
}

/// SIGTERM while the API server has stopped answering (the leader's relay frozen): the leader
/// cannot drain anything through the API nor release its lease, and must still exit well
/// inside the chart's 30 s termination grace period instead of hanging until SIGKILL.
#[tokio::test]
async fn sigterm_with_a_frozen_api_server_exits_within_the_grace_period() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-termfrozen").await?;
    let cidrs = vec![unique_cidr(24)];
    let relay = Relay::to_api_server().await?;
    let via_relay = relay.kubeconfig(&log_name("a", &ns.name))?;
    let mut a = start_leading(
        scoped_options("a", &ns, &cidrs)
            .lease_timing(FAST_LEASE)
            .arg("--kubeconfig")
            .arg(via_relay.display().to_string()),
    )
    .await?;
    relay.freeze()?;
    let termed = Instant::now();
    a.signal_term()?;
    let status = a.wait_exit(Duration::from_secs(30)).await;
    let took = termed.elapsed();
    println!(
        "[termfrozen] SIGTERM with the API server frozen: exited {status:?} after {took:?}; log:\n{}",
        a.log_tail(4)
    );
    anyhow::ensure!(status.is_some(), "still running 30 s after SIGTERM");
    assert!(
        took < Duration::from_secs(20),
        "exit took {took:?}, too close to a 30 s grace period"
    );
    drop(relay);
    signpost_e2e::delete_namespace_and_claims(&client, ns).await
}
