//! Test support for Signpost's integration and end-to-end tests.
//!
//! Everything here talks to the real cluster named by `KUBECONFIG` (the local control plane,
//! or kind in CI elsewhere). Each test works in a namespace of its own so tests run in
//! parallel; waits are on conditions with a deadline, and a timed-out wait reports what it saw
//! last.

pub mod fixtures;
pub mod process;
pub mod procfs;
pub mod stateful;
pub mod watch;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// A client for the cluster named by `KUBECONFIG`.
pub async fn client() -> anyhow::Result<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!("KUBECONFIG is not set: run the cluster tests with `just test`");
    }
    let config = kube::Config::infer()
        .await
        .context("reading the kubeconfig named by KUBECONFIG")?;
    signpost_client::build(config).context("building a client for the cluster named by KUBECONFIG")
}

/// A name no other test run uses: `<prefix>-<pid and counter in base 36>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}",
        base36(u64::from(std::process::id()) << 32 | u64::from(nanos ^ n))
    )
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A namespace created for one test.
pub struct TestNamespace {
    /// Its name.
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>`.
    pub async fn create(client: &Client, prefix: &str) -> anyhow::Result<Self> {
        let name = unique_name(prefix);
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"signpost.dev/test": "true"}}
        }))?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            name,
            client: client.clone(),
        })
    }

    /// An API for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates `object` in this namespace and returns it as stored: the one-line create that
    /// most steps of a test are.
    pub async fn create_object<K>(&self, object: &K) -> anyhow::Result<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let name = kube::ResourceExt::name_any(object);
        self.api::<K>()
            .create(&PostParams::default(), object)
            .await
            .with_context(|| format!("creating {name} in {}", self.name))
    }

    /// A Deployment of `replicas` pods labelled `app=<name>` (container port 8080) and a
    /// ClusterIP Service selecting them on port 80: the usual workload behind a Service.
    /// Returns the Service as stored.
    pub async fn create_app(&self, name: &str, replicas: i32) -> anyhow::Result<Service> {
        let deployment = fixtures::app_deployment(name, replicas, 8080);
        self.create_workload(&deployment, &fixtures::app_service(name, 80, 8080))
            .await
    }

    /// The first seed's `hostnames` app in this namespace: `replicas` pods and their Service.
    /// Returns the Service as stored.
    pub async fn create_hostnames(&self, replicas: i32) -> anyhow::Result<Service> {
        let deployment = fixtures::hostnames_deployment(replicas);
        self.create_workload(&deployment, &fixtures::hostnames_service())
            .await
    }

    /// [`create_workload`] in this namespace.
    pub async fn create_workload(
        &self,
        deployment: &Deployment,
        service: &Service,
    ) -> anyhow::Result<Service> {
        create_workload(&self.client, &self.name, deployment, service).await
    }

    /// Deletes the namespace (and so everything in it); does not wait.
    pub async fn delete(self) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.delete(&self.name, &DeleteParams::default()).await?;
        Ok(())
    }
}

/// Sets the replica count of Deployment `name`, as `kubectl scale` would.
pub async fn scale_deployment(
    deployments: &Api<Deployment>,
    name: &str,
    replicas: i32,
) -> anyhow::Result<()> {
    let replicas_spec = serde_json::json!({"replicas": replicas});
    merge_spec(deployments, name, replicas_spec, || {
        format!("scaling Deployment {name} to {replicas}")
    })
    .await
}

/// Merges `selector` into the selector of Service `name` (`null` removes the selector), as
/// `kubectl patch --type merge` would.
pub async fn set_selector(
    services: &Api<Service>,
    name: &str,
    selector: serde_json::Value,
) -> anyhow::Result<()> {
    let selector_spec = serde_json::json!({"selector": selector});
    merge_spec(services, name, selector_spec, || {
        format!("setting the selector of Service {name}")
    })
    .await
}

/// Merges `spec` into the spec of object `name`, as `kubectl patch --type merge` would; `what`
/// says what the change is when it fails.
async fn merge_spec<K>(
    api: &Api<K>,
    name: &str,
    spec: serde_json::Value,
    what: impl FnOnce() -> String,
) -> anyhow::Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = Patch::Merge(serde_json::json!({"spec": spec}));
    api.patch(name, &PatchParams::default(), &patch)
        .await
        .with_context(what)?;
    Ok(())
}

/// Creates `deployment` and then `service` in `namespace`: a workload and the Service in front
/// of it, the shape of most tests. Returns the Service as the API server stored it (its IP
/// families filled in).
pub async fn create_workload(
    client: &Client,
    namespace: &str,
    deployment: &Deployment,
    service: &Service,
) -> anyhow::Result<Service> {
    create_in(client, namespace, deployment).await?;
    create_in(client, namespace, service).await
}

/// Creates all of `objects` through `api` at once (every request in flight together), as a
/// burst of users would; returns them as stored, in order, or the first error.
pub async fn create_all_at_once<K>(
    api: &Api<K>,
    objects: impl IntoIterator<Item = K>,
) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let creates = objects
        .into_iter()
        .map(|object| async move { api.create(&PostParams::default(), &object).await });
    futures::future::try_join_all(creates).await
}

/// Creates `object` in `namespace` and returns it as stored; a failure names the object.
async fn create_in<K>(client: &Client, namespace: &str, object: &K) -> anyhow::Result<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), object)
        .await
        .with_context(|| {
            format!(
                "creating {} {namespace}/{}",
                K::kind(&()),
                object.meta().name.as_deref().unwrap_or_default()
            )
        })
}

/// Polls `probe` until it returns `Ok(value)`, or fails after `timeout` with the last
/// `Err(what was seen)`. The probe reads the API; it is a condition, not a timer.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    wait_until_every(what, timeout, Duration::from_millis(50), probe).await
}

/// Polls `count` (a read of the API) until it returns `want`; a timeout shows the last count
/// followed by `unit` ("3 claims left"). The most common wait: a number of objects reached.
pub async fn wait_for_count<F, Fut>(
    what: &str,
    timeout: Duration,
    want: usize,
    unit: &str,
    count: F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<usize, String>>,
{
    wait_until(what, timeout, || {
        let counted = count();
        async move {
            let n = counted.await?;
            if n == want {
                Ok(())
            } else {
                Err(format!("{n} {unit}"))
            }
        }
    })
    .await
}

/// Object `name` of `api`, for a [`wait_until`] probe: a reason to keep waiting when the read
/// fails or the object does not exist yet.
pub async fn present<K>(api: &Api<K>, name: &str) -> Result<K, String>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no {} {name} yet", K::kind(&())))
}

/// Makes a pod ready or not ready the way a readiness probe would, by setting its `Ready` and
/// `ContainersReady` conditions through the status subresource (kwok leaves them as set).
pub async fn set_pod_ready(pods: &Api<Pod>, name: &str, ready: bool) -> anyhow::Result<()> {
    let status = if ready { "True" } else { "False" };
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": status, "lastTransitionTime": now},
        {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
    ]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .with_context(|| format!("setting pod {name} ready={ready}"))?;
    Ok(())
}

/// The ready pods matching `selector` that are not being deleted, by name, with their IPs: what
/// an endpoints controller should publish. One read; wrap it in [`wait_until`] to wait for a count.
pub async fn ready_pod_ips(
    pods: &Api<Pod>,
    selector: &str,
) -> Result<std::collections::BTreeMap<String, std::net::IpAddr>, String> {
    let list = pods
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_is_ready(p))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            Some((p.metadata.name.clone()?, ip))
        })
        .collect())
}

/// Waits until exactly `n` pods matching `selector` are ready, and returns them: the
/// scheduler and kwok make a test's pods ready, and a test about Signpost starts from there.
pub async fn wait_ready_pods(
    pods: &Api<Pod>,
    selector: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Pod>> {
    wait_for_ready(pods, selector, n, timeout, Some, "ready").await
}

/// Like [`wait_ready_pods`], but waits for `n` ready pods that have an IP and returns the IPs:
/// what a test compares with the addresses Signpost publishes.
pub async fn wait_ready_pod_ips(
    pods: &Api<Pod>,
    selector: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let ip = |pod: Pod| pod.status?.pod_ip;
    wait_for_ready(pods, selector, n, timeout, ip, "ready with IPs").await
}

/// Waits until `pick` takes something from exactly `n` of the ready pods matching `selector`;
/// a timeout says how many `counted` there were.
async fn wait_for_ready<T>(
    pods: &Api<Pod>,
    selector: &str,
    n: usize,
    timeout: Duration,
    pick: impl Fn(Pod) -> Option<T>,
    counted: &str,
) -> anyhow::Result<Vec<T>> {
    wait_until(&format!("{n} ready pods ({selector})"), timeout, || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await
            .map_err(|e| e.to_string())?;
        let picked: Vec<T> = list
            .items
            .into_iter()
            .filter(pod_is_ready)
            .filter_map(&pick)
            .collect();
        if picked.len() == n {
            Ok(picked)
        } else {
            Err(format!("{} {counted}", picked.len()))
        }
    })
    .await
}

/// Whether a pod's `Ready` condition is `True`.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The Events (events.k8s.io/v1) about object `name` in `namespace` with `reason`.
pub async fn events_about(
    client: &Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<Vec<k8s_openapi::api::events::v1::Event>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&kube::api::ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect())
}

/// Waits until at least one Event `reason` about object `name` in `namespace` exists, and
/// returns them: how a test sees that a controller told the user about a problem.
pub async fn wait_events(
    client: &Client,
    namespace: &str,
    name: &str,
    reason: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<k8s_openapi::api::events::v1::Event>> {
    wait_until(&format!("{reason} Event on {name}"), timeout, || async {
        let events = events_about(client, namespace, name, reason)
            .await
            .map_err(|e| e.to_string())?;
        if events.is_empty() {
            Err("no Event yet".to_string())
        } else {
            Ok(events)
        }
    })
    .await
}

/// Installs (server-side apply) Signpost's CRDs and waits until the API serves them. Safe to
/// call from every test: applying the same CRDs again changes nothing.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("signpost-tests").force();
    for crd in signpost_crds::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        wait_until(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || async {
                let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
                if established {
                    Ok(())
                } else {
                    Err("not established".into())
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// A private IPv4 CIDR of the given prefix length (16 to 29) under 10.128.0.0/9 that no
/// other test run is likely to use: ServiceIP claims are cluster-wide, so tests that run side
/// by side (or after a failed run left claims behind) must not share address ranges.
pub fn unique_cidr(prefix_len: u8) -> String {
    assert!(
        (16..=29).contains(&prefix_len),
        "prefix length {prefix_len} out of 16..=29"
    );
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 20)
        ^ u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64, to spread the seed over every bit.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let host_bits = 32 - u32::from(prefix_len);
    let network = (0x0a80_0000u32 | (z as u32 & 0x007f_ffff)) >> host_bits << host_bits;
    format!("{}/{prefix_len}", std::net::Ipv4Addr::from(network))
}

/// Deletes a test namespace and waits until no ServiceIP claims a Service of it any more, so a
/// test's addresses never outlive it (call it while the test's controllers still run).
/// The Services go first and the namespace only once their claims are released: the namespace
/// controller may take its time over the rest, and a test's leader-election Lease lives in the
/// namespace, so a leader could lose its lease (and stop) before its Services were deleted.
pub async fn delete_namespace_and_claims(client: &Client, ns: TestNamespace) -> anyhow::Result<()> {
    delete_namespace_and_claims_within(client, ns, Duration::from_secs(60)).await
}

/// [`delete_namespace_and_claims`] with a deadline of its own for the claims' release, for
/// namespaces of many Services (a benchmark's).
pub async fn delete_namespace_and_claims_within(
    client: &Client,
    ns: TestNamespace,
    timeout: Duration,
) -> anyhow::Result<()> {
    let name = ns.name.clone();
    let services: Api<Service> = ns.api();
    services
        .delete_collection(&DeleteParams::default(), &kube::api::ListParams::default())
        .await?;
    let claims: Api<signpost_crds::ServiceIP> = Api::all(client.clone());
    let selector = format!("{SERVICE_NAMESPACE_LABEL}={name}");
    wait_for_count(
        "claims of the namespace's deleted Services released",
        timeout,
        0,
        "claims left",
        || async {
            let listed = claims
                .list_metadata(&kube::api::ListParams::default().labels(&selector))
                .await
                .map_err(|e| e.to_string())?;
            Ok(listed.items.len())
        },
    )
    .await?;
    ns.delete().await
}

/// Label every ServiceIP claim carries with its Service's namespace: how a test finds the
/// claims of its own namespace among the cluster-wide claims of every test.
pub const SERVICE_NAMESPACE_LABEL: &str = "signpost.dev/service-namespace";

/// Label selector of the EndpointSlices Signpost's endpoints controller manages (not a
/// mirror's), with its default `--endpointslice-managed-by kubernetes`.
pub const SIGNPOST_SLICES: &str =
    "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io";

/// A unique-local IPv6 /64 (`fd00:xxxx:xxxx:xxxx::/64`) no other test run is likely to use, for
/// dual-stack tests: the IPv6 counterpart of [`unique_cidr`], for the same reason (claims are
/// cluster-wide).
pub fn unique_cidr_v6() -> String {
    // Spread the bits of a fresh IPv4 CIDR (already unique per call) over the 48 free bits.
    let v4: std::net::Ipv4Addr = unique_cidr(24)
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let bits = (u64::from(u32::from(v4)) << 16) ^ u64::from(nanos & 0xffff);
    format!(
        "fd00:{:x}:{:x}:{:x}::/64",
        (bits >> 32) & 0xffff,
        (bits >> 16) & 0xffff,
        bits & 0xffff
    )
}

/// Like [`wait_until`], but polls every `every`: for probes that list thousands of objects,
/// where polling every 50 ms would load the API server the test is measuring.
pub async fn wait_until_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last_seen = match probe().await {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last_seen}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Every ServiceIP claim held for a Service of namespace `namespace`.
pub async fn claims_in_namespace(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<Vec<signpost_crds::ServiceIP>> {
    let api: Api<signpost_crds::ServiceIP> = Api::all(client.clone());
    let selector = format!("{SERVICE_NAMESPACE_LABEL}={namespace}");
    Ok(api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Waits until the DNSRecord `name` (read through `records`) has an IPv4 address and returns
/// it: the VIP a Service was given, as the reference consumers learn it.
pub async fn wait_record_ipv4(
    records: &Api<signpost_crds::DNSRecord>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<std::net::IpAddr> {
    wait_until("the DNSRecord's VIP", timeout, || async {
        let record = records.get_opt(name).await.map_err(|e| e.to_string())?;
        record
            .as_ref()
            .and_then(|r| r.spec.ipv4.first())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("record: {:?}", record.map(|r| r.spec)))
    })
    .await
}

/// Waits until exactly `n` pods matching `selector` are ready with IPs and returns them by
/// name: the pods a test or benchmark serves on their own addresses.
pub async fn wait_ready_pods_by_name(
    pods: &Api<Pod>,
    selector: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<std::collections::BTreeMap<String, std::net::IpAddr>> {
    wait_until(&format!("{n} ready pods with IPs"), timeout, || async {
        let ready = ready_pod_ips(pods, selector).await?;
        if ready.len() == n {
            Ok(ready)
        } else {
            Err(format!("ready: {:?}", ready.keys().collect::<Vec<_>>()))
        }
    })
    .await
}
