//! Feeds the table from four watches: DNSRecords (the VIPs), ServiceIP claims (which Service
//! each VIP belongs to), Services (the port numbers, and their own ClusterIPs, which belong to
//! them as a claim does) and EndpointSlices (the ready backends).
//! Endpoints (v1) are never read.
//!
//! Each handler turns the object into the table's plain input (the pure `*_of` functions
//! below) and applies it under the table's lock at once, so a backend that leaves the ready
//! set stops receiving new connections as soon as its slice update arrives. Changes that need
//! the data plane to act (a VIP or a frontend appearing or going) wake it through a `Notify`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use signpost_crds::{DNSRecord, RecordType, ServiceIP};
use tokio::sync::Notify;

use super::table::{Claim, Protocol, ServiceKey, ServicePort, Slice, Table};
use signpost_core::records::cluster_ips;
use signpost_runtime::{Change, Informer, strip_metadata};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The VIPs of a DNSRecord, when it is of type ClusterIP (`None` otherwise: headless and
/// ExternalName Services have nothing to proxy). Addresses that do not parse are skipped.
pub fn record_vips(record: &DNSRecord) -> Option<Vec<IpAddr>> {
    if record.spec.record_type != RecordType::ClusterIP {
        return None;
    }
    Some(
        record
            .spec
            .ipv4
            .iter()
            .chain(&record.spec.ipv6)
            .filter_map(|text| text.parse().ok())
            .collect(),
    )
}

/// The VIP a ServiceIP claim holds and the Service it gives it to (`None` when the address
/// does not parse, which the CRD's validation already refuses).
pub fn claim_of(claim: &ServiceIP) -> Option<(IpAddr, Claim)> {
    let vip = claim.spec.address.parse().ok()?;
    let service = &claim.spec.service_ref;
    Some((
        vip,
        Claim {
            service: (service.namespace.clone(), service.name.clone()),
            uid: service.uid.clone(),
        },
    ))
}

/// The ports of a Service. Ports outside 1–65535 or with an unknown protocol are skipped.
pub fn service_ports(service: &Service) -> Vec<ServicePort> {
    let ports = service.spec.as_ref().and_then(|spec| spec.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|port| {
            Some(ServicePort {
                name: port.name.clone().unwrap_or_default(),
                port: u16::try_from(port.port).ok().filter(|p| *p != 0)?,
                protocol: Protocol::parse(port.protocol.as_deref())?,
            })
        })
        .collect()
}

/// The Service an EndpointSlice belongs to (from its `kubernetes.io/service-name` label), its
/// name, and what the proxy needs from it (`None` for FQDN slices, which carry no IPs).
pub fn slice_of(slice: &EndpointSlice) -> Option<(ServiceKey, String, Option<Slice>)> {
    let service = slice.labels().get(SERVICE_NAME_LABEL)?.clone();
    let key = (slice.namespace().unwrap_or_default(), service);
    let ipv6 = match slice.address_type.as_str() {
        "IPv4" => false,
        "IPv6" => true,
        _ => return Some((key, slice.name_any(), None)),
    };
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            Some((
                port.name.clone().unwrap_or_default(),
                u16::try_from(port.port?).ok().filter(|p| *p != 0)?,
                Protocol::parse(port.protocol.as_deref())?,
            ))
        })
        .collect();
    let ready = slice
        .endpoints
        .iter()
        .flatten()
        // `ready` unset means unknown, which consumers treat as ready.
        .filter(|endpoint| {
            endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true)
        })
        .filter_map(|endpoint| endpoint.addresses.first()?.parse().ok())
        .collect();
    Some((key, slice.name_any(), Some(Slice { ipv6, ports, ready })))
}

