//! The controller benchmark (`endpoints_bench`): workloads against one endpoints controller at
//! a time (Signpost, or kube-controller-manager's own endpoint controllers) on the cluster
//! KUBECONFIG names. Workloads, in order, in one fresh namespace:
//! 1. N Services × M pods exist before the controller starts: convergence from empty;
//! 2. isolated flips: `--batches` batches of K readiness flips at a fixed rate (batch 1 turns K
//!    pods not ready, batch 2 ready again, batch 3 not ready, ...);
//!    then random flips: `--batches` batches of `--random-flips` readiness flips at the same
//!    rate on distinct pods drawn at random over all Services (a fixed seed, so both
//!    controllers get the same draw), each batch in a new random order: now and then two pods
//!    of one Service change tens of milliseconds apart, which isolated flips never do;
//! 3. a restart with nothing changed: writes after the restart, time until ready;
//! 4. a rollout: a Deployment of R pods behind a Service is restarted (new pod template),
//!    `--rollouts` times one after another: writes per replaced pod over all of them (so a
//!    controller that writes a few times per rollout is not measured in units of one write),
//!    and the median time until every slice is current.
//!
//! Measured, all from watches (never from the controller's own logs or metrics):
//! - the floor: pod status patch → pod watch event (what any controller waits for);
//! - pod-ready → EndpointSlice: patch → the slice watch shows the pod's new readiness;
//! - the controller's own share of it: pod watch event → slice watch event, per flip;
//! - EndpointSlice and Endpoints writes (watch events);
//! - CPU seconds and peak RSS of the controller process, from /proc.
//!
//! `--controller alternating` measures only the flips, isolated and random, with the two
//! controllers taking turns batch by batch on one workload (see
//! [`alternating::alternating_flips`]).
//!
//! Prints one JSON object on stdout. Usage:
//! `endpoints_bench --controller signpost|kcm|alternating --services 100 --pods 10 --flips 300 --rate 50`

mod alternating;
mod cache_fill;
mod controller;
mod flips;
mod options;
mod report;
mod rollout;
mod run;
mod watch;
mod workload;

use kube::Client;
use signpost_e2e::{client, install_crds};

use cache_fill::cache_fill_time;
use options::options;

/// The benchmark, as the `endpoints_bench` binary runs it: options from the command line,
/// one JSON object on stdout.
pub async fn main() -> anyhow::Result<()> {
    let o = options()?;
    if let Some(how) = o.fill_once {
        cache_fill_time(how).await?;
        return Ok(());
    }
    let client: Client = client().await?;
    install_crds(&client).await?;
    let report = if o.controller == "alternating" {
        alternating::alternating_flips(&o, &client).await?
    } else {
        run::separate_run(&o, &client).await?
    };
    println!("{report}");
    Ok(())
}
