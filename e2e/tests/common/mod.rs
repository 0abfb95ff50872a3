//! Shared checks of the end-to-end suite. Every invariant is read from the API (Services,
//! Pods, ServiceIP claims, EndpointSlices, Endpoints, DNSRecords), never from a process's log,
//! because the API is what downstream consumers see.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

mod waits;
pub use waits::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use signpost_crds::{DNSRecord, RecordType, ServiceIP};
use signpost_e2e::process::{READY_LINE, Signpost, SignpostOptions};
use signpost_e2e::watch::list_version;
use signpost_e2e::{
    SERVICE_NAMESPACE_LABEL, SIGNPOST_SLICES, TestNamespace, claims_in_namespace,
    delete_namespace_and_claims, install_crds, pod_is_ready, unique_cidr, wait_until,
    wait_until_every,
};

/// The most addresses an Endpoints object lists (as in Kubernetes).
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

/// The annotation an Endpoints object carries when it lists only some of the pods.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// How long a single convergence may take in this suite. Generous because the suite's tests
/// run in parallel with a 5,000-pod test on a small machine; the measured times are printed.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// How long to wait for a DNSRecord: short enough that a missing records controller costs
/// one timeout per check, long enough for a loaded machine.
pub const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected client, the CRDs installed and a fresh namespace.
pub async fn setup(prefix: &str) -> anyhow::Result<(Client, TestNamespace)> {
    let client = signpost_e2e::client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    Ok((client, ns))
}

/// Starts a Signpost process scoped to `ns` over `cidrs` and waits until it leads with synced
/// caches.
pub async fn start_leader(
    name: &str,
    ns: &TestNamespace,
    cidrs: &[String],
) -> anyhow::Result<Signpost> {
    start_leading(scoped_options(name, ns, cidrs)).await
}

/// The options of a Signpost process `name` scoped to `ns` over `cidrs`, with a log of its own
/// (see [`log_name`]).
pub fn scoped_options(name: &str, ns: &TestNamespace, cidrs: &[String]) -> SignpostOptions {
    SignpostOptions::new(&log_name(name, &ns.name), &ns.name, cidrs)
}

/// A fresh namespace `e2e-<name>` and a Signpost process (logging as `name`) leading over a
/// /24 no other test uses: how a test of one process starts.
pub async fn setup_leading(name: &str) -> anyhow::Result<(Client, TestNamespace, Signpost)> {
    let (client, ns) = setup(&format!("e2e-{name}")).await?;
    let signpost = start_leader(name, &ns, &[unique_cidr(24)]).await?;
    Ok((client, ns, signpost))
}

/// Starts a process with `options` and waits until it leads with synced caches.
pub async fn start_leading(options: SignpostOptions) -> anyhow::Result<Signpost> {
    let t0 = Instant::now();
    let mut process = Signpost::start(options).await?;
    process.wait_leading(CONVERGE).await?;
    // The leader also says so in its log, once (operators and the benchmark read that line).
    wait_until(
        "the leader's ready line in its log",
        Duration::from_secs(10),
        || async {
            match process.log_since_start().matches(READY_LINE).count() {
                1 => Ok(()),
                n => Err(format!(
                    "{n} new ready lines; log tail:\n{}",
                    process.log_tail(5)
                )),
            }
        },
    )
    .await?;
    println!(
        "[{}] signpost pid {} leading with synced caches {:?} after spawn (log {})",
        process.options.name,
        process.pid(),
        t0.elapsed(),
        process.log_path.display()
    );
    Ok(process)
}

/// A log name unique to the test namespace, so parallel and repeated runs do not share logs.
pub fn log_name(name: &str, namespace: &str) -> String {
    format!("{namespace}-{name}")
}

