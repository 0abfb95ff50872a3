//! `signpost proxy` end to end with real TCP connections, inside a network namespace the test
//! creates (`e2e/netns/up.sh`, the demo's script): the seed's `hostnames` app behind a VIP.
//!
//! Layout: the controllers run in-process in the root namespace, scoped to the test's
//! namespace. A thread of this process enters the test's network namespace and runs a tokio
//! runtime there, so every socket its tasks create lives in that namespace: the proxy (its
//! netlink socket, VIPs on `signpost0`, listeners), one HTTP server per pod on the pod's IP
//! (on `pods0`) answering with the pod's name, and the clients. The proxy's API client reaches
//! the API server through the veth pair and forwarder of `up.sh --api`. No VIP or pod address
//! is contacted from the root namespace.
//!
//! Needs root (network namespaces); without it the test says so and does nothing.
#![cfg(feature = "integration")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use common::{TIMEOUT, init_logs, scoped_settings, start_controllers};
use ipnet::IpNet;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use signpost_crds::DNSRecord;
use signpost_e2e::{
    TestNamespace, claims_in_namespace, client, create_workload, delete_namespace_and_claims,
    fixtures, install_crds, ready_pod_ips, scale_deployment, set_pod_ready, unique_cidr,
    wait_until,
};
use signpost_proxy::{self as proxy, Frontend, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How soon a backend that left the ready set must stop getting new connections.
const DROPPED_WITHIN: Duration = Duration::from_secs(1);
/// How soon a refused connection must fail (it must not hang).
const REFUSED_WITHIN: Duration = Duration::from_millis(500);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("controllers/ has a parent")
        .to_path_buf()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            // Real, effective, saved, filesystem.
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A network namespace made by `e2e/netns/up.sh --api`, and a runtime on a thread inside it.
/// Dropping it stops the runtime and runs `down.sh`.
struct Netns {
    name: String,
    kubeconfig: PathBuf,
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Netns {
    /// The namespace of test number `test` of this process (tests run side by side).
    fn create(test: u32) -> anyhow::Result<Self> {
        let name = format!("sp-proxy-{}-{test}", std::process::id());
        // 10.123.0.0/30 is the demo's; tests take another /30 from the pid and their number.
        let index = 1 + (std::process::id() * 2 + test) % 250;
        let up = repo().join("e2e/netns/up.sh");
        let _ = std::process::Command::new(repo().join("e2e/netns/down.sh"))
            .arg(&name)
            .status();
        let output = std::process::Command::new(&up)
            .args([name.as_str(), "--api", &index.to_string()])
            .output()
            .with_context(|| format!("running {}", up.display()))?;
        if !output.status.success() {
            bail!(
                "{} failed: {}",
                up.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let state = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let mut netns = Self {
            kubeconfig: Path::new(&state).join("kubeconfig"),
            name,
            jobs: None,
            thread: None,
        };
        let (jobs, mut receive) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (entered, has_entered) = std::sync::mpsc::channel();
        let path = format!("/var/run/netns/{}", netns.name);
        netns.thread = Some(std::thread::spawn(move || {
            let result = std::fs::File::open(&path)
                .map_err(|e| format!("{path}: {e}"))
                .and_then(|file| {
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| format!("setns {path}: {e}"))
                })
                .and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())
                });
            let runtime = match result {
                Ok(runtime) => {
                    let _ = entered.send(Ok(()));
                    runtime
                }
                Err(error) => {
                    let _ = entered.send(Err(error));
                    return;
                }
            };
            runtime.block_on(async move {
                while let Some(job) = receive.recv().await {
                    tokio::spawn(job);
                }
            });
        }));
        has_entered
            .recv()
            .context("the netns thread died")?
            .map_err(anyhow::Error::msg)?;
        netns.jobs = Some(jobs);
        Ok(netns)
    }

    /// Runs `future` on the runtime inside the namespace and returns its output.
    async fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::pin(async move {
            let _ = done.send(future.await);
        });
        self.jobs
            .as_ref()
            .context("netns runtime stopped")?
            .send(job)
            .map_err(|_| anyhow::anyhow!("netns runtime stopped"))?;
        result.await.context("netns job dropped")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::process::Command::new(repo().join("e2e/netns/down.sh"))
            .arg(&self.name)
            .status();
    }
}

