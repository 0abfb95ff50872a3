//! Workload generator for the controller benchmark, against one endpoints controller at a time
//! (Signpost, or kube-controller-manager's own endpoint controllers) on the cluster KUBECONFIG
//! names. Workloads, in order, in one fresh namespace:
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
//! `--controller alternating` measures only the isolated flips, with the two controllers taking
//! turns batch by batch on one workload (see [`alternating_flips`]).
//!
//! Prints one JSON object on stdout. Usage:
//! `endpoints-bench --controller signpost|kcm|alternating --services 100 --pods 10 --flips 300 --rate 50`

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use signpost_e2e::process::{READY_LINE, free_port};
use signpost_e2e::procfs;
use signpost_e2e::{
    TestNamespace, client, delete_namespace_and_claims_within, install_crds, pod_is_ready,
    ready_pod_ips, set_pod_ready, unique_cidr, wait_until,
};

struct Options {
    controller: String,
    services: usize,
    pods: usize,
    flips: usize,
    batches: usize,
    rate: f64,
    rollout: usize,
    rollouts: usize,
    /// Flips per batch of the random flips (0: none).
    random_flips: usize,
    /// Restarts with nothing changed (`None`: [`restarts`]' default for the size).
    restarts: Option<usize>,
    /// Extra arguments of `signpost run` (e.g. a batching policy to compare).
    signpost_args: Vec<String>,
    signpost_bin: String,
    kcm_bin: String,
    admin_kubeconfig: String,
    /// Only fill the caches once this way (`paged`, `streaming`: JSON; `protobuf`: paged, the
    /// pods as protobuf, not decoded) and exit: the child process that measures what a
    /// restart of any process costs before its caches are filled.
    fill_once: Option<CacheFill>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        controller: "signpost".into(),
        services: 100,
        pods: 10,
        flips: 300,
        batches: 9,
        rate: 50.0,
        rollout: 100,
        rollouts: 3,
        random_flips: 300,
        restarts: None,
        signpost_args: Vec::new(),
        signpost_bin: "target/release/signpost".into(),
        kcm_bin: String::new(),
        admin_kubeconfig: String::new(),
        fill_once: None,
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
            "--batches" => o.batches = value.parse().context("--batches")?,
            "--rate" => o.rate = value.parse().context("--rate")?,
            "--rollout" => o.rollout = value.parse().context("--rollout")?,
            "--rollouts" => o.rollouts = value.parse().context("--rollouts")?,
            "--random-flips" => o.random_flips = value.parse().context("--random-flips")?,
            "--restarts" => o.restarts = Some(value.parse().context("--restarts")?),
            "--signpost-arg" => o.signpost_args.push(value),
            "--signpost-bin" => o.signpost_bin = value,
            "--kcm-bin" => o.kcm_bin = value,
            "--admin-kubeconfig" => o.admin_kubeconfig = value,
            "--fill-once" => {
                o.fill_once = Some(CacheFill::from_flag(&value).with_context(|| {
                    format!("--fill-once: {value:?} is not paged, streaming or protobuf")
                })?)
            }
            other => bail!("unknown flag {other}"),
        }
        i += 2;
    }
    if !matches!(o.controller.as_str(), "signpost" | "kcm" | "alternating") {
        bail!("--controller must be signpost, kcm or alternating");
    }
    if o.random_flips > o.services * o.pods - o.flips.min(o.services * o.pods) {
        bail!("--flips + --random-flips must not exceed services × pods (distinct pods)");
    }
    if o.flips > o.services * o.pods {
        bail!("--flips must not exceed services × pods (each flip changes a distinct pod)");
    }
    Ok(o)
}

/// The label selector of the slices each controller writes (by their `managed-by` label).
fn slices_of(controller: &str) -> String {
    let manager = match controller {
        "signpost" => "endpointslice-controller.signpost.dev",
        _ => "endpointslice-controller.k8s.io",
    };
    format!("endpointslice.kubernetes.io/managed-by={manager}")
}

/// Busy cores below which the machine counts as settled before the flips (of 2 here; an idle
/// control plane with a watching controller keeps about 0.1 busy).
const SETTLED_CORES: f64 = 0.3;

/// Restarts with nothing changed per run (each one sample of start → ready): 21 up to 5,000
/// pods, where a sample is ~0.1 s and its spread is a third of it, so the median needs many;
/// 11 above, where each restart and its fills take tens of seconds.
fn restarts(o: &Options) -> usize {
    if let Some(n) = o.restarts {
        return n;
    }
    if o.services * o.pods <= 5000 { 21 } else { 11 }
}