/// Ends a test: deletes its namespace and waits until every claim of it is released (while
/// Signpost still runs, so it is the one releasing them), then stops each process with
/// SIGTERM and checks that it exits cleanly.
pub async fn finish(
    client: &Client,
    ns: TestNamespace,
    processes: Vec<Signpost>,
) -> anyhow::Result<()> {
    delete_namespace_and_claims(client, ns).await?;
    for process in processes {
        let name = process.options.name.clone();
        let log = process.log_path.clone();
        let status = process.terminate().await?;
        anyhow::ensure!(
            status.success(),
            "signpost {name} exited with {status} after SIGTERM; last lines of {}:\n{}",
            log.display(),
            signpost_e2e::process::log_tail(&log, 30)
        );
    }
    Ok(())
}

/// Collects failed checks that should not stop a scenario, so one missing feature (e.g.
/// DNSRecords before the records controller lands) does not hide the results of every later
/// step. The test fails at the end with all of them.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    /// Records `result` under `what` if it failed, printing it at once.
    pub fn check<T>(&mut self, what: &str, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                println!("CHECK FAILED: {what}: {error:#}");
                self.0.push(format!("{what}: {error:#}"));
                None
            }
        }
    }

    /// [`Failures::check`], and on success prints `done` with the time since `since`: how a
    /// journey reports how long each step took to show up.
    pub fn check_after<T>(
        &mut self,
        what: &str,
        result: anyhow::Result<T>,
        done: &str,
        since: Instant,
    ) -> Option<T> {
        let value = self.check(what, result)?;
        println!("{done} {:?} after creation", since.elapsed());
        Some(value)
    }

    /// Fails with every recorded failure, or succeeds when there was none.
    pub fn finish(self) -> anyhow::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "{} check(s) failed:\n- {}",
                self.0.len(),
                self.0.join("\n- ")
            )
        }
    }
}

/// The addresses each Service of the namespace holds, when the claims are consistent:
/// - every Service with a VIP (not headless, not ExternalName) holds exactly one claim per IP
///   family it asks for that Signpost has a CIDR of, and others hold none;
/// - no address is held twice, and each claim's name is its address;
/// - no claim names a Service UID that does not exist (a claim without a live Service);
/// - every address lies inside one of `cidrs`.
///
/// `Err` describes the first inconsistencies seen, for [`wait_until`].
pub async fn check_claims(
    client: &Client,
    namespace: &str,
    cidrs: &[IpNet],
) -> Result<BTreeMap<String, Vec<IpAddr>>, String> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let services = services
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let claims = claims_in_namespace(client, namespace)
        .await
        .map_err(|e| e.to_string())?;
    claim_problems(&services, &claims, cidrs)
}

