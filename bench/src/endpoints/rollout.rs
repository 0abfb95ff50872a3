//! The rollout workload: a Deployment behind a Service restarted one rollout after another.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
use signpost_e2e::{TestNamespace, ready_pod_ips, wait_until};

use super::report::median;
use super::watch::WriteCounters;
use super::workload::ready_in_slices;

/// What one restart of the rollout Deployment measured.
pub(crate) struct Rollout {
    replaced: usize,
    slice_writes: usize,
    endpoints_writes: usize,
    complete_s: f64,
    slices_current_s: f64,
}

/// A Deployment of `replicas` pods behind a Service; once its slices hold every pod, its pod
/// template changes (as `kubectl rollout restart` does) `times` times, each once the last
/// rollout is complete and every slice current.
pub(crate) async fn rollouts(
    ns: &TestNamespace,
    label: &str,
    replicas: usize,
    times: usize,
) -> anyhow::Result<Vec<Rollout>> {
    let deployments: Api<Deployment> = ns.api();
    ns.create_app("rollout", replicas as i32).await?;
    let mut pods = wait_for_rollout(ns, label, replicas, None).await?.0;
    let mut measured = Vec::with_capacity(times);
    for _ in 0..times {
        let counters = WriteCounters::start(ns).await?;
        let started = Instant::now();
        let restart = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
            "signpost.dev/restarted-at": k8s_openapi::jiff::Timestamp::now().to_string()
        }}}}});
        deployments
            .patch(
                "rollout",
                &PatchParams::default(),
                &Patch::Strategic(&restart),
            )
            .await?;
        let (after, complete) = wait_for_rollout(ns, label, replicas, Some(started)).await?;
        let slices_current = started.elapsed();
        let (slice_writes, endpoints_writes) = counters.finish(Duration::from_secs(2)).await;
        measured.push(Rollout {
            replaced: after
                .keys()
                .filter(|name| !pods.contains_key(*name))
                .count(),
            slice_writes,
            endpoints_writes,
            complete_s: complete.unwrap_or(slices_current).as_secs_f64(),
            slices_current_s: slices_current.as_secs_f64(),
        });
        pods = after;
    }
    Ok(measured)
}

/// Waits until the rollout Deployment is complete (all `replicas` updated and ready) and its
/// Service's slices hold exactly its ready pods; returns those pods and, with `started`, how
/// long after it the Deployment was first seen complete.
pub(crate) async fn wait_for_rollout(
    ns: &TestNamespace,
    label: &str,
    replicas: usize,
    started: Option<Instant>,
) -> anyhow::Result<(BTreeMap<String, IpAddr>, Option<Duration>)> {
    let deployments: Api<Deployment> = ns.api();
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    let complete: Mutex<Option<Duration>> = Mutex::new(None);
    let ready = wait_until(
        "the rollout complete and every slice current",
        Duration::from_secs(600),
        || async {
            let deployment = deployments
                .get("rollout")
                .await
                .map_err(|e| e.to_string())?;
            let generation = deployment.metadata.generation.unwrap_or(0);
            let status = deployment.status.unwrap_or_default();
            let done = status.observed_generation.unwrap_or(0) >= generation
                && status.updated_replicas.unwrap_or(0) == replicas as i32
                && status.ready_replicas.unwrap_or(0) == replicas as i32
                && status.replicas.unwrap_or(0) == replicas as i32;
            if !done {
                return Err(format!("deployment status {status:?}"));
            }
            if let Some(started) = started {
                complete
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| started.elapsed());
            }
            let ready = ready_pod_ips(&pods, "app=rollout").await?;
            let sliced = ready_in_slices(&slices, label, Some("rollout")).await?;
            let ips = ready
                .values()
                .map(ToString::to_string)
                .collect::<BTreeSet<_>>();
            if ready.len() == replicas && sliced == ips {
                Ok(ready)
            } else {
                Err(format!(
                    "{} ready pods, slices hold {} ready",
                    ready.len(),
                    sliced.len()
                ))
            }
        },
    )
    .await?;
    Ok((ready, complete.into_inner().unwrap()))
}

/// The report's rollout keys over every rollout measured: writes per replaced pod over all of
/// them, medians of the times, and the controller's CPU seconds `cpu_s` spread over them.
pub(crate) fn rollout_report(rolled: &[Rollout], cpu_s: f64) -> serde_json::Value {
    let replaced: usize = rolled.iter().map(|r| r.replaced).sum();
    let slice_writes: usize = rolled.iter().map(|r| r.slice_writes).sum();
    let endpoints_writes: usize = rolled.iter().map(|r| r.endpoints_writes).sum();
    let mut complete: Vec<f64> = rolled.iter().map(|r| r.complete_s).collect();
    let mut current: Vec<f64> = rolled.iter().map(|r| r.slices_current_s).collect();
    let current_after_complete = rolled
        .iter()
        .map(|r| r.slices_current_s - r.complete_s)
        .fold(0.0, f64::max);
    serde_json::json!({
        "rollouts": rolled.len(),
        "rollout_pods": replaced,
        "rollout_slice_writes": slice_writes,
        "rollout_endpoints_writes": endpoints_writes,
        "rollout_slice_writes_per_pod": slice_writes as f64 / replaced.max(1) as f64,
        "rollout_endpoints_writes_per_pod": endpoints_writes as f64 / replaced.max(1) as f64,
        "rollout_complete_s": median(&mut complete),
        "rollout_slices_current_s": median(&mut current),
        "rollout_current_after_complete_max_s": current_after_complete,
        "rollout_complete_samples_s": complete,
        "rollout_slices_current_samples_s": current,
        "cpu_s_rollout": cpu_s / rolled.len() as f64,
    })
}