/// The controller process under test.
struct Controller {
    child: Child,
    pid: u32,
    log: String,
    /// When Signpost logged that it is ready (kube-controller-manager has no such moment: its
    /// health endpoints do not wait for its caches, so it has none here).
    ready: Option<ReadyLine>,
}

/// The moment the controller's ready line was read from its log. A thread copies the
/// process's stderr into the log file and notes the line as it passes, so readiness is seen
/// without probing `/readyz`: a probe every millisecond costs both processes CPU on a
/// two-core machine while the caches fill, which is what the restart measures.
#[derive(Clone)]
struct ReadyLine(tokio::sync::watch::Receiver<ReadyState>);

#[derive(Clone, Copy, PartialEq)]
enum ReadyState {
    Waiting,
    Ready(Instant),
    /// The log ended (the process exited) before the ready line.
    Ended,
}

impl ReadyLine {
    /// Copies `stderr` into `log`, noting the ready line.
    fn watch(stderr: std::process::ChildStderr, mut log: std::fs::File) -> Self {
        use std::io::{BufRead, Write};
        let (state, line) = tokio::sync::watch::channel(ReadyState::Waiting);
        // Only the first of Ready and Ended counts.
        let set = move |to: ReadyState| {
            state.send_if_modified(|now| {
                let first = *now == ReadyState::Waiting;
                if first {
                    *now = to;
                }
                first
            });
        };
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stderr);
            let mut text = String::new();
            while reader.read_line(&mut text).is_ok_and(|n| n > 0) {
                if text.contains(READY_LINE) {
                    set(ReadyState::Ready(Instant::now()));
                }
                let _ = log.write_all(text.as_bytes());
                text.clear();
            }
            set(ReadyState::Ended);
        });
        ReadyLine(line)
    }

    /// Waits until the line was read or the log ended, at most `timeout`.
    async fn wait(mut self, timeout: Duration) -> ReadyState {
        let done = self.0.wait_for(|state| *state != ReadyState::Waiting);
        // On a timeout, or once the thread is gone, the last state it set stands.
        let _ = tokio::time::timeout(timeout, done).await;
        *self.0.borrow()
    }
}

impl Controller {
    /// Starts `which` (`signpost` or `kcm`), logging to `log`.
    fn start(o: &Options, which: &str, cidr: &str, log: &str) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log)?;
        let port = free_port()?.to_string();
        let (child, ready) = match which {
            "signpost" => {
                let mut child = Command::new(&o.signpost_bin)
                    .args(["run", "--service-cidr", cidr, "--leader-elect=false"])
                    .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
                    .args(["--log-format", "json"])
                    .args(&o.signpost_args)
                    // Warnings and the ready line (a target of its own), nothing else.
                    .env("RUST_LOG", "warn,signpost::ready=info")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("starting {}", o.signpost_bin))?;
                let stderr = child.stderr.take().context("the controller's stderr")?;
                (child, Some(ReadyLine::watch(stderr, log_file)))
            }
            _ => (
                Command::new(&o.kcm_bin)
                    .args(["--kubeconfig", &o.admin_kubeconfig])
                    .args([
                        "--controllers",
                        "endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller",
                    ])
                    // The client-side rate limit (20 requests/s by default) would throttle
                    // 50 flips/s × 2 writes and make it merge flips; Signpost has none, so
                    // the peer gets the same limits as the control plane's own kcm.
                    .args(["--kube-api-qps", "300", "--kube-api-burst", "500"])
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
                None,
            ),
        };
        Ok(Self {
            pid: child.id(),
            child,
            log: log.to_string(),
            ready,
        })
    }

    fn alive(&self) -> Result<(), String> {
        if std::fs::metadata(format!("/proc/{}", self.pid)).is_err() {
            return Err(format!(
                "controller (pid {}) exited; see {}",
                self.pid, self.log
            ));
        }
        Ok(())
    }

    /// CPU seconds (user + system) and peak RSS in bytes, from /proc.
    fn usage(&self) -> anyhow::Result<(f64, u64)> {
        cpu_and_peak_rss(self.pid)
    }

    /// Waits until the controller logged that it is ready and returns when that line was
    /// read (`None` for a controller without such a line).
    async fn wait_ready(&self) -> anyhow::Result<Option<Instant>> {
        let Some(line) = self.ready.clone() else {
            return Ok(None);
        };
        match line.wait(Duration::from_secs(300)).await {
            ReadyState::Ready(at) => Ok(Some(at)),
            ReadyState::Ended => bail!(
                "controller (pid {}) exited before it was ready; see {}",
                self.pid,
                self.log
            ),
            ReadyState::Waiting => bail!(
                "the controller did not log {READY_LINE:?} within 300 s; see {}",
                self.log
            ),
        }
    }
}