/// An HTTP server on `ip:9376` (added to `pods0`) answering with the pod's name, as the seed's
/// serve_hostname image does. Runs inside the namespace until aborted.
async fn serve_pod(ip: IpAddr, name: String) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let pods = proxy::netlink::Interface::ensure("pods0").await?;
    pods.add(ip).await?;
    let listener = TcpListener::bind(SocketAddr::new(ip, 9376))
        .await
        .with_context(|| format!("listening on {ip}:9376"))?;
    Ok(tokio::spawn(async move {
        let _pods = pods;
        while let Ok((mut stream, _)) = listener.accept().await {
            let name = name.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{name}\n");
                let response = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    }))
}

/// `GET /` on a new connection to `addr`: the body (a pod name), or what went wrong.
async fn get(addr: SocketAddr) -> Result<String, String> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    finish(stream).await
}

/// `GET /` on an open connection: the body (a pod name), or what went wrong.
async fn finish(mut stream: TcpStream) -> Result<String, String> {
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: hostnames\r\n\r\n")
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response))
        .await
        .map_err(|_| "read: timed out".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not HTTP: {response:?}"))?;
    if !head.starts_with("HTTP/1.0 200") {
        return Err(format!("status: {head}"));
    }
    Ok(body.trim().to_string())
}

/// `n` requests, one connection each, from inside the namespace: pod name → count.
async fn requests(
    netns: &Netns,
    vip: SocketAddr,
    n: usize,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let results = netns
        .run(async move {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(get(vip).await);
            }
            out
        })
        .await?;
    let mut counts = BTreeMap::new();
    for result in results {
        match result {
            Ok(name) => *counts.entry(name).or_insert(0) += 1,
            Err(error) => bail!("a request to {vip} failed: {error}"),
        }
    }
    Ok(counts)
}

/// Sends `n` requests to `vip`, one connection each, and checks that each of the `pods` ready
/// backends answered `n / pods` ± 1 of them: round robin over the ready backends.
async fn assert_round_robin(
    netns: &Netns,
    vip: SocketAddr,
    n: usize,
    pods: usize,
) -> anyhow::Result<()> {
    let counts = requests(netns, vip, n).await?;
    println!("{n} requests over {pods} pods: {counts:?}");
    assert_eq!(counts.len(), pods, "every pod answers: {counts:?}");
    let share = n / pods;
    for (pod, got) in &counts {
        assert!(
            (share - 1..=share + 1).contains(got),
            "{pod} got {got} of {n}: {counts:?}"
        );
    }
    Ok(())
}

/// The ready pods of the app with their IPs, once there are `n` of them.
async fn ready_pods(pods: &Api<Pod>, n: usize) -> anyhow::Result<BTreeMap<String, IpAddr>> {
    wait_until(&format!("{n} ready pods with IPs"), TIMEOUT, || async {
        let ready = ready_pod_ips(pods, "app=hostnames").await?;
        if ready.len() == n {
            Ok(ready)
        } else {
            Err(format!("ready: {:?}", ready.keys().collect::<Vec<_>>()))
        }
    })
    .await
}

