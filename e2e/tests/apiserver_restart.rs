//! kube-apiserver restarts under a running Signpost: its watches break and its requests fail
//! for a while, and afterwards it must carry on by itself. Restarting the API server needs the
//! local control plane (`e2e/controlplane/restart-apiserver.sh`), hence the feature gate; it
//! is its own test binary with one test so nothing else in the run is disrupted by it.
#![cfg(feature = "local-controlplane")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use signpost_e2e::process::LeaseFlags;
use signpost_e2e::{unique_cidr, wait_until};

#[tokio::test]
async fn signpost_carries_on_after_the_apiserver_restarts() -> anyhow::Result<()> {
    let (client, ns) = setup("e2e-apirestart").await?;
    let cidrs = vec![unique_cidr(24)];
    let cidr_nets = nets(&cidrs);
    // The leader gives up (and exits) when it cannot renew its lease for the renew deadline;
    // a restart of the API server takes a few seconds, so give the lease room for it: this
    // test is about watches and requests recovering, not about losing leadership.
    let options = scoped_options("apirestart", &ns, &cidrs).lease_timing(LeaseFlags {
        lease_duration: Duration::from_secs(120),
        renew_deadline: Duration::from_secs(90),
        retry_period: Duration::from_secs(2),
    });
    let mut signpost = start_leading(options).await?;
    let pid = signpost.pid();

    // Before: one Service converged.
    ns.create_app("before", 2).await?;
    wait_until("before: 2 ready endpoints and a VIP", CONVERGE, || async {
        let seen = endpoints_match_pods(&client, &ns.name, "before", "app=before", 100).await?;
        let claims = check_claims(&client, &ns.name, &cidr_nets).await?;
        if seen.ready == 2 && claims.contains_key("before") {
            Ok(())
        } else {
            Err(format!("{seen:?}, claims {claims:?}"))
        }
    })
    .await?;

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("controlplane")
        .join("restart-apiserver.sh");
    let t0 = Instant::now();
    // The script's output goes straight to the test's (no pipes to drain), and a deadline
    // bounds it: a restart that hangs must fail the test, not the whole run.
    let status = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("bash").arg(&script).status(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{} did not finish in 300 s", script.display()))??;
    println!(
        "[apirestart] {} finished ({status}) {:?} after it started",
        script.display(),
        t0.elapsed()
    );
    anyhow::ensure!(status.success(), "restart-apiserver.sh failed");
    anyhow::ensure!(
        signpost.exit_status().is_none(),
        "signpost exited during the restart; last lines of {}:\n{}",
        signpost.log_path.display(),
        signpost.log_tail(40)
    );

    // After: a new Service gets a VIP and its pods' endpoints, from the same process.
    let client = signpost_e2e::client().await?;
    let deployments: Api<Deployment> = ns.api();
    let t1 = Instant::now();
    ns.create_app("after", 3).await?;
    let claims = wait_claim_of(&client, &ns.name, &cidr_nets, "after").await?;
    println!(
        "[apirestart] new Service got VIP {:?} {:?} after creation",
        claims["after"],
        t1.elapsed()
    );
    // Pods become ready through kube-controller-manager, the scheduler and kwok, which are
    // re-establishing their own watches too: time them apart from Signpost.
    let pods_ready = wait_deployment_ready(&deployments, "after", 3, CONVERGE).await?;
    let t2 = Instant::now();
    let seen = wait_ready_endpoints(&client, &ns.name, "after", 3).await?;
    println!(
        "[apirestart] new Deployment's pods ready {pods_ready:?} after creation; endpoints converged {:?} after that ({seen:?})",
        t2.elapsed()
    );
    // The old Service is still right, and it is the same process, still leading.
    endpoints_match_pods(&client, &ns.name, "before", "app=before", 100)
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(signpost.pid(), pid);
    assert!(signpost.exit_status().is_none(), "still running");
    assert!(signpost.is_leading().await, "still leading");

    finish(&client, ns, vec![signpost]).await
}
