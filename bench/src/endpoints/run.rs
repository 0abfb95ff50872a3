//! A separate run: one controller through every workload (convergence, isolated and random
//! flips, restarts, rollouts) on a namespace of its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};
use signpost_e2e::{TestNamespace, procfs, unique_cidr, wait_until};

use super::cache_fill::{CacheFill, cache_fill_time, fill_in_new_process};
use super::controller::Controller;
use super::flips::{Flips, SETTLED_CORES, Target, flip_batch, flip_targets, random_orders};
use super::options::{Options, controller_logs_ready, restarts, slices_of};
use super::report::{extend, median, prefixed};
use super::rollout::{rollout_report, rollouts};
use super::watch::WriteCounters;
use super::workload::{create_workload, delete_workload, ready_in_slices};

/// Every workload against `o.controller`, in order; returns the run's JSON report.
pub(crate) async fn separate_run(
    o: &Options,
    client: &Client,
) -> anyhow::Result<serde_json::Value> {
    let ns = TestNamespace::create(client, &format!("bench-{}", o.controller)).await?;
    let cidr = unique_cidr(16);
    let label = slices_of(&o.controller);

    // 1. Convergence from empty: the workload exists before the controller starts.
    let ip_of = create_workload(&ns, o).await?;
    let log = format!("target/bench-{}-{}.log", o.controller, std::process::id());
    let started = Instant::now();
    let mut controller = Controller::start(o, &o.controller, &cidr, &log)?;
    let converge = converge(&ns, &controller, &label, o.services * o.pods, started).await?;
    let (busy_before_flips, settle_s) = settle_after_start(&ns).await?;
    let (cpu_after_converge, _) = controller.usage()?;

    // 2. Isolated flips (see `flip_targets`).
    let targets = flip_targets(o, &ip_of);
    let mut flips = Flips::default();
    let flips_start = Instant::now();
    for batch in 0..o.batches {
        let ready = batch % 2 == 1;
        flips.add(flip_batch(&ns, &label, &targets, ready, o.rate).await?);
    }
    let flips_done = flips_start.elapsed();
    let (cpu_after_flips, rss_first) = controller.usage()?;

    // 2b. Random flips: the same rate, on pods drawn at random over all Services.
    let (random_targets, random) = random_flips(o, &ns, &label, &ip_of, &targets).await?;

    // 3. Restarts with nothing changed.
    let (restarted, restart_report) = restart_phase(o, &ns, controller, &cidr, &log).await?;
    controller = restarted;
    let (cpu_restart, _) = controller.usage()?;

    // 4. A rollout.
    let rolled = if o.rollout > 0 && o.rollouts > 0 {
        rollouts(&ns, &label, o.rollout, o.rollouts).await?
    } else {
        Vec::new()
    };
    let (cpu_second, rss_second) = controller.usage()?;

    delete_workload(client, ns, controller).await?;

    let mut report = serde_json::json!({
        "controller": o.controller,
        "services": o.services,
        "pods_per_service": o.pods,
        "flips": targets.len(),
        "batches": o.batches,
        "rate_per_s": o.rate,
        "converge_s": converge.as_secs_f64(),
        "cpu_s_startup": cpu_after_converge,
        "cpu_s_flips": cpu_after_flips - cpu_after_converge,
        "cpu_s_total": cpu_after_flips,
        "flip_phase_s": flips_done.as_secs_f64(),
        "settle_s": settle_s.as_secs_f64(),
        "busy_cores_before_flips": busy_before_flips,
        "peak_rss_mb": rss_first.max(rss_second) as f64 / (1024.0 * 1024.0),
        "cpu_s_restart": cpu_restart,
    });
    extend(&mut report, restart_report);
    extend(&mut report, flips.summary());
    extend(&mut report, random_report(&random_targets, random));
    if !rolled.is_empty() {
        extend(
            &mut report,
            rollout_report(&rolled, cpu_second - cpu_restart),
        );
    }
    Ok(report)
}

/// Lets the start-up burst settle so it does not count as flip writes, then waits until the
/// machine has settled (the controller and the API server done digesting the start-up), so
/// two runs' flips measure the same thing. Returns the busy cores then and the wait's length.
async fn settle_after_start(ns: &TestNamespace) -> anyhow::Result<(f64, Duration)> {
    WriteCounters::start(ns)
        .await?
        .finish(Duration::from_secs(2))
        .await;
    let settle = Instant::now();
    let busy = procfs::wait_machine_settled(SETTLED_CORES, Duration::from_secs(60)).await?;
    Ok((busy, settle.elapsed()))
}