/// Waits until the proxy's pool for `frontend` holds exactly the backends `ips` (port 9376).
async fn wait_backends(
    running: &proxy::Running,
    frontend: &Frontend,
    ips: &BTreeSet<IpAddr>,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let want: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, 9376)).collect();
    let start = Instant::now();
    wait_until("the proxy's ready backends", timeout, || async {
        let got = running.backends(frontend);
        if got == want {
            Ok(())
        } else {
            Err(format!("backends {got:?}, want {want:?}"))
        }
    })
    .await?;
    Ok(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_round_robins_over_ready_pods_in_a_netns() -> anyhow::Result<()> {
    if !is_root() {
        println!("SKIPPED: the proxy test creates a network namespace and needs root");
        return Ok(());
    }
    run_test("proxy", None).await
}

/// ClusterIP mode without the webhook registered: the API server chooses the Service's
/// ClusterIP, outside Signpost's CIDR, so no claim names it. The DNSRecord lists that address
/// and the proxy serves it as the Service's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_serves_a_cluster_ip_signpost_did_not_choose() -> anyhow::Result<()> {
    if !is_root() {
        println!("SKIPPED: the proxy test creates a network namespace and needs root");
        return Ok(());
    }
    run_test("proxy-cluster-ip", Some(unique_cidr(24).parse()?)).await
}

/// One proxy test in a namespace named from `prefix`, with the controllers in ClusterIP mode
/// over `cluster_ip_mode` when it is given (and the ClusterIP journey), or over a CIDR of
/// their own otherwise (and the seed's journey).
async fn run_test(prefix: &str, cluster_ip_mode: Option<IpNet>) -> anyhow::Result<()> {
    init_logs("warn,signpost_proxy=info");
    let client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    let result = scenario(&client, &ns.name, cluster_ip_mode).await;
    let cleanup = delete_namespace_and_claims(&client, ns).await;
    result?;
    cleanup
}

async fn scenario(client: &Client, ns: &str, cluster_ip_mode: Option<IpNet>) -> anyhow::Result<()> {
    let settings = match cluster_ip_mode {
        Some(net) => {
            let mut settings = scoped_settings(ns, &[&net.to_string()])?;
            settings.cluster_ip_mode = true;
            settings
        }
        None => scoped_settings(ns, &[&unique_cidr(24)])?,
    };
    let (controllers, _) = start_controllers(client, settings).await?;

    let netns = Netns::create(u32::from(cluster_ip_mode.is_some()))?;
    println!(
        "netns {} (kubeconfig {})",
        netns.name,
        netns.kubeconfig.display()
    );
    let result = with_netns(client, ns, &netns, cluster_ip_mode).await;
    drop(netns);
    controllers.shut_down().await;
    result
}

async fn with_netns(
    client: &Client,
    ns: &str,
    netns: &Netns,
    cluster_ip_mode: Option<IpNet>,
) -> anyhow::Result<()> {
    let kubeconfig = netns.kubeconfig.clone();
    let namespace = ns.to_string();
    let running = netns
        .run(async move {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            let client = signpost_client::build(config)?;
            let mut config = proxy::Config::new();
            config.namespace = Some(namespace);
            config.metrics_addr = Some("127.0.0.1:0".parse()?);
            proxy::start(client, config).await
        })
        .await??;
    let started = Instant::now();
    tokio::time::timeout(TIMEOUT, running.wait_ready())
        .await
        .context("the proxy did not become ready")?;
    println!("proxy ready in {:?}", started.elapsed());
    let result = match cluster_ip_mode {
        Some(net) => cluster_ip_journey(client, ns, netns, &running, net).await,
        None => journey(client, ns, netns, &running).await,
    };
    running.shut_down().await;
    result
}