fn key_of<K: ResourceExt>(obj: &K) -> ServiceKey {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Feeds one watch change to `apply(object, gone)`: an added or updated object as present, a
/// deleted one as gone, and a completed relist as every object that disappeared across it
/// gone and every cached one present. The four handlers differ only in what they apply.
fn fold_change<K>(
    change: &Change<'_, K>,
    store: &kube::runtime::reflector::Store<K>,
    mut apply: impl FnMut(&K, bool),
) where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    match change {
        Change::Applied { new, .. } => apply(new, false),
        Change::Deleted(object) => apply(object, true),
        Change::Relisting => {}
        Change::Resynced { removed } => {
            for object in removed {
                apply(object, true);
            }
            for object in store.state() {
                apply(&object, false);
            }
        }
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// What the four watches share: where they read from and the table they feed, which they
/// wake the data plane about.
pub struct Feed<'a> {
    /// The API client the informers watch through.
    pub client: &'a Client,
    /// The one namespace watched, or all of them (claims are cluster-scoped: always all).
    pub namespace: Option<&'a str>,
    /// The table every change is applied to.
    pub table: Arc<Mutex<Table>>,
    /// Woken when a change needs the data plane to act.
    pub notify: Arc<Notify>,
}

impl Feed<'_> {
    /// Informer over DNSRecords: the VIPs.
    pub fn records(&self) -> Informer<DNSRecord> {
        let api = api(self.client, self.namespace);
        let apply = |table: &mut Table, record: &DNSRecord, gone: bool| {
            let vips = if gone { None } else { record_vips(record) };
            table.set_record(&key_of(record), vips)
        };
        self.informer(api, Default::default(), strip_metadata, never_moves, apply)
    }

    /// Informer over ServiceIP claims (cluster-scoped, all of them): which Service each VIP
    /// was allocated to. Only the allocator writes them, so they, not the DNSRecords that
    /// anyone with write access to a namespace can publish, decide whose EndpointSlices a VIP
    /// leads to.
    pub fn claims(&self) -> Informer<ServiceIP> {
        let api = Api::all(self.client.clone());
        let apply = |table: &mut Table, claim: &ServiceIP, gone: bool| {
            let Some((vip, data)) = claim_of(claim) else {
                return false;
            };
            table.set_claim(vip, if gone { None } else { Some(data) })
        };
        self.informer(api, Default::default(), strip_metadata, never_moves, apply)
    }

    /// Informer over Services: the port numbers behind the names the slices use, the UIDs
    /// the VIPs' claims are checked against, and the Services' own ClusterIPs, which are
    /// theirs whoever chose them.
    pub fn services(&self) -> Informer<Service> {
        let api = api(self.client, self.namespace);
        let apply = |table: &mut Table, service: &Service, gone: bool| {
            let key = key_of(service);
            if gone {
                let ports = table.set_service(&key, None);
                let ips = table.set_service_cluster_ips(&key, None);
                table.set_service_uid(&key, None) | ports | ips
            } else {
                let uid = table.set_service_uid(&key, service.uid());
                let ips = table.set_service_cluster_ips(&key, Some(cluster_ips(service)));
                table.set_service(&key, Some(service_ports(service))) | uid | ips
            }
        };
        self.informer(api, Default::default(), strip_service, never_moves, apply)
    }

    /// Informer over the EndpointSlices that belong to a Service: the ready backends. A slice
    /// relabelled to another Service leaves the old one.
    pub fn slices(&self) -> Informer<EndpointSlice> {
        let api = api(self.client, self.namespace);
        let config = watcher::Config::default().labels(SERVICE_NAME_LABEL);
        let moved = |old: &EndpointSlice, new: &EndpointSlice| {
            old.labels().get(SERVICE_NAME_LABEL) != new.labels().get(SERVICE_NAME_LABEL)
        };
        let apply = |table: &mut Table, slice: &EndpointSlice, gone: bool| {
            let Some((service, name, data)) = slice_of(slice) else {
                return false;
            };
            table.set_slice(&service, &name, if gone { None } else { data })
        };
        self.informer(api, config, strip_metadata, moved, apply)
    }

    /// An informer whose every change is applied to the table under its lock, waking the data
    /// plane when anything changed: the four watches differ only in their objects and in
    /// `apply(table, object, gone)`, which says whether the table changed. An update for which
    /// `moved(old, new)` holds first applies the old object as gone.
    fn informer<K>(
        &self,
        api: Api<K>,
        config: watcher::Config,
        strip: fn(&mut K),
        moved: fn(&K, &K) -> bool,
        apply: impl Fn(&mut Table, &K, bool) -> bool + Send + Sync + 'static,
    ) -> Informer<K>
    where
        K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
        K: 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone + Default,
    {
        let (table, notify) = (self.table.clone(), self.notify.clone());
        let mut informer = Informer::new(api, config, strip);
        let store = informer.store();
        informer.on_change(move |change| {
            let mut table = lock(&table);
            let mut changed = false;
            let mut apply = |object: &K, gone: bool| changed |= apply(&mut table, object, gone);
            if let Change::Applied {
                old: Some(old),
                new,
            } = change
                && moved(old, new)
            {
                apply(old, true);
            }
            fold_change(change, &store, apply);
            if changed {
                notify.notify_one();
            }
        });
        informer
    }
}

/// For the watches whose objects never move: no update leaves what it was applied as.
fn never_moves<K>(_: &K, _: &K) -> bool {
    false
}

/// Keeps only what the proxy reads of a Service: its ports and ClusterIPs.
pub(crate) fn strip_service(service: &mut Service) {
    strip_metadata(service);
    service.metadata.annotations = None;
    service.status = None;
    if let Some(spec) = service.spec.as_mut() {
        *spec = k8s_openapi::api::core::v1::ServiceSpec {
            ports: spec.ports.take(),
            cluster_ip: spec.cluster_ip.take(),
            cluster_ips: spec.cluster_ips.take(),
            ..Default::default()
        };
    }
}