/// Waits until the claims of the namespace are consistent ([`check_claims`]) and `service`
/// holds its VIPs; returns them, one per family.
pub async fn wait_vips(
    client: &Client,
    namespace: &str,
    cidrs: &[IpNet],
    service: &str,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<IpAddr>> {
    wait_until(what, timeout, || async {
        let claims = check_claims(client, namespace, cidrs).await?;
        claims
            .get(service)
            .cloned()
            .ok_or_else(|| format!("no claim of {service}"))
    })
    .await
}

fn claim_problems(
    services: &[Service],
    claims: &[ServiceIP],
    cidrs: &[IpNet],
) -> Result<BTreeMap<String, Vec<IpAddr>>, String> {
    let mut problems = Vec::new();
    let live: BTreeMap<String, &Service> = services
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter_map(|s| Some((s.uid()?, s)))
        .collect();
    let mut by_service: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for claim in claims {
        let Ok(address) = claim.spec.address.parse::<IpAddr>() else {
            problems.push(format!(
                "claim {} has address {:?}",
                claim.name_any(),
                claim.spec.address
            ));
            continue;
        };
        if !seen.insert(address) {
            problems.push(format!("{address} held twice"));
        }
        if signpost_crds::address_of_claim(&claim.name_any()) != Some(address) {
            problems.push(format!("claim {} holds {address}", claim.name_any()));
        }
        if !cidrs.iter().any(|c| c.contains(&address)) {
            problems.push(format!("{address} outside {cidrs:?}"));
        }
        match live.get(&claim.spec.service_ref.uid) {
            Some(service) if service.name_any() == claim.spec.service_ref.name => {
                by_service
                    .entry(service.name_any())
                    .or_default()
                    .push(address);
            }
            _ => problems.push(format!(
                "claim {address} names {}/{} uid {} which is not a live Service",
                claim.spec.service_ref.namespace,
                claim.spec.service_ref.name,
                claim.spec.service_ref.uid
            )),
        }
    }
    for service in live.values() {
        let name = service.name_any();
        let mut held = by_service.get(&name).cloned().unwrap_or_default();
        held.sort();
        let want = wanted_families(service, cidrs);
        let have: Vec<&str> = held
            .iter()
            .map(|a| if a.is_ipv4() { "IPv4" } else { "IPv6" })
            .collect();
        if have != want {
            problems.push(format!("{name}: holds {held:?}, wants {want:?}"));
        }
    }
    if problems.is_empty() {
        Ok(by_service)
    } else {
        let n = problems.len();
        problems.truncate(5);
        Err(format!("{n} problem(s), e.g. {}", problems.join("; ")))
    }
}

/// The families (sorted IPv4 first) a Service should hold a VIP of.
fn wanted_families(service: &Service, cidrs: &[IpNet]) -> Vec<&'static str> {
    let Some(spec) = service.spec.as_ref() else {
        return vec![];
    };
    if spec.type_.as_deref() == Some("ExternalName") || spec.cluster_ip.as_deref() == Some("None") {
        return vec![];
    }
    let mut families: Vec<&str> = spec
        .ip_families
        .clone()
        .unwrap_or_else(|| vec!["IPv4".into()])
        .iter()
        .map(|f| if f == "IPv6" { "IPv6" } else { "IPv4" })
        .collect();
    if spec.ip_family_policy.as_deref().unwrap_or("SingleStack") == "SingleStack" {
        families.truncate(1);
    }
    families.retain(|f| {
        cidrs
            .iter()
            .any(|c| matches!((f, c), (&"IPv4", IpNet::V4(_)) | (&"IPv6", IpNet::V6(_))))
    });
    families.sort();
    families
}

/// Signpost's EndpointSlices of Service `service`.
pub async fn slices_of(
    slices: &Api<EndpointSlice>,
    service: &str,
) -> Result<Vec<EndpointSlice>, String> {
    slices
        .list(&ListParams::default().labels(&format!(
            "{SIGNPOST_SLICES},kubernetes.io/service-name={service}"
        )))
        .await
        .map(|l| l.items)
        .map_err(|e| e.to_string())
}

/// Address → ready of every endpoint in `slices`.
pub fn slice_readiness(slices: &[EndpointSlice]) -> BTreeMap<String, bool> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .flat_map(|e| {
            let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
            e.addresses.iter().map(move |a| (a.clone(), ready))
        })
        .collect()
}

/// How many endpoints a slice holds.
pub fn endpoint_count(slice: &EndpointSlice) -> usize {
    slice.endpoints.as_ref().map_or(0, Vec::len)
}

/// `(ready, not ready)` addresses of an Endpoints object.
pub fn endpoints_addresses(ep: &Endpoints) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for subset in ep.subsets.iter().flatten() {
        ready.extend(subset.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| a.ip.clone()),
        );
    }
    (ready, not_ready)
}

/// What a converged Service's endpoints look like, for printing.
#[derive(Debug)]
pub struct EndpointsSeen {
    /// Ready addresses.
    pub ready: usize,
    /// Not-ready addresses.
    pub not_ready: usize,
    /// Signpost's slices of the Service.
    pub slices: usize,
}

