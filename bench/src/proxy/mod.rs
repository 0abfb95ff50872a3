//! The proxy benchmark's load generator (`e2e/bench/proxy.sh`): what `signpost proxy` adds
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

mod backends;
mod connections;
mod cpu;
mod options;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use signpost_crds::DNSRecord;
use signpost_e2e::{client, fixtures, wait_ready_pods_by_name, wait_record_ipv4, wait_until};
use tokio::runtime::Handle;

use backends::serve;
use connections::{Path, latency, one, throughput};
use cpu::{cpu_report, cpu_snapshot};
use options::{Options, options};

const APP: &str = "proxybench";
const POD_PORT: u16 = 9376;
const SERVICE_PORT: u16 = 80;
const PODS: usize = 3;
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Any single connection that takes longer than this counts as an error.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: proxybench\r\n\r\n";

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
    bail!("run proxy_bench inside the benchmark's network namespace (bench/scripts/proxy.sh)")
}

/// The load generator, as the `proxy_bench` binary runs it: setup, then `--rounds` rounds,
/// one JSON line each on stdout.
pub fn main() -> anyhow::Result<()> {
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
    let (vip, backends) = setup(&client, &o, &servers).await?;
    for round in 1..=o.rounds {
        let line = run_round(&o, round, &backends, vip).await?;
        println!("{line}");
    }
    Ok(())
}

/// Creates the Deployment and the Service, serves every pod on its address, and waits until
/// the proxy hands VIP connections to all of them; prints the `setup` line and returns the
/// VIP and the pods' addresses.
async fn setup(
    client: &Client,
    o: &Options,
    servers: &Handle,
) -> anyhow::Result<(SocketAddr, Vec<SocketAddr>)> {
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
    let vip = wait_record_ipv4(&records, APP, SETUP_TIMEOUT).await?;
    let vip = SocketAddr::new(vip, SERVICE_PORT);

    let ready = wait_ready_pods_by_name(&pods, &format!("app={APP}"), PODS, SETUP_TIMEOUT).await?;
    let mut backends = Vec::new();
    for (index, ip) in ready.values().enumerate() {
        serve(servers, *ip, index).await?;
        backends.push(SocketAddr::new(*ip, POD_PORT));
    }
    wait_every_backend(&backends, vip).await?;
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
    Ok((vip, backends))
}

/// Every pod answers directly, and the proxy hands VIP connections to all of them (its pool
/// is complete): PODS consecutive connections through the VIP reach PODS backends.
async fn wait_every_backend(backends: &[SocketAddr], vip: SocketAddr) -> anyhow::Result<()> {
    for addr in backends {
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
    .await
}

/// One round: latency over both paths, then throughput of each (the order swapped every
/// round), with the round's CPU seconds; returns the round's JSON line.
async fn run_round(
    o: &Options,
    round: usize,
    backends: &[SocketAddr],
    vip: SocketAddr,
) -> anyhow::Result<serde_json::Value> {
    eprintln!(
        "proxy_bench: round {round}/{}: latency, {} connections per path",
        o.rounds, o.connections
    );
    let round_started = Instant::now();
    let cpu_before = cpu_snapshot(o)?;
    let latency = latency(o, backends, vip).await;
    let order = if round % 2 == 1 {
        [Path::Direct, Path::Proxied]
    } else {
        [Path::Proxied, Path::Direct]
    };
    let mut results = BTreeMap::new();
    for path in order {
        eprintln!(
            "proxy_bench: round {round}/{}: throughput {}, {} clients for {} s",
            o.rounds,
            path.name(),
            o.clients,
            o.seconds
        );
        results.insert(path.name(), throughput(o, path, backends, vip).await);
    }
    let cpu_after = cpu_snapshot(o)?;
    let cpu = cpu_report(o, &cpu_before, &cpu_after, round_started.elapsed());
    Ok(json!({
        "kind": "round",
        "cpu": cpu,
        "round": round,
        "latency": latency,
        "throughput": {
            "clients": o.clients,
            "seconds": o.seconds,
            "order": order.map(Path::name),
            "direct": results["direct"],
            "proxied": results["proxied"],
        },
    }))
}
