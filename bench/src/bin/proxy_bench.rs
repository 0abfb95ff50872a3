//! Load generator for the proxy benchmark (`e2e/bench/proxy.sh`): what `signpost proxy` adds
//! to a TCP connection, next to a direct connection to the pod.
//!
//! Runs INSIDE the network namespace the script creates (`ip netns exec`), with that
//! namespace's kubeconfig, next to `signpost run` and `signpost proxy` scoped to `--namespace`.
//! It creates a Deployment of 3 kwok pods and a ClusterIP Service (port 80 → 9376), adds each
//! pod's IP to the namespace's `pods0` interface and serves a short fixed HTTP answer there
//! (`backend-<i>`, same length for every pod; the servers run on a tokio runtime of their own,
//! the clients on another), waits until the proxy sends connections for the
//! VIP to all three, then, per round:
//!
//! - latency: one connection at a time (connect, one small request, read the whole answer,
//!   close), `--connections` per path after `--warmup` per path, in blocks of `--block`
//!   alternating between direct (pod IP:9376, the three pods in turn) and proxied (VIP:80),
//!   the block order swapped every block;
//! - throughput: `--clients` concurrent clients, each doing the same connections in a loop for
//!   `--seconds`, once direct and once through the VIP (order swapped every round).
//!
//! Each round also reports CPU seconds: its own, those of the processes named by `--cpu-of
//! name=pid` (the proxy, say), and the whole machine's (from `/proc/stat`), so what other
//! processes took during the round is known.
//!
//! Prints one JSON object per line on stdout: a `setup` line, then one line per round.
//! Usage: `proxy_bench --namespace <ns> [--rounds 2] [--connections 10000] [--warmup 500]
//! [--block 100] [--clients 16] [--seconds 5] [--cpu-of proxy=<pid>]...`

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use signpost_crds::DNSRecord;
use signpost_e2e::procfs::{clock_ticks, machine_ticks, process_ticks};
use signpost_e2e::{client, fixtures, ready_pod_ips, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

const APP: &str = "proxybench";
const POD_PORT: u16 = 9376;
const SERVICE_PORT: u16 = 80;
const PODS: usize = 3;
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Any single connection that takes longer than this counts as an error.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: proxybench\r\n\r\n";

struct Options {
    namespace: String,
    rounds: usize,
    connections: usize,
    warmup: usize,
    block: usize,
    clients: usize,
    seconds: f64,
    /// Processes whose CPU time is reported per round (`name=pid`).
    pids: Vec<(String, u32)>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        namespace: String::new(),
        rounds: 2,
        connections: 10000,
        warmup: 500,
        block: 100,
        clients: 16,
        seconds: 5.0,
        pids: Vec::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args
            .get(i + 1)
            .cloned()
            .with_context(|| format!("{} needs a value", args[i]))?;
        match args[i].as_str() {
            "--namespace" => o.namespace = value,
            "--rounds" => o.rounds = value.parse().context("--rounds")?,
            "--connections" => o.connections = value.parse().context("--connections")?,
            "--warmup" => o.warmup = value.parse().context("--warmup")?,
            "--block" => o.block = value.parse().context("--block")?,
            "--clients" => o.clients = value.parse().context("--clients")?,
            "--seconds" => o.seconds = value.parse().context("--seconds")?,
            "--cpu-of" => {
                let (name, pid) = value.split_once('=').context("--cpu-of takes name=pid")?;
                o.pids
                    .push((name.to_string(), pid.parse().context("--cpu-of pid")?));
            }
            other => bail!("unknown flag {other}"),
        }
        i += 2;
    }
    if o.namespace.is_empty() {
        bail!("--namespace is required (the namespace signpost run and signpost proxy watch)");
    }
    if o.rounds == 0 || o.connections == 0 || o.block == 0 || o.clients == 0 || o.seconds <= 0.0 {
        bail!("--rounds, --connections, --block, --clients and --seconds must be positive");
    }
    Ok(o)
}

