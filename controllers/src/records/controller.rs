//! The records reconciler: Services + ServiceIP claims + EndpointSlices in, DNSRecords out.
//! In ClusterIP mode a ClusterIP Service's addresses are its own `spec.clusterIPs`, and the
//! claims are not read.
//!
//! Keyed by Service namespace/name, so a deleted Service is handled like any other change (its
//! key has a record but no Service). The rendering is the pure [`render`]; the ownership and
//! status decisions are the pure functions of [`super::status`]; this file reads caches and
//! indexes, calls them, and writes only what differs from what is stored.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use signpost_crds::{DNSRecord, RecordType, ServiceIP};
use tokio::sync::watch;

use super::status::{LABEL_MANAGED_BY, MANAGED_BY_SIGNPOST, Ownership, desired_status, ownership};
use super::{
    RenderError, Rendered, cluster_ips, normalize_cluster_domain, record_type, render, trigger,
};
use crate::runtime::{
    Change, ControlLoop, EventSink, Informer, Next, SharedMetrics, SyncError, WorkQueue, keys_of,
    on_change,
};
use signpost_core::keys::ServiceKey;
use signpost_index::records::{RecordsIndex, record_key};

/// Name of this controller in metrics, logs and Events.
pub const CONTROLLER: &str = "records";
/// Field manager of the DNSRecords this controller writes.
pub const FIELD_MANAGER: &str = "signpost-records";
/// How long a write of ours may stay unseen by the watch before the reconciler stops waiting
/// for it and works from the cache anyway. Normally the watch shows a write within
/// milliseconds; this only bounds the wait if its event was somehow missed (a lost event
/// costs at worst one 409 and a retry, never a wrong write).
const WRITE_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the records controller.
#[derive(Clone, Debug)]
pub struct RecordsConfig {
    /// The cluster's DNS domain (`--cluster-domain`), e.g. `cluster.local`.
    pub cluster_domain: String,
    /// TTL of every answer, in seconds (clamped to [`super::MAX_TTL`]).
    pub ttl: u32,
    /// Only this namespace (tests); `None` for the whole cluster.
    pub namespace: Option<String>,
    /// Concurrent reconciles.
    pub workers: usize,
    /// ClusterIP mode (`--cluster-ip-mode`): a Service's record lists its `spec.clusterIPs`,
    /// which Signpost's webhook chose, or the API server from another ServiceCIDR (while
    /// Signpost was down, or beside Signpost's): the address clients reach is the Service's
    /// real one either way, so the record says it, even where no claim could be made.
    pub cluster_ip_mode: bool,
}

/// Shared state of the controller.
pub struct RecordsController {
    client: Client,
    services: Store<Service>,
    claims: Store<ServiceIP>,
    slices: Store<EndpointSlice>,
    records: Store<DNSRecord>,
    state: Mutex<RecordsIndex>,
    control: ControlLoop<ServiceKey>,
    events: EventSink,
    metrics: SharedMetrics,
    config: RecordsConfig,
}

/// The informers this controller reads.
pub struct RecordsInformers<'a> {
    /// Services (shared).
    pub services: &'a mut Informer<Service>,
    /// ServiceIP claims (shared with IPAM): the virtual IPs.
    pub claims: &'a mut Informer<ServiceIP>,
    /// EndpointSlices managed by Signpost's endpoints controller (shared): the endpoints of
    /// headless Services.
    pub slices: &'a mut Informer<EndpointSlice>,
    /// DNSRecords.
    pub records: &'a mut Informer<DNSRecord>,
}

impl RecordsController {
    /// Checks the configuration and registers the controller's handlers on the informers.
    /// A bad `--cluster-domain` is refused here, at start-up, rather than failing every
    /// render later.
    pub fn new(
        client: Client,
        informers: RecordsInformers<'_>,
        events: EventSink,
        metrics: SharedMetrics,
        mut config: RecordsConfig,
    ) -> Result<Arc<Self>, RenderError> {
        config.cluster_domain = normalize_cluster_domain(&config.cluster_domain)?;
        let this = Arc::new(Self {
            client,
            services: informers.services.store(),
            claims: informers.claims.store(),
            slices: informers.slices.store(),
            records: informers.records.store(),
            state: Mutex::new(RecordsIndex::new(config.namespace.clone())),
            control: ControlLoop::new(
                CONTROLLER,
                WorkQueue::new(),
                vec![
                    informers.services.synced(),
                    informers.claims.synced(),
                    informers.slices.synced(),
                    informers.records.synced(),
                ],
                config.workers,
                metrics.clone(),
            ),
            events,
            metrics,
            config,
        });
        on_change(informers.services, &this, Self::on_service);
        on_change(informers.claims, &this, Self::on_claim);
        on_change(informers.slices, &this, Self::on_slice);
        on_change(informers.records, &this, Self::on_record);
        Ok(this)
    }