/// Whether the EndpointSlices and the Endpoints of Service `service` match its pods as the API
/// reports them now: every pod selected by `selector` that is running with an IPv4 address
/// appears exactly once across the slices, with `ready` equal to the pod's Ready condition; no
/// other address appears; no slice holds more than `max_per_slice` endpoints; Endpoints lists
/// the ready pods as addresses and the others as not-ready addresses (beyond 1000 pods: 1000
/// of them, annotated `over-capacity: truncated`). While a pod is
/// terminating the answer is `Err` (its place in Endpoints is transitional).
pub async fn endpoints_match_pods(
    client: &Client,
    namespace: &str,
    service: &str,
    selector: &str,
    max_per_slice: usize,
) -> Result<EndpointsSeen, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    let pods = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| e.to_string())?
        .items;
    let terminating = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .count();
    if terminating > 0 {
        return Err(format!("{terminating} pods terminating"));
    }
    let mut want: BTreeMap<String, bool> = BTreeMap::new();
    for pod in &pods {
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        if matches!(phase, "Succeeded" | "Failed") {
            continue;
        }
        if let Some(ip) = status
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.contains(':'))
        {
            want.insert(ip, pod_is_ready(pod));
        }
    }
    let list = slices_of(&slices, service).await?;
    let v4: Vec<EndpointSlice> = list
        .iter()
        .filter(|s| s.address_type == "IPv4")
        .cloned()
        .collect();
    let total: usize = v4.iter().map(endpoint_count).sum();
    let have = slice_readiness(&v4);
    if total != have.len() {
        return Err(format!(
            "{total} endpoints but {} distinct addresses across slices",
            have.len()
        ));
    }
    if let Some(full) = v4.iter().find(|s| endpoint_count(s) > max_per_slice) {
        return Err(format!(
            "slice {} has {} endpoints (limit {max_per_slice})",
            full.name_any(),
            endpoint_count(full)
        ));
    }
    if have != want {
        let missing = want.keys().filter(|a| !have.contains_key(*a)).count();
        let extra = have.keys().filter(|a| !want.contains_key(*a)).count();
        let wrong = want
            .iter()
            .filter(|(a, r)| have.get(*a).is_some_and(|h| h != *r))
            .count();
        return Err(format!(
            "slices: {missing} pods missing, {extra} stale addresses, {wrong} with the wrong readiness ({} pods, {} slices)",
            want.len(),
            v4.len()
        ));
    }
    let ep = endpoints
        .get_opt(service)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no Endpoints object yet")?;
    if ep
        .labels()
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        != Some("signpost")
    {
        // Signpost leaves such an object alone by design: say who wrote it, since on a shared
        // cluster that is usually another controller (e.g. kube-controller-manager's
        // endpoints controller turned on for a benchmark), not a Signpost bug.
        return Err(format!(
            "Endpoints {service} was not written by Signpost (labels {:?}, managers {:?})",
            ep.labels(),
            ep.metadata
                .managed_fields
                .iter()
                .flatten()
                .filter_map(|m| m.manager.clone())
                .collect::<Vec<_>>()
        ));
    }
    let (ready, not_ready) = endpoints_addresses(&ep);
    let want_ready: BTreeSet<String> = want
        .iter()
        .filter(|(_, r)| **r)
        .map(|(a, _)| a.clone())
        .collect();
    let want_not_ready: BTreeSet<String> = want
        .iter()
        .filter(|(_, r)| !**r)
        .map(|(a, _)| a.clone())
        .collect();
    if want.len() > MAX_ENDPOINTS_ADDRESSES {
        // Endpoints holds a subset of at most 1000 and says so.
        let truncated =
            ep.annotations().get(OVER_CAPACITY).map(String::as_str) == Some("truncated");
        let listed = ready.len() + not_ready.len();
        if !truncated
            || listed != MAX_ENDPOINTS_ADDRESSES
            || !ready.is_subset(&want_ready)
            || !not_ready.is_subset(&want_not_ready)
        {
            return Err(format!(
                "{} pods: Endpoints lists {listed} (want {MAX_ENDPOINTS_ADDRESSES} of them), annotation {OVER_CAPACITY}={:?}",
                want.len(),
                ep.annotations().get(OVER_CAPACITY)
            ));
        }
    } else if ready != want_ready || not_ready != want_not_ready {
        return Err(format!(
            "Endpoints has {} ready / {} not ready, pods {} ready / {} not ready",
            ready.len(),
            not_ready.len(),
            want_ready.len(),
            want_not_ready.len()
        ));
    }
    Ok(EndpointsSeen {
        ready: want_ready.len(),
        not_ready: want_not_ready.len(),
        slices: list.len(),
    })
}