/// The fixed answer of backend `index`: the same length for every backend, so the proxied and
/// direct paths move the same bytes whoever answers.
fn response(index: usize) -> Vec<u8> {
    let body = format!("backend-{index}\n");
    format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Adds `ip` to `pods0` (made by `e2e/netns/up.sh`); an address already there is fine.
fn add_pod_address(ip: IpAddr) -> anyhow::Result<()> {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    let output = std::process::Command::new("ip")
        .args(["addr", "add", &format!("{ip}/{prefix}"), "dev", "pods0"])
        .output()
        .context("running ip addr add (is this inside the benchmark's network namespace?)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && !stderr.contains("File exists") {
        bail!("ip addr add {ip} dev pods0: {}", stderr.trim());
    }
    Ok(())
}

/// A server on `ip:9376` answering every request with `response(index)` and closing, on the
/// `servers` runtime (its own threads, as a pod is not in its client's process).
async fn serve(servers: &Handle, ip: IpAddr, index: usize) -> anyhow::Result<()> {
    add_pod_address(ip)?;
    // Bound on the servers' runtime, so its sockets belong to that runtime's reactor.
    let listener = servers
        .spawn(TcpListener::bind(SocketAddr::new(ip, POD_PORT)))
        .await?
        .with_context(|| format!("listening on {ip}:{POD_PORT}"))?;
    let answer: Arc<[u8]> = response(index).into();
    servers.spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: give the clients a moment to close some.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = Vec::with_capacity(64);
                let mut buf = [0u8; 256];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(())
}

/// One connection: connect, send the request, read the answer to EOF, close. Returns the time
/// all of that took and the backend that answered.
async fn one(addr: SocketAddr) -> Result<(Duration, usize), String> {
    let start = Instant::now();
    let answer = tokio::time::timeout(CONNECTION_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .write_all(REQUEST)
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut answer = Vec::with_capacity(128);
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        drop(stream);
        Ok::<_, String>(answer)
    })
    .await
    .map_err(|_| format!("{addr}: no answer within {CONNECTION_TIMEOUT:?}"))??;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let backend = text
        .starts_with("HTTP/1.0 200 OK\r\n")
        .then(|| text.rsplit_once("\r\n\r\nbackend-"))
        .flatten()
        .and_then(|(_, index)| index.trim_end().parse().ok())
        .ok_or_else(|| format!("{addr}: unexpected answer {text:?}"))?;
    Ok((took, backend))
}

/// Latency samples of one path (microseconds), and what went wrong.
#[derive(Default)]
struct Samples {
    micros: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
    per_backend: BTreeMap<usize, usize>,
}