/// The seed's app in ClusterIP mode with an address Signpost did not choose (`net` is
/// Signpost's CIDR): the record lists the Service's ClusterIP, no claim names it, and the
/// proxy round-robins over the three pods behind it.
async fn cluster_ip_journey(
    client: &Client,
    ns: &str,
    netns: &Netns,
    running: &proxy::Running,
    net: IpNet,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let records: Api<DNSRecord> = Api::namespaced(client.clone(), ns);
    let service = create_workload(
        client,
        ns,
        &fixtures::hostnames_deployment(3),
        &fixtures::hostnames_service(),
    )
    .await?;
    let cluster_ips: Vec<IpAddr> = service
        .spec
        .and_then(|s| s.cluster_ips)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let vip = *cluster_ips
        .first()
        .context("the Service has no ClusterIP")?;
    assert!(!net.contains(&vip), "{vip} is outside Signpost's {net}");
    wait_until("the DNSRecord lists the ClusterIP", TIMEOUT, || async {
        let record = records
            .get_opt("hostnames")
            .await
            .map_err(|e| e.to_string())?;
        let listed: Vec<IpAddr> = record
            .iter()
            .flat_map(|r| r.spec.ipv4.iter().chain(&r.spec.ipv6))
            .filter_map(|a| a.parse().ok())
            .collect();
        if listed == cluster_ips {
            Ok(())
        } else {
            Err(format!("record {listed:?}, ClusterIPs {cluster_ips:?}"))
        }
    })
    .await?;
    let claims = claims_in_namespace(client, ns).await?;
    assert!(claims.is_empty(), "no claim: {claims:?}");
    println!("ClusterIP {vip} (Signpost's CIDR {net}), in the DNSRecord, no claim");

    let mut servers = Vec::new();
    let three = ready_pods(&pods, 3).await?;
    for (name, ip) in &three {
        servers.push(netns.run(serve_pod(*ip, name.clone())).await??);
    }
    let frontend = Frontend {
        addr: SocketAddr::new(vip, 80),
        protocol: Protocol::Tcp,
    };
    let ips: BTreeSet<IpAddr> = three.values().copied().collect();
    wait_backends(running, &frontend, &ips, TIMEOUT).await?;
    assert_round_robin(netns, frontend.addr, 30, 3).await?;
    for server in servers {
        server.abort();
    }
    Ok(())
}