/// Waits until a Deployment has `replicas` pods, all updated and ready (reads the Deployment
/// only, so it stays cheap for thousands of pods).
pub async fn wait_deployment_ready(
    deployments: &Api<Deployment>,
    name: &str,
    replicas: i32,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    wait_until_every(
        &format!("Deployment {name}: {replicas} ready replicas"),
        timeout,
        Duration::from_millis(if replicas > 100 { 1000 } else { 100 }),
        || async {
            let d = deployments.get(name).await.map_err(|e| e.to_string())?;
            let status = d.status.unwrap_or_default();
            let seen = (
                status.replicas.unwrap_or(0),
                status.updated_replicas.unwrap_or(0),
                status.ready_replicas.unwrap_or(0),
            );
            if seen == (replicas, replicas, replicas) {
                Ok(())
            } else {
                Err(format!(
                    "replicas/updated/ready = {}/{}/{}",
                    seen.0, seen.1, seen.2
                ))
            }
        },
    )
    .await?;
    Ok(t0.elapsed())
}

/// Waits until the DNSRecord `name` exists and `check` accepts it.
pub async fn wait_record(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    check: impl Fn(&DNSRecord) -> Result<(), String>,
) -> anyhow::Result<DNSRecord> {
    let records: Api<DNSRecord> = Api::namespaced(client.clone(), namespace);
    wait_until(
        &format!("DNSRecord {namespace}/{name}: {what}"),
        RECORD_TIMEOUT,
        || async {
            let record = records
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "no DNSRecord (records controller not running?)".to_string())?;
            check(&record).map_err(|e| format!("{e}; spec {:?}", record.spec))?;
            Ok(record)
        },
    )
    .await
}

/// Waits until the DNSRecord of Service `name` has `fqdn`, `record_type` and exactly the A
/// records `ipv4` (in any order): the check every journey makes of a Service's record.
pub async fn wait_record_of(
    client: &Client,
    namespace: &str,
    name: &str,
    fqdn: &str,
    record_type: RecordType,
    ipv4: &[String],
) -> anyhow::Result<DNSRecord> {
    let mut want = ipv4.to_vec();
    want.sort();
    let what = format!("{record_type:?} record {fqdn} → {want:?}");
    wait_record(client, namespace, name, &what, |r| {
        let mut have = r.spec.ipv4.clone();
        have.sort();
        if r.spec.fqdn == fqdn && r.spec.record_type == record_type && have == want {
            Ok(())
        } else {
            Err(format!("want {what}"))
        }
    })
    .await
}

/// Asserts that no Service in `names` gains a claim for `quiet`: lists first, then watches the
/// namespace's claims for the whole period. A negative check has no condition to wait on; a
/// quiet period that starts after the positive parts of the scenario converged is the
/// strongest check there is.
pub async fn no_claims_during(
    client: &Client,
    namespace: &str,
    names: &[&str],
    quiet: Duration,
) -> anyhow::Result<()> {
    let api: Api<ServiceIP> = Api::all(client.clone());
    let selector = format!("{SERVICE_NAMESPACE_LABEL}={namespace}");
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let held: Vec<String> = list
        .items
        .iter()
        .filter(|c| names.contains(&c.spec.service_ref.name.as_str()))
        .map(|c| format!("{} → {}", c.spec.service_ref.name, c.spec.address))
        .collect();
    anyhow::ensure!(held.is_empty(), "claims exist: {held:?}");
    let version = list.metadata.resource_version.unwrap_or_default();
    let params = WatchParams::default()
        .labels(&selector)
        .timeout(quiet.as_secs().max(1) as u32);
    let stream = api.watch(&params, &version).await?;
    futures::pin_mut!(stream);
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, stream.try_next()).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Err(error)) => return Err(error.into()),
            Ok(Ok(Some(WatchEvent::Added(claim)))) => {
                anyhow::ensure!(
                    !names.contains(&claim.spec.service_ref.name.as_str()),
                    "{} got claim {} during the quiet period",
                    claim.spec.service_ref.name,
                    claim.spec.address
                );
            }
            Ok(Ok(Some(_))) => {}
        }
    }
}

