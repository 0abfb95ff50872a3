//! Workload generator for the controller benchmark: N Services × M pods, then K readiness
//! flips at a fixed rate, against one endpoints controller at a time (Signpost, or
//! kube-controller-manager's own endpoint controllers), on the cluster KUBECONFIG names.
//!
//! Measured, all from watches (never from the controller's own logs or metrics):
//! - the floor: pod status patch → pod watch event (what any controller waits for);
//! - pod-ready → EndpointSlice: patch → the slice watch shows the pod's new readiness;
//! - slice and Endpoints writes per flip (watch events during the flips);
//! - convergence from an empty namespace, CPU seconds and peak RSS of the controller process.
//!
//! Prints one JSON object on stdout. Usage:
//! `endpoints-bench --controller signpost|kcm --services 100 --pods 10 --flips 300 --rate 50`

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use signpost_e2e::{
    TestNamespace, client, install_crds, pod_is_ready, set_pod_ready, unique_cidr, wait_until,
};

struct Options {
    controller: String,
    services: usize,
    pods: usize,
    flips: usize,
    rate: f64,
    signpost_bin: String,
    kcm_bin: String,
    admin_kubeconfig: String,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        controller: "signpost".into(),
        services: 100,
        pods: 10,
        flips: 300,
        rate: 50.0,
        signpost_bin: "target/release/signpost".into(),
        kcm_bin: String::new(),
        admin_kubeconfig: String::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args
            .get(i + 1)
            .cloned()
            .with_context(|| format!("{} needs a value", args[i]))?;
        match args[i].as_str() {
            "--controller" => o.controller = value,
            "--services" => o.services = value.parse().context("--services")?,
            "--pods" => o.pods = value.parse().context("--pods")?,
            "--flips" => o.flips = value.parse().context("--flips")?,
            "--rate" => o.rate = value.parse().context("--rate")?,
            "--signpost-bin" => o.signpost_bin = value,
            "--kcm-bin" => o.kcm_bin = value,
            "--admin-kubeconfig" => o.admin_kubeconfig = value,
            other => bail!("unknown flag {other}"),
        }
        i += 2;
    }
    if !matches!(o.controller.as_str(), "signpost" | "kcm") {
        bail!("--controller must be signpost or kcm");
    }
    if o.flips > o.services * o.pods {
        bail!("--flips must not exceed services × pods (each flip turns a distinct pod not ready)");
    }
    Ok(o)
}

/// The `managed-by` label value of the slices each controller writes.
fn managed_by(controller: &str) -> &'static str {
    match controller {
        "signpost" => "endpointslice-controller.signpost.dev",
        _ => "endpointslice-controller.k8s.io",
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_controller(o: &Options, log: &str) -> anyhow::Result<Child> {
    let log_file = std::fs::File::create(log)?;
    let port = free_port()?.to_string();
    let child = match o.controller.as_str() {
        "signpost" => Command::new(&o.signpost_bin)
            .args([
                "run",
                "--service-cidr",
                &unique_cidr(16),
                "--leader-elect=false",
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", o.signpost_bin))?,
        _ => Command::new(&o.kcm_bin)
            .args(["--kubeconfig", &o.admin_kubeconfig])
            .args([
                "--controllers",
                "endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller",
            ])
            .args([
                "--leader-elect=false",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port,
            ])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", o.kcm_bin))?,
    };
    Ok(child)
}

/// CPU seconds (user + system) and peak RSS in bytes of a process, from /proc.
fn cpu_and_peak_rss(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of /proc/pid/stat (utime, stime) are 12 and 13 after the comm field.
    let ticks: u64 = fields.get(11).unwrap_or(&"0").parse::<u64>()?
        + fields.get(12).unwrap_or(&"0").parse::<u64>()?;
    let clk_tck: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((ticks as f64 / clk_tck, hwm_kb * 1024))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

type Seen = Arc<Mutex<Vec<(Instant, String, bool)>>>;

/// Records (time, key, ready) for every watch event: pods by name, slice endpoints by IP.
fn watch_pods(
    api: Api<Pod>,
    version: String,
    seen: Seen,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let stream = api.watch(&WatchParams::default(), &version).await?;
        futures::pin_mut!(stream);
        while let Some(event) = stream.try_next().await? {
            if let WatchEvent::Modified(pod) = event {
                let now = Instant::now();
                let ready = pod_is_ready(&pod);
                seen.lock().unwrap().push((now, pod.name_any(), ready));
            }
        }
        Ok(())
    })
}

fn watch_slices(
    api: Api<EndpointSlice>,
    label: String,
    version: String,
    seen: Seen,
    writes: Arc<Mutex<usize>>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let stream = api
            .watch(&WatchParams::default().labels(&label), &version)
            .await?;
        futures::pin_mut!(stream);
        while let Some(event) = stream.try_next().await? {
            let slice = match event {
                WatchEvent::Added(s) | WatchEvent::Modified(s) => s,
                WatchEvent::Deleted(_) => {
                    *writes.lock().unwrap() += 1;
                    continue;
                }
                _ => continue,
            };
            let now = Instant::now();
            *writes.lock().unwrap() += 1;
            let mut seen = seen.lock().unwrap();
            for endpoint in slice.endpoints.iter().flatten() {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(false);
                for address in &endpoint.addresses {
                    seen.push((now, address.clone(), ready));
                }
            }
        }
        Ok(())
    })
}

