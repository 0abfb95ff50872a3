//! Readiness flips: which pods flip (isolated, round robin over the Services; or drawn at
//! random with a fixed seed), one batch of them at a fixed rate, and what a batch measured.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::Api;
use signpost_e2e::{TestNamespace, procfs, set_pod_ready, wait_until};

use super::options::Options;
use super::watch::{
    Counter, Seen, WriteCounters, count_events, first_after, read, wait_quiet, watch_pods,
    watch_slices,
};

/// Busy cores below which the machine counts as settled before the flips (of 2 here; an idle
/// control plane with a watching controller keeps about 0.1 busy).
pub(crate) const SETTLED_CORES: f64 = 0.3;

/// A pod to flip: (pod name, pod IP).
pub(crate) type Target = (String, String);

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// One batch of readiness flips: floor and latency samples (ms), writes.
pub(crate) struct Batch {
    pub floor: Vec<f64>,
    pub latency: Vec<f64>,
    /// Per flip, from the pod's watch event to the slice's: the controller's own share.
    pub own: Vec<f64>,
    pub slice_writes: usize,
    pub endpoints_writes: usize,
}

impl Batch {
    /// The batch's floor and latency p99 (ms), under the report's keys with `prefix`.
    pub(crate) fn p99s(&self, prefix: &str) -> serde_json::Value {
        let p99 = |samples: &[f64]| {
            let mut sorted = samples.to_vec();
            sorted.sort_by(f64::total_cmp);
            percentile(&sorted, 99.0)
        };
        serde_json::json!({
            format!("{prefix}floor_p99_ms"): p99(&self.floor),
            format!("{prefix}latency_p99_ms"): p99(&self.latency),
        })
    }
}

/// The batches of one controller's flips of one kind (isolated or random), gathered.
#[derive(Default)]
pub(crate) struct Flips {
    floor: Vec<f64>,
    latency: Vec<f64>,
    own: Vec<f64>,
    slice_writes: usize,
    endpoints_writes: usize,
    /// CPU seconds of the controller process during the batches (only the alternating mode
    /// measures it per batch; a controller that ran every batch is measured around all of them).
    pub cpu_s: f64,
}

impl Flips {
    pub(crate) fn add(&mut self, batch: Batch) {
        self.floor.extend(batch.floor);
        self.latency.extend(batch.latency);
        self.own.extend(batch.own);
        self.slice_writes += batch.slice_writes;
        self.endpoints_writes += batch.endpoints_writes;
    }

    /// Percentiles (ms) and writes per flip, under the report's keys.
    pub(crate) fn summary(mut self) -> serde_json::Value {
        for samples in [&mut self.floor, &mut self.latency, &mut self.own] {
            samples.sort_by(f64::total_cmp);
        }
        let flips = self.latency.len().max(1) as f64;
        serde_json::json!({
            "floor_p50_ms": percentile(&self.floor, 50.0),
            "floor_p99_ms": percentile(&self.floor, 99.0),
            "latency_p50_ms": percentile(&self.latency, 50.0),
            "latency_p99_ms": percentile(&self.latency, 99.0),
            "own_p50_ms": percentile(&self.own, 50.0),
            "own_p99_ms": percentile(&self.own, 99.0),
            "slice_writes_per_flip": self.slice_writes as f64 / flips,
            "endpoints_writes_per_flip": self.endpoints_writes as f64 / flips,
        })
    }
}

/// Waits until the writes that trail the last workload have been quiet for 2 s and the machine
/// has settled, so a batch starts where every other one does.
pub(crate) async fn settle(ns: &TestNamespace) -> anyhow::Result<f64> {
    WriteCounters::start(ns)
        .await?
        .finish(Duration::from_secs(2))
        .await;
    procfs::wait_machine_settled(SETTLED_CORES, Duration::from_secs(60)).await
}