/// Fails unless [`writes_during`] a 2 s quiet period counts none: converged, Signpost writes
/// nothing more. `tag` starts the line it prints, `why` the failure.
pub async fn assert_quiet(
    client: &Client,
    namespace: &str,
    tag: &str,
    why: &str,
) -> anyhow::Result<()> {
    let writes = writes_during(client, namespace, Duration::from_secs(2)).await?;
    println!("[{tag}] writes to slices/Endpoints in a 2 s quiet period: {writes}");
    assert_eq!(writes, 0, "{why}");
    Ok(())
}

/// Counts the writes (ADDED, MODIFIED, DELETED) to Signpost's slices and to Endpoints in a
/// namespace during `quiet`: a converged controller writes nothing when nothing changes.
pub async fn writes_during(
    client: &Client,
    namespace: &str,
    quiet: Duration,
) -> anyhow::Result<usize> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    let sv = list_version(&slices, &ListParams::default().labels(SIGNPOST_SLICES)).await?;
    let ev = list_version(&endpoints, &ListParams::default()).await?;
    let secs = quiet.as_secs().max(1) as u32;
    let a = slices
        .watch(
            &WatchParams::default().labels(SIGNPOST_SLICES).timeout(secs),
            &sv,
        )
        .await?
        .filter_map(|e| std::future::ready(describe_write(e, "EndpointSlice")))
        .boxed();
    let b = endpoints
        .watch(&WatchParams::default().timeout(secs), &ev)
        .await?
        .filter_map(|e| std::future::ready(describe_write(e, "Endpoints")))
        .boxed();
    let mut merged = futures::stream::select(a, b);
    let deadline = tokio::time::Instant::now() + quiet;
    let mut writes = 0;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, merged.next()).await {
        println!("write during the quiet period: {}", event?);
        writes += 1;
    }
    Ok(writes)
}

/// `Some(description)` of a watch event that is a write (not a bookmark).
fn describe_write<K: kube::Resource>(
    event: Result<WatchEvent<K>, kube::Error>,
    kind: &str,
) -> Option<Result<String, kube::Error>> {
    match event {
        Ok(WatchEvent::Added(o)) => Some(Ok(format!("ADDED {kind} {}", o.name_any()))),
        Ok(WatchEvent::Modified(o)) => Some(Ok(format!("MODIFIED {kind} {}", o.name_any()))),
        Ok(WatchEvent::Deleted(o)) => Some(Ok(format!("DELETED {kind} {}", o.name_any()))),
        Ok(WatchEvent::Bookmark(_)) => None,
        Ok(WatchEvent::Error(e)) => Some(Ok(format!("watch error on {kind}: {e:?}"))),
        Err(error) => Some(Err(error)),
    }
}

/// The pod IPs of the pods matching `selector` that are ready.
pub async fn ready_pod_ips(pods: &Api<Pod>, selector: &str) -> anyhow::Result<BTreeSet<String>> {
    Ok(pods
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .iter()
        .filter(|p| pod_is_ready(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect())
}

/// Sorted strings of addresses, for comparing with DNSRecord lists.
pub fn sorted(addresses: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    let mut out: Vec<String> = addresses.into_iter().map(|a| a.to_string()).collect();
    out.sort();
    out
}

/// Sorts a DNSRecord address list (records may order addresses their own way).
pub fn sorted_list(list: &[String]) -> Vec<String> {
    let mut out = list.to_vec();
    out.sort();
    out
}

/// Parses CIDR strings.
pub fn nets(cidrs: &[String]) -> Vec<IpNet> {
    cidrs
        .iter()
        .map(|c| c.parse().expect("test CIDRs are valid"))
        .collect()
}