impl Drop for Controller {
    /// Stops the process, also when the benchmark fails half-way, so no controller outlives it.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn cpu_and_peak_rss(pid: u32) -> anyhow::Result<(f64, u64)> {
    let pid = pid.to_string();
    Ok((
        procfs::process_ticks(&pid)? as f64 / procfs::clock_ticks(),
        procfs::peak_rss_bytes(&pid)?,
    ))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

type Seen = Arc<Mutex<Vec<(Instant, String, bool)>>>;
type Counter = Arc<Mutex<usize>>;

/// Records (time, pod name, ready) for every pod watch event.
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

/// Records (time, endpoint IP, ready) for every endpoint of every slice write, and counts them.
fn watch_slices(
    api: Api<EndpointSlice>,
    label: String,
    version: String,
    seen: Seen,
    writes: Counter,
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

/// Counts every write (added, modified, deleted) of a kind in the namespace.
fn count_events<K>(
    api: Api<K>,
    version: String,
    writes: Counter,
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

fn read(counter: &Counter) -> usize {
    *counter.lock().unwrap()
}

/// Waits until none of `counters` moved for `quiet`: the end of a burst of writes that trail a
/// workload. A measurement window, not a synchronisation: the counts are what is measured.
async fn wait_quiet(counters: &[&Counter], quiet: Duration) {
    let mut last: Vec<usize> = counters.iter().map(|c| read(c)).collect();
    loop {
        tokio::time::sleep(quiet).await;
        let now: Vec<usize> = counters.iter().map(|c| read(c)).collect();
        if now == last {
            return;
        }
        last = now;
    }
}

async fn resource_version<K>(api: &Api<K>) -> anyhow::Result<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default())
}

/// Slice and Endpoints write counters over one workload (every slice of the namespace: only
/// one controller runs at a time).
struct WriteCounters {
    slices: Counter,
    endpoints: Counter,
    watchers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl WriteCounters {
    async fn start(ns: &TestNamespace) -> anyhow::Result<Self> {
        let slices_api: Api<EndpointSlice> = ns.api();
        let endpoints_api: Api<Endpoints> = ns.api();
        let (slices, endpoints) = (Counter::default(), Counter::default());
        let watchers = vec![
            count_events(
                slices_api.clone(),
                resource_version(&slices_api).await?,
                slices.clone(),
            ),
            count_events(
                endpoints_api.clone(),
                resource_version(&endpoints_api).await?,
                endpoints.clone(),
            ),
        ];
        Ok(Self {
            slices,
            endpoints,
            watchers,
        })
    }

    async fn finish(self, quiet: Duration) -> (usize, usize) {
        wait_quiet(&[&self.slices, &self.endpoints], quiet).await;
        for w in self.watchers {
            w.abort();
        }
        (read(&self.slices), read(&self.endpoints))
    }
}

/// One batch of readiness flips: floor and latency samples (ms), writes.
struct Batch {
    floor: Vec<f64>,
    latency: Vec<f64>,
    /// Per flip, from the pod's watch event to the slice's: the controller's own share.
    own: Vec<f64>,
    slice_writes: usize,
    endpoints_writes: usize,
}

/// The batches of one controller's isolated flips, gathered.
#[derive(Default)]
struct Flips {
    floor: Vec<f64>,
    latency: Vec<f64>,
    own: Vec<f64>,
    slice_writes: usize,
    endpoints_writes: usize,
    /// CPU seconds of the controller process during the batches (only the alternating mode
    /// measures it per batch; a controller that ran every batch is measured around all of them).
    cpu_s: f64,
}

impl Flips {
    fn add(&mut self, batch: Batch) {
        self.floor.extend(batch.floor);
        self.latency.extend(batch.latency);
        self.own.extend(batch.own);
        self.slice_writes += batch.slice_writes;
        self.endpoints_writes += batch.endpoints_writes;
    }