    /// Becomes true once every cache has synced and the first pass was queued.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.control.ready()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordsIndex> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_service(&self, change: &Change<'_, Service>) {
        self.control
            .add_all(keys_of(change, || self.services.state(), ServiceKey::of));
    }

    fn on_claim(&self, change: &Change<'_, ServiceIP>) {
        let affected: Vec<ServiceKey> = match change {
            Change::Applied { new, .. } => self.lock().apply_claim(new),
            Change::Deleted(old) => self.lock().delete_claim(old).into_iter().collect(),
            Change::Relisting => return,
            Change::Resynced { .. } => {
                let claims = self.claims.state();
                let affected = self.lock().reset_claims(claims.iter().map(|c| c.as_ref()));
                affected.into_iter().collect()
            }
        };
        // In ClusterIP mode the records follow `spec.clusterIPs`, whose changes come with the
        // Service's own events; a claim changes no record.
        if !self.config.cluster_ip_mode {
            self.control.add_all(affected);
        }
    }

    /// Only headless Services read their slices, so only they are woken by slice changes
    /// (a ClusterIP Service's record does not change when its pods come and go).
    fn wants_slices(&self, key: &ServiceKey) -> bool {
        self.services
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
            .is_some_and(|svc| record_type(&svc) == RecordType::Headless)
    }

    fn on_slice(&self, change: &Change<'_, EndpointSlice>) {
        let affected = match change {
            Change::Applied { new, .. } => self.lock().apply_slice(new),
            Change::Deleted(old) => self.lock().delete_slice(old).into_iter().collect(),
            Change::Relisting => return,
            Change::Resynced { .. } => {
                let slices = self.slices.state();
                self.lock().reset_slices(slices.iter().map(|s| s.as_ref()))
            }
        };
        for key in affected {
            if self.wants_slices(&key) {
                self.control.add(key);
            }
        }
    }

    fn on_record(&self, change: &Change<'_, DNSRecord>) {
        let keys = {
            let mut index = self.lock();
            match change {
                Change::Applied { new, .. } => vec![index.apply_record(new)],
                Change::Deleted(old) => vec![index.delete_record(old)],
                Change::Relisting => Vec::new(),
                Change::Resynced { .. } => {
                    index.reset_records();
                    keys_of(change, || self.records.state(), record_key)
                }
            }
        };
        self.control.add_all(keys);
    }

    /// Runs until the queue shuts down: waits for every cache, then reconciles.
    pub async fn run(self: Arc<Self>) {
        self.control.wait_synced().await;
        tracing::debug!("records: caches synced");
        for svc in self.services.state() {
            self.control.add(ServiceKey::of(&svc));
        }
        // Records whose Service went while no controller was running.
        for record in self.records.state() {
            self.control.add(record_key(&record));
        }
        let this = self.clone();
        self.control
            .serve(move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            })
            .await;
    }

    /// Stops taking work.
    pub fn shut_down(&self) {
        self.control.shut_down();
    }

    async fn sync(&self, key: &ServiceKey) -> Result<Next, SyncError> {
        if let Some(wait) = self.pending_write(key) {
            // The watch has not shown our last write yet; its event queues this again.
            return Ok(Next::After(wait));
        }
        let record = self
            .records
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        let service = self
            .services
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        let Some(service) = service else {
            if let Some(record) = record
                && ownership(&record, None) != Ownership::Foreign
            {
                self.delete_if_orphaned(key, &record).await?;
            }
            let mut state = self.lock();
            state.reported_foreign.remove(key);
            state.reported_invalid.remove(key);
            return Ok(Next::Done);
        };
        let uid = service.uid().unwrap_or_default();
        if let Some(record) = &record {
            match ownership(record, Some(&uid)) {
                Ownership::Ours => {}
                Ownership::OursForAnotherService => {
                    // Made for an earlier Service of this name; its Deleted event queues the
                    // key again, and the next pass creates the new Service's record.
                    self.delete_if_orphaned(key, record).await?;
                    return Ok(Next::Done);
                }
                Ownership::Foreign => {
                    self.report_foreign(key, &service, record).await;
                    return Ok(Next::Done);
                }
            }
        }

        let (rendered, trigger) = match self.render(key, &service, &uid) {
            Ok(rendered) => rendered,
            Err(error) => {
                self.report_invalid(key, &service, error).await;
                return Ok(Next::Done);
            }
        };
        let base_version = record.as_ref().and_then(|r| r.resource_version());
        let mut versions_behind = vec![base_version];
        let spec_written = self
            .write_spec(key, &service, record.as_deref(), &rendered, trigger)
            .await?;
        if let Some(written) = &spec_written {
            versions_behind.push(written.resource_version());
        }
        let current: &DNSRecord = match (&spec_written, &record) {
            (Some(written), _) => written,
            (None, Some(existing)) => existing,
            (None, None) => unreachable!("a missing record is always created"),
        };
        let status_written = self.write_status(key, current, &rendered).await?;
        let last_written =
            status_written.or_else(|| spec_written.as_ref().and_then(|w| w.resource_version()));
        if let Some(version) = last_written {
            self.note_written(key, &versions_behind, version);
        }
        Ok(Next::Done)
    }

    /// Creates the record, or replaces its spec when it differs from `rendered`; returns what
    /// was written, `None` when nothing needed to be.
    async fn write_spec(
        &self,
        key: &ServiceKey,
        service: &Service,
        record: Option<&DNSRecord>,
        rendered: &Rendered,
        trigger: String,
    ) -> Result<Option<DNSRecord>, SyncError> {
        let api: Api<DNSRecord> = Api::namespaced(self.client.clone(), &key.namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match record {
            None => {
                let mut new = new_record(service, rendered);
                set_trigger_time(&mut new, trigger);
                self.metrics.wrote(CONTROLLER);
                let created = api
                    .create(&params, &new)
                    .await
                    .map_err(|e| SyncError::write(format!("creating DNSRecord {key}"), e))?;
                tracing::info!(record = %key, fqdn = %rendered.spec.fqdn, "created DNSRecord");
                Ok(Some(created))
            }
            Some(existing) if existing.spec == rendered.spec => Ok(None),
            Some(existing) => {
                let mut update = existing.clone();
                update.spec = rendered.spec.clone();
                set_trigger_time(&mut update, trigger);
                self.metrics.wrote(CONTROLLER);
                let updated = api
                    .replace(&key.name, &params, &update)
                    .await
                    .map_err(|e| SyncError::write(format!("updating DNSRecord {key}"), e))?;
                Ok(Some(updated))
            }
        }
    }

    /// Patches the status of `current` when it differs from what `rendered` says; returns the
    /// resourceVersion written, `None` when nothing needed to be.
    async fn write_status(
        &self,
        key: &ServiceKey,
        current: &DNSRecord,
        rendered: &Rendered,
    ) -> Result<Option<String>, SyncError> {
        let generation = current.metadata.generation.unwrap_or(0);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let status = desired_status(current.status.as_ref(), generation, rendered, now);
        if current.status.as_ref() == Some(&status) {
            return Ok(None);
        }
        // A merge patch replaces `conditions` whole; the resourceVersion makes it conditional
        // on the copy the status was computed from.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": current.resource_version()},
            "status": status,
        });
        let patch_params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.metrics.wrote(CONTROLLER);
        let api: Api<DNSRecord> = Api::namespaced(self.client.clone(), &key.namespace);
        let patched = api
            .patch_status(&key.name, &patch_params, &Patch::Merge(&patch))
            .await
            .map_err(|e| SyncError::write(format!("updating the status of DNSRecord {key}"), e))?;
        Ok(patched.resource_version())
    }

    fn render(
        &self,
        key: &ServiceKey,
        service: &Service,
        uid: &str,
    ) -> Result<(Rendered, String), RenderError> {
        let (vips, slices) = {
            let state = self.lock();
            let vips = if self.config.cluster_ip_mode {
                cluster_ips(service)
            } else {
                state.vips.vips_of(key, uid)
            };
            let slices: Vec<EndpointSlice> = if record_type(service) == RecordType::Headless {
                state
                    .slices
                    .names(key)
                    .iter()
                    .filter_map(|name| {
                        self.slices
                            .get(&ObjectRef::new(name).within(&key.namespace))
                    })
                    .map(|slice| (*slice).clone())
                    .collect()
            } else {
                Vec::new()
            };
            (vips, slices)
        };
        let rendered = render(
            service,
            &vips,
            &slices,
            &self.config.cluster_domain,
            self.config.ttl,
        )?;
        let trigger = trigger::trigger_time(&slices, k8s_openapi::jiff::Timestamp::now());
        Ok((rendered, trigger))
    }

    /// How long to wait before looking at `key` again, while the cache has not shown our last
    /// write to its record.
    fn pending_write(&self, key: &ServiceKey) -> Option<Duration> {
        let mut state = self.lock();
        let (_, at) = state.written.get(key)?;
        match WRITE_SETTLE_TIMEOUT.checked_sub(at.elapsed()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                tracing::debug!(record = %key, "our last write never showed in the cache; going on without it");
                state.written.remove(key);
                None
            }
        }
    }

    /// Remembers that we wrote `version` of `key`'s record, unless the cache already shows it.
    /// Our writes are conditional (create, or the resourceVersion we read), so the cache holds
    /// one of `behind` (the versions our writes started from) until it has caught up; any
    /// other version means it already passed our write.
    fn note_written(&self, key: &ServiceKey, behind: &[Option<String>], version: String) {
        // Under the state lock, which the watch handler also takes after updating the cache:
        // either the cache shows our write already, or the handler clears the note when it does.
        let mut state = self.lock();
        let cached = self
            .records
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
            .and_then(|r| r.resource_version());
        if behind.contains(&cached) {
            state.written.insert(key.clone(), (version, Instant::now()));
        }
    }

    /// Deletes `record`, whose owner the Service cache does not show, after checking with a
    /// live read that the owner is really gone: the cache may lag behind a Service created a
    /// moment ago. (Garbage collection would remove the record too; this is only faster.)
    async fn delete_if_orphaned(
        &self,
        key: &ServiceKey,
        record: &DNSRecord,
    ) -> Result<(), SyncError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let live = api
            .get_opt(&key.name)
            .await
            .map_err(|source| SyncError::Api {
                action: format!("reading Service {key}"),
                source,
            })?;
        if let Some(live) = live
            && ownership(record, live.uid().as_deref()) == Ownership::Ours
        {
            return Ok(());
        }
        self.delete_record(key, record).await
    }

    async fn delete_record(&self, key: &ServiceKey, record: &DNSRecord) -> Result<(), SyncError> {
        let api: Api<DNSRecord> = Api::namespaced(self.client.clone(), &key.namespace);
        let params = DeleteParams {
            preconditions: record.uid().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        self.metrics.wrote(CONTROLLER);
        match api.delete(&key.name, &params).await {
            Ok(_) => {
                tracing::info!(record = %key, "deleted DNSRecord");
            }
            // Already gone, or replaced by a newer object: nothing of ours to delete.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(e) => return Err(SyncError::write(format!("deleting DNSRecord {key}"), e)),
        }
        self.lock().written.remove(key);
        Ok(())
    }

    async fn report_foreign(&self, key: &ServiceKey, service: &Service, record: &DNSRecord) {
        let version = record.resource_version().unwrap_or_default();
        let first_time = self
            .lock()
            .reported_foreign
            .insert(key.clone(), version.clone())
            != Some(version);
        if first_time {
            let note = format!(
                "DNSRecord {key} was not written by Signpost (it lacks the label {LABEL_MANAGED_BY}={MANAGED_BY_SIGNPOST} or the Service as controlling owner); Signpost leaves it alone. Delete it to let Signpost manage it."
            );
            self.events
                .warn(
                    &service.object_ref(&()),
                    "DNSRecordManagedElsewhere",
                    "SyncDNSRecord",
                    note,
                )
                .await;
        }
    }

    async fn report_invalid(&self, key: &ServiceKey, service: &Service, error: RenderError) {
        let version = service.resource_version().unwrap_or_default();
        let first_time = self
            .lock()
            .reported_invalid
            .insert(key.clone(), version.clone())
            != Some(version);
        if first_time {
            self.events
                .warn(
                    &service.object_ref(&()),
                    "InvalidDNSRecord",
                    "SyncDNSRecord",
                    format!("no DNSRecord can be published for this Service: {error}"),
                )
                .await;
        }
    }
}

/// A new record for `service`: same name and namespace, labelled as Signpost's, and owned by
/// the Service so garbage collection removes it with the Service even if no controller runs.
/// Stamps the record with the time of the change its spec carries (see
/// [`trigger::ANNOTATION_TRIGGER_TIME`]), for DNS servers' programming-latency metrics.
fn set_trigger_time(record: &mut DNSRecord, trigger: String) {
    record
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(trigger::ANNOTATION_TRIGGER_TIME.into(), trigger);
}

fn new_record(service: &Service, rendered: &Rendered) -> DNSRecord {
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.name_any(),
        uid: service.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    DNSRecord {
        metadata: ObjectMeta {
            name: Some(service.name_any()),
            namespace: service.namespace(),
            labels: Some([(LABEL_MANAGED_BY.into(), MANAGED_BY_SIGNPOST.into())].into()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: rendered.spec.clone(),
        status: None,
    }
}
