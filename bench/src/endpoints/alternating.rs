//! `--controller alternating`: the flips, isolated and random, with the two controllers taking
//! turns batch by batch on one workload.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Endpoints;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use signpost_e2e::{TestNamespace, unique_cidr};

use super::controller::Controller;
use super::flips::{Batch, Flips, Target, flip_batch, flip_targets, random_orders, settle};
use super::options::{Options, slices_of};
use super::report::{extend, prefixed};
use super::workload::{create_workload, delete_workload, wait_caught_up};

/// The two controllers in one run, in the order batch by batch (S K K S S K K S ...): each
/// side's batches come in turns of two on one process, the first right after a start, the
/// second after a batch; and each side leads half the pairs of neighbouring batches.
const ALTERNATION: [&str; 4] = ["signpost", "kcm", "kcm", "signpost"];

/// One controller's flips in the alternating run.
#[derive(Default)]
struct Side {
    isolated: Flips,
    random: Flips,
    /// Random batches this side has run: the next one takes the order of that index, so each
    /// side flips the same pods in the same orders as a separate run.
    random_batches: usize,
}

/// The flips of one workload: isolated targets, and the random ones with their orders.
struct Workload {
    isolated: Vec<Target>,
    random: Vec<Target>,
    random_orders: Vec<Vec<Target>>,
}

/// Flips on one workload with the two controllers taking turns (a turn is two batches, the
/// first and last turns one): the controller whose turn it is runs alone (the other is
/// stopped), so the two are measured seconds apart under the same load, where separate runs
/// are minutes apart on a shared machine whose floor moves between them. Each batch is an
/// isolated batch, then a random one (the same pods and orders as a separate run's, when
/// `--random-flips` is not 0). Before each turn the namespace's Endpoints are deleted (each
/// controller leaves another's Endpoints alone, and both must write theirs per flip) and the
/// starting controller catches up on the other's flips; only then does its first batch start.
/// Both controllers' slices stay (each keeps only its own), so each turn starts from the same
/// objects. Returns, per controller, the same flip figures as a separate run (the random ones
/// prefixed `random_`) plus its CPU seconds during its own isolated batches.
pub(crate) async fn alternating_flips(
    o: &Options,
    client: &Client,
) -> anyhow::Result<serde_json::Value> {
    let ns = TestNamespace::create(client, "bench-alternating").await?;
    let cidr = unique_cidr(16);
    let ip_of = create_workload(&ns, o).await?;
    let workload = flips_of(o, &ip_of);
    let mut sides: BTreeMap<&str, Side> = BTreeMap::new();
    let mut running: Option<(&str, Controller)> = None;
    let mut per_batch = Vec::new();
    for batch in 0..2 * o.batches {
        let which = ALTERNATION[batch % ALTERNATION.len()];
        // A turn's second batch runs on the process of its first, so the report can show
        // whether a controller just started measures differently from one that has run a while.
        let fresh = running.as_ref().is_none_or(|(side, _)| *side != which);
        if fresh {
            drop(running.take());
            running = Some((which, start_turn(o, &ns, which, &cidr).await?));
        }
        let Some((_, controller)) = running.as_ref() else {
            unreachable!("a controller was started above");
        };
        let side = sides.entry(which).or_default();
        let ready = batch % 2 == 1;
        let mut figures = serde_json::json!({ "controller": which, "fresh": fresh });
        let label = slices_of(which);
        let isolated =
            isolated_batch(&ns, controller, &label, &workload.isolated, ready, o.rate).await?;
        extend(&mut figures, isolated.0.p99s(""));
        side.isolated.add(isolated.0);
        side.isolated.cpu_s += isolated.1;
        if let Some(order) = workload.random_orders.get(side.random_batches) {
            settle(&ns).await?;
            let b = flip_batch(&ns, &label, order, ready, o.rate).await?;
            extend(&mut figures, b.p99s("random_"));
            side.random.add(b);
            side.random_batches += 1;
        }
        per_batch.push(figures);
    }
    // Signpost must run while the namespace goes, to release its addresses.
    let signpost = match running {
        Some(("signpost", controller)) => controller,
        other => {
            drop(other);
            let log = format!("target/bench-signpost-{}.log", std::process::id());
            Controller::start(o, "signpost", &cidr, &log)?
        }
    };
    delete_workload(client, ns, signpost).await?;
    Ok(report(o, &workload, per_batch, sides))
}

/// The isolated targets of `o`, and the random ones with one order per side's batch.
fn flips_of(o: &Options, ip_of: &HashMap<String, String>) -> Workload {
    let isolated = flip_targets(o, ip_of);
    let (random, random_orders) = random_orders(o, ip_of, &isolated);
    Workload {
        isolated,
        random,
        random_orders,
    }
}

/// Starts `which` for its turn on the workload as the other controller left it: the
/// namespace's Endpoints deleted first, then caught up on the other's flips.
async fn start_turn(
    o: &Options,
    ns: &TestNamespace,
    which: &str,
    cidr: &str,
) -> anyhow::Result<Controller> {
    let endpoints: Api<Endpoints> = ns.api();
    endpoints
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let log = format!("target/bench-{which}-{}.log", std::process::id());
    let started = Controller::start(o, which, cidr, &log)?;
    wait_caught_up(ns, &started, &slices_of(which), o.services).await?;
    Ok(started)
}

/// One isolated batch on a settled machine, and the CPU seconds `controller` took during it.
async fn isolated_batch(
    ns: &TestNamespace,
    controller: &Controller,
    label: &str,
    targets: &[Target],
    ready: bool,
    rate: f64,
) -> anyhow::Result<(Batch, f64)> {
    settle(ns).await?;
    let (cpu_before, _) = controller.usage()?;
    let b = flip_batch(ns, label, targets, ready, rate).await?;
    let (cpu_after, _) = controller.usage()?;
    Ok((b, cpu_after - cpu_before))
}

/// The run's JSON: the workload, every batch's p99s, and each side's figures under its name.
fn report(
    o: &Options,
    workload: &Workload,
    per_batch: Vec<serde_json::Value>,
    sides: BTreeMap<&str, Side>,
) -> serde_json::Value {
    let mut report = serde_json::json!({
        "controller": "alternating",
        "services": o.services,
        "pods_per_service": o.pods,
        "flips": workload.isolated.len(),
        "batches": o.batches,
        "rate_per_s": o.rate,
        "per_batch": per_batch,
    });
    if !workload.random.is_empty() {
        extend(
            &mut report,
            serde_json::json!({ "random_flips": workload.random.len() }),
        );
    }
    for (which, side) in sides {
        let cpu = side.isolated.cpu_s;
        let mut summary = side.isolated.summary();
        extend(&mut summary, serde_json::json!({ "cpu_s_flips": cpu }));
        if side.random_batches > 0 {
            extend(&mut summary, prefixed("random_", side.random.summary()));
        }
        extend(&mut report, serde_json::json!({ (which): summary }));
    }
    report
}