/// The random flips: `--batches` batches of the drawn pods, each in its own order.
async fn random_flips(
    o: &Options,
    ns: &TestNamespace,
    label: &str,
    ip_of: &HashMap<String, String>,
    isolated: &[Target],
) -> anyhow::Result<(Vec<Target>, Flips)> {
    let (targets, orders) = random_orders(o, ip_of, isolated);
    let mut random = Flips::default();
    for (batch, order) in orders.iter().enumerate() {
        let ready = batch % 2 == 1;
        random.add(flip_batch(ns, label, order, ready, o.rate).await?);
    }
    Ok((targets, random))
}

/// Waits until every Service's slices hold every pod; returns the time since `started`.
async fn converge(
    ns: &TestNamespace,
    controller: &Controller,
    label: &str,
    total: usize,
    started: Instant,
) -> anyhow::Result<Duration> {
    let slices: Api<EndpointSlice> = ns.api();
    wait_until(
        "every Service's slices complete",
        Duration::from_secs(900),
        || async {
            controller.alive()?;
            let ready = ready_in_slices(&slices, label, None).await?.len();
            if ready == total {
                Ok(started.elapsed())
            } else {
                Err(format!("{ready}/{total} ready endpoints in slices"))
            }
        },
    )
    .await
}

/// The random flips' keys of the report (none when there were no random flips).
fn random_report(targets: &[Target], random: Flips) -> serde_json::Value {
    if targets.is_empty() {
        return serde_json::json!({});
    }
    let mut report = serde_json::json!({ "random_flips": targets.len() });
    extend(&mut report, prefixed("random_", random.summary()));
    report
}

/// Restarts with nothing changed, each after a new client filled the same caches every way
/// and two new processes filled them, so restart and fill times are sampled alternately under
/// the same conditions; the medians count (one start-up is a single sample of ~0.1 s at 1,000
/// pods). Returns the last controller started and the report's restart keys.
async fn restart_phase(
    o: &Options,
    ns: &TestNamespace,
    mut controller: Controller,
    cidr: &str,
    log: &str,
) -> anyhow::Result<(Controller, serde_json::Value)> {
    let counters = WriteCounters::start(ns).await?;
    let (mut cache_list, mut cache_stream, mut cache_list_process, mut ready_after_restart) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cache_list_protobuf, mut cache_list_protobuf_process) = (Vec::new(), Vec::new());
    let seconds = |d: Duration| d.as_secs_f64();
    for _ in 0..restarts(o) {
        cache_list.push(seconds(cache_fill_time(CacheFill::Paged).await?));
        cache_stream.push(seconds(cache_fill_time(CacheFill::Streaming).await?));
        cache_list_protobuf.push(seconds(
            cache_fill_time(CacheFill::PagedPodsProtobuf).await?,
        ));
        cache_list_process.push(seconds(fill_in_new_process(CacheFill::Paged).await?));
        cache_list_protobuf_process.push(seconds(
            fill_in_new_process(CacheFill::PagedPodsProtobuf).await?,
        ));
        drop(controller);
        let restarted = Instant::now();
        controller = Controller::start(o, &o.controller, cidr, log)?;
        let ready = controller.wait_ready().await?.unwrap_or_else(Instant::now);
        ready_after_restart.push(ready.duration_since(restarted).as_secs_f64());
    }
    let (restart_slice_writes, restart_endpoints_writes) =
        counters.finish(Duration::from_secs(5)).await;
    let logs_ready = controller_logs_ready(o);
    let report = serde_json::json!({
        "restarts": restarts(o),
        "cache_list_s": median(&mut cache_list),
        "cache_stream_s": median(&mut cache_stream),
        "cache_list_protobuf_s": median(&mut cache_list_protobuf),
        "cache_list_process_s": median(&mut cache_list_process),
        "cache_list_protobuf_process_s": median(&mut cache_list_protobuf_process),
        "restart_ready_s": if logs_ready { serde_json::json!(median(&mut ready_after_restart)) } else { serde_json::Value::Null },
        "cache_list_samples_s": cache_list,
        "cache_stream_samples_s": cache_stream,
        "cache_list_protobuf_samples_s": cache_list_protobuf,
        "cache_list_process_samples_s": cache_list_process,
        "cache_list_protobuf_process_samples_s": cache_list_protobuf_process,
        "restart_ready_samples_s": if logs_ready { serde_json::json!(ready_after_restart) } else { serde_json::Value::Null },
        "restart_slice_writes": restart_slice_writes,
        "restart_endpoints_writes": restart_endpoints_writes,
    });
    Ok((controller, report))
}