/// Flips `targets` to `ready`, one every `1 / rate` seconds, and measures each flip from its
/// patch to the pod watch event (the floor) and to the slice (labelled `label`) that shows it.
pub(crate) async fn flip_batch(
    ns: &TestNamespace,
    label: &str,
    targets: &[Target],
    ready: bool,
    rate: f64,
) -> anyhow::Result<Batch> {
    let pods: Api<Pod> = ns.api();
    let pod_seen: Seen = Arc::default();
    let slice_seen: Seen = Arc::default();
    let slice_writes = Counter::default();
    let endpoints_writes = Counter::default();
    let watchers = vec![
        watch_pods(pods.clone(), pod_seen.clone()).await?,
        watch_slices(
            ns.api(),
            label.to_string(),
            slice_seen.clone(),
            slice_writes.clone(),
        )
        .await?,
        count_events(ns.api::<Endpoints>(), endpoints_writes.clone()).await?,
    ];
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut sent: Vec<(&str, &str, Instant)> = Vec::with_capacity(targets.len());
    let start = Instant::now();
    for (k, (name, ip)) in targets.iter().enumerate() {
        tokio::time::sleep_until((start + interval * k as u32).into()).await;
        let t = Instant::now();
        set_pod_ready(&pods, name, ready).await?;
        sent.push((name, ip, t));
    }
    let (floor, latency, own) = wait_until(
        "every flip seen in a slice",
        Duration::from_secs(120),
        || async { flips_seen(&sent, &pod_seen, &slice_seen, ready) },
    )
    .await?;
    // Writes that trail the last flip still count.
    wait_quiet(&[&slice_writes, &endpoints_writes], Duration::from_secs(2)).await;
    for w in watchers {
        w.abort();
    }
    Ok(Batch {
        floor,
        latency,
        own,
        slice_writes: read(&slice_writes),
        endpoints_writes: read(&endpoints_writes),
    })
}

/// Floor, latency and own share (ms) of every flip `sent`, once each was seen in a pod watch
/// event and a slice; until then, how many were.
#[allow(clippy::type_complexity)]
fn flips_seen(
    sent: &[(&str, &str, Instant)],
    pod_seen: &Seen,
    slice_seen: &Seen,
    ready: bool,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>), String> {
    let mut floor = Vec::new();
    let mut latency = Vec::new();
    let mut own = Vec::new();
    for (name, ip, t) in sent {
        match (
            first_after(pod_seen, name, ready, *t),
            first_after(slice_seen, ip, ready, *t),
        ) {
            (Some(p), Some(s)) => {
                floor.push(p.duration_since(*t).as_secs_f64() * 1000.0);
                latency.push(s.duration_since(*t).as_secs_f64() * 1000.0);
                own.push(s.saturating_duration_since(p).as_secs_f64() * 1000.0);
            }
            _ => return Err(format!("{} of {} flips seen", latency.len(), sent.len())),
        }
    }
    Ok((floor, latency, own))
}

/// The pods the isolated flips change: K distinct pods taken round robin over the Services (pod
/// 0 of every Service, then pod 1, ...), so consecutive flips concern different Services and
/// each Service sees one flip per `services / rate` seconds: every flip is a change on its own.
pub(crate) fn flip_targets(o: &Options, ip_of: &HashMap<String, String>) -> Vec<Target> {
    (0..o.flips)
        .map(|i| {
            let name = format!("svc-{}-pod-{}", i % o.services, i / o.services);
            let ip = ip_of[&name].clone();
            (name, ip)
        })
        .collect()
}

/// The seed of the random flips' draw: the same pods, in the same orders, for every run.
const RANDOM_SEED: u64 = 0x5167_7057_2026_0028;

/// The random flips of a run: `--random-flips` pods drawn from the seed (none of `isolated`),
/// and one order of them per batch, `--batches` of them, drawn after the pods. Every run, the
/// separate ones and each side of the alternating one, gets the same pods in the same orders.
pub(crate) fn random_orders(
    o: &Options,
    ip_of: &HashMap<String, String>,
    isolated: &[Target],
) -> (Vec<Target>, Vec<Vec<Target>>) {
    let mut draw = Draw::new(RANDOM_SEED);
    let targets = draw.targets(o, ip_of, isolated);
    if targets.is_empty() {
        return (targets, Vec::new());
    }
    let orders = (0..o.batches)
        .map(|_| {
            let mut order = targets.clone();
            draw.shuffle(&mut order);
            order
        })
        .collect();
    (targets, orders)
}

/// A small deterministic generator (xorshift64*) for the random flips.
struct Draw(u64);

impl Draw {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// `--random-flips` distinct pods drawn from every Service's pods but those of `isolated`
    /// (which the isolated flips left not ready), as (name, IP).
    fn targets(
        &mut self,
        o: &Options,
        ip_of: &HashMap<String, String>,
        isolated: &[Target],
    ) -> Vec<Target> {
        let taken: BTreeSet<&str> = isolated.iter().map(|(name, _)| name.as_str()).collect();
        let mut all: Vec<Target> = (0..o.services * o.pods)
            .map(|i| format!("svc-{}-pod-{}", i % o.services, i / o.services))
            .filter(|name| !taken.contains(name.as_str()))
            .map(|name| {
                let ip = ip_of[&name].clone();
                (name, ip)
            })
            .collect();
        self.shuffle(&mut all);
        all.truncate(o.random_flips);
        all
    }
}