    /// Percentiles (ms) and writes per flip, under the report's keys.
    fn summary(mut self) -> serde_json::Value {
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

async fn flip_batch(
    ns: &TestNamespace,
    label: &str,
    targets: &[(String, String)],
    ready: bool,
    rate: f64,
) -> anyhow::Result<Batch> {
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    let endpoints: Api<Endpoints> = ns.api();
    let pod_seen: Seen = Arc::default();
    let slice_seen: Seen = Arc::default();
    let slice_writes = Counter::default();
    let endpoints_writes = Counter::default();
    let watchers = vec![
        watch_pods(
            pods.clone(),
            resource_version(&pods).await?,
            pod_seen.clone(),
        ),
        watch_slices(
            slices.clone(),
            label.to_string(),
            resource_version(&slices).await?,
            slice_seen.clone(),
            slice_writes.clone(),
        ),
        count_events(
            endpoints.clone(),
            resource_version(&endpoints).await?,
            endpoints_writes.clone(),
        ),
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
        || async {
            let mut floor = Vec::new();
            let mut latency = Vec::new();
            let mut own = Vec::new();
            for (name, ip, t) in &sent {
                match (
                    first_after(&pod_seen, name, ready, *t),
                    first_after(&slice_seen, ip, ready, *t),
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
        },
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

/// How a new client fills caches of every collection Signpost caches (Services, Pods,
/// EndpointSlices, Endpoints, Nodes, ServiceIPs, DNSRecords), all at once, as a starting
/// process does: paged lists (500 objects a page, as kube's and client-go's informers by
/// default), or streaming lists (one watch per kind that starts with the current objects).
#[derive(Clone, Copy)]
enum CacheFill {
    Paged,
    Streaming,
    /// Paged lists with the pods' pages in protobuf, as `signpost run` lists them; the pods
    /// are not decoded at all (only each page's continue token is read), so this is the least
    /// such a list can take.
    PagedPodsProtobuf,
}

impl CacheFill {
    const ALL: [CacheFill; 3] = [
        CacheFill::Paged,
        CacheFill::Streaming,
        CacheFill::PagedPodsProtobuf,
    ];

    /// The fill a `--fill-once` value names (the inverse of [`CacheFill::flag_value`]).
    fn from_flag(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|fill| fill.flag_value() == value)
    }

    /// The value of `--fill-once` that fills this way in a child process.
    fn flag_value(self) -> &'static str {
        match self {
            CacheFill::Paged => "paged",
            CacheFill::Streaming => "streaming",
            CacheFill::PagedPodsProtobuf => "protobuf",
        }
    }
}

/// The time a new client takes to fill every cache Signpost keeps, one way.
async fn cache_fill_time(how: CacheFill) -> anyhow::Result<Duration> {
    async fn list_all<K>(api: Api<K>, how: CacheFill) -> anyhow::Result<usize>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        if let CacheFill::Streaming = how {
            let mut events = watcher(api, watcher::Config::default().streaming_lists()).boxed();
            let mut count = 0;
            while let Some(event) = events.try_next().await? {
                match event {
                    watcher::Event::InitApply(_) => count += 1,
                    watcher::Event::InitDone => return Ok(count),
                    _ => {}
                }
            }
            bail!("the watch ended before its initial objects were complete");
        }
        let mut params = ListParams::default().limit(500);
        let mut count = 0;
        loop {
            let page = api.list(&params).await?;
            count += page.items.len();
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(count),
            }
        }
    }
    async fn list_pods(client: Client, how: CacheFill) -> anyhow::Result<usize> {
        match how {
            CacheFill::PagedPodsProtobuf => list_pods_protobuf(client).await,
            _ => list_all(Api::<Pod>::all(client), how).await,
        }
    }
    let start = Instant::now();
    let client = client().await?;
    futures::try_join!(
        list_all(Api::<Service>::all(client.clone()), how),
        list_pods(client.clone(), how),
        list_all(Api::<EndpointSlice>::all(client.clone()), how),
        list_all(Api::<Endpoints>::all(client.clone()), how),
        list_all(
            Api::<k8s_openapi::api::core::v1::Node>::all(client.clone()),
            how
        ),
        list_all(Api::<signpost_crds::ServiceIP>::all(client.clone()), how),
        list_all(Api::<signpost_crds::DNSRecord>::all(client.clone()), how),
    )?;
    Ok(start.elapsed())
}

/// Lists every pod in pages of 500 as protobuf and returns the number of pages.
async fn list_pods_protobuf(client: Client) -> anyhow::Result<usize> {
    let request = kube::core::Request::new("/api/v1/pods");
    let mut params = ListParams::default().limit(500);
    let mut pages = 0;
    loop {
        let mut page = request.list(&params)?.map(kube::client::Body::from);
        page.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
        );
        let response = client.send(page).await?;
        let status = response.status();
        let body = response.into_body().collect_bytes().await?;
        if !status.is_success() {
            bail!("listing pods as protobuf: HTTP {status}");
        }
        pages += 1;
        match protobuf_continue_token(&body).context("reading a protobuf pod list")? {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(pages),
        }
    }
}

/// The continue token of a protobuf list response: `k8s\0`, then the envelope's field 2 (the
/// list), its field 1 (`ListMeta`), and that one's field 3.
fn protobuf_continue_token(body: &[u8]) -> anyhow::Result<Option<String>> {
    /// The first length-delimited field `number` of a message, skipping the others.
    fn field(mut message: &[u8], number: u64) -> anyhow::Result<Option<&[u8]>> {
        fn varint(buf: &mut &[u8]) -> anyhow::Result<u64> {
            let mut value = 0;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = buf.split_first().context("truncated varint")?;
                *buf = rest;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return Ok(value);
                }
            }
            bail!("varint too long")
        }
        while !message.is_empty() {
            let key = varint(&mut message)?;
            let len = match key & 7 {
                0 => {
                    varint(&mut message)?;
                    continue;
                }
                1 => 8,
                2 => usize::try_from(varint(&mut message)?)?,
                5 => 4,
                other => bail!("wire type {other}"),
            };
            let value = message.get(..len).context("truncated field")?;
            message = &message[len..];
            if key >> 3 == number && key & 7 == 2 {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
    let inner = body.strip_prefix(b"k8s\0").context("no k8s\\0 prefix")?;
    let list = field(inner, 2)?.context("no list in the envelope")?;
    let Some(meta) = field(list, 1)? else {
        return Ok(None);
    };
    let token = field(meta, 3)?.map(|t| String::from_utf8_lossy(t).into_owned());
    Ok(token.filter(|t| !t.is_empty()))
}

/// Start to exit of a new process (this program with `--fill-once`) that fills every cache
/// Signpost keeps with paged lists (the pods as JSON or as protobuf): the fixed cost of
/// starting a process, a client and its connections included, as in a restart.
async fn fill_in_new_process(how: CacheFill) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--fill-once", how.flag_value()])
        .stdout(Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("the fill-once process failed: {status}");
    }
    Ok(started.elapsed())
}

/// Creates N Services × M pods (before any controller runs) and returns the ready pods' IPs.
async fn create_workload(
    ns: &TestNamespace,
    o: &Options,
) -> anyhow::Result<HashMap<String, String>> {
    let services: Api<Service> = ns.api();
    let pods: Api<Pod> = ns.api();
    let total = o.services * o.pods;
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
    wait_until(
        &format!("{total} ready pods"),
        Duration::from_secs(900),
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
    .await
}

/// Ready endpoint IPs of the managed slices of one Service, or of all when `service` is None.
async fn ready_in_slices(
    slices: &Api<EndpointSlice>,
    label: &str,
    service: Option<&str>,
) -> Result<BTreeSet<String>, String> {
    let selector = match service {
        Some(name) => format!("{label},kubernetes.io/service-name={name}"),
        None => label.to_string(),
    };
    let list = slices
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect())
}

/// What one restart of the rollout Deployment measured.
struct Rollout {
    replaced: usize,
    slice_writes: usize,
    endpoints_writes: usize,
    complete_s: f64,
    slices_current_s: f64,
}

/// A Deployment of `replicas` pods behind a Service; once its slices hold every pod, its pod
/// template changes (as `kubectl rollout restart` does) `times` times, each once the last
/// rollout is complete and every slice current.
async fn rollouts(
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
async fn wait_for_rollout(
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

/// The pods the isolated flips change: K distinct pods taken round robin over the Services (pod
/// 0 of every Service, then pod 1, ...), so consecutive flips concern different Services and
/// each Service sees one flip per `services / rate` seconds: every flip is a change on its own.
/// Each is (pod name, pod IP).
fn flip_targets(o: &Options, ip_of: &HashMap<String, String>) -> Vec<(String, String)> {
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
        isolated: &[(String, String)],
    ) -> Vec<(String, String)> {
        let taken: BTreeSet<&str> = isolated.iter().map(|(name, _)| name.as_str()).collect();
        let mut all: Vec<(String, String)> = (0..o.services * o.pods)
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

/// `summary` (a JSON object) with every key prefixed.
fn prefixed(prefix: &str, summary: serde_json::Value) -> serde_json::Value {
    match summary {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        other => other,
    }
}

/// Adds the keys of `extra` (a JSON object) to `report` (one too).
fn extend(report: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(report), serde_json::Value::Object(extra)) = (report.as_object_mut(), extra) {
        report.extend(extra);
    }
}

/// Deletes the benchmark's namespace and waits until it is gone, so the next run does not see
/// its pods. The Services go first while `controller` still runs, so a Signpost controller
/// releases their addresses (the namespace controller may take minutes over 20,000 pods before
/// it gets to them); then the controller stops.
async fn delete_workload(
    client: &Client,
    ns: TestNamespace,
    controller: Controller,
) -> anyhow::Result<()> {
    let ns_name = ns.name.clone();
    delete_namespace_and_claims_within(client, ns, Duration::from_secs(600)).await?;
    drop(controller);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_until(
        "the benchmark namespace deleted",
        Duration::from_secs(1200),
        || async {
            match namespaces.get_opt(&ns_name).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err(format!("{ns_name} still terminating")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

/// Waits until the slices labelled `label` and the namespace's Endpoints (one per Service)
/// hold exactly the ready pods: a controller started on a changed workload has caught up.
async fn wait_caught_up(
    ns: &TestNamespace,
    controller: &Controller,
    label: &str,
    services: usize,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = ns.api();
    let slices: Api<EndpointSlice> = ns.api();
    let endpoints: Api<Endpoints> = ns.api();
    wait_until(
        "the started controller's slices and Endpoints current",
        Duration::from_secs(900),
        || async {
            controller.alive()?;
            let ready: BTreeSet<String> = ready_pod_ips(&pods, "app")
                .await?
                .values()
                .map(ToString::to_string)
                .collect();
            let sliced = ready_in_slices(&slices, label, None).await?;
            let listed = endpoints
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let in_endpoints: BTreeSet<String> = listed
                .items
                .iter()
                .flat_map(|e| e.subsets.iter().flatten())
                .flat_map(|s| s.addresses.iter().flatten())
                .map(|a| a.ip.clone())
                .collect();
            if sliced == ready && in_endpoints == ready && listed.items.len() == services {
                Ok(())
            } else {
                Err(format!(
                    "{} ready pods; slices hold {} of them, {} Endpoints hold {}",
                    ready.len(),
                    sliced.len(),
                    listed.items.len(),
                    in_endpoints.len()
                ))
            }
        },
    )
    .await
}

/// The two controllers in one run, in the order batch by batch (S K K S S K K S ...): each
/// side's batches come in turns of two on one process, the first right after a start, the
/// second after a batch; and each side leads half the pairs of neighbouring batches.
const ALTERNATION: [&str; 4] = ["signpost", "kcm", "kcm", "signpost"];

/// Isolated flips on one workload with the two controllers taking turns (a turn is two
/// batches, the first and last turns one): the controller whose turn it is runs alone (the
/// other is stopped), so the two are measured seconds apart under the same load, where
/// separate runs are minutes apart on a shared machine whose floor moves between them. Before
/// each turn the namespace's Endpoints are deleted (each controller leaves another's Endpoints
/// alone, and both must write theirs per flip) and the starting controller catches up on the
/// other's flips; only then does its first batch start. Both controllers' slices stay (each keeps only its own), so each turn starts
/// from the same objects. Returns, per controller, the same flip figures as a separate run
/// plus its CPU seconds during its own batches.
async fn alternating_flips(o: &Options, client: &Client) -> anyhow::Result<serde_json::Value> {
    let ns = TestNamespace::create(client, "bench-alternating").await?;
    let endpoints: Api<Endpoints> = ns.api();
    let cidr = unique_cidr(16);
    let ip_of = create_workload(&ns, o).await?;
    let targets = flip_targets(o, &ip_of);
    let mut flips: BTreeMap<&str, Flips> = BTreeMap::new();
    let mut running: Option<(&str, Controller)> = None;
    let mut per_batch = Vec::new();
    for batch in 0..2 * o.batches {
        let which = ALTERNATION[batch % ALTERNATION.len()];
        let label = slices_of(which);
        // A turn's second batch runs on the process of its first, so the report can show
        // whether a controller just started measures differently from one that has run a while.
        let fresh = running.as_ref().is_none_or(|(side, _)| *side != which);
        if fresh {
            drop(running.take());
            endpoints
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await?;
            let log = format!("target/bench-{which}-{}.log", std::process::id());
            let started = Controller::start(o, which, &cidr, &log)?;
            wait_caught_up(&ns, &started, &label, o.services).await?;
            running = Some((which, started));
        }
        let Some((_, controller)) = running.as_ref() else {
            unreachable!("a controller was started above");
        };
        WriteCounters::start(&ns)
            .await?
            .finish(Duration::from_secs(2))
            .await;
        procfs::wait_machine_settled(SETTLED_CORES, Duration::from_secs(60)).await?;
        let (cpu_before, _) = controller.usage()?;
        let b = flip_batch(&ns, &label, &targets, batch % 2 == 1, o.rate).await?;
        let (cpu_after, _) = controller.usage()?;
        let p99 = |samples: &[f64]| {
            let mut sorted = samples.to_vec();
            sorted.sort_by(f64::total_cmp);
            percentile(&sorted, 99.0)
        };
        per_batch.push(serde_json::json!({
            "controller": which,
            "fresh": fresh,
            "floor_p99_ms": p99(&b.floor),
            "latency_p99_ms": p99(&b.latency),
        }));
        let side = flips.entry(which).or_default();
        side.add(b);
        side.cpu_s += cpu_after - cpu_before;
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
    let mut report = serde_json::json!({
        "controller": "alternating",
        "services": o.services,
        "pods_per_service": o.pods,
        "flips": targets.len(),
        "batches": o.batches,
        "rate_per_s": o.rate,
        "per_batch": per_batch,
    });
    for (which, side) in flips {
        let cpu = side.cpu_s;
        let mut summary = side.summary();
        extend(&mut summary, serde_json::json!({ "cpu_s_flips": cpu }));
        extend(&mut report, serde_json::json!({ (which): summary }));
    }
    Ok(report)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    if let Some(how) = o.fill_once {
        cache_fill_time(how).await?;
        return Ok(());
    }
    let client: Client = client().await?;
    install_crds(&client).await?;
    if o.controller == "alternating" {
        println!("{}", alternating_flips(&o, &client).await?);
        return Ok(());
    }
    let ns = TestNamespace::create(&client, &format!("bench-{}", o.controller)).await?;
    let slices: Api<EndpointSlice> = ns.api();
    let total = o.services * o.pods;
    let cidr = unique_cidr(16);
    let label = slices_of(&o.controller);

    // 1. Convergence from empty: the workload exists before the controller starts.
    let ip_of = create_workload(&ns, &o).await?;
    let log = format!("target/bench-{}-{}.log", o.controller, std::process::id());
    let started = Instant::now();
    let mut controller = Controller::start(&o, &o.controller, &cidr, &log)?;
    let converge = wait_until(
        "every Service's slices complete",
        Duration::from_secs(900),
        || async {
            controller.alive()?;
            let ready = ready_in_slices(&slices, &label, None).await?.len();
            if ready == total {
                Ok(started.elapsed())
            } else {
                Err(format!("{ready}/{total} ready endpoints in slices"))
            }
        },
    )
    .await?;
    // Let the start-up burst settle so it does not count as flip writes.
    WriteCounters::start(&ns)
        .await?
        .finish(Duration::from_secs(2))
        .await;
    // Flips start on a settled machine (the controller and the API server done digesting the
    // start-up), so two runs measure the same thing.
    let settle = Instant::now();
    let busy_before_flips =
        procfs::wait_machine_settled(SETTLED_CORES, Duration::from_secs(60)).await?;
    let settle_s = settle.elapsed();
    let (cpu_after_converge, _) = controller.usage()?;

    // 2. Isolated flips: K distinct pods taken round robin over the Services (pod 0 of every
    //    Service, then pod 1, ...), so consecutive flips concern different Services and each
    //    Service sees one flip per `services / rate` seconds: every flip is a change on its own.
    let targets = flip_targets(&o, &ip_of);
    let mut flips = Flips::default();
    let flips_start = Instant::now();
    for batch in 0..o.batches {
        let ready = batch % 2 == 1;
        flips.add(flip_batch(&ns, &label, &targets, ready, o.rate).await?);
    }
    let flips_done = flips_start.elapsed();
    let (cpu_after_flips, rss_first) = controller.usage()?;

    // 2b. Random flips: the same rate, on pods drawn at random over all Services.
    let mut draw = Draw::new(RANDOM_SEED);
    let random_targets = draw.targets(&o, &ip_of, &targets);
    let mut random = Flips::default();
    if !random_targets.is_empty() {
        for batch in 0..o.batches {
            let mut order = random_targets.clone();
            draw.shuffle(&mut order);
            let ready = batch % 2 == 1;
            random.add(flip_batch(&ns, &label, &order, ready, o.rate).await?);
        }
    }

    // 3. Restarts with nothing changed, each after a new client filled the same caches both
    //    ways, so restart and fill times are sampled alternately under the same conditions;
    //    the medians count (one start-up is a single sample of ~0.1 s at 1,000 pods).
    let counters = WriteCounters::start(&ns).await?;
    let (mut cache_list, mut cache_stream, mut cache_list_process, mut ready_after_restart) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cache_list_protobuf, mut cache_list_protobuf_process) = (Vec::new(), Vec::new());
    for _ in 0..restarts(&o) {
        cache_list.push(cache_fill_time(CacheFill::Paged).await?.as_secs_f64());
        cache_stream.push(cache_fill_time(CacheFill::Streaming).await?.as_secs_f64());
        cache_list_protobuf.push(
            cache_fill_time(CacheFill::PagedPodsProtobuf)
                .await?
                .as_secs_f64(),
        );
        cache_list_process.push(fill_in_new_process(CacheFill::Paged).await?.as_secs_f64());
        cache_list_protobuf_process.push(
            fill_in_new_process(CacheFill::PagedPodsProtobuf)
                .await?
                .as_secs_f64(),
        );
        drop(controller);
        let restarted = Instant::now();
        controller = Controller::start(&o, &o.controller, &cidr, &log)?;
        let ready = controller.wait_ready().await?.unwrap_or_else(Instant::now);
        ready_after_restart.push(ready.duration_since(restarted).as_secs_f64());
    }
    let (restart_slice_writes, restart_endpoints_writes) =
        counters.finish(Duration::from_secs(5)).await;
    let (cpu_restart, _) = controller.usage()?;

    // 4. A rollout.
    let rolled = if o.rollout > 0 && o.rollouts > 0 {
        rollouts(&ns, &label, o.rollout, o.rollouts).await?
    } else {
        Vec::new()
    };
    let (cpu_second, rss_second) = controller.usage()?;

    delete_workload(&client, ns, controller).await?;

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
        "restarts": restarts(&o),
        "cache_list_s": median(&mut cache_list),
        "cache_stream_s": median(&mut cache_stream),
        "cache_list_protobuf_s": median(&mut cache_list_protobuf),
        "cache_list_process_s": median(&mut cache_list_process),
        "cache_list_protobuf_process_s": median(&mut cache_list_protobuf_process),
        "restart_ready_s": if controller_logs_ready(&o) { serde_json::json!(median(&mut ready_after_restart)) } else { serde_json::Value::Null },
        "cache_list_samples_s": cache_list,
        "cache_stream_samples_s": cache_stream,
        "cache_list_protobuf_samples_s": cache_list_protobuf,
        "cache_list_process_samples_s": cache_list_process,
        "cache_list_protobuf_process_samples_s": cache_list_protobuf_process,
        "restart_ready_samples_s": if controller_logs_ready(&o) { serde_json::json!(ready_after_restart) } else { serde_json::Value::Null },
        "restart_slice_writes": restart_slice_writes,
        "restart_endpoints_writes": restart_endpoints_writes,
        "cpu_s_restart": cpu_restart,
    });
    extend(&mut report, flips.summary());
    if !random_targets.is_empty() {
        extend(
            &mut report,
            serde_json::json!({ "random_flips": random_targets.len() }),
        );
        extend(&mut report, prefixed("random_", random.summary()));
    }
    if !rolled.is_empty() {
        let replaced: usize = rolled.iter().map(|r| r.replaced).sum();
        let slice_writes: usize = rolled.iter().map(|r| r.slice_writes).sum();
        let endpoints_writes: usize = rolled.iter().map(|r| r.endpoints_writes).sum();
        let mut complete: Vec<f64> = rolled.iter().map(|r| r.complete_s).collect();
        let mut current: Vec<f64> = rolled.iter().map(|r| r.slices_current_s).collect();
        let current_after_complete = rolled
            .iter()
            .map(|r| r.slices_current_s - r.complete_s)
            .fold(0.0, f64::max);
        let extra = serde_json::json!({
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
            "cpu_s_rollout": (cpu_second - cpu_restart) / rolled.len() as f64,
        });
        extend(&mut report, extra);
    }
    println!("{report}");
    Ok(())
}

/// The median of `values` (sorts them).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 50.0)
}

fn controller_logs_ready(o: &Options) -> bool {
    o.controller == "signpost"
}