async fn journey(
    client: &Client,
    ns: &str,
    netns: &Netns,
    running: &proxy::Running,
) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let records: Api<DNSRecord> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    create_workload(
        client,
        ns,
        &fixtures::hostnames_deployment(3),
        &fixtures::hostnames_service(),
    )
    .await?;

    let vip: IpAddr = wait_until("the DNSRecord's VIP", TIMEOUT, || async {
        let record = records
            .get_opt("hostnames")
            .await
            .map_err(|e| e.to_string())?;
        record
            .as_ref()
            .and_then(|r| r.spec.ipv4.first())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("record: {:?}", record.map(|r| r.spec)))
    })
    .await?;
    let frontend = Frontend {
        addr: SocketAddr::new(vip, 80),
        protocol: Protocol::Tcp,
    };
    println!("VIP {vip}");

    // Three pods, each served on its IP inside the namespace.
    let mut servers = Vec::new();
    let three = ready_pods(&pods, 3).await?;
    for (name, ip) in &three {
        servers.push(netns.run(serve_pod(*ip, name.clone())).await??);
    }
    let ips: BTreeSet<IpAddr> = three.values().copied().collect();
    wait_backends(running, &frontend, &ips, TIMEOUT).await?;

    // 300 requests, one connection each: 100 ± 1 per pod.
    assert_round_robin(netns, frontend.addr, 300, 3).await?;

    // Three connections opened now (one per pod, round robin) and finished only after a pod
    // left the ready set: open connections are left to finish.
    let (go, wait_go) = tokio::sync::oneshot::channel::<()>();
    let (done, held) = tokio::sync::oneshot::channel::<Vec<Result<String, String>>>();
    let vip_addr = frontend.addr;
    netns
        .run(async move {
            let mut streams = Vec::new();
            for _ in 0..3 {
                streams.push(TcpStream::connect(vip_addr).await);
            }
            // Finished later, on the namespace's runtime (the sockets belong to it).
            tokio::spawn(async move {
                let _ = wait_go.await;
                let mut names = Vec::new();
                for stream in streams {
                    names.push(match stream {
                        Ok(stream) => finish(stream).await,
                        Err(e) => Err(format!("connect: {e}")),
                    });
                }
                let _ = done.send(names);
            });
        })
        .await?;
    wait_until("3 open connections through the proxy", TIMEOUT, || async {
        let text = running.metrics.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("signpost_proxy_active_connections{"))
            .unwrap_or("no active connections");
        if line.ends_with(" 3") {
            Ok(())
        } else {
            Err(line.to_string())
        }
    })
    .await?;

    // One pod fails its readiness probe: no new connection within 1 s of its slice update.
    let (gone, gone_ip) = three.iter().next().map(|(n, ip)| (n.clone(), *ip)).unwrap();
    set_pod_ready(&pods, &gone, false).await?;
    wait_until("the slice to mark the pod not ready", TIMEOUT, || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=hostnames"))
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .find(|e| e.addresses.first() == Some(&gone_ip.to_string()))
            .and_then(|e| e.conditions.as_ref()?.ready);
        if ready == Some(false) {
            Ok(())
        } else {
            Err(format!("ready of {gone_ip}: {ready:?}"))
        }
    })
    .await?;
    let remaining: BTreeSet<IpAddr> = ips.iter().copied().filter(|ip| *ip != gone_ip).collect();
    let took = wait_backends(running, &frontend, &remaining, DROPPED_WITHIN).await?;
    println!("{gone} left the proxy's pool {took:?} after its slice update was seen");
    let counts = requests(netns, frontend.addr, 100).await?;
    println!("100 requests after {gone} went not ready: {counts:?}");
    assert_eq!(counts.get(&gone), None, "{gone} is not ready: {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 100);
    let _ = go.send(());
    let finished: BTreeSet<String> = held
        .await?
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    println!("connections opened before {gone} went not ready finished: {finished:?}");
    assert!(finished.contains(&gone), "{finished:?}");
    assert_eq!(finished.len(), 3);

    // No ready backend at all: connections are refused at once, not parked.
    for name in three.keys().filter(|n| **n != gone) {
        set_pod_ready(&pods, name, false).await?;
    }
    wait_backends(running, &frontend, &BTreeSet::new(), TIMEOUT).await?;
    let refused = wait_until("a refused connection", TIMEOUT, || async {
        let start = Instant::now();
        let result = netns.run(get(vip_addr)).await.map_err(|e| e.to_string())?;
        match result {
            Err(error) if start.elapsed() < REFUSED_WITHIN => Ok((error, start.elapsed())),
            other => Err(format!("{other:?} after {:?}", start.elapsed())),
        }
    })
    .await?;
    println!("no ready backend: {} after {:?}", refused.0, refused.1);
    for name in three.keys() {
        set_pod_ready(&pods, name, true).await?;
    }

    // Scale 3 → 5: all five receive traffic.
    scale_deployment(&deployments, "hostnames", 5).await?;
    let five = ready_pods(&pods, 5).await?;
    for (name, ip) in five.iter().filter(|(n, _)| !three.contains_key(*n)) {
        servers.push(netns.run(serve_pod(*ip, name.clone())).await??);
    }
    let ips: BTreeSet<IpAddr> = five.values().copied().collect();
    wait_backends(running, &frontend, &ips, TIMEOUT).await?;
    assert_round_robin(netns, frontend.addr, 100, 5).await?;

    // The Service goes: its VIP leaves the interface and connections are refused.
    services
        .delete("hostnames", &DeleteParams::default())
        .await?;
    let deleted = Instant::now();
    wait_until("the VIP to leave signpost0", TIMEOUT, || async {
        let on = netns
            .run(async move {
                let interface = proxy::netlink::Interface::ensure("signpost0").await?;
                interface.addresses().await
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:#}"))?;
        if on.contains(&vip) {
            Err(format!("signpost0 still has {on:?}"))
        } else {
            Ok(())
        }
    })
    .await?;
    println!(
        "VIP gone from signpost0 {:?} after the Service was deleted",
        deleted.elapsed()
    );
    let start = Instant::now();
    let after = netns.run(get(vip_addr)).await?;
    let took = start.elapsed();
    println!("connection to the deleted Service's VIP: {after:?} after {took:?}");
    assert!(after.is_err(), "the VIP still answers: {after:?}");
    assert!(took < REFUSED_WITHIN, "refusal took {took:?}");

    for server in servers {
        server.abort();
    }
    Ok(())
}