fn count_events<K>(
    api: Api<K>,
    version: String,
    writes: Arc<Mutex<usize>>,
) -> tokio::task::JoinHandle<anyhow::Result<()>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let stream = api.watch(&WatchParams::default(), &version).await?;
        futures::pin_mut!(stream);
        while let Some(event) = stream.try_next().await? {
            if matches!(
                event,
                WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_)
            ) {
                *writes.lock().unwrap() += 1;
            }
        }
        Ok(())
    })
}

fn first_after(seen: &Seen, key: &str, ready: bool, after: Instant) -> Option<Instant> {
    seen.lock()
        .unwrap()
        .iter()
        .find(|(t, k, r)| *t >= after && k == key && *r == ready)
        .map(|(t, _, _)| *t)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let client: Client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, &format!("bench-{}", o.controller)).await?;
    let services: Api<Service> = ns.api();
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    let endpoints: Api<Endpoints> = ns.api();
    let total = o.services * o.pods;

    // The workload, before the controller starts: convergence is then measured from nothing.
    let creates = (0..o.services).flat_map(|s| {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("svc-{s}")},
            "spec": {"selector": {"app": format!("svc-{s}")}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }))
        .unwrap();
        let mut objects: Vec<(Option<Service>, Option<Pod>)> = vec![(Some(svc), None)];
        for p in 0..o.pods {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("svc-{s}-pod-{p}"), "labels": {"app": format!("svc-{s}")}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}
            }))
            .unwrap();
            objects.push((None, Some(pod)));
        }
        objects
    });
    futures::stream::iter(creates)
        .map(|(svc, pod)| {
            let (services, pods) = (services.clone(), pods.clone());
            async move {
                if let Some(svc) = svc {
                    services.create(&PostParams::default(), &svc).await?;
                }
                if let Some(pod) = pod {
                    pods.create(&PostParams::default(), &pod).await?;
                }
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let ip_of: HashMap<String, String> = wait_until(
        &format!("{total} ready pods"),
        Duration::from_secs(600),
        || async {
            let list = pods
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready: HashMap<String, String> = list
                .items
                .iter()
                .filter(|p| pod_is_ready(p))
                .filter_map(|p| Some((p.name_any(), p.status.as_ref()?.pod_ip.clone()?)))
                .collect();
            if ready.len() == total {
                Ok(ready)
            } else {
                Err(format!("{} ready", ready.len()))
            }
        },
    )
    .await?;

    let log = format!("target/bench-{}-{}.log", o.controller, std::process::id());
    let started = Instant::now();
    let mut child = start_controller(&o, &log)?;
    let pid = child.id();
    let label = format!(
        "endpointslice.kubernetes.io/managed-by={}",
        managed_by(&o.controller)
    );
    let converge = wait_until(
        "every Service's slices complete",
        Duration::from_secs(600),
        || async {
            if std::fs::metadata(format!("/proc/{pid}")).is_err() {
                return Err(format!("controller (pid {pid}) exited; see {log}"));
            }
            let list = slices
                .list(&ListParams::default().labels(&label))
                .await
                .map_err(|e| e.to_string())?;
            let ready: usize = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
            if ready == total {
                Ok(started.elapsed())
            } else {
                Err(format!("{ready}/{total} ready endpoints in slices"))
            }
        },
    )
    .await?;
    // Let the start-up burst settle so it does not count as flip writes.
    let quiet_version = slices
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let settle = Arc::new(Mutex::new(0usize));
    let settling = count_events(slices.clone(), quiet_version, settle.clone());
    let mut last = usize::MAX;
    while *settle.lock().unwrap() != last {
        last = *settle.lock().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    settling.abort();
    let (cpu_after_converge, _) = cpu_and_peak_rss(pid)?;

    // Flips: K distinct pods turn not ready, at the given rate.
    let pod_seen: Seen = Arc::default();
    let slice_seen: Seen = Arc::default();
    let slice_writes = Arc::new(Mutex::new(0usize));
    let endpoints_writes = Arc::new(Mutex::new(0usize));
    let version = pods
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let watchers = vec![
        watch_pods(pods.clone(), version.clone(), pod_seen.clone()),
        watch_slices(
            slices.clone(),
            label.clone(),
            version.clone(),
            slice_seen.clone(),
            slice_writes.clone(),
        ),
        count_events(endpoints.clone(), version.clone(), endpoints_writes.clone()),
    ];
    let mut names: Vec<&String> = ip_of.keys().collect();
    names.sort();
    let interval = Duration::from_secs_f64(1.0 / o.rate);
    let mut sent: Vec<(String, String, Instant)> = Vec::with_capacity(o.flips);
    let flips_start = Instant::now();
    for (k, name) in names
        .iter()
        .step_by((total / o.flips).max(1))
        .take(o.flips)
        .enumerate()
    {
        let due = flips_start + interval * k as u32;
        tokio::time::sleep_until(due.into()).await;
        let t = Instant::now();
        set_pod_ready(&pods, name, false).await?;
        sent.push(((*name).clone(), ip_of[*name].clone(), t));
    }
    let results = wait_until(
        "every flip seen in a slice",
        Duration::from_secs(120),
        || async {
            let mut floor = Vec::new();
            let mut latency = Vec::new();
            for (name, ip, t) in &sent {
                match (
                    first_after(&pod_seen, name, false, *t),
                    first_after(&slice_seen, ip, false, *t),
                ) {
                    (Some(p), Some(s)) => {
                        floor.push(p.duration_since(*t).as_secs_f64() * 1000.0);
                        latency.push(s.duration_since(*t).as_secs_f64() * 1000.0);
                    }
                    _ => return Err(format!("{} of {} flips seen", latency.len(), sent.len())),
                }
            }
            Ok((floor, latency))
        },
    )
    .await?;
    let flips_done = flips_start.elapsed();
    // Writes that trail the last flip still count: wait for a quiet period.
    let mut last = (usize::MAX, usize::MAX);
    loop {
        let now = (
            *slice_writes.lock().unwrap(),
            *endpoints_writes.lock().unwrap(),
        );
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for w in watchers {
        w.abort();
    }
    let (cpu_end, peak_rss) = cpu_and_peak_rss(pid)?;
    // Delete while the controller still runs, so Signpost releases the namespace's addresses.
    signpost_e2e::delete_namespace_and_claims(&client, ns).await?;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    let (mut floor, mut latency) = results;
    floor.sort_by(f64::total_cmp);
    latency.sort_by(f64::total_cmp);
    let k = sent.len() as f64;
    let report = serde_json::json!({
        "controller": o.controller,
        "services": o.services,
        "pods_per_service": o.pods,
        "flips": sent.len(),
        "rate_per_s": o.rate,
        "converge_s": converge.as_secs_f64(),
        "floor_p50_ms": percentile(&floor, 50.0),
        "floor_p99_ms": percentile(&floor, 99.0),
        "latency_p50_ms": percentile(&latency, 50.0),
        "latency_p99_ms": percentile(&latency, 99.0),
        "slice_writes_per_flip": *slice_writes.lock().unwrap() as f64 / k,
        "endpoints_writes_per_flip": *endpoints_writes.lock().unwrap() as f64 / k,
        "cpu_s_total": cpu_end,
        "cpu_s_startup": cpu_after_converge,
        "cpu_s_flips": cpu_end - cpu_after_converge,
        "flip_phase_s": flips_done.as_secs_f64(),
        "peak_rss_mb": peak_rss as f64 / (1024.0 * 1024.0),
    });
    println!("{report}");
    Ok(())
}