impl Samples {
    fn record(&mut self, result: Result<(Duration, usize), String>) {
        match result {
            Ok((took, backend)) => {
                self.micros.push(took.as_secs_f64() * 1e6);
                *self.per_backend.entry(backend).or_insert(0) += 1;
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        for (backend, n) in other.per_backend {
            *self.per_backend.entry(backend).or_insert(0) += n;
        }
    }

    fn summary(&mut self) -> serde_json::Value {
        self.micros.sort_by(f64::total_cmp);
        let mean = if self.micros.is_empty() {
            f64::NAN
        } else {
            self.micros.iter().sum::<f64>() / self.micros.len() as f64
        };
        json!({
            "ok": self.micros.len(),
            "errors": self.errors,
            "first_error": self.first_error,
            "p50_us": percentile(&self.micros, 50.0),
            "p90_us": percentile(&self.micros, 90.0),
            "p99_us": percentile(&self.micros, 99.0),
            "mean_us": mean,
            "per_backend": self.per_backend.values().collect::<Vec<_>>(),
        })
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Direct,
    Proxied,
}

/// The address of the `i`-th connection of a path: the pods in turn, or the VIP.
fn target(path: Path, i: usize, pods: &[SocketAddr], vip: SocketAddr) -> SocketAddr {
    match path {
        Path::Direct => pods[i % pods.len()],
        Path::Proxied => vip,
    }
}

/// Sequential connections, direct and proxied in alternating blocks.
async fn latency(o: &Options, pods: &[SocketAddr], vip: SocketAddr) -> serde_json::Value {
    let mut direct = Samples::default();
    let mut proxied = Samples::default();
    // Warm-up: both paths, not recorded.
    let mut ignored = Samples::default();
    for i in 0..o.warmup {
        ignored.record(one(target(Path::Direct, i, pods, vip)).await);
        ignored.record(one(target(Path::Proxied, i, pods, vip)).await);
    }
    let mut done = [0usize; 2];
    let mut block = 0;
    while done[0] < o.connections || done[1] < o.connections {
        let order = if block % 2 == 0 {
            [Path::Direct, Path::Proxied]
        } else {
            [Path::Proxied, Path::Direct]
        };
        for path in order {
            let slot = usize::from(path == Path::Proxied);
            let n = o.block.min(o.connections - done[slot]);
            for _ in 0..n {
                let result = one(target(path, done[slot], pods, vip)).await;
                match path {
                    Path::Direct => direct.record(result),
                    Path::Proxied => proxied.record(result),
                }
                done[slot] += 1;
            }
        }
        block += 1;
    }
    json!({
        "connections": o.connections,
        "warmup": o.warmup,
        "block": o.block,
        "warmup_errors": ignored.errors,
        "direct": direct.summary(),
        "proxied": proxied.summary(),
    })
}

/// `clients` concurrent clients in a closed loop for `seconds`: connections per second.
async fn throughput(
    o: &Options,
    path: Path,
    pods: &[SocketAddr],
    vip: SocketAddr,
) -> serde_json::Value {
    let pods: Arc<[SocketAddr]> = pods.into();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.seconds);
    let mut tasks = Vec::with_capacity(o.clients);
    for client in 0..o.clients {
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut i = client;
            while Instant::now() < deadline {
                samples.record(one(target(path, i, &pods, vip)).await);
                i += 1;
            }
            samples
        }));
    }
    let mut all = Samples::default();
    for task in tasks {
        if let Ok(samples) = task.await {
            all.merge(samples);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = all.micros.len();
    let mut summary = all.summary();
    summary["seconds"] = json!(elapsed);
    summary["per_second"] = json!(ok as f64 / elapsed);
    summary["clients"] = json!(o.clients);
    summary
}

/// The ready pods of the app with their IPs, once there are `PODS` of them.
async fn ready_pods(pods: &Api<Pod>) -> anyhow::Result<BTreeMap<String, IpAddr>> {
    wait_until(
        &format!("{PODS} ready pods with IPs"),
        SETUP_TIMEOUT,
        || async {
            let ready = ready_pod_ips(pods, &format!("app={APP}")).await?;
            if ready.len() == PODS {
                Ok(ready)
            } else {
                Err(format!("ready: {:?}", ready.keys().collect::<Vec<_>>()))
            }
        },
    )
    .await
}

/// CPU ticks at one moment: the machine's, this process's and each `--cpu-of` process's.
struct CpuSnapshot {
    machine: [u64; 3],
    this: u64,
    others: Vec<u64>,
}

fn cpu_snapshot(o: &Options) -> anyhow::Result<CpuSnapshot> {
    let others = o
        .pids
        .iter()
        .map(|(_, pid)| process_ticks(&pid.to_string()))
        .collect::<anyhow::Result<_>>()?;
    Ok(CpuSnapshot {
        machine: machine_ticks()?,
        this: process_ticks("self")?,
        others,
    })
}

/// CPU seconds between two snapshots, and what the rest of the machine used.
fn cpu_report(
    o: &Options,
    before: &CpuSnapshot,
    after: &CpuSnapshot,
    wall: Duration,
) -> serde_json::Value {
    let hz = clock_ticks();
    let seconds = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
    let [all_processes, interrupts, steal] =
        [0, 1, 2].map(|i| seconds(before.machine[i], after.machine[i]));
    let bench = seconds(before.this, after.this);
    let mut processes = serde_json::Map::new();
    let mut accounted = bench;
    for (i, (name, _)) in o.pids.iter().enumerate() {
        let used = seconds(before.others[i], after.others[i]);
        accounted += used;
        processes.insert(name.clone(), json!(used));
    }
    processes.insert("load_generator".into(), json!(bench));
    json!({
        "wall_seconds": wall.as_secs_f64(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "machine_process_seconds": all_processes,
        "irq_softirq_seconds": interrupts,
        "steal_seconds": steal,
        "processes": processes,
        // A process's own time includes the interrupt work done while it ran (the loopback
        // traffic's softirqs), which /proc/stat counts under irq + softirq instead.
        "other_seconds": (all_processes + interrupts - accounted).max(0.0),
    })
}

/// Refuses to run outside a named network namespace (`ip netns`): pod IPs and VIPs are only
/// ever contacted inside the benchmark's netns. Returns that namespace's name.
fn check_netns() -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
    let named = std::fs::read_dir("/var/run/netns").into_iter().flatten();
    for entry in named.flatten() {
        if let Ok(ns) = std::fs::metadata(entry.path())
            && (ns.dev(), ns.ino()) == (own.dev(), own.ino())
        {
            return Ok(entry.file_name().to_string_lossy().into_owned());
        }
    }
    bail!("run proxy_bench inside the benchmark's network namespace (e2e/bench/proxy.sh)")
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    let netns = check_netns()?;
    eprintln!("proxy_bench: in network namespace {netns}");
    // Pod servers and clients on separate runtimes (2 threads each): a direct connection
    // crosses threads as a proxied one does, never a task hand-off inside one worker.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pod-servers")
        .enable_all()
        .build()?;
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clients")
        .enable_all()
        .build()?;
    let result = clients.block_on(bench(o, servers.handle().clone()));
    clients.shutdown_background();
    servers.shutdown_background();
    result
}

async fn bench(o: Options, servers: Handle) -> anyhow::Result<()> {
    let client = client().await?;
    let started = Instant::now();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &o.namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &o.namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &o.namespace);
    let records: Api<DNSRecord> = Api::namespaced(client.clone(), &o.namespace);
    deployments
        .create(
            &PostParams::default(),
            &fixtures::app_deployment(APP, PODS as i32, i32::from(POD_PORT)),
        )
        .await
        .context("creating the Deployment")?;
    services
        .create(
            &PostParams::default(),
            &fixtures::app_service(APP, i32::from(SERVICE_PORT), i32::from(POD_PORT)),
        )
        .await
        .context("creating the Service")?;

    let vip: IpAddr = wait_until("the DNSRecord's VIP", SETUP_TIMEOUT, || async {
        let record = records.get_opt(APP).await.map_err(|e| e.to_string())?;
        record
            .as_ref()
            .and_then(|r| r.spec.ipv4.first())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("record: {:?}", record.map(|r| r.spec)))
    })
    .await?;
    let vip = SocketAddr::new(vip, SERVICE_PORT);

    let ready = ready_pods(&pods).await?;
    let mut backends = Vec::new();
    for (index, ip) in ready.values().enumerate() {
        serve(&servers, *ip, index).await?;
        backends.push(SocketAddr::new(*ip, POD_PORT));
    }
    // Every pod answers directly, and the proxy hands VIP connections to all three (its pool
    // is complete): PODS consecutive connections through the VIP reach PODS backends.
    for addr in &backends {
        one(*addr)
            .await
            .map_err(anyhow::Error::msg)
            .context("a direct connection to a pod")?;
    }
    wait_until(
        "the VIP to reach every pod through the proxy",
        SETUP_TIMEOUT,
        || async {
            let mut seen = BTreeSet::new();
            for _ in 0..PODS {
                seen.insert(one(vip).await?.1);
            }
            if seen.len() == PODS {
                Ok(())
            } else {
                Err(format!("backends answering: {seen:?}"))
            }
        },
    )
    .await?;
    let setup_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "proxy_bench: VIP {vip}, pods {backends:?}; ready {setup_seconds:.1} s after the Service was created"
    );
    println!(
        "{}",
        json!({
            "kind": "setup",
            "vip": vip.to_string(),
            "pods": backends.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "setup_seconds": setup_seconds,
        })
    );

    for round in 1..=o.rounds {
        eprintln!(
            "proxy_bench: round {round}/{}: latency, {} connections per path",
            o.rounds, o.connections
        );
        let round_started = Instant::now();
        let cpu_before = cpu_snapshot(&o)?;
        let latency = latency(&o, &backends, vip).await;
        let order = if round % 2 == 1 {
            [Path::Direct, Path::Proxied]
        } else {
            [Path::Proxied, Path::Direct]
        };
        let mut results = BTreeMap::new();
        for path in order {
            let name = match path {
                Path::Direct => "direct",
                Path::Proxied => "proxied",
            };
            eprintln!(
                "proxy_bench: round {round}/{}: throughput {name}, {} clients for {} s",
                o.rounds, o.clients, o.seconds
            );
            results.insert(name, throughput(&o, path, &backends, vip).await);
        }
        let cpu_after = cpu_snapshot(&o)?;
        let cpu = cpu_report(&o, &cpu_before, &cpu_after, round_started.elapsed());
        println!(
            "{}",
            json!({
                "kind": "round",
                "cpu": cpu,
                "round": round,
                "latency": latency,
                "throughput": {
                    "clients": o.clients,
                    "seconds": o.seconds,
                    "order": order.map(|p| if p == Path::Direct { "direct" } else { "proxied" }),
                    "direct": results["direct"],
                    "proxied": results["proxied"],
                },
            })
        );
    }
    Ok(())
}
